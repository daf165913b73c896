"""Frozen CLIP targets: text and image embeddings computed once per unique text / frame and cached."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from soundedit.errors import InputError

_MAX_TEXTS = 200_000  # augmented texts are many; the cache is cleared rather than grown without bound


def text_id(text: str) -> int:
    """A stable 63-bit id of a string (equal texts share InfoNCE targets, on every rank)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def load_frame(path: str) -> torch.Tensor:
    """An image file -> ``(1, 3, H, W)`` float32 in [-1, 1] (what ``ClipSpace.embed_image`` takes).

    Raises:
        InputError: the file cannot be opened as an image.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"image {path!r}: expected a readable image file ({exc})") from None
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0


class TargetCache:
    """Embeds texts and frames with a frozen CLIP space, each unique one once.

    Args:
        clip: an object with ``embed_text(list[str], templates=...)``, ``embed_image(img)`` and
            ``embed_dim`` (a :class:`soundedit.models.ClipSpace`).
        batch_size: texts per CLIP call (every call is padded to this size).
    """

    def __init__(self, clip, *, batch_size: int = 64) -> None:
        self.clip, self.batch_size = clip, batch_size
        self._text: dict[str, torch.Tensor] = {}
        self._image: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def text(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N, d)`` unit-norm CLIP text embeddings of exactly these strings (no extra template)."""
        missing = sorted({t for t in texts if t not in self._text})
        if len(self._text) + len(missing) > _MAX_TEXTS:
            self._text.clear()
        for s in range(0, len(missing), self.batch_size):
            chunk = missing[s:s + self.batch_size]
            # Always a full chunk (padded with empty strings): matmul results can depend on the
            # batch size, and a text's embedding must not depend on which texts came with it
            # (a resumed run meets them in other company and must reproduce the same numbers).
            padded = chunk + [""] * (self.batch_size - len(chunk))
            emb = self.clip.embed_text(padded, templates=("{}",)).float().cpu()
            self._text.update(zip(chunk, emb[:len(chunk)]))
        return torch.stack([self._text[t] for t in texts]).to(device)

    @torch.no_grad()
    def image(self, paths: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N, d)`` unit-norm CLIP image embeddings of these frame files."""
        for p in dict.fromkeys(paths):
            if p not in self._image:
                self._image[p] = self.clip.embed_image(load_frame(p).to(self.clip.device)).float().cpu()[0]
        return torch.stack([self._image[p] for p in paths]).to(device)
