"""`soundedit embed`: bad templates, images and --out are refused before any model loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from soundedit.cli.main import main

#: a CLIP file that does not exist: reaching the model load would fail with a different error
NO_CLIP = "/nonexistent/clip.pt"


def _err(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    err = err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    return err


@pytest.mark.parametrize("template, why", [
    ("{} {x}", "unknown placeholder {x}"),
    ("{label} {0}", "unknown placeholder {0}"),
    ("{} }", "Single '}' encountered"),
    ("no placeholder", "0 placeholders"),
])
def test_embed_refuses_a_bad_template_up_front(capsys, template, why):
    assert main(["embed", "--text", "dog", "--template", template, "--json", "--clip", NO_CLIP]) == 2
    err = _err(capsys)
    assert err.startswith("error: --template: expected a text with one {} or {label} placeholder")
    assert f"got {template!r}" in err and why in err


def test_embed_template_fills_each_text(capsys, tmp_path):
    from soundedit.testing.clip import write_tiny_openai_clip

    clip = str(write_tiny_openai_clip(tmp_path / "clip.pt", embed_dim=64))

    def one(*args):
        assert main(["embed", *args, "--clip", clip, "--json", "--device", "cpu"]) == 0
        return np.array(json.loads(capsys.readouterr().out)["embedding"])

    plain = one("--text", "the sound of {dog}")
    assert np.allclose(one("--text", "dog", "--template", "the sound of {{{}}}"), plain, atol=1e-6)
    assert np.allclose(one("--text", "dog", "--template", "the sound of {{{label}}}"), plain, atol=1e-6)


def test_embed_refuses_a_decompression_bomb_before_loading_models(capsys, tmp_path, monkeypatch):
    image = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels is over twice the limit: a "bomb"
    assert main(["embed", "--image", str(image), "--json", "--clip", NO_CLIP]) == 2
    err = _err(capsys)
    assert err.startswith(f"error: --image {str(image)!r}: the image has 1,600 pixels")
    assert "decompression-bomb limit" in err


def test_embed_refuses_an_unreadable_image_before_loading_models(capsys, tmp_path):
    image = tmp_path / "notimg.png"
    image.write_text("not an image")
    assert main(["embed", "--image", str(image), "--json", "--clip", NO_CLIP]) == 2
    assert _err(capsys).startswith(f"error: --image {str(image)!r}: expected an image file Pillow can decode")


def test_embed_checks_out_before_loading_models(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["embed", "--text", "dog", "--out", str(afile / "e.npy"), "--clip", NO_CLIP]) == 2
    assert _err(capsys) == (f"error: --out {str(afile / 'e.npy')!r}: expected a folder, got {str(afile)!r} "
                            "(a file)")
    folder = tmp_path / "e.npy"
    folder.mkdir()
    assert main(["embed", "--text", "dog", "--out", str(folder), "--clip", NO_CLIP]) == 2
    assert _err(capsys) == f"error: --out: expected a .npy file path, got the folder {str(folder)!r}"
