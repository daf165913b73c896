"""End to end: `soundedit classify` and `soundedit eval zeroshot|probe|edits` on real ESC-50 fold-1 audio
with seeded tiny models in the real checkpoint layouts (authors' .pth, our safetensors, OpenAI CLIP)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from soundedit.cli.main import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip

    d = tmp_path_factory.mktemp("models")
    return {
        "clip": str(write_tiny_openai_clip(d / "clip.pt")),
        "authors": str(write_tiny_audio_encoder(d / "resnet18_57.pth", layout="official", arch="resnet18")),
        "ours": str(write_tiny_audio_encoder(d / "ours.safetensors", layout="clean", arch="resnet10t")),
        "cache": str(d / "cache"),
    }


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _png_ok(path) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 50 and im.size[1] > 50


def test_classify_refuses_a_partial_protocol(capsys, esc50_root):
    code, out, err = _run(capsys, "classify", esc50_root, "--encoder", "unused.pth")
    assert code == 2 and out == ""
    assert "1600 of 2000 files listed in meta/esc50.csv are missing" in err
    assert "--folds 1" in err and "--skip-missing" in err


@pytest.mark.parametrize("command", [["probe", "--root"], ["table1", "--root"], ["edits", "--jobs"]])
def test_eval_seeds_are_checked_before_any_work(capsys, tmp_path, command):
    code, out, err = _run(capsys, "eval", *command, tmp_path / "missing", "--seed", str(2**32))
    assert code == 2 and out == ""
    assert f"--seed: expected an integer from 0 to {2**32 - 1} (scikit-learn takes 32-bit seeds), got {2**32}" in err


@pytest.mark.parametrize("steps", ["0", "-1", "100001"])
def test_eval_edits_steps_have_the_range_of_edit(capsys, tmp_path, esc50_root, steps):
    """0 steps scored the unedited source as an edit; the error names the flag (not the library's ``steps:``)."""
    sound = esc50_root / "audio" / "1-31482-A-42.flac"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,sound,label\n0,{sound},siren\n")
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, "-g", "/nonexistent/g.pt", "-e",
                          "/nonexistent/enc.pth", "--clip", "/nonexistent/clip.pt", "--steps", steps,
                          "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert err.strip() == f"error: --steps: expected an integer from 1 to 100000, got {steps}"
    assert not (tmp_path / "o").exists()


def test_eval_edits_help_shows_the_steps_range(capsys):
    code, out, _ = _run(capsys, "eval", "edits", "--help")
    words = " ".join(w for w in out.split() if w not in "│╭╮╰╯─")  # rich boxes and wraps the help
    assert code == 0 and "Optimisation steps, 1 to 100000" in words and "x>=0" not in words, words


def test_classify_names_an_input_that_does_not_exist(capsys, tmp_path):
    code, out, err = _run(capsys, "classify", tmp_path / "no-such-folder", "--labels", "dog,rain")
    assert code == 2 and out == ""
    assert "INPUTS: " in err and "no-such-folder' does not exist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value, message", [
    ("--labels", "", "--labels: expected comma-separated class names (e.g. 'dog,rain,siren'), got ''"),
    ("--labels", ",,", "--labels: expected comma-separated class names (e.g. 'dog,rain,siren'), got ',,'"),
    ("--labels-file", "# only a comment\n\n", "--labels-file: expected class names, one per line, got none in"),
    ("--labels-file", b"\xff\xfe\x00garbage", "--labels-file: expected a UTF-8 text file, got"),
])
def test_classify_says_when_the_given_labels_are_empty_or_unreadable(capsys, tmp_path, flag, value, message):
    clips = tmp_path / "clips"
    clips.mkdir()
    if flag == "--labels-file":
        labels = tmp_path / "labels.txt"
        labels.write_bytes(value if isinstance(value, bytes) else value.encode())
        value = labels
    code, out, err = _run(capsys, "classify", clips, flag, value)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_classify_esc50_fold1(capsys, esc50_root, models):
    common = ["classify", esc50_root, "--folds", "1", "--limit", "8", "--encoder", models["authors"],
              "--clip", models["clip"], "--cache-dir", models["cache"], "-k", "3"]
    code, out, _ = _run(capsys, *common, "--json")
    assert code == 0
    res = json.loads(out)
    assert res["dataset"] == "esc50" and len(res["classes"]) == 50 and len(res["items"]) == 8
    assert res["failures"] == [] and res["summary"]["missing"] == 0
    correct = [item["correct"] for item in res["items"]]
    assert res["summary"]["accuracy"] == pytest.approx(sum(correct) / 8)
    assert res["summary"]["folds"]["1"]["n"] == 8
    for item in res["items"]:
        assert item["file"].startswith("audio/1-") and item["fold"] == 1 and item["label"] in res["classes"]
        scores = [t["score"] for t in item["top"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        assert item["correct"] == (item["top"][0]["label"] == item["label"])

    code, out, _ = _run(capsys, *common, "--tsv")
    lines = out.strip().split("\n")
    assert code == 0 and lines[0].split("\t")[:4] == ["file", "label", "fold", "pred1"] and len(lines) == 9
    assert {line.split("\t")[-1] for line in lines[1:]} <= {"correct", "wrong"}

    code, out, _ = _run(capsys, *common)
    assert code == 0 and "accuracy" in out and "per fold" in out and "1-100032-A-0.flac" in out


def test_classify_lists_undecodable_files(capsys, monkeypatch, tmp_path, esc50_root, models):
    (tmp_path / "good.flac").symlink_to(esc50_root / "audio" / "1-100032-A-0.flac")
    (tmp_path / "noise.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (tmp_path / "empty.flac").write_bytes(b"")
    code, out, _ = _run(capsys, "classify", tmp_path, "--labels", "dog,rain,siren", "--encoder", models["authors"],
                        "--clip", models["clip"], "--no-cache", "--json")
    assert code == 0
    res = json.loads(out)
    assert [i["file"] for i in res["items"]] == ["good.flac"] and "accuracy" not in res["summary"]
    assert res["summary"]["failed"] == 2
    reasons = {f["file"]: f["reason"] for f in res["failures"]}
    assert set(reasons) == {"noise.wav", "empty.flac"} and "empty" in reasons["empty.flac"]

    # the same files as a list on stdin ('-'), with the labels from a file
    (tmp_path / "labels.txt").write_text("dog\nrain\n")
    files = "\n".join(str(tmp_path / n) for n in ("good.flac", "noise.wav")) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(files))
    code, out, _ = _run(capsys, "classify", "-", "--labels-file", tmp_path / "labels.txt", "--encoder",
                        models["authors"], "--clip", models["clip"], "--cache-dir", models["cache"], "--tsv")
    rows = [line.split("\t") for line in out.strip().split("\n")]
    assert code == 0 and len(rows) == 3 and rows[1][0].endswith("good.flac") and rows[1][-1] == "ok"
    assert rows[2][0].endswith("noise.wav") and rows[2][-1].startswith("error: ")
    # a listed file that is not there is bad input, as on the command line and under `embed -` (it was a warning)
    monkeypatch.setattr("sys.stdin", io.StringIO(files + str(tmp_path / "gone.flac") + "\n"))
    code, _, err = _run(capsys, "classify", "-", "--labels-file", tmp_path / "labels.txt", "--encoder",
                        models["authors"], "--clip", models["clip"], "--no-cache")
    assert code == 2 and f"INPUTS (stdin line 3): '{tmp_path / 'gone.flac'}' does not exist" in err


@pytest.mark.slow
def test_eval_zeroshot_two_encoders(capsys, tmp_path, esc50_root, models):
    argv = ["eval", "zeroshot", "--dataset", "esc50", "--root", esc50_root, "--folds", "1", "--limit", "6",
            "-e", models["authors"], "-e", models["ours"], "--clip", models["clip"], "--cache-dir", models["cache"],
            "--out", tmp_path / "zs"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and "Zero-shot ESC-50" in out
    report = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())
    assert set(report["results"]) == {models["authors"], models["ours"]}
    for enc in report["results"].values():
        r = enc["esc50"]
        assert r["n"] == 6 and set(r["folds"]) == {"1"} and 0 <= r["top1"] <= r["top5"] <= 1
        assert len(r["confusion"]) == 50 and sum(map(sum, r["confusion"])) == 6
    ds = report["datasets"]["esc50"]
    assert ds["n_clips"] == 6 and len(ds["metadata_sha256"]) == 64 and report["environment"]["torch"]
    md = (tmp_path / "zs" / "zeroshot.md").read_text()
    assert md.count("resnet18_57") >= 2 and "ours" in md and "| Model |" in md
    pngs = sorted((tmp_path / "zs").glob("*.png"))
    assert len(pngs) == 4
    for p in pngs:
        _png_ok(p)
    # a re-run reads every embedding from the cache
    code, out, _ = _run(capsys, *argv, "--json")
    again = json.loads(out)
    assert code == 0 and all(e["esc50"]["cache_hits"] == 6 for e in again["results"].values())
    assert again["results"][models["ours"]]["esc50"]["top1"] == report["results"][models["ours"]]["esc50"]["top1"]


def test_eval_probe_on_class_folders(capsys, tmp_path, esc50_root, models):
    root = tmp_path / "sounds"
    clips = {"dog": "-0.flac", "rooster": "-1.flac", "rain": "-10.flac"}
    for cls, suffix in clips.items():
        (root / cls).mkdir(parents=True)
        for src in sorted((esc50_root / "audio").glob(f"*{suffix}"))[:4]:
            (root / cls / src.name).symlink_to(src)
    code, out, _ = _run(capsys, "eval", "probe", "--root", root, "-e", models["ours"], "--cache-dir", models["cache"],
                        "--C", "0.1,1", "--out", tmp_path / "probe")
    assert code == 0 and "Supervised" in out
    report = json.loads((tmp_path / "probe" / "probe.json").read_text())
    r = report["results"][models["ours"]]["folder"]
    assert r["protocol"] == "stratified-4" and len(r["folds"]) == 4 and r["n"] == 12
    assert set(r["chosen_C"].values()) <= {0.1, 1.0} and 0 <= r["mean"] <= 1
    _png_ok(next((tmp_path / "probe").glob("probe_confusion_*.png")))


@pytest.mark.slow
def test_eval_edits_with_tiny_generator(capsys, tmp_path, esc50_root, models):
    from soundedit.testing.generators import write_tiny_generator

    gen = write_tiny_generator(tmp_path / "g.pt", size=32)
    audio = esc50_root / "audio"
    (tmp_path / "jobs.csv").write_text(
        "source,sound,label\n"
        f"0,{audio / '1-101296-A-19.flac'},thunderstorm\n"
        f"1,{audio / '1-17150-A-12.flac'},crackling_fire\n"
        f"2,{audio / '1-101296-B-19.flac'},thunderstorm\n")
    code, out, _ = _run(capsys, "eval", "edits", "--jobs", tmp_path / "jobs.csv", "-g", gen, "-e", models["authors"],
                        "--clip", models["clip"], "--steps", "2", "--cache-dir", models["cache"],
                        "--out", tmp_path / "edits", "--json")
    assert code == 0
    res = json.loads(out)
    s = res["summary"]
    assert s["n_edits"] == 3 and s["tsne"] == "ok" and s["semantic_classes"] == ["crackling fire", "thunderstorm"]
    for key in ("clip_to_target", "clip_to_source", "pixel_l1", "text_clip_to_target"):
        assert -1 <= s[key]["mean"] <= 1
    assert 0 < s["cos_ws_wa"]["mean"] < 1 and s["cos_ws_wa"]["var"] >= 0 and 0 < s["cos_ws_wt"]["mean"] < 1
    assert 0 <= s["semantic_accuracy"] <= 1 and len(res["tsne"]) == 6
    out_dir = tmp_path / "edits"
    for name in ("edits_tsne.png", "edits_direction_cosines.png", "edits_clip_cosines.png"):
        _png_ok(out_dir / name)
    assert len(list((out_dir / "images").glob("edit_*.png"))) == 3
    assert "t-SNE of directions | edits_tsne.png" in (out_dir / "edits.md").read_text()
    # --json prints the report as written, head included (it lacked kind, created, environment and settings)
    assert res == json.loads((out_dir / "edits.json").read_text())
    assert res["kind"] == "edits" and res["settings"]["steps"] == 2 and res["environment"]["torch"] and res["created"]
    assert res["files"] == {"json": str(out_dir / "edits.json"), "markdown": str(out_dir / "edits.md")}

    # a re-run with fewer jobs and no text edits replaces the earlier set whole: its images/ folder included,
    # whatever hidden file appeared in it since (Finder's .DS_Store), and also when an earlier version wrote
    # it unmarked (only image rows, beside its edits.json)
    (out_dir / "images" / ".soundedit-output").unlink()
    (out_dir / "images" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "jobs.csv").write_text(f"source,sound,label\n0,{audio / '1-101296-A-19.flac'},thunderstorm\n"
                                       f"1,{audio / '1-17150-A-12.flac'},crackling_fire\n")
    code, out, _ = _run(capsys, "eval", "edits", "--jobs", tmp_path / "jobs.csv", "-g", gen, "-e", models["authors"],
                        "--clip", models["clip"], "--steps", "1", "--no-text", "--cache-dir", models["cache"],
                        "--out", out_dir)
    assert code == 0 and "Manipulation metrics (2 edits)" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["edits.json", "edits.md", "edits_clip_cosines.png",
                                                         "edits_direction_cosines.png", "images"]
    assert sorted(p.name for p in (out_dir / "images").iterdir()) == [".soundedit-output", "edit_0000_thunderstorm.png",
                                                                      "edit_0001_crackling-fire.png"]
    assert json.loads((out_dir / "edits.json").read_text())["summary"]["n_edits"] == 2


@pytest.mark.parametrize("template, why", [
    ("{label} {other}", "unknown placeholder {other}"),
    ("{label} {0}", "unknown placeholder {0}"),
    ("{label} }", "Single '}' encountered"),
])
@pytest.mark.parametrize("command", ["classify", "zeroshot", "table1"])
def test_templates_with_stray_braces_are_refused_before_any_work(capsys, tmp_path, command, template, why):
    (tmp_path / "dog").mkdir()
    argv = (["classify", tmp_path, "--labels", "dog,cat"] if command == "classify"
            else ["eval", command, "--root", tmp_path, "--out", tmp_path / "out"])
    code, out, err = _run(capsys, *argv, "--template", template, "--encoder", "/nonexistent/enc.pth")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --template: expected a text with one {label} placeholder "
                          "(write literal braces as {{ and }})")
    assert f"got {template!r}" in err and why in err


@pytest.mark.parametrize("argv", [["eval", "zeroshot", "--root"], ["eval", "probe", "--root"], ["classify"]])
@pytest.mark.parametrize("skip", [[], ["--skip-missing"]])
def test_folds_with_no_present_clips_say_so(capsys, esc50_root, argv, skip):
    # fold-1-only data asked for fold 3: nothing is left, with or without --skip-missing
    code, out, err = _run(capsys, *argv, esc50_root, "--folds", "3", *skip, "--encoder", "/nonexistent/enc.pth")
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: --folds 3: no clips are left to evaluate: all 400 files listed for fold 3 in meta/esc50.csv are "
        f"missing from {esc50_root} (files are present for fold 1 only)")
    assert "no label" not in err and "pass --skip-missing" not in err


