"""``soundedit edit`` / ``soundedit mix`` end to end: a real subprocess on seeded tiny checkpoints
in their real layouts (generator, CLIP, audio encoder given as file paths), a private
SOUNDEDIT_HOME, and the one-line errors of bad flags and missing files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from soundedit.cli.main import main
from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip
from soundedit.testing.generators import write_tiny_generator

SIREN = "1-31482-A-42.flac"
RAIN = "1-17367-A-10.flac"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    g = write_tiny_generator(d / "g.pt", size=32, style_dim=32, max_channels=16)
    c = write_tiny_openai_clip(d / "clip.pt", image_size=32, patch_size=16, width=64, layers=1)
    e = write_tiny_audio_encoder(d / "enc.safetensors", arch="resnet10t")
    return ["--generator", str(g), "--clip", str(c), "--audio-encoder", str(e), "--device", "cpu"]


@pytest.fixture
def run(soundedit_home):
    env = {**os.environ, "SOUNDEDIT_HOME": str(soundedit_home), "SOUNDEDIT_PROGRESS": "0"}

    def _run(*args: str, stdin: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "soundedit", *args]  # soundedit/__main__.py: the installed entry point
        return subprocess.run(cmd, capture_output=True, text=True,
                              input=stdin, env={**env, **(extra_env or {})}, timeout=300)
    return _run


def _decodes(path: Path) -> None:
    with Image.open(path) as im:
        im.load()


def test_edit_writes_every_output_and_a_complete_report(run, models, esc50_root, tmp_path):
    siren = esc50_root / "audio" / SIREN
    out = tmp_path / "edit"
    p = run("edit", "--seed", "3", "--sound", str(siren), "--text", "red sky", *models, "--preset", "scenes",
            "--steps", "5", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)  # --json: the report and nothing else on stdout
    for name in ("source.png", "edited.png", "comparison.png", "progress.gif", "gates.png"):
        _decodes(out / name)
    saved = torch.load(out / "w_plus.pt", weights_only=True)
    assert saved["w_plus"].shape[1:] == saved["w_source"].shape[1:]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["source"] == {"kind": "seed", "seed": 3, "truncation": 0.7}
    assert on_disk["target"]["sounds"] == [str(siren)] and on_disk["target"]["text"] == "red sky"
    assert on_disk["settings"]["steps"] == 5 and on_disk["settings"]["preset"] == "scenes"
    assert on_disk["settings"]["lambda_sim"] == 0.002
    assert set(on_disk["final_losses"]) == {"clip", "sim", "id", "total"}
    assert {"target_cosine", "source_cosine"} <= set(on_disk["metrics"]) and on_disk["versions"]["torch"]
    assert report["outputs"]["edited"] == str(out / "edited.png")

    # the saved code is a source for the next edit: two sounds mixed with gains, plain L2
    out2 = tmp_path / "again"
    p = run("edit", "--latent", str(out / "w_plus.pt"), "--sound", str(siren), "--sound",
            str(esc50_root / "audio" / RAIN), "--gain", "0,-10", *models, "--mask", "uniform", "--steps", "3",
            "--out", str(out2))
    assert p.returncode == 0, p.stderr
    again = json.loads((out2 / "report.json").read_text())
    assert again["source"]["kind"] == "latent" and again["target"]["gains_db"] == [0.0, -10.0]
    assert again["settings"]["layer_mask"] == "uniform"
    assert "edit →" in p.stdout  # the human summary


def test_mix_writes_the_mixed_image_and_interpolation(run, models, esc50_root, tmp_path):
    out = tmp_path / "mix"
    p = run("mix", "--sound", str(esc50_root / "audio" / SIREN), "--text", "blue background", *models,
            "--steps", "3", "--interpolate", "3", "--layers", "1-4:sound,5-8:text", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["layers"] == ["sound"] * 4 + ["text"] * 4
    assert report["source"] == {"kind": "seed", "seed": 0, "truncation": 0.7}  # no source given: seed 0
    for name in ("source.png", "sound.png", "text.png", "mixed.png", "comparison.png", "interpolation.gif"):
        _decodes(out / name)
    with Image.open(out / "interpolation.gif") as im:
        assert im.n_frames == 3
    codes = torch.load(out / "w_plus.pt", weights_only=True)
    assert torch.equal(codes["w_plus"][:, :4], codes["sound"][:, :4])
    assert torch.equal(codes["w_plus"][:, 4:], codes["text"][:, 4:])


def test_batch_runs_rows_resumes_and_shards(run, models, esc50_root, tmp_path):
    siren, rain = esc50_root / "audio" / SIREN, esc50_root / "audio" / RAIN
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"out,sound,gain,text,seed\n"
                    f"a,{siren},,,1\n"
                    f"b,{siren};{rain},0;-10,,2\n"
                    f"c,,,a red car,3\n")
    out = tmp_path / "runs"
    # rank 1 of 2 takes only the second row (index 1)
    p = run("edit", "--batch", str(jobs), *models, "--steps", "2", "--out", str(out), "--json",
            extra_env={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert p.returncode == 0, p.stderr
    assert [r["row"] for r in json.loads(p.stdout)["rows"]] == [2]
    assert (out / "b" / "report.json").is_file() and not (out / "a").exists()
    # all rows from stdin, two per batch: b is finished and skipped, a and c run together
    p = run("edit", "--batch", "-", *models, "--steps", "2", "--out", str(out), "--batch-size", "2", "--json",
            stdin=jobs.read_text())
    assert p.returncode == 0, p.stderr
    rows = {r["row"]: r["status"] for r in json.loads(p.stdout)["rows"]}
    assert rows == {1: "done", 2: "skipped (report.json exists)", 3: "done"}
    report_c = json.loads((out / "c" / "report.json").read_text())
    assert report_c["target"]["text"] == "a red car" and report_c["row"] == 3
    _decodes(out / "a" / "edited.png")


@pytest.mark.parametrize("args, message", [
    (["--seed", "1"], "expected a target"),
    (["--sound", "missing.wav"], "--sound: 'missing.wav' does not exist"),
    (["--sound", "{siren}", "--gain", "0,-10"], "--gain: expected one gain per --sound"),
    (["--sound", "{siren}", "--gain", "loud"], "--gain: expected numbers"),
    (["--sound", "{siren}", "--mask", "sometimes"], "--mask: expected one of"),
    (["--sound", "{siren}", "--seed", "1", "--latent", "{siren}"], "expected one of IMAGE, --seed, --latent"),
    (["--sound", "{siren}", "--latent", "nope.pt"], "--latent: 'nope.pt' does not exist"),
    (["--sound", "{siren}", "--steps", "many"], "--steps: expected an integer from 1 to 100000 or 'auto'"),
    (["--sound", "{siren}", "--preset", "portraits"], "--preset: expected one of"),
    (["--sound", "{siren}", "--generator", "no-such-model"],
     "--generator: expected an existing checkpoint file or a weights.lock name, got 'no-such-model'"),
    (["--batch", "missing.csv"], "--batch: 'missing.csv' does not exist"),
    # non-finite and out-of-range numbers, rejected before any model loads (the default generator is not cached)
    (["--sound", "{siren}", "--lr", "inf"], "--lr: expected a finite number in (0, 1000.0], got inf"),
    (["--sound", "{siren}", "--lr", "nan"], "--lr: expected a finite number in (0, 1000.0], got nan"),
    (["--sound", "{siren}", "--lr", "1e38"], "--lr: expected a finite number in (0, 1000.0], got 1e+38"),
    (["--sound", "{siren}", "--lambda-sim", "nan"], "--lambda-sim: expected a finite number >= 0, got nan"),
    (["--sound", "{siren}", "--lambda-sim", "inf"], "--lambda-sim: expected a finite number >= 0, got inf"),
    (["--sound", "{siren}", "--text", "red", "--audio-weight", "nan"], "--audio-weight: expected a finite number"),
    (["--sound", "{siren}", "--text-weight", "5"], "--text-weight: weighs the --text target; got 5 without --text"),
    (["--sound", "{siren}", "--out", ""], "Invalid value for '--out' / '-o': expected a path, got ''"),  # not '.'
    (["--text", "red", "--audio-weight", "2"], "--audio-weight: weighs the --sound target; got 2 without --sound"),
    (["--sound", "{siren}", "--gain", "nan"], "--gain: expected a finite number in [-120.0, 120.0], got nan"),
    (["--sound", "{siren}", "--gain", "-inf"], "--gain: expected a finite number in [-120.0, 120.0], got -inf"),
    (["--sound", "{siren}", "--sound", "{siren}", "--gain", "0,inf"], "--gain: expected a finite number in [-120.0, 120.0], got inf"),
    # +1000 dB overflowed float32: a NaN target, reported as "diverged, try a lower --lr"
    (["--sound", "{siren}", "--sound", "{siren}", "--gain", "0,1000"], "--gain: expected a finite number in [-120.0, 120.0], got 1000.0"),
    (["--sound", "{siren}", "--seed", "99999999999999999999"],
     "--seed: expected an integer from 0 to 9223372036854775807 (2**63 - 1), got 99999999999999999999"),
    (["--sound", "{siren}", "--steps", "99999999999999999999999"], "--steps: expected an integer from 1 to 100000"),
    (["--sound", "{siren}", "--text", "   "], "--text: expected a prompt, got '   '"),
    (["--sound", "{siren}", "--frame-every", "-1"], "--frame-every: expected an integer from 0 to 100000, got -1"),
    # a photo's inversion flags are named as typed under `edit`, not as `invert` spells them
    (["{siren}", "--sound", "{siren}", "--invert-steps", "0"], "--invert-steps: expected an integer from 1 to"),
    (["{siren}", "--sound", "{siren}", "--invert-method", "magic"], "--invert-method: expected one of auto"),
    # a folder where a file is expected is named as a folder, not as missing
    (["--sound", "{dir}"], "--sound: expected a file, got the folder '{dir}'"),
    (["{dir}", "--sound", "{siren}"], "IMAGE: expected a file, got the folder '{dir}'"),
    (["--batch", "{dir}"], "--batch: expected a file, got the folder '{dir}'"),
])
def test_bad_flags_and_missing_files_give_one_line_errors(args, message, esc50_root, soundedit_home, capfd):
    args = [a.replace("{siren}", str(esc50_root / "audio" / SIREN)).replace("{dir}", str(esc50_root)) for a in args]
    message = message.replace("{dir}", str(esc50_root))
    code = main(["edit", *args, "--device", "cpu"])
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err


def test_mix_needs_sound_and_text_and_valid_layers(esc50_root, soundedit_home, capfd, tmp_path):
    siren = str(esc50_root / "audio" / SIREN)
    assert main(["mix", "--sound", siren]) == 2
    assert "expected both --sound" in capfd.readouterr().err
    assert main(["mix", "--sound", siren, "--text", "x", "--layers", "1-9"]) == 2
    assert "--layers" in capfd.readouterr().err
    import torch

    torch.save(torch.randn(3, 14, 512), tmp_path / "three.pt")  # before any model loads (none is cached here)
    assert main(["mix", "--sound", siren, "--text", "x", "--latent", str(tmp_path / "three.pt")]) == 2
    assert "--latent: latent " in (err := capfd.readouterr().err)
    assert "three.pt' holds 3 codes (shape (3, 14, 512)); expected one code (a mix edits one source)" in err


def test_bad_batch_rows_are_reported_before_any_work(tmp_path, soundedit_home, capfd):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("sound,colour\nx.wav,red\n")
    assert main(["edit", "--batch", str(jobs)]) == 2
    assert "unknown columns ['colour']" in capfd.readouterr().err
    jobs.write_text("sound,seed\nmissing.wav,1\n")
    assert main(["edit", "--batch", str(jobs)]) == 2
    assert "row 1: sound: 'missing.wav' does not exist" in capfd.readouterr().err


def test_named_weights_missing_offline_fail_fast_with_instructions(soundedit_home, esc50_root, capfd, monkeypatch):
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    code = main(["edit", "--seed", "0", "--sound", str(esc50_root / "audio" / SIREN), "--generator", "landscape-256",
                 "--device", "cpu", "--steps", "2"])
    err = capfd.readouterr().err
    assert code == 1
    assert "landscape-256" in err and "soundedit weights import" in err and "Traceback" not in err


@pytest.mark.parametrize("value, code, message", [
    ("maybe", 2, "SOUNDEDIT_CUDA_GRAPH: expected one of auto, on, off, got 'maybe'"),
    ("on", 1, "SOUNDEDIT_CUDA_GRAPH=on but the step runs on cpu"),
])
def test_bad_cuda_graph_setting_is_a_one_line_error(value, code, message, models, esc50_root, soundedit_home,
                                                     tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("SOUNDEDIT_CUDA_GRAPH", value)
    out = tmp_path / "edit"
    assert main(["edit", "--seed", "1", "--sound", str(esc50_root / "audio" / SIREN), *models, "--steps", "2",
                 "--out", str(out)]) == code
    err = capfd.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (out / "report.json").exists()


def test_steps_auto_is_fewer_on_a_cpu_and_says_so():
    import torch

    from soundedit.cli.edit import _steps
    from soundedit.config import CPU_AUTO_STEPS, FULL_STEPS

    steps, note = _steps("auto", torch.device("cpu"))
    assert steps == CPU_AUTO_STEPS < FULL_STEPS and f"{CPU_AUTO_STEPS} steps instead of {FULL_STEPS}" in note
    assert _steps("auto", torch.device("cuda")) == (FULL_STEPS, None)
    assert _steps("40", torch.device("cpu")) == (40, None)


def test_edit_and_mix_default_to_auto_steps():
    """Without --steps a CPU user gets the CPU's count and the note, not a silent 300-step run."""
    import inspect

    from soundedit.cli.edit import edit, mix

    assert [inspect.signature(cmd).parameters["steps"].default for cmd in (edit, mix)] == ["auto", "auto"]


