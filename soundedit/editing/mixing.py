"""Style mixing of guided W+ codes by layer range, and interpolation between codes.

StyleGAN's coarse and middle layers (the first half of W+) control layout and
shape, the fine layers colour and texture.  The paper mixes a sound-guided code
on layers 1–9 with a text-guided one on 10–18 (of 18); for other generators the
split is scaled to ``n_latent`` (e.g. 1–7 / 8–14 at 256 px).
"""

from __future__ import annotations

import re

import torch

from soundedit.config import MAX_INTERPOLATE
from soundedit.errors import InputError

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*:\s*([A-Za-z_]+)\s*$")


def default_layers(n_latent: int, first: str = "sound", second: str = "text") -> list[str]:
    """The paper's split scaled to ``n_latent``: ``first`` on the first 9/18 of the layers, ``second`` on the rest."""
    split = round(n_latent * 9 / 18)
    return [first] * split + [second] * (n_latent - split)


def check_layers_syntax(spec: str) -> None:
    """Check ``"1-9:sound,10-18:text"`` syntax before a generator is loaded (ranges are checked by :func:`parse_layers`)."""
    for part in spec.split(","):
        if not _RANGE.match(part):
            raise InputError(f"--layers: expected ranges like '1-9:sound,10-18:text', got {part!r} in {spec!r}")


def parse_layers(spec: str | None, n_latent: int, *, names: tuple[str, ...] = ("sound", "text", "source")) -> list[str]:
    """Parse ``"1-9:sound,10-18:text"`` into one code name per W+ layer.

    Layers are numbered from 1 (inclusive ranges) in the generator's own
    numbering; layers no range names come from ``source`` (the unedited code).

    Args:
        spec: the ranges, or ``None``/``""`` for :func:`default_layers`.
        n_latent: the generator's number of W+ layers.
        names: allowed code names.

    Returns:
        a list of ``n_latent`` names.

    Raises:
        InputError: malformed range, unknown name, out-of-range or overlapping layers.
    """
    if not spec:
        return default_layers(n_latent)
    assignment: list[str | None] = [None] * n_latent
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise InputError(f"--layers: expected ranges like '1-9:sound,10-18:text', got {part!r} in {spec!r}")
        lo, hi, name = int(m[1]), int(m[2] or m[1]), m[3].lower()
        if name not in names:
            raise InputError(f"--layers: expected a code name in {', '.join(names)}, got {name!r}")
        if not 1 <= lo <= hi <= n_latent:
            raise InputError(f"--layers: range {lo}-{hi} is outside layers 1-{n_latent} of this generator")
        for i in range(lo - 1, hi):
            if assignment[i] is not None:
                raise InputError(f"--layers: layer {i + 1} is assigned twice in {spec!r}")
            assignment[i] = name
    return [a or "source" for a in assignment]


def style_mix(codes: dict[str, torch.Tensor], layers: list[str]) -> torch.Tensor:
    """Take each W+ layer from the code its name says.

    Args:
        codes: name -> ``(N, L, D)`` W+ codes (same shape).
        layers: ``L`` names (from :func:`parse_layers`).

    Returns:
        ``(N, L, D)`` mixed code; layer ``l`` equals ``codes[layers[l]][:, l]`` exactly.
    """
    shapes = {tuple(c.shape) for c in codes.values()}
    if len(shapes) != 1:
        raise InputError(f"style_mix: codes must share one shape, got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 3 or shape[1] != len(layers):
        raise InputError(f"style_mix: expected codes (N, {len(layers)}, D), got {shape}")
    missing = sorted(set(layers) - set(codes))
    if missing:
        raise InputError(f"style_mix: layers name codes {missing} that were not given (have {sorted(codes)})")
    return torch.stack([codes[name][:, i] for i, name in enumerate(layers)], dim=1)


def check_interpolate(n: int) -> None:
    """``--interpolate``: 0 (none) or 2 to :data:`MAX_INTERPOLATE` frames."""
    if not isinstance(n, int) or n < 0 or n == 1 or n > MAX_INTERPOLATE:
        raise InputError(f"--interpolate: expected 0 or 2 to {MAX_INTERPOLATE} frames, got {n}")


def interpolate(w_a: torch.Tensor, w_b: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` codes evenly spaced from ``w_a`` to ``w_b`` (both included exactly).

    Args:
        w_a, w_b: codes of equal shape, e.g. ``(N, L, D)``.
        n: number of frames, >= 2.

    Returns:
        ``(n, *w_a.shape)``; frame 0 is ``w_a`` and frame ``n − 1`` is ``w_b`` bit for bit.
    """
    check_interpolate(n)
    if n < 2:
        raise InputError(f"--interpolate: expected 2 to {MAX_INTERPOLATE} frames, got {n}")
    if w_a.shape != w_b.shape:
        raise InputError(f"interpolate: shapes differ: {tuple(w_a.shape)} vs {tuple(w_b.shape)}")
    t = torch.linspace(0, 1, n, dtype=w_a.dtype, device=w_a.device).view(-1, *([1] * w_a.dim()))
    # (1 − t)·a + t·b is exact at both ends (0·x = 0); a + t·(b − a) is not at t = 1.
    return (1 - t) * w_a + t * w_b