@pytest.mark.parametrize("value, got", [("nan,1", "nan"), ("1,inf", "inf"), ("0,1", "0.0"), ("-1", "-1.0")])
def test_probe_c_grid_is_checked_before_any_work(capsys, tmp_path, value, got):
    code, out, err = _run(capsys, "eval", "probe", "--root", tmp_path / "missing", "--C", value)
    assert code == 2 and out == ""
    assert err.strip() == f"error: --C {value!r}: expected a finite number > 0, got {got}"


@pytest.mark.parametrize("command", [["zeroshot", "--root", "{root}"], ["probe", "--root", "{root}"],
                                     ["table1", "--root", "{root}"], ["edits", "--jobs", "{root}/jobs.csv"]])
@pytest.mark.parametrize("below", [False, True])
def test_eval_out_is_checked_before_any_work(capsys, tmp_path, command, below):
    # the dataset folder / job list does not exist either: --out must be the first thing refused
    afile = tmp_path / "afile"
    afile.write_text("")
    out_arg = afile / "x" if below else afile
    argv = [a.replace("{root}", str(tmp_path / "missing")) for a in command]
    code, out, err = _run(capsys, "eval", *argv, "--out", out_arg, "--encoder", "/nonexistent/enc.pth")
    assert code == 2 and out == ""
    got = f"{str(afile)!r} is a file" if below else "a file"
    assert err.strip() == f"error: --out: expected a folder, got {str(out_arg)!r} ({got})"