#: commands that take an output folder, with inputs that would fail later (so only --out is tested)
OUT_FOLDER_COMMANDS = [
    ["edit", "--seed", "1", "--text", "red", "--generator", "no-such-model"],
    ["mix", "--sound", "x.wav", "--text", "red", "--generator", "no-such-model"],
    ["invert", "x.png", "--generator", "no-such-model"],
    ["train", "--manifest", "x.csv", "--clip", "no-such-model"],
]


@pytest.mark.parametrize("command", OUT_FOLDER_COMMANDS)
def test_an_unusable_out_is_refused_before_any_work(command, tmp_path, soundedit_home, capfd):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for out, message in ((a_file, "(a file)"), (a_file / "sub", f"('{a_file}' is a file)")):
        code = main([*command, "--out", str(out)])
        err = capfd.readouterr().err.strip()
        assert code == 2 and f"--out: expected a folder, got '{out}'" in err and message in err, err
        assert len(err.splitlines()) == 1, err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command, out, message", [
    *((command, "/proc/soundedit-out", "--out: expected a folder soundedit can write to, got '/proc/soundedit-out' "
       "('/proc' refuses new entries: ") for command in OUT_FOLDER_COMMANDS),
    # an output file's folder: the same check, naming the file as given
    (["embed", "--text", "a"], "/proc/emb.npy", "--out '/proc/emb.npy': expected a folder soundedit can write to, "
     "got '/proc' ('/proc' refuses new entries: "),
])
def test_an_out_where_nothing_can_be_created_names_out(command, out, message, soundedit_home, capfd):
    """/proc passes a permission check (for root, everything does) but refuses new entries: it failed
    at the first write with a bare "No such file or directory: '/proc/soundedit-out'"."""
    code = main([*command, "--out", out])
    err = capfd.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {message}") and len(err.splitlines()) == 1, err


