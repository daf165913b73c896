"""Real photos into a generator's latent space: face alignment, projection and e4e inversion.

    from soundedit.inversion import invert_image
    inv = invert_image("photo.jpg", G, method="e4e+projection")   # aligned, reconstruction, w_plus, report
    inv.save("out/inv")

Pieces: :func:`align_face` / :func:`ffhq_quad` / :func:`center_crop` (cropping as the
training data was), :func:`project` (optimisation, LPIPS-VGG + MSE), :func:`load_e4e`
(encoder4editing), :func:`load_lpips`.  ``invert_image`` (the editing engine's photo
hook) is a plain attribute; the other pieces are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from soundedit.inversion.api import InversionResult, invert_image, prepare_image

_EXPORTS = {
    "load_image": "image",
    "align_face": "align", "ffhq_quad": "align", "center_crop": "align", "detect_landmarks": "align",
    "warp_quad": "align",
    "project": "project", "ProjectionResult": "project",
    "load_e4e": "e4e", "E4E": "e4e", "Encoder4Editing": "e4e",
    "load_lpips": "perceptual", "LPIPS": "perceptual",
}

__all__ = sorted([*_EXPORTS, "InversionResult", "invert_image", "prepare_image"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'soundedit.inversion' has no attribute {name!r}")
    return getattr(importlib.import_module(f"soundedit.inversion.{_EXPORTS[name]}"), name)