def test_eval_edits_checks_its_inputs_before_the_models_load(capsys, tmp_path, esc50_root):
    sound = esc50_root / "audio" / "1-31482-A-42.flac"
    jobs = tmp_path / "jobs.csv"
    no_models = ["-g", "/nonexistent/g.pt", "-e", "/nonexistent/enc.pth", "--clip", "/nonexistent/clip.pt"]
    jobs.write_text(f"source,sound,label\n0,{sound},siren\n-3,{sound},siren\n")
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, *no_models, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert err.strip() == (f"error: --jobs {jobs}: row 3: source: expected an integer from 0 to {2**63 - 1} "
                           "(2**63 - 1), got -3")

    jobs.write_text(f"source,sound,label\n0,{sound},siren\n")
    (tmp_path / "images-file").mkdir()
    ((tmp_path / "images-file") / "images").write_text("")
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, *no_models, "--out", tmp_path / "images-file")
    assert code == 2 and "--out: expected" in err and "images" in err and len(err.strip().splitlines()) == 1
    # a folder images/ of the user's (not an earlier run's) is refused before any work, and kept
    (tmp_path / "photos" / "images").mkdir(parents=True)
    (tmp_path / "photos" / "images" / "cat.png").write_text("mine")
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, *no_models, "--out", tmp_path / "photos")
    assert code == 2 and err.strip() == (f"error: --out: {str(tmp_path / 'photos' / 'images')!r}: a folder where "
                                         "soundedit writes its output 'images'; expected no folder there (move it, "
                                         "or choose another output folder)")
    assert (tmp_path / "photos" / "images" / "cat.png").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, *no_models, "--semantic-audio", empty,
                          "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert err.strip() == (f"error: --semantic-audio {empty}: not an ESC-50 (meta/esc50.csv) or UrbanSound8K "
                           "(metadata/UrbanSound8K.csv) layout and no class sub-folders; expected at least two "
                           "class sub-folders of audio files (their names are the labels)")
    assert "--labels" not in err
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, *no_models, "--semantic-audio",
                          tmp_path / "absent", "--out", tmp_path / "o")
    assert code == 2 and err.strip() == (f"error: --semantic-audio: expected a folder, got "
                                         f"{str(tmp_path / 'absent')!r} (does not exist)")


