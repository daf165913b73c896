"""`soundedit train` (prepare, train) and `soundedit embed` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundedit.cli.main import main

EMBED_DIM = 64


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory):
    from soundedit.testing.clip import write_tiny_openai_clip

    return write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", embed_dim=EMBED_DIM)


def test_prepare_esc50_reports_missing_then_writes(esc50_root, tmp_path, capsys):
    out = tmp_path / "esc.csv"
    assert main(["train", "prepare", "esc50", str(esc50_root), "--out", str(out)]) == 2
    assert "1600 of 2000 manifest row(s) cannot be used: 1600 missing" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", "prepare", "esc50", str(esc50_root), "--out", str(out), "--folds", "1", "--val-folds", "1",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 400 and summary["labels"] == 50 and summary["splits"] == {"val": 400}
    from soundedit.training.manifest import read_manifest

    assert len(read_manifest(out)) == 400


def test_train_needs_manifest_and_out(capsys):
    assert main(["train"]) == 2
    assert "--manifest" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "nan", "--lr: expected a finite number in (0, 1000.0], got nan"),
    ("--lr", "inf", "--lr: expected a finite number in (0, 1000.0], got inf"),
    ("--seed", "99999999999999999999", "--seed: expected an integer from 0 to 9223372036854775807"),
])
def test_train_rejects_bad_numbers_before_reading_anything(tmp_path, capsys, flag, value, message):
    # the manifest does not exist: the number must be the first thing checked
    assert main(["train", "--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "run"),
                 flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_embed_rejects_an_empty_text(capsys):
    assert main(["embed", "--text", "rain", "--text", " ", "--json"]) == 2
    assert "--text: expected a non-empty text, got ' '" in capsys.readouterr().err


def test_train_cli_end_to_end(esc50_root, tmp_path, tiny_clip_path, capsys):
    from soundedit.models import load_audio_encoder
    from soundedit.training.manifest import ManifestRow, write_manifest

    clips = sorted((esc50_root / "audio").iterdir())
    rows = [ManifestRow(audio=str(p), label=f"class {i % 4}") for i, p in enumerate(clips[:8])]
    write_manifest(rows[:6] + [ManifestRow(audio=str(tmp_path / "lost.flac"), label="x")], tmp_path / "train.csv")
    write_manifest(rows[6:], tmp_path / "val.jsonl")
    args = ["train", "--manifest", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.jsonl"),
            "--out", str(tmp_path / "run"), "--config", "fast", "--arch", "test_byobnet", "--epochs", "1",
            "--batch-size", "3", "--sample-rate", "16000", "--no-text-augment", "--clip", str(tiny_clip_path),
            "--workers", "0", "--device", "cpu", "--json"]
    assert main(args) == 2  # one file is missing: reported, not skipped silently
    assert "1 of 7 manifest row(s) cannot be used: 1 missing" in capsys.readouterr().err
    assert main(args + ["--allow-missing", "--mel-cache", str(tmp_path / "mels")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and summary["global_step"] == 2 and summary["skipped_files"] == 1
    assert "val_top1" in summary["final"]
    enc = load_audio_encoder(summary["best"])
    assert enc.config.arch == "test_byobnet" and enc.embed_dim == EMBED_DIM and enc.config.audio.sample_rate == 16000
    assert any((tmp_path / "mels").glob("mels-*.npy"))
    # a second run into the same folder must say --resume
    assert main(args + ["--allow-missing"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_embed_text_json_and_audio_npy(esc50_root, tmp_path, tiny_clip_path, capsys, monkeypatch, soundedit_home):
    import io

    from soundedit.config import AudioConfig
    from soundedit.testing.clip import write_tiny_audio_encoder

    assert main(["embed", "--text", "thunder", "--text", "rain", "--clip", str(tiny_clip_path), "--json",
                 "--device", "cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["kind"], x["source"]) for x in lines] == [("text", "thunder"), ("text", "rain")]
    vecs = np.array([x["embedding"] for x in lines])
    assert vecs.shape == (2, EMBED_DIM) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])

    enc = write_tiny_audio_encoder(tmp_path / "enc.safetensors", embed_dim=EMBED_DIM,
                                   audio=AudioConfig(sample_rate=16000, n_mels=32, duration=2.0))
    clips = sorted((esc50_root / "audio").iterdir())[:3]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(str(p) for p in clips[1:]) + "\n"))
    out = tmp_path / "emb.npy"
    assert main(["embed", str(clips[0]), "-", "--text", "dog", "--encoder", str(enc), "--clip", str(tiny_clip_path),
                 "--out", str(out), "--batch-size", "2", "--device", "cpu"]) == 0
    emb = np.load(out)
    index = json.loads(out.with_suffix(".json").read_text())
    assert emb.shape == (4, EMBED_DIM) and emb.dtype == np.float32
    assert [r["kind"] for r in index["rows"]] == ["audio", "audio", "audio", "text"]
    assert [r["source"] for r in index["rows"][:3]] == [str(p) for p in clips]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert any((soundedit_home / "cache" / "embeddings").rglob("*"))  # audio embeddings were cached
    again = tmp_path / "again.npy"
    assert main(["embed", *map(str, clips), "--encoder", str(enc), "--clip", str(tiny_clip_path), "--out", str(again),
                 "--device", "cpu"]) == 0
    assert np.allclose(np.load(again), emb[:3], atol=1e-6)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert main(["embed", str(corrupt), "--encoder", str(enc), "--clip", str(tiny_clip_path), "--json",
                 "--device", "cpu"]) == 2
    assert "1 of 1 file(s) could not be embedded" in capsys.readouterr().err
    # the text row equals the --json text embedding of the same string through the same CLIP
    assert main(["embed", "--text", "dog", "--clip", str(tiny_clip_path), "--json", "--device", "cpu"]) == 0
    dog = np.array(json.loads(capsys.readouterr().out)["embedding"])
    assert np.allclose(emb[3], dog, atol=1e-6)
    assert main(["embed", "--text", "x", "--clip", str(tiny_clip_path)]) == 2  # nowhere to write