def test_an_interrupted_save_keeps_the_earlier_outputs(models, esc50_root, soundedit_home, tmp_path, capfd,
                                                        monkeypatch):
    from soundedit.editing import report

    out = tmp_path / "edit"
    args = ["edit", "--sound", str(esc50_root / "audio" / SIREN), *models, "--steps", "2", "--out", str(out)]
    assert main([*args, "--seed", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(frames):
        raise KeyboardInterrupt  # Ctrl-C while the second run writes its animation

    monkeypatch.setattr(report, "progress_gif", interrupted)
    assert main([*args, "--seed", "2"]) == 130
    assert "interrupted" in capfd.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the first run's set, whole


def test_ctrl_c_while_the_outputs_move_in_says_they_are_there(models, esc50_root, soundedit_home, tmp_path, capfd,
                                                              monkeypatch):
    """Ctrl-C is held off while the set is moved in, so the edit is saved whole; the message said
    "keeps what it had before this run"."""
    import signal

    out = tmp_path / "edit"
    real_replace = os.replace

    def replace(src, dst):
        if os.path.dirname(dst) == str(out) and not os.path.basename(src).startswith("."):  # the set moving in
            signal.raise_signal(signal.SIGINT)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code = main(["edit", "--sound", str(esc50_root / "audio" / SIREN), *models, "--steps", "2", "--seed", "1",
                 "--out", str(out)])
    assert code == 130
    assert capfd.readouterr().err.strip() == f"interrupted after saving: the outputs are in {out}"
    assert {"edited.png", "report.json", "w_plus.pt"} <= {p.name for p in out.iterdir()}


def test_a_users_folder_where_an_output_goes_is_refused_before_the_models_load(esc50_root, soundedit_home, tmp_path,
                                                                                capfd):
    """It was refused only when the outputs were saved, after the optimisation: for a --latent of two codes
    the outputs are item-000/ and item-001/; for one edit or mix, its file names."""
    out = tmp_path / "out"
    (out / "item-001").mkdir(parents=True)
    (out / "item-001" / "photo.png").write_text("mine")
    torch.save(torch.zeros(2, 8, 32), tmp_path / "two.pt")
    absent = ["-g", "/nonexistent/g.pt", "--device", "cpu"]  # would fail next: nothing may load first
    assert main(["edit", "--latent", str(tmp_path / "two.pt"), "--text", "red", "--out", str(out), *absent]) == 2
    assert capfd.readouterr().err.strip() == (f"error: --out: {str(out / 'item-001')!r}: a folder where soundedit "
                                              "writes its output 'item-001'; expected no folder there (move it, or "
                                              "choose another output folder)")
    (out / "mixed.png").mkdir()
    (out / "mixed.png" / "x").write_text("mine")
    assert main(["mix", "--sound", str(esc50_root / "audio" / SIREN), "--text", "red", "--out", str(out), *absent]) == 2
    assert "'mixed.png'; expected no folder there" in capfd.readouterr().err
    assert (out / "item-001" / "photo.png").read_text() == "mine"


def test_mix_interpolation_is_capped_before_any_work(esc50_root, soundedit_home, capfd):
    siren = str(esc50_root / "audio" / SIREN)
    assert main(["mix", "--sound", siren, "--text", "x", "--interpolate", "100000", "--device", "cpu"]) == 2
    err = capfd.readouterr().err.strip()
    assert "--interpolate: expected 0 or 2 to 100 frames, got 100000" in err and len(err.splitlines()) == 1, err


def test_invert_seed_and_steps_have_a_range(esc50_root, soundedit_home, capfd):
    photo = str(esc50_root / "audio" / SIREN)  # any existing file: the flags are checked before it is read
    assert main(["invert", photo, "--seed", "99999999999999999999"]) == 2
    assert "--seed: expected an integer from 0 to 9223372036854775807" in capfd.readouterr().err
    assert main(["invert", photo, "--steps", "99999999999999999999999"]) == 2
    assert "--steps: expected an integer from 1 to 100000" in capfd.readouterr().err


@pytest.mark.parametrize("tensor, message", [
    (torch.full((1, 8, 32), float("nan")), "--latent w.pt: expected finite numbers, got 256 NaN/inf value(s)"),
    (torch.zeros(0, 8, 32), "--latent w.pt: expected at least one code, got an empty tensor of shape (0, 8, 32)"),
])
def test_bad_latent_values_fail_before_the_models_load(tensor, message, esc50_root, soundedit_home, tmp_path, capfd):
    torch.save(tensor, tmp_path / "w.pt")
    code = main(["edit", "--latent", str(tmp_path / "w.pt"), "--sound", str(esc50_root / "audio" / SIREN),
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capfd.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_latent_with_several_codes_edits_each_and_summarises_them_all(models, soundedit_home, tmp_path, capfd):
    torch.save(torch.randn(3, 8, 32), tmp_path / "three.pt")
    out = tmp_path / "edit"
    assert main(["edit", "--latent", str(tmp_path / "three.pt"), "--text", "red", *models, "--steps", "1",
                 "--out", str(out)]) == 0
    captured = capfd.readouterr()
    row = next(line for line in captured.out.splitlines() if "cos(edited image, target)" in line)
    assert row.count(".") == 3, row  # one value per code
    assert all((out / f"item-{i:03d}" / "report.json").is_file() for i in range(3))


def test_a_diverging_edit_fails_and_writes_nothing(models, esc50_root, soundedit_home, tmp_path, capfd, monkeypatch):
    import soundedit.editing.editor as editor_mod

    # an absurd learning rate inside the optimisation (the flags' range keeps users from typing one)
    monkeypatch.setattr(editor_mod, "RampSchedule", lambda **kw: (lambda step, steps, lr: 1e30))
    out = tmp_path / "edit"
    code = main(["edit", "--seed", "1", "--sound", str(esc50_root / "audio" / SIREN), *models, "--steps", "3",
                 "--out", str(out)])
    err = capfd.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "the optimisation diverged (loss is " in err and "try a lower --lr" in err
    assert not out.exists()


def _batch(tmp_path, content: str | bytes, name: str = "jobs.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_bad_batch_files_are_one_line_errors_before_any_work(esc50_root, soundedit_home, tmp_path, capfd):
    siren = esc50_root / "audio" / SIREN
    torch.save(torch.full((1, 8, 32), float("nan")), tmp_path / "nan.pt")
    torch.save(torch.randn(3, 8, 32), tmp_path / "three.pt")
    cases = [
        ("out,seed,text\na,1,red, blue sky\n", "row 1: 4 fields, header has 3"),
        (b"out,text\na,caf\xe9\n", "--batch: expected a UTF-8 CSV file"),
        (f"out,sound\n../../x,{siren}\n", "row 1: out must be a folder name inside --out"),
        (f"out,sound\n{tmp_path / 'abs'},{siren}\n", "row 1: out must be a folder name inside --out"),
        (f"out,sound,gain\na,{siren},nan\n", "row 1 gain: expected a finite number in [-120.0, 120.0], got nan"),
        (f"out,sound,seed\na,{siren},99999999999999999999999\n", "row 1 seed: expected an integer from 0 to"),
        (f"out,sound,latent\na,{siren},{tmp_path / 'nan.pt'}\n", "row 1 latent nan.pt: expected finite numbers"),
        (f"out,sound,latent\na,{siren},{tmp_path / 'three.pt'}\n", "row 1: latent"),
        ("\ufeffout,sound\na,missing.wav\n", "row 1: sound: 'missing.wav' does not exist"),  # an Excel BOM is fine
    ]
    for content, message in cases:
        jobs = _batch(tmp_path, content)
        assert main(["edit", "--batch", str(jobs), "--device", "cpu", "--out", str(tmp_path / "runs")]) == 2, content
        err = capfd.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (content, err)
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


def test_batch_job_lists_accept_a_byte_order_mark(tmp_path):
    from soundedit.editing.batch import read_jobs

    jobs = read_jobs("\ufeffout,text\na,red\n", out_dir=tmp_path)
    assert [j.out for j in jobs] == [tmp_path / "a"] and jobs[0].edit["text"] == "red"


def test_batch_row_latents_with_several_codes_fail_before_any_group_runs(models, esc50_root, soundedit_home, tmp_path,
                                                                           capfd):
    # (3, style_dim): three W codes, which only the loaded generator can tell from one W+ code
    torch.save(torch.randn(3, 32), tmp_path / "w3.pt")
    jobs = _batch(tmp_path, f"out,text,latent\nfirst,red,\nsecond,red,{tmp_path / 'w3.pt'}\n")
    out = tmp_path / "runs"
    assert main(["edit", "--batch", str(jobs), *models, "--steps", "1", "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip()
    assert f"--batch {jobs.name} row 2: latent" in err and "holds 3 codes for this generator (shape (3, 32)); expected one code per row" in err, err
    assert not out.exists()  # the first row did not run either


def test_a_truncated_or_too_short_sound_is_refused_before_loading(tmp_path, soundedit_home, capfd):
    import numpy as np
    import soundfile as sf

    full = tmp_path / "full.wav"
    sf.write(full, np.zeros(44100 * 5, np.float32) + 0.1, 44100, subtype="PCM_16")
    cut = tmp_path / "trunc.wav"
    cut.write_bytes(full.read_bytes()[:100])
    # the weights named do not exist: the sound must be refused before any model is looked for
    code = main(["edit", "--seed", "0", "--sound", str(cut), "--generator", "no-such-model", "--device", "cpu"])
    err = capfd.readouterr().err.strip()
    assert code == 2, err
    assert err == (f"error: --sound: {cut}: 0.6 ms of audio (28 samples at 44100 Hz; the header promises 5.00 s: "
                   "truncated file?); expected at least 0.1 s, 4410 samples")


def test_interrupted_photo_edit_says_the_inversion_was_written(models, tmp_path, esc50_root, soundedit_home, capfd,
                                                               monkeypatch):
    import numpy as np
    from PIL import Image

    from soundedit.editing import Editor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Editor, "edit", interrupted)
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "edit"
    code = main(["edit", str(photo), "--sound", str(esc50_root / "audio" / SIREN), *models, "--preset", "scenes",
                 "--steps", "2", "--invert-method", "projection", "--invert-steps", "2", "--no-align",
                 "--lpips", "none", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 130
    assert (out / "inversion" / "w_plus.pt").is_file() and not (out / "edited.png").exists()
    assert f"the edit did not finish; only the photo's inversion was written, to {out / 'inversion'}" in err
    assert "nothing was written" not in err


def test_mix_of_a_photo_takes_the_inversion_flags_and_keeps_its_inversion(models, tmp_path, esc50_root,
                                                                            soundedit_home, capfd):
    """`mix PHOTO` had no --invert-method/--lpips/--no-align: offline it could not avoid the VGG16 download."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "mix"
    code = main(["mix", str(photo), "--sound", str(esc50_root / "audio" / SIREN), "--text", "red sky", *models,
                 "--preset", "scenes", "--steps", "2", "--invert-method", "projection", "--invert-steps", "2",
                 "--no-align", "--lpips", "none", "--out", str(out), "--json"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["kind"] == "photo" and report["source"]["inversion"]["method"] == "projection"
    assert (out / "inversion" / "w_plus.pt").is_file() and (out / "mixed.png").is_file()
    saved = torch.load(out / "inversion" / "w_plus.pt", weights_only=True)["w_plus"]
    assert torch.equal(torch.load(out / "w_plus.pt", weights_only=True)["w_source"], saved)  # the mix started there
    assert main(["mix", str(photo), "--sound", str(esc50_root / "audio" / SIREN), "--text", "x",
                 "--invert-method", "magic"]) == 2
    assert "--invert-method: expected one of auto" in capfd.readouterr().err


def test_an_edit_from_a_code_inside_its_out_folder_keeps_that_code(models, tmp_path, esc50_root, soundedit_home,
                                                                     capfd):
    """`edit --latent OUT/item-001/w_plus.pt --out OUT` deleted the code it started from (a result's entry)."""
    out = tmp_path / "out"
    siren = str(esc50_root / "audio" / SIREN)
    w = torch.randn(1, 8, 32)  # the tiny generator's W+ (8 layers, 32-d)
    (out / "item-001").mkdir(parents=True)
    torch.save({"w_plus": w}, out / "item-001" / "w_plus.pt")
    (out / "item-002").mkdir()
    assert main(["edit", "--latent", str(out / "item-001" / "w_plus.pt"), "--sound", siren, *models, "--steps", "1",
                 "--preset", "scenes", "--out", str(out)]) == 0, capfd.readouterr().err
    assert (out / "item-001" / "w_plus.pt").is_file() and not (out / "item-002").exists()
    assert (out / "edited.png").is_file()


def _write_sound(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    import numpy as np
    import soundfile as sf

    sf.write(path, (np.sin(np.arange(int(seconds * rate)) * 0.05) * 0.3).astype(np.float32), rate)
    return path


def test_batch_row_with_an_undecodable_sound_fails_before_any_row_runs(models, esc50_root, soundedit_home, tmp_path,
                                                                        capfd):
    # the reported case: row 1 used to run and be written, then row 2's sound failed without its row named
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(bytes(range(256)) * 8)
    jobs = _batch(tmp_path, f"out,sound,seed\na,{esc50_root / 'audio' / SIREN},1\nb,{garbage},2\n")
    out = tmp_path / "runs"
    code = main(["edit", "--batch", str(jobs), *models, "--steps", "1", "--batch-size", "1", "--out", str(out)])
    err = capfd.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --batch jobs.csv row 2: sound: {garbage}: not a readable audio file"), err
    assert not out.exists()  # row 1 did not run either


def test_batch_rows_are_decoded_before_any_model_loads(esc50_root, soundedit_home, tmp_path, capfd):
    import numpy as np

    siren = esc50_root / "audio" / SIREN
    short = _write_sound(tmp_path / "short.wav", seconds=0.02)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(_write_sound(tmp_path / "full.wav", seconds=3).read_bytes()[:100])
    not_photo = tmp_path / "photo.png"
    not_photo.write_bytes(b"not a png at all")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tiny)
    good = tmp_path / "good.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good)
    gif = tmp_path / "photo.gif"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(gif)
    cases = [
        (f"out,sound\na,{siren}\nb,{siren};{short}\n", f"row 2: sound: {short}: 20.0 ms of audio"),
        (f"out,sound\na,{siren}\nb,{cut}\n", f"row 2: sound: {cut}: "),
        (f"out,text,image\na,red,{good}\nb,red,{not_photo}\n",
         f"row 2: image {str(not_photo)!r}: expected an image file Pillow can decode"),
        (f"out,text,image\na,red,{good}\nb,red,{tiny}\n", "row 2: image: the photo is 4 x 4 px; expected at least"),
        (f"out,text,image\na,red,{good}\nb,red,{gif}\n", "row 2: image: expected a photo (.png/"),
    ]
    for content, message in cases:
        jobs = _batch(tmp_path, content)
        # the generator named does not exist: the rows must be refused before any model is looked for
        code = main(["edit", "--batch", str(jobs), "--generator", "no-such-model", "--device", "cpu",
                     "--out", str(tmp_path / "runs")])
        err = capfd.readouterr().err.strip()
        assert code == 2, (content, err)
        assert f"error: --batch jobs.csv {message}" in err and len(err.splitlines()) == 1, (content, err)
    assert not (tmp_path / "runs").exists()


def _batch_rows(capfd) -> tuple[dict[int, str], str]:
    captured = capfd.readouterr()
    return {r["row"]: r["status"] for r in json.loads(captured.out)["rows"]}, captured.err


def test_batch_resume_reruns_rows_whose_job_or_settings_changed(models, soundedit_home, tmp_path, capfd):
    out = tmp_path / "runs"

    def batch(content: str, *flags: str) -> tuple[dict[int, str], str]:
        jobs = _batch(tmp_path, content)
        code = main(["edit", "--batch", str(jobs), *models, "--steps", "1", *flags, "--out", str(out), "--json"])
        assert code == 0
        return _batch_rows(capfd)

    def report(row: str) -> dict:
        return json.loads((out / row / "report.json").read_text())

    assert batch("out,text,seed\na,red sky,1\nb,green,2\n")[0] == {1: "done", 2: "done"}
    before = (out / "b" / "edited.png").read_bytes(), (out / "b" / "report.json").read_bytes()
    # unchanged: both skipped, their files untouched
    assert batch("out,text,seed\na,red sky,1\nb,green,2\n")[0] == {1: "skipped (report.json exists)",
                                                                   2: "skipped (report.json exists)"}
    # a's prompt and b's seed changed: both run again, their outputs replaced
    rows, err = batch("out,text,seed\na,blue ocean,1\nb,green,3\n")
    assert rows == {1: "re-run (the job changed: text 'red sky' -> 'blue ocean')",
                    2: "re-run (the job changed: source seed 2 -> seed 3)"}
    assert f"note: --batch row 1 ({out / 'a'}) runs again: the job changed: text 'red sky' -> 'blue ocean'" in err
    assert report("a")["target"]["text"] == "blue ocean" and report("a")["label"] == "'blue ocean'"
    assert report("b")["source"]["seed"] == 3
    assert (out / "b" / "edited.png").read_bytes() != before[0]
    assert (out / "b" / "report.json").read_bytes() != before[1]
    assert sorted(p.name for p in (out / "a").iterdir()) == sorted(
        ["source.png", "edited.png", "comparison.png", "progress.gif", "gates.png", "w_plus.pt", "report.json"])
    # a setting changed: every row runs again with it
    rows, _ = batch("out,text,seed\na,blue ocean,1\nb,green,3\n", "--steps", "2", "--lr", "0.05")
    assert rows == {r: "re-run (the settings changed: steps 1 -> 2, lr 0.1 -> 0.05)" for r in (1, 2)}
    assert report("a")["settings"]["steps"] == 2 and report("b")["settings"]["lr"] == 0.05
    rows, _ = batch("out,text,seed\na,blue ocean,1\nb,green,3\n", "--steps", "2", "--lr", "0.05")
    assert set(rows.values()) == {"skipped (report.json exists)"}
    # a damaged report is not a finished edit
    (out / "a" / "report.json").write_text("{")
    rows, _ = batch("out,text,seed\na,blue ocean,1\nb,green,3\n", "--steps", "2", "--lr", "0.05")
    assert rows == {1: "re-run (its report.json is unreadable (JSONDecodeError))", 2: "skipped (report.json exists)"}
    assert report("a")["target"]["text"] == "blue ocean"


def test_batch_paths_are_relative_to_the_job_file_and_stdin_lists_to_the_current_folder(tmp_path, monkeypatch):
    """As training manifests and `eval edits --jobs`: a job file's relative paths were read from the
    current folder, so a job list kept beside its sounds failed from anywhere else."""
    from soundedit.editing.batch import read_jobs

    from soundedit.errors import InputError

    project = tmp_path / "project"
    (project / "sounds").mkdir(parents=True)
    _write_sound(project / "sounds" / "rain.wav")
    torch.save(torch.randn(1, 8, 32), project / "w.pt")
    text = "out,sound,latent\na,sounds/rain.wav,w.pt\n"
    monkeypatch.chdir(tmp_path)  # elsewhere
    (job,) = read_jobs(text, out_dir=tmp_path / "runs", source_name="jobs.csv", base=project)
    assert job.edit["audio"] == [str(project / "sounds" / "rain.wav")] and job.edit["source"] == str(project / "w.pt")
    missing = rf"row 1: latent: 'w.pt' does not exist \(looked at {str(tmp_path / 'w.pt')!r}\)"
    with pytest.raises(InputError, match=missing):
        read_jobs(text, out_dir=tmp_path / "runs", source_name="<stdin>")  # stdin: the current folder
    monkeypatch.chdir(project)
    (job,) = read_jobs(text, out_dir=tmp_path / "runs", source_name="<stdin>")
    assert job.edit["audio"] == [str(project / "sounds" / "rain.wav")]  # absolute: reports say which file
    # errors name a relative path as the job file gives it, not as made absolute
    (project / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(InputError, match=r"row 1: sound: bad\.wav: "):
        read_jobs("out,sound\na,bad.wav\n", out_dir=tmp_path / "runs", source_name="jobs.csv", base=Path("."))
    # '..' after a linked folder means what the OS makes of it (the link's target's parent)
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere" / "sub" / "plink").symlink_to(project)
    (tmp_path / "shared").mkdir()
    shared = _write_sound(tmp_path / "shared" / "a.wav")
    linked = tmp_path / "elsewhere" / "sub" / "plink"
    (job,) = read_jobs("out,sound\na,../shared/a.wav\n", out_dir=tmp_path / "runs", source_name="j", base=linked)
    assert os.path.samefile(job.edit["audio"][0], shared) and job.edit["audio"][0] == str(linked / "../shared/a.wav")


def test_batch_rerun_reason_compares_sounds_gains_sources_settings_and_models(tmp_path):
    from soundedit.editing.batch import edit_settings, read_jobs, rerun_reason

    rain, siren = _write_sound(tmp_path / "rain.wav"), _write_sound(tmp_path / "siren.wav")
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64)).save(photo)
    settings = edit_settings("landscape-256", steps=5, frame_every=1)
    assert settings["preset"] == "scenes" and settings["lambda_sim"] == 0.002 and settings["steps"] == 5
    models = {"generator": "landscape-256", "audio_encoder": "enc", "clip": "clip"}
    job, photo_job = read_jobs(f"out,sound,gain,text,image\na,{rain};{siren},0;-10,,\nb,{rain},,sky,{photo}\n",
                               out_dir=tmp_path / "runs")
    job.out.mkdir(parents=True)
    recorded = {"settings": {**settings, "cuda_graph": "eager"}, "models": {**models, "identity": "ir-se50"},
                "source": {"kind": "seed", "seed": 0, "truncation": 0.7},
                "target": {"sounds": [str(rain), str(siren)], "gains_db": [0.0, -10.0], "label": "x"}}

    def reason(report: dict, j=job, **overrides) -> str | None:
        (j.out / "report.json").write_text(json.dumps(report))
        return rerun_reason(j, {**settings, **overrides}, models)

    assert reason(recorded) is None  # same job, settings and models (extra recorded keys do not matter)
    assert reason({**recorded, "target": {**recorded["target"], "gains_db": [0.0, -6.0]}}) == \
        "the job changed: gain [0.0, -6.0] -> [0.0, -10.0]"
    assert reason({**recorded, "target": {"sounds": [str(rain)], "gains_db": [0.0]}}) == \
        f"the job changed: sound [{str(rain)!r}] -> [{str(rain)!r}, {str(siren)!r}]"
    assert reason(recorded, preset="faces") == "the settings changed: preset 'scenes' -> 'faces'"
    assert reason({**recorded, "models": {**models, "generator": "church-256"}}) == \
        "the models changed: generator 'church-256' -> 'landscape-256'"
    assert reason({**recorded, "target": {**recorded["target"], "text": "sky"}}, truncation=0.5) == \
        "the job changed: text 'sky' -> none; the settings changed: truncation 0.7 -> 0.5"
    photo_job.out.mkdir(parents=True)
    assert reason({**recorded, "source": {"kind": "photo", "path": str(photo)},
                   "target": {"sounds": [str(rain)], "gains_db": [0.0], "text": "sky"}}, photo_job) is None
    assert reason({**recorded, "source": {"kind": "photo", "path": str(photo)},  # truncation shapes seeds only
                   "target": {"sounds": [str(rain)], "gains_db": [0.0], "text": "sky"}}, photo_job,
                  truncation=0.5) is None
    assert reason(recorded, photo_job) == (f"the job changed: sound [{str(rain)!r}, {str(siren)!r}] -> "
                                           f"[{str(rain)!r}], text none -> 'sky', source seed 0 -> photo {str(photo)!r}")


def test_batch_job_files_take_empty_unnamed_columns_and_refuse_repeated_ones(tmp_path):
    """Excel's trailing commas give columns without a name: fine while empty. A repeated column was
    taken silently (its last copy)."""
    from soundedit.editing.batch import read_jobs
    from soundedit.errors import InputError

    jobs = read_jobs("out,text,seed,,\na,red sky,1,,\n\nb,blue sky,2,, \n", out_dir=tmp_path)
    assert [(j.out.name, j.edit["text"], j.edit["source"]) for j in jobs] == [("a", "red sky", 1),
                                                                             ("b", "blue sky", 2)]
    with pytest.raises(InputError, match=r"^--batch <stdin> row 2: expected nothing in a column without a name in "
                                         r"the header, got 'x'$"):
        read_jobs("out,text,,seed\na,red,,1\n\nb,blue,x,2\n", out_dir=tmp_path, source_name="<stdin>")
    with pytest.raises(InputError, match=r"expected each column once in the header, got 'text' 2 times$"):
        read_jobs("text,seed,text\nred,1,blue\n", out_dir=tmp_path)


def test_batch_rerun_reason_knows_a_file_by_any_path_and_sees_inputs_modified_after_the_row(tmp_path, monkeypatch):
    from soundedit.editing.batch import edit_settings, read_jobs, rerun_reason

    rain = _write_sound(tmp_path / "rain.wav")
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64)).save(photo)
    (tmp_path / "link.wav").symlink_to(rain)
    settings = edit_settings("landscape-256", steps=5)
    models = {"generator": "landscape-256"}
    (job,) = read_jobs(f"out,sound,image\na,{rain},{photo}\n", out_dir=tmp_path / "runs")
    job.out.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    report = job.out / "report.json"

    def reason(sounds: list[str], photo_path: str) -> str | None:
        report.write_text(json.dumps({"settings": settings, "models": models,
                                      "source": {"kind": "photo", "path": photo_path},
                                      "target": {"sounds": sounds, "gains_db": [0.0]}}))
        return rerun_reason(job, settings, models)

    # the last run named them through a link, or from another path to the folder: the same files
    (tmp_path / "again").symlink_to(tmp_path)
    assert reason([str(tmp_path / "link.wav")], str(tmp_path / "again" / "p.png")) is None
    assert reason([str(tmp_path / "again" / "runs" / ".." / "rain.wav")], str(photo)) is None
    assert reason([str(tmp_path / "siren.wav")], str(photo)) == \
        f"the job changed: sound [{str(tmp_path / 'siren.wav')!r}] -> [{str(rain)!r}]"
    # a relative path (recorded by an earlier version) was relative to a folder the report does not say:
    # never taken for the same file, even when it names one here (the row runs again, saying why)
    legacy = ("its report, of an earlier version, names the files relative to the folder that run started in, "
              "which it does not record: ")
    assert reason(["rain.wav"], str(photo)) == legacy + f"['rain.wav', {str(photo)!r}]"
    assert reason([str(rain)], "p.png") == legacy + f"[{str(rain)!r}, 'p.png']"
    # a sound or photo rewritten in place after the row ran makes its outputs stale
    assert reason([str(rain)], str(photo)) is None
    later = report.stat().st_mtime + 5
    os.utime(photo, (later, later))
    assert reason([str(rain)], str(photo)) == f"{str(photo)!r} changed after the row ran"
    os.utime(rain, (later + 1, later + 1))
    assert reason([str(rain)], str(photo)) == f"{str(rain)!r} changed after the row ran"