def test_eval_root_without_class_folders_does_not_ask_for_labels(capsys, tmp_path):
    (tmp_path / "a.flac").write_bytes(b"fLaC")
    code, out, err = _run(capsys, "eval", "zeroshot", "--root", tmp_path, "--encoder", "/nonexistent/enc.pth",
                          "--out", tmp_path / "o")
    assert code == 2 and "--root " in err and "expected at least two class sub-folders" in err
    assert "--labels" not in err


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command, clash", [(["zeroshot", "--root", "{missing}"], "zeroshot.md"),
                                            (["probe", "--root", "{missing}"], "probe.json"),
                                            (["table1", "--root", "{missing}"], "probe.md"),
                                            (["edits", "--jobs", "{missing}/jobs.csv"], "edits.json")])
def test_eval_refuses_a_folder_where_a_report_goes_before_any_work(capsys, tmp_path, command, clash):
    """A folder zeroshot.md/ in --out failed only when the Markdown was written, after the JSON and PNGs."""
    out_dir = tmp_path / "out"
    (out_dir / clash).mkdir(parents=True)
    (out_dir / clash / "notes.txt").write_text("mine")
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in command]
    code, out, err = _run(capsys, "eval", *argv, "--out", out_dir, "--encoder", "/nonexistent/enc.pth")
    assert code == 2 and out == ""
    assert err.strip() == (f"error: --out: {str(out_dir / clash)!r}: a folder where soundedit writes its output "
                           f"{clash!r}; expected no folder there (move it, or choose another output folder)")
    assert _snapshot(out_dir) == {f"{clash}/notes.txt": b"mine"}


