"""SpecAugment for alignment training (frequency and time masking).

Masks are drawn per example (each row of the batch gets its own), from an
explicit ``torch.Generator`` so a training run is reproducible; torchaudio's
``FrequencyMasking``/``TimeMasking`` take no generator, hence this version.
"""

from __future__ import annotations

import torch

from soundedit.errors import InputError


def spec_augment(mel: torch.Tensor, *, freq_ratio: float = 0.15, time_ratio: float = 0.3, n_masks: int = 1,
                 generator: torch.Generator | None = None, value: float = 0.0) -> torch.Tensor:
    """Mask random frequency bands and time spans of spectrograms (the paper's ratios by default).

    Each of the ``n_masks`` frequency masks covers a width drawn uniformly from
    ``0 .. floor(freq_ratio * n_mels)`` bins at a uniform position, likewise each
    time mask up to ``floor(time_ratio * frames)`` frames; masks may overlap.

    Args:
        mel: ``(n_mels, frames)``, ``(N, n_mels, frames)`` or ``(N, C, n_mels, frames)``.
        freq_ratio: largest frequency mask as a fraction of the bins (paper: 0.15).
        time_ratio: largest time mask as a fraction of the frames (paper: 0.3).
        n_masks: masks of each kind per example.
        generator: random source (CPU or on ``mel``'s device); ``None`` uses torch's global one.
        value: what masked cells become; 0 is the floor (-top_db) of the normalised log-mel.

    Returns:
        A masked copy, same shape and dtype (differentiable w.r.t. the unmasked cells).
    """
    if mel.ndim not in (2, 3, 4):
        raise InputError(f"spec_augment: expected (F, T), (N, F, T) or (N, C, F, T), got {tuple(mel.shape)}")
    for label, ratio in (("freq_ratio", freq_ratio), ("time_ratio", time_ratio)):
        if not 0.0 <= ratio <= 1.0:
            raise InputError(f"spec_augment {label}: expected a fraction in [0, 1], got {ratio!r}")
    if not isinstance(n_masks, int) or n_masks < 0:
        raise InputError(f"spec_augment n_masks: expected an int >= 0, got {n_masks!r}")
    batch = mel.shape[0] if mel.ndim >= 3 else 1
    n_freq, n_time = mel.shape[-2], mel.shape[-1]
    masked = torch.zeros(batch, n_freq, n_time, dtype=torch.bool, device=mel.device)
    masked |= _band_mask(batch, n_freq, int(freq_ratio * n_freq), n_masks, generator, mel.device)[:, :, None]
    masked |= _band_mask(batch, n_time, int(time_ratio * n_time), n_masks, generator, mel.device)[:, None, :]
    if mel.ndim == 2:
        masked = masked[0]
    elif mel.ndim == 4:
        masked = masked[:, None]
    return mel.masked_fill(masked, value)


def _band_mask(batch: int, size: int, max_width: int, n_masks: int, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """``(batch, size)`` bool: the union of ``n_masks`` random bands of width ``0..max_width`` per row."""
    if n_masks == 0 or max_width == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(2, batch, n_masks, generator=generator, device=gen_device, dtype=torch.float64).to(device)
    width = torch.floor(u[0] * (max_width + 1)).clamp(max=max_width)  # uniform over 0..max_width
    start = torch.floor(u[1] * (size - width + 1)).clamp(max=size - width)  # uniform over 0..size-width
    pos = torch.arange(size, device=device, dtype=torch.float64)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (batch, n_masks, size)
    return inside.any(dim=1)
