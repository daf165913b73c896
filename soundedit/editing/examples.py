"""An example sound for demos, synthesised so it needs no download or licence: a siren.

``python -m soundedit.editing.examples OUT.wav`` writes it (used by ``make demo``).
A two-tone wailing siren (a sine swept between 600 and 1400 Hz, 1.5 s per cycle,
with a few harmonics, as emergency sirens sound) is one of ESC-50's classes and
easy to recognise for an encoder trained on environmental sounds.
"""

from __future__ import annotations

import io
import math
import sys

import numpy as np


def siren(duration: float = 5.0, sample_rate: int = 44100, *, low: float = 600.0, high: float = 1400.0,
          period: float = 1.5) -> np.ndarray:
    """A wailing siren, ``(n,)`` float32 in [-0.8, 0.8], deterministic.

    Args:
        duration: seconds.
        sample_rate: Hz.
        low, high: frequency range of the sweep (Hz).
        period: seconds per up-and-down sweep.
    """
    t = np.arange(int(duration * sample_rate)) / sample_rate
    # instantaneous frequency f(t) = mid + depth·sin(2πt/period); the phase is its integral
    mid, depth = (low + high) / 2, (high - low) / 2
    phase = 2 * math.pi * (mid * t - depth * period / (2 * math.pi) * (np.cos(2 * math.pi * t / period) - 1))
    wave = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)  # 50 ms fades: no clicks at the ends
    return (0.8 * wave / np.abs(wave).max() * fade).astype(np.float32)


def write_siren(path: str, **kwargs) -> str:
    """Write :func:`siren` as a 16-bit WAV file (atomically); returns the path."""
    import soundfile as sf

    from soundedit.fileio import write_bytes

    sample_rate = kwargs.get("sample_rate", 44100)
    buf = io.BytesIO()
    sf.write(buf, siren(**kwargs), sample_rate, format="WAV", subtype="PCM_16")
    write_bytes(path, buf.getvalue())
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m soundedit.editing.examples OUT.wav")
    write_siren(sys.argv[1])
