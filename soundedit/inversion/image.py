"""Reading photos for inversion: any file Pillow opens, in its upright orientation, as 8-bit RGB.

Phone photos carry their rotation in EXIF instead of in the pixels, PNGs may have an
alpha channel, be greyscale or 16 bits per sample; all of them become the same
``(H, W, 3) uint8`` RGB array here, so alignment and inversion see one format.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from soundedit.errors import InputError
from soundedit.fileio import check_file

#: Background an alpha channel is composited onto (white, as image viewers show transparency).
ALPHA_BACKGROUND = (255, 255, 255)


def load_image(image: Any, *, what: str = "image") -> np.ndarray:
    """Decode a photo into an upright 8-bit RGB array.

    Args:
        image: a path, encoded bytes, a ``PIL.Image``, an ``(H, W)``/``(H, W, 3|4)`` uint8/uint16/float
            array (floats in [0, 1]), or a ``(3, H, W)``/``(1, 3, H, W)`` tensor in [-1, 1].
        what: the parameter's name for error messages.

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        InputError: a missing or undecodable file, or an array of an unsupported shape/type.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return _pil_to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        if isinstance(image, (bytes, bytearray)):
            source, name = io.BytesIO(image), f"{what} (bytes)"
        else:
            path = check_file(image, what)
            source, name = path, f"{what} {str(path)!r}"
        try:
            with Image.open(source) as img:
                img.load()
                # EXIF orientation: cameras store the sensor's pixels and a "rotate me" tag
                return _pil_to_rgb(ImageOps.exif_transpose(img))
        except Image.DecompressionBombError as exc:  # Pillow refuses to decode it: say what and why
            raise InputError(f"{name}: {_bomb_sizes(str(exc))}; expected a photo within Pillow's "
                             "decompression-bomb limit (downscale it first)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{name}: expected an image file Pillow can decode (PNG, JPEG, WebP ...), "
                             f"got {type(exc).__name__}: {exc}") from exc
    return _array_to_rgb(image, what)


def _bomb_sizes(message: str) -> str:
    """'the image has N pixels, over the limit of M' from Pillow's DecompressionBombError message."""
    import re

    m = re.search(r"Image size \((\d+) pixels\) exceeds limit of (\d+) pixels", message)
    if m is None:
        return f"too large to decode ({message})"
    pixels, limit = int(m.group(1)), int(m.group(2))
    return (f"the image has {pixels:,} pixels ({pixels / 1e6:.3g} megapixels), over the limit of {limit:,} "
            f"({limit / 1e6:.3g} megapixels, about {int(limit ** 0.5):,} x {int(limit ** 0.5):,})")


def _pil_to_rgb(img) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8; 16-bit samples are scaled, alpha composited on white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit integer) greyscale: Pillow's convert("L") clips at 255 instead of scaling
        values = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        grey = np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(image: Any, what: str) -> np.ndarray:
    """Arrays and tensors -> (H, W, 3) uint8 (see :func:`load_image` for what is accepted)."""
    import torch

    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise InputError(f"{what}: expected a (3, H, W) or (1, 3, H, W) tensor in [-1, 1], got {tuple(image.shape)}")
        return ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a path, bytes, PIL image, array or tensor, got {type(image).__name__}")
    a = image
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
        raise InputError(f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float64) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        f = np.clip(a.astype(np.float64), 0.0, 1.0)
    else:
        raise InputError(f"{what}: expected uint8, uint16 or float pixels, got dtype {a.dtype}")
    if f.shape[2] == 4:  # composite on the same background as files
        alpha = f[:, :, 3:4]
        f = f[:, :, :3] * alpha + (np.asarray(ALPHA_BACKGROUND) / 255.0) * (1 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.clip(np.round(f * 255.0), 0, 255).astype(np.uint8)


def to_tensor(rgb: np.ndarray) -> "torch.Tensor":  # noqa: F821 (torch imported lazily)
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 in [-1, 1] (the generator's range)."""
    import torch

    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1.0


def to_uint8(img: "torch.Tensor") -> np.ndarray:  # noqa: F821
    """``(1, 3, H, W)`` or ``(3, H, W)`` tensor in about [-1, 1] -> ``(H, W, 3)`` uint8."""
    return _array_to_rgb(img, "image")