@pytest.mark.slow
def test_eval_zeroshot_writes_its_reports_as_one_set(capsys, monkeypatch, tmp_path, esc50_root, models):
    """The JSON and PNGs were written one by one: a failure (or Ctrl-C) on the Markdown left the new
    JSON and plots beside the old Markdown, and a re-run with other encoders left the old encoders' plots."""
    from soundedit.evaluation import reports

    out_dir = tmp_path / "zs"
    argv = ["eval", "zeroshot", "--root", esc50_root, "--folds", "1", "--limit", "4", "--clip", models["clip"],
            "--cache-dir", models["cache"], "--out", out_dir]
    code, _, _ = _run(capsys, *argv, "-e", models["authors"])
    assert code == 0
    first = _snapshot(out_dir)
    assert sorted(first) == ["zeroshot.json", "zeroshot.md", "zeroshot_confusion_resnet18-57_esc50.png",
                             "zeroshot_per_class_resnet18-57_esc50.png"]

    # Ctrl-C while the second run writes its Markdown: the folder keeps the first run's set, and says so
    real_write_report = reports.write_report

    def interrupted(folder, report, markdown, *, stem):
        real_write_report(folder, report, markdown, stem=stem)  # the JSON is written first...
        raise KeyboardInterrupt  # ...and Ctrl-C comes before the set is complete

    monkeypatch.setattr(reports, "write_report", interrupted)
    code, out, err = _run(capsys, *argv, "-e", models["ours"])
    assert code == 130 and out == ""
    assert err.strip() == f"interrupted: the eval zeroshot did not finish; nothing was written to {out_dir}"
    assert _snapshot(out_dir) == first
    monkeypatch.undo()

    # a folder of the user's bearing a plot's name (known only once the encoders are named): refused, nothing moves
    (out_dir / "zeroshot_confusion_ours_esc50.png").mkdir()
    (out_dir / "zeroshot_confusion_ours_esc50.png" / "notes.txt").write_text("mine")
    code, out, err = _run(capsys, *argv, "-e", models["ours"])
    assert code == 2 and out == "" and "'zeroshot_confusion_ours_esc50.png'; expected no folder there" in err
    assert _snapshot(out_dir) == {**first, "zeroshot_confusion_ours_esc50.png/notes.txt": b"mine"}
    (out_dir / "zeroshot_confusion_ours_esc50.png" / "notes.txt").unlink()
    (out_dir / "zeroshot_confusion_ours_esc50.png").rmdir()

    # a complete re-run replaces the whole earlier set: no plots of the encoder no longer evaluated
    code, out, _ = _run(capsys, *argv, "-e", models["ours"], "--json")
    assert code == 0
    assert sorted(_snapshot(out_dir)) == ["zeroshot.json", "zeroshot.md", "zeroshot_confusion_ours_esc50.png",
                                          "zeroshot_per_class_ours_esc50.png"]
    report = json.loads((out_dir / "zeroshot.json").read_text())
    assert list(report["results"]) == [models["ours"]]
    assert report["plots"] == {f"zeroshot_{k}_ours_esc50": str(out_dir / f"zeroshot_{k}_ours_esc50.png")
                               for k in ("confusion", "per_class")}
    assert json.loads(out)["files"] == {"json": str(out_dir / "zeroshot.json"),
                                        "markdown": str(out_dir / "zeroshot.md")}


