"""Photos too large for Pillow's decompression-bomb guard, or too small to invert, are named clearly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from soundedit.errors import InputError


def test_decompression_bomb_is_an_input_error_with_sizes_and_limit(tmp_path, monkeypatch):
    from soundedit.inversion.image import load_image

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), "red").save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > twice the limit: Pillow refuses
    with pytest.raises(InputError) as err:
        load_image(path, what="IMAGE")
    assert str(err.value) == (f"IMAGE {str(path)!r}: the image has 4,096 pixels (0.0041 megapixels), over the limit of "
                              "2,000 (0.002 megapixels, about 44 x 44); expected a photo within Pillow's "
                              "decompression-bomb limit (downscale it first)")


def test_tiny_photos_are_refused_and_small_ones_warned_about(caplog):
    from soundedit.inversion.api import prepare_image

    with pytest.raises(InputError, match=r"^IMAGE: the photo is 1 x 1 px; expected at least 16 px on its shorter "
                                         r"side \(it is resized to the generator's 256 x 256\)$"):
        prepare_image(np.zeros((1, 1, 3), np.uint8), 256, align=False, what="IMAGE")
    with pytest.raises(InputError, match="the photo is 300 x 15 px"):
        prepare_image(np.zeros((15, 300, 3), np.uint8), 256, align=False, what="IMAGE")
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        image, _ = prepare_image(np.zeros((32, 40, 3), np.uint8), 256, align=False, what="IMAGE")
    assert image.shape == (1, 3, 256, 256)
    assert "IMAGE: the photo is 40 x 32 px, upscaled more than 4x to the generator's 256 x 256" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundedit"):
        prepare_image(np.zeros((64, 64, 3), np.uint8), 256, align=False, what="IMAGE")
    assert caplog.text == ""


def test_edit_refuses_a_tiny_or_unreadable_photo_before_any_model_loads(tmp_path, esc50_root, soundedit_home, capfd):
    from soundedit.cli.main import main

    sound = str(esc50_root / "audio" / "1-31482-A-42.flac")
    tiny, junk = tmp_path / "tiny.png", tmp_path / "junk.png"
    Image.new("RGB", (1, 1), "red").save(tiny)
    junk.write_bytes(b"not a png")
    # the generator named does not exist: the photo must be refused before it is looked for
    for photo, message in ((tiny, "IMAGE: the photo is 1 x 1 px; expected at least 16 px"), (junk, f"IMAGE {str(junk)!r}")):
        code = main(["edit", str(photo), "--sound", sound, "--generator", "no-such-model", "--device", "cpu"])
        err = capfd.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
