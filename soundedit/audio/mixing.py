"""Mixing sounds with per-sound gains, loudness measurement and normalisation.

Loudness is measured either as RMS level in dBFS (``method="rms"``: 20 log10 of
the root-mean-square over all channels and samples; a full-scale sine is -3.01
dBFS) or as integrated loudness in LUFS (``method="lufs"``: ITU-R BS.1770-4,
K-weighting filters designed for the clip's sample rate as libebur128 does, 400 ms
blocks with 75 % overlap, absolute gate -70 LUFS and relative gate -10 LU; every
channel weighted 1.0, i.e. no surround weighting).  A full-scale 1 kHz sine reads
-3.01 LUFS.  (torchaudio's ``loudness`` approximates the K-weighting with generic
biquads and reads -3.28 there, so it is not used.)  LUFS follows perceived
loudness better (it discounts low rumble); RMS works for any length.  Clips
shorter than one 400 ms block are measured looped up to one block.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from soundedit.audio.io import Waveform
from soundedit.config import MAX_GAIN_DB
from soundedit.errors import InputError

logger = logging.getLogger("soundedit")

LOUDNESS_METHODS = ("rms", "lufs")
#: Default loudness target: -20 dBFS RMS / -23 LUFS (EBU R128's programme level).
DEFAULT_TARGET = {"rms": -20.0, "lufs": -23.0}
_LUFS_BLOCK = 0.4  # seconds, BS.1770 gating block


def db_to_gain(db: float) -> float:
    """Amplitude factor of a gain in dB (``10 ** (db / 20)``)."""
    return 10.0 ** (db / 20.0)


def loudness(wave: Waveform, *, method: str = "rms") -> float:
    """Loudness of a waveform: dBFS RMS or LUFS (see the module notes); ``-inf`` for silence."""
    if method not in LOUDNESS_METHODS:
        raise InputError(f"loudness method: expected one of {', '.join(LOUDNESS_METHODS)}, got {method!r}")
    x = wave.samples.to(torch.float64)
    if method == "rms":
        ms = float(x.square().mean())
        return 10.0 * math.log10(ms) if ms > 0 else -math.inf
    if not bool(x.abs().amax() > 0):
        return -math.inf
    return _integrated_loudness(x, wave.sample_rate)


def _integrated_loudness(x: torch.Tensor, rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) of ``(channels, n)`` float64 samples."""
    import torchaudio.functional as AF

    block, step = int(round(_LUFS_BLOCK * rate)), int(round(_LUFS_BLOCK * rate / 4))
    if x.shape[-1] < block:  # one gating block at least: loop the clip
        x = x.repeat(1, -(-block // x.shape[-1]))[:, :block]
    for b, a in _k_weighting(rate):
        x = AF.lfilter(x, torch.tensor(a, dtype=x.dtype), torch.tensor(b, dtype=x.dtype), clamp=False)
    power = x.square().unfold(-1, block, step).mean(dim=-1).sum(dim=0)  # (blocks,), channels summed
    block_lufs = -0.691 + 10.0 * torch.log10(power.clamp(min=1e-300))
    kept = power[block_lufs > -70.0]  # absolute gate
    if kept.numel() == 0:
        return -math.inf
    relative_gate = -0.691 + 10.0 * math.log10(float(kept.mean())) - 10.0
    kept = power[(block_lufs > -70.0) & (block_lufs > relative_gate)]
    return -0.691 + 10.0 * math.log10(float(kept.mean()))


def _k_weighting(rate: int) -> list[tuple[list[float], list[float]]]:
    """The two BS.1770 K-weighting biquads ``(b, a)`` at ``rate`` (high shelf, then high-pass).

    Parametric design whose 48 kHz coefficients are the standard's tabulated ones
    (constants as in libebur128).
    """
    k = math.tan(math.pi * 1681.974450955533 / rate)
    q = 0.7071752369554196
    vh = 10.0 ** (3.999843853973347 / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = ([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
             [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    k = math.tan(math.pi * 38.13547087602444 / rate)
    q = 0.5003270373238773
    a0 = 1.0 + k / q + k * k
    highpass = ([1.0, -2.0, 1.0], [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return [shelf, highpass]


def normalize_loudness(wave: Waveform, target: float | None = None, *, method: str = "rms") -> Waveform:
    """Scale ``wave`` so its :func:`loudness` is ``target`` (default -20 dBFS RMS / -23 LUFS).

    Silence is returned unchanged (with a warning): it has no loudness to scale.
    The result may exceed [-1, 1] for a loud target; :func:`mix` guards clipping.
    """
    target = DEFAULT_TARGET.get(method, -20.0) if target is None else float(target)
    level = loudness(wave, method=method)
    if not math.isfinite(level):
        logger.warning("normalize_loudness: the sound is silent; left unchanged")
        return wave
    return Waveform(wave.samples * db_to_gain(target - level), wave.sample_rate)


def mix(waveforms: Sequence[Waveform], gains_db: Sequence[float] | None = None, *, sample_rate: int | None = None,
        match_loudness: str | None = None, clip_guard: bool = True) -> Waveform:
    """Mix sounds (e.g. thunder + rain) with a gain per sound.

    Args:
        waveforms: the sounds; they are resampled to ``sample_rate`` (default: the
            first one's rate).  Mono sounds are spread to all channels when others are
            stereo; sounds with different multi-channel layouts are mixed as mono.
        gains_db: one gain per sound in dB (default 0 dB each), applied after
            ``match_loudness``.
        sample_rate: rate of the mix.
        match_loudness: ``None`` (use the sounds as recorded), ``"rms"`` or ``"lufs"``:
            bring every sound to the same loudness first, so the gains are the
            sounds' relative loudness (0 dB each = equally loud).
        clip_guard: if the sum peaks above 1.0, scale the whole mix down to peak 1.0
            (relative gains are kept; logged).

    Returns:
        The mix, as long as the longest sound (shorter ones end in silence).

    Raises:
        InputError: no sounds, or a gain count that does not match.
    """
    waves = list(waveforms)
    if not waves:
        raise InputError("mix: expected at least one sound, got none")
    gains = [0.0] * len(waves) if gains_db is None else [float(g) for g in gains_db]
    if len(gains) != len(waves):
        raise InputError(f"mix: expected one gain per sound ({len(waves)}), got {len(gains)}: {gains}")
    bad = [g for g in gains if not (math.isfinite(g) and abs(g) <= MAX_GAIN_DB)]
    if bad:
        raise InputError(f"mix: expected gains in dB within ±{MAX_GAIN_DB:g}, got {bad}")
    rate = int(sample_rate or waves[0].sample_rate)
    waves = [w.resample(rate) for w in waves]
    channels = {w.num_channels for w in waves}
    if len(channels - {1}) > 1:  # e.g. stereo + 5.1: no sensible spread, mix mono
        waves = [w.to_mono() for w in waves]
    n_channels = max(w.num_channels for w in waves)
    if match_loudness is not None:
        waves = [normalize_loudness(w, method=match_loudness) for w in waves]
    length = max(w.num_frames for w in waves)
    device = waves[0].samples.device
    out = torch.zeros(n_channels, length, dtype=torch.float32, device=device)
    for wave, gain in zip(waves, gains):
        x = wave.samples.to(device=device, dtype=torch.float32)
        out[:, : x.shape[1]] += x.expand(n_channels, -1) * db_to_gain(gain)  # (1, n) spreads over channels
    peak = float(out.abs().amax())
    if clip_guard and peak > 1.0:
        logger.info("mix: the sum peaks at %+.2f dBFS; scaled down by %.2f dB to avoid clipping",
                    20 * math.log10(peak), 20 * math.log10(peak))
        out = out / peak
    if peak == 0.0:
        logger.warning("mix: the mix is all silence (every sound is silent or they cancel)")
    return Waveform(out, rate)
