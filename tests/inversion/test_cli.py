"""``soundedit invert`` end to end in a subprocess, and the editing engine's photo hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from soundedit.testing.generators import write_tiny_generator


def _run(*args):
    env = {**os.environ, "SOUNDEDIT_PROGRESS": "0", "SOUNDEDIT_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "soundedit", *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("inv")
    g = write_tiny_generator(d / "g.pt", size=16, style_dim=32, max_channels=32)
    rgba = (np.random.default_rng(0).random((30, 40, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "photo.png")
    return d, g


def test_invert_cli_writes_outputs(tiny, tmp_path):
    d, g = tiny
    out = tmp_path / "inv"
    r = _run("invert", "--image", str(d / "photo.png"), "-g", str(g), "--method", "projection", "--steps", "8",
             "--lpips", "none", "--no-align", "--out", str(out), "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["method"] == "projection" and report["alignment"]["mode"] == "center"
    assert len(report["losses"]["total"]) == 8 and report["losses"]["total"][-1] < report["losses"]["total"][0]
    assert report["metrics"]["psnr"] > 0 and "lpips" not in report["metrics"]
    for name in ("aligned.png", "reconstruction.png"):
        with Image.open(out / name) as img:
            assert img.size == (16, 16) and img.mode == "RGB"
    assert json.loads((out / "report.json").read_text())["metrics"] == report["metrics"]
    from soundedit.editing.sources import load_latent

    w = load_latent(out / "w_plus.pt", n_latent=6, style_dim=32)
    assert w.shape == (1, 6, 32)
    assert not list(out.glob("*.part"))


def test_invert_cli_says_so_on_ctrl_c_while_saving(tiny, tmp_path, monkeypatch, capfd):
    """It exited 130 without a word."""
    from soundedit import fileio
    from soundedit.cli.main import main

    d, g = tiny

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "write_json", interrupted)  # Ctrl-C while the report is written
    out = tmp_path / "inv"
    code = main(["invert", str(d / "photo.png"), "-g", str(g), "--method", "projection", "--steps", "2",
                 "--lpips", "none", "--no-align", "--out", str(out), "--device", "cpu"])
    assert code == 130
    assert capfd.readouterr().err.strip().endswith(f"interrupted while saving: {out} keeps what it had before this run")
    assert not out.exists()


def test_invert_cli_errors_are_one_line(tiny, tmp_path):
    d, g = tiny
    r = _run("invert", "--image", str(tmp_path / "missing.jpg"), "-g", str(g), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _run("invert", str(d), "-g", str(g), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: IMAGE: expected a file, got the folder {str(d)!r}"
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    # a face generator aligns faces by default; random pixels have none
    r = _run("invert", str(d / "photo.png"), "-g", str(g), "--align", "--method", "projection", "--lpips", "none",
             "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    assert "no face" in r.stderr and "--no-align" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_editing_hook_inverts_photos(tiny):
    from soundedit.editing.sources import resolve_source
    from soundedit.models import load_generator

    d, g = tiny
    G = load_generator(g)
    src = resolve_source(G, str(d / "photo.png"),
                         inversion={"method": "projection", "align": False, "steps": 3, "lpips": None})
    assert src.w_plus.shape == (1, G.n_latent, G.style_dim) and src.info["kind"] == "photo"
    assert torch.isfinite(src.w_plus).all()


def test_edit_with_a_photo_inverts_first(tmp_path, esc50_root):
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip

    g = write_tiny_generator(tmp_path / "g.pt", size=32, style_dim=32, max_channels=16)
    c = write_tiny_openai_clip(tmp_path / "clip.pt", image_size=32, patch_size=16, width=64, layers=1)
    e = write_tiny_audio_encoder(tmp_path / "enc.safetensors", arch="resnet10t")
    photo = tmp_path / "photo.jpg"
    Image.fromarray((np.random.default_rng(1).random((48, 40, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "edit"
    r = _run("edit", "--image", str(photo), "--sound", str(esc50_root / "audio" / "1-17367-A-10.flac"),
             "--generator", str(g), "--clip", str(c), "--audio-encoder", str(e), "--device", "cpu", "--preset", "scenes",
             "--steps", "2", "--invert-method", "projection", "--invert-steps", "4", "--no-align", "--lpips", "none",
             "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    inv = report["source"]["inversion"]
    assert report["source"]["kind"] == "photo" and inv["method"] == "projection" and inv["alignment"] == "center"
    for name in ("aligned.png", "reconstruction.png", "w_plus.pt", "report.json"):
        assert (out / "inversion" / name).is_file()
    # the edit started from the inverted code
    w_inv = torch.load(out / "inversion" / "w_plus.pt", weights_only=True)["w_plus"]
    w_src = torch.load(out / "w_plus.pt", weights_only=True)["w_source"]
    torch.testing.assert_close(w_src, w_inv)
    with Image.open(out / "comparison.png") as img, Image.open(out / "edited.png") as edited:
        assert img.size[0] == 3 * edited.size[0]  # photo | reconstruction | edit