@pytest.mark.parametrize("folds, got", [("", "''"), ("1,", "'1,' (an empty item)"), (",2", "',2' (an empty item)"),
                                        ("1,,2", "'1,,2' (an empty item)"), ("1 2", "'1 2'"), ("1_0", "'1_0'"),
                                        ("0", "'0'"), ("-1", "'-1'"), ("١", "'١'"),
                                        pytest.param("1" * 5000, repr("1" * 5000), id="5000 digits"),
                                        ("1,1", "'1,1' (1 more than once)"),
                                        ("2, 1,2,1", "'2, 1,2,1' (1, 2 more than once)")])
@pytest.mark.parametrize("argv", [["eval", "zeroshot", "--root"], ["eval", "probe", "--root"], ["classify"]])
def test_folds_must_name_each_fold_once(capsys, tmp_path, argv, folds, got):
    """'', '1,' and '1,1' were taken as all folds / fold 1; '1 2' as fold 12."""
    code, out, err = _run(capsys, *argv, tmp_path / "missing", "--folds", folds, "--encoder", "/nonexistent/enc.pth")
    assert code == 2 and out == ""
    each = ", each once" if "more than once" in got else ""
    assert err.strip() == f"error: --folds: expected fold numbers like '1' or '1,2,3'{each}, got {got}"


