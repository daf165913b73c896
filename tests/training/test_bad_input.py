"""Bad input to `soundedit train` and `train prepare`: one clear line naming the input, exit 2."""

from __future__ import annotations

import json

import pytest

from soundedit.cli.main import main
from soundedit.errors import InputError
from soundedit.training import importers

HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def _esc50(tmp_path, body: bytes | str, header: str = HEADER):
    root = tmp_path / "esc"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    data = body if isinstance(body, bytes) else (header + body).encode()
    (root / "meta" / "esc50.csv").write_bytes(data)
    return root


@pytest.mark.parametrize("body, message", [
    ("a,b,c\n1.wav,1,0\n", r"esc50.csv: expected columns filename, fold, category; missing .*got a, b, c"),
    ("1.wav,x,0,dog,True,1,A\n", r"esc50.csv: row 2: expected an integer in column 'fold', got 'x'"),
    ("1.wav,1,0,dog,True,1,A\n2.wav,1\n", r"esc50.csv: row 3: expected 7 cells"),
    (b"filename,fold,target,category\n1.wav,1,0,caf\xe7\n", r"esc50.csv: cannot read the metadata CSV"),
    ("1.wav,1,0,,True,1,A\n", r"esc50.csv: row 2: expected a value in column 'category'"),
    ("", r"esc50.csv: expected one row per clip under the header, got no rows"),
])
def test_prepare_esc50_refuses_malformed_metadata(tmp_path, capsys, body, message):
    root = _esc50(tmp_path, body, header="" if isinstance(body, str) and body.startswith("a,b") else HEADER)
    with pytest.raises(InputError, match=message):
        importers.esc50(root)
    assert main(["train", "prepare", "esc50", str(root), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "esc50.csv" in err and len(err.strip().splitlines()) == 1


def test_prepare_esc50_names_requested_and_available_folds(esc50_root, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["train", "prepare", "esc50", str(esc50_root), "--out", str(out), "--folds", "9"]) == 2
    assert "--folds: " in (err := capsys.readouterr().err) and "folds 1,2,3,4,5; got 9" in err
    assert main(["train", "prepare", "esc50", str(esc50_root), "--out", str(out), "--folds", "1",
                 "--val-folds", "7"]) == 2
    assert "--val-folds: " in (err := capsys.readouterr().err) and "got 7" in err
    assert not out.exists()


@pytest.mark.parametrize("command", [["esc50", "{root}"], ["folder", "{root}"], ["urbansound8k", "{root}"]])
def test_prepare_checks_out_before_scanning(tmp_path, capsys, command):
    (tmp_path / "taken").mkdir()
    (tmp_path / "file").write_text("x")
    args = [a.format(root=tmp_path / "no-such-dataset") for a in command]
    assert main(["train", "prepare", *args, "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "--out: expected a manifest file path (.csv or .jsonl), got the folder" in err and "taken" in err
    assert main(["train", "prepare", *args, "--out", str(tmp_path / "file" / "m.csv")]) == 2
    assert "--out " in (err := capsys.readouterr().err) and "expected a folder" in err


def _manifest(tmp_path, esc50_root, rows: list[str], header: str = "audio,label,start,duration"):
    clip = sorted((esc50_root / "audio").iterdir())[0]
    path = tmp_path / "m.csv"
    path.write_text(header + "\n" + "".join(r.format(clip=clip) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rows, message", [
    (["{clip},dog,0,", "{clip},dog,nan,"], r"m.csv:3: column 'start' expected seconds >= 0, got 'nan'"),
    (["{clip},dog,-2,"], r"m.csv:2: column 'start' expected seconds >= 0, got '-2'"),
    (["{clip},dog,,-1"], r"m.csv:2: column 'duration' expected seconds > 0, got '-1'"),
    (["{clip},dog,,inf"], r"m.csv:2: column 'duration' expected seconds > 0, got 'inf'"),
])
def test_manifest_windows_are_checked_when_read(tmp_path, esc50_root, rows, message):
    from soundedit.training.manifest import read_manifest

    with pytest.raises(InputError, match=message):
        read_manifest(_manifest(tmp_path, esc50_root, rows))


def test_a_start_past_the_end_names_the_manifest_line(tmp_path, esc50_root, capsys):
    from soundedit.training.manifest import check_audio, read_manifest

    path = _manifest(tmp_path, esc50_root, ["{clip},dog,1,", "{clip},dog,99,"])
    with pytest.raises(InputError, match=r"m.csv:3: column 'start' expected a time inside the audio, got 99 s"):
        check_audio(read_manifest(path))
    # the CLI refuses it before any model is loaded (the CLIP name does not exist)
    assert main(["train", "--manifest", str(path), "--out", str(tmp_path / "run"), "--clip", "no-such-clip"]) == 2
    assert "m.csv:3: column 'start' expected a time inside the audio" in capsys.readouterr().err


def test_train_names_an_unknown_split_or_no_train_rows(tmp_path, esc50_root, capsys):
    run = ["--out", str(tmp_path / "run"), "--clip", "no-such-clip"]
    bogus = _manifest(tmp_path, esc50_root, ["{clip},dog,bogus"], header="audio,label,split")
    assert main(["train", "--manifest", str(bogus), *run]) == 2
    err = capsys.readouterr().err
    assert "m.csv:2: column 'split' expected one of train, val, valid, validation, test or empty, got 'bogus'" in err
    only_val = _manifest(tmp_path, esc50_root, ["{clip},dog,val", "{clip},cat,test"], header="audio,label,split")
    assert main(["train", "--manifest", str(only_val), *run]) == 2
    err = capsys.readouterr().err
    assert "expected rows with split 'train' (or empty) to train on, got none (rows per split: test 1, val 1)" in err


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "adam"], "--optimizer: expected sgd or adamw, got 'adam'"),
    (["--sample-rate", "5"], "--sample-rate: expected 1000..768000 Hz, got 5"),
    (["--arch", "resnet999"], "--arch: expected a timm model name (e.g. resnet18, resnet50), got 'resnet999'"),
])
def test_train_flags_are_named_as_typed(tmp_path, capsys, flags, message):
    """They were named by the recipe's fields (optimizer:, sample_rate:, "audio encoder arch")."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio,label\nx.wav,dog\n")
    assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_prepare_audioset_refuses_an_unknown_split(tmp_path, capsys):
    assert main(["train", "prepare", "audioset", "s.csv", "o.json", "clips", "--out", str(tmp_path / "m.csv"),
                 "--split", "bogus"]) == 2
    assert "--split: expected one of train, val, valid, validation, test, got 'bogus'" in capsys.readouterr().err


def test_where_is_neither_compared_nor_written(tmp_path):
    from soundedit.training.manifest import ManifestRow, read_manifest, write_manifest

    row = ManifestRow(audio=str(tmp_path / "x.wav"), label="dog")
    write_manifest([row], tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "audio,text,label,image,split,start,duration"
    (back,) = read_manifest(tmp_path / "m.csv")
    assert back == row and back.where.endswith("m.csv:2")


def test_resume_refuses_another_manifest_like_other_settings(esc50_root, tmp_path, capsys):
    from soundedit.testing.clip import write_tiny_openai_clip
    from soundedit.training.manifest import ManifestRow, write_manifest

    clip = write_tiny_openai_clip(tmp_path / "tiny-clip.pt", embed_dim=64)
    clips = sorted((esc50_root / "audio").iterdir())
    rows = [ManifestRow(audio=str(p), label=f"class {i % 2}") for i, p in enumerate(clips[:6])]
    write_manifest(rows[:4], tmp_path / "a.csv")
    write_manifest(rows[2:], tmp_path / "b.csv")
    (tmp_path / "moved").mkdir()
    write_manifest(rows[:4], tmp_path / "moved" / "a-copy.jsonl")  # the same clips under another name
    args = ["--out", str(tmp_path / "run"), "--config", "fast", "--arch", "test_byobnet", "--epochs", "1",
            "--batch-size", "2", "--sample-rate", "16000", "--no-text-augment", "--clip", str(clip),
            "--workers", "0", "--device", "cpu", "--json"]
    assert main(["train", "--manifest", str(tmp_path / "a.csv"), *args]) == 0
    capsys.readouterr()
    resume = [a if a != "1" else "2" for a in args] + ["--resume"]  # --epochs 2: a setting a resume may change
    assert main(["train", "--manifest", str(tmp_path / "b.csv"), *resume]) == 2
    err = capsys.readouterr().err
    assert f"was trained on --manifest {tmp_path / 'a.csv'} (4 clips); --manifest {tmp_path / 'b.csv'} (4 clips) " \
           "lists other clips" in err
    assert main(["train", "--manifest", str(tmp_path / "a.csv"), *resume, "--lr", "0.01"]) == 2
    assert "used other settings (lr differ)" in capsys.readouterr().err
    assert main(["train", "--manifest", str(tmp_path / "moved" / "a-copy.jsonl"), *resume]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


def test_a_json_manifest_is_written_as_it_is_read(tmp_path):
    from soundedit.training.manifest import ManifestRow, read_manifest, write_manifest

    rows = [ManifestRow(audio=str(tmp_path / "x.wav"), label="dog", split="train")]
    write_manifest(rows, tmp_path / "m.json")
    assert read_manifest(tmp_path / "m.json") == rows
