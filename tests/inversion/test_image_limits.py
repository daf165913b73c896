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