@pytest.mark.parametrize("text, message", [
    ("source,sound,label,sound\n0,{sound},siren,{sound}\n",
     "expected each column once in the header, got 'sound' 2 times"),
    ("source,sound,label\n", "expected one job per line after the header, got no rows"),
    ("source,sound,label\n\n", "expected one job per line after the header, got no rows"),
    ("source,sound,label,text\n0,{sound},siren,a siren\n\n1,{sound},,a wail\n",
     "row 4: label: expected the class name the edit aims at, got ''"),
    ("source,sound,label\n0,{sound},siren\n1,{sound},__\n", "row 3: label: expected the class name the edit aims at, "
                                                            "got '__'"),
    ("source,sound,label\n  ,{sound},siren\n", "row 2: source: expected a seed or a latent or photo file, got '  '"),
    ("label,sound,source\nsiren,,0\n", "row 2: sound: expected an audio file, got ''"),
])
def test_eval_edits_job_lists_name_the_column_and_line(capsys, tmp_path, esc50_root, text, message):
    """A repeated column was taken silently (its last copy), a header-only file said "missing columns" and
    an empty field printed the whole row as a dict."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(text.replace("{sound}", str(esc50_root / "audio" / "1-31482-A-42.flac")))
    code, out, err = _run(capsys, "eval", "edits", "--jobs", jobs, "-g", "/nonexistent/g.pt", "-e",
                          "/nonexistent/enc.pth", "--clip", "/nonexistent/clip.pt", "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert err.strip() == f"error: --jobs {jobs}: {message}"
    assert not (tmp_path / "o").exists()


def test_eval_edits_job_lists_may_repeat_columns_they_do_not_use(tmp_path, esc50_root):
    """A spreadsheet's trailing commas give empty column names, and notes may repeat: only the columns
    read (source, sound, label, text) must be unique."""
    from soundedit.evaluation.runs import read_jobs

    sound = esc50_root / "audio" / "1-31482-A-42.flac"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,sound,label,,,notes,notes\n0,{sound},siren,,,a,b\n")
    assert [(j["source"], j["sound"], j["label"]) for j in read_jobs(jobs)] == [(0, str(sound), "siren")]


def test_eval_edits_ctrl_c_says_so(capsys, monkeypatch, tmp_path):
    """Ctrl-C during `eval` exited 130 without a word."""
    from soundedit.evaluation import runs

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "read_jobs", interrupted)
    code, out, err = _run(capsys, "eval", "edits", "--jobs", tmp_path / "jobs.csv", "--out", tmp_path / "o")
    assert code == 130 and out == ""
    assert err.strip() == f"interrupted: the eval edits did not finish; nothing was written to {tmp_path / 'o'}"


def test_eval_ctrl_c_while_the_reports_move_in_says_they_are_there(capsys, monkeypatch, tmp_path):
    """A Ctrl-C held off until the complete set was in place: "nothing was written" would be wrong."""
    from soundedit.evaluation import runs
    from soundedit.fileio import SavedThenInterrupted

    def saved_then_interrupted(path):
        raise SavedThenInterrupted(tmp_path / "o")

    monkeypatch.setattr(runs, "read_jobs", saved_then_interrupted)
    code, out, err = _run(capsys, "eval", "edits", "--jobs", tmp_path / "jobs.csv", "--out", tmp_path / "o")
    assert code == 130 and out == ""
    assert err.strip() == f"interrupted: the eval edits had finished; its reports are in {tmp_path / 'o'}"
