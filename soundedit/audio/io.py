"""Decoding audio files into :class:`Waveform` and resampling.

Decoding goes through ``soundfile`` (libsndfile): WAV (8/16/24/32-bit int, float,
WAVE_FORMAT_EXTENSIBLE), FLAC, Ogg Vorbis/Opus and MP3 (libsndfile >= 1.1).  When
only a window is needed (``start``/``duration``) the file is seeked and only that
window is decoded, so a two-hour field recording costs what its five seconds cost.
Resampling uses torchaudio's band-limited (windowed-sinc) resampler on the
tensor's device; it works on any leading batch/channel dimensions.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from soundedit.audio.banded import column_blocks
from soundedit.errors import AudioError, InputError

logger = logging.getLogger("soundedit")

#: What ``load_audio`` accepts: a path, or the raw bytes of an audio file.
AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

#: File suffixes walked when a folder of sounds is given (lower-case, with dot).
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")

#: Longest file (seconds) decoded whole by default; pass ``start``/``duration`` for a window
#: of a longer one, or ``max_duration=None`` to lift the limit.
DEFAULT_MAX_DURATION = 600.0
#: Sample rates outside this range are treated as a corrupt header, not audio to resample.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
#: More channels than this is not a sound a user drops in (and usually a misread header).
MAX_CHANNELS = 8
#: Largest sample magnitude read. Float files may exceed 1 (e.g. int16 values stored as float,
#: up to 32768); far beyond, |STFT|^2 overflows float32 (about 1e19 here) and every embedding is NaN.
MAX_PEAK = 1e6
#: Shortest sound that can guide an edit (seconds). The audio encoders' STFT window is 2048
#: samples at 44.1 kHz (46 ms, hop 512 = 11.6 ms): a 0.1 s sound gives about 9 log-mel frames,
#: barely two windows of content; anything shorter is mostly padding (a click, or a truncated
#: file), and its embedding says nothing about the sound.
MIN_GUIDE_DURATION = 0.1


class NamedBytes(bytes):
    """The bytes of an audio file that keep the file's name for messages (instead of ``<bytes>``)."""

    def __new__(cls, data: bytes, name: str) -> "NamedBytes":
        obj = super().__new__(cls, data)
        obj.name = str(name)
        return obj

# torchaudio settings equal to librosa's / resampy's "kaiser_best" (documented by torchaudio);
# the authors' code loaded with librosa 0.8, whose default resampler that was.
_RESAMPLE_SETTINGS = {
    "default": {},
    "kaiser_best": dict(lowpass_filter_width=64, rolloff=0.9475937167399596,
                        resampling_method="sinc_interp_kaiser", beta=14.769656459379492),
}


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded audio.

    Attributes:
        samples: float32 tensor ``(channels, n)``, nominally in [-1, 1].
        sample_rate: samples per second per channel.
    """

    samples: torch.Tensor
    sample_rate: int

    def __post_init__(self) -> None:
        if not isinstance(self.samples, torch.Tensor) or self.samples.ndim != 2:
            got = tuple(self.samples.shape) if isinstance(self.samples, torch.Tensor) else type(self.samples).__name__
            raise InputError(f"Waveform.samples: expected a (channels, n) tensor, got {got}")
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise InputError(f"Waveform.sample_rate: expected a positive int, got {self.sample_rate!r}")

    @property
    def num_channels(self) -> int:
        return self.samples.shape[0]

    @property
    def num_frames(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate

    def to_mono(self) -> "Waveform":
        """Average the channels (what librosa and the authors' code do), ``(1, n)``."""
        if self.num_channels == 1:
            return self
        return Waveform(self.samples.mean(dim=0, keepdim=True), self.sample_rate)

    def resample(self, sample_rate: int, *, quality: str = "default") -> "Waveform":
        """This waveform at ``sample_rate`` (band-limited; see :func:`resample`)."""
        if sample_rate == self.sample_rate:
            return self
        return Waveform(resample(self.samples, self.sample_rate, sample_rate, quality=quality), int(sample_rate))

    def to(self, device: str | torch.device) -> "Waveform":
        """The same waveform on ``device``."""
        return Waveform(self.samples.to(device), self.sample_rate)

    def window(self, start: float | None = None, duration: float | None = None) -> "Waveform":
        """The part from ``start`` seconds lasting ``duration`` seconds (to the end when ``None``).

        Raises:
            InputError: negative values, or a start at/after the end.
        """
        first, count = _window_frames(self.num_frames, self.sample_rate, start, duration, name="waveform")
        return Waveform(self.samples[:, first:first + count], self.sample_rate)


def resample(samples: torch.Tensor, orig_sample_rate: int, sample_rate: int, *, quality: str = "default") -> torch.Tensor:
    """Band-limited resampling along the last axis, on the tensor's device.

    Args:
        samples: float tensor ``(..., n)`` (any leading batch/channel dims).
        orig_sample_rate: rate of ``samples``.
        sample_rate: wanted rate.
        quality: ``"default"`` (torchaudio's Hann-windowed sinc, width 6) or
            ``"kaiser_best"`` (librosa 0.8's default, slower, used by the authors' transform).

    Returns:
        ``(..., ceil(n * sample_rate / orig_sample_rate))`` in the input's dtype.
    """
    if quality not in _RESAMPLE_SETTINGS:
        raise InputError(f"resample quality: expected one of {sorted(_RESAMPLE_SETTINGS)}, got {quality!r}")
    for label, rate in (("orig_sample_rate", orig_sample_rate), ("sample_rate", sample_rate)):
        if not MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE:
            raise InputError(f"resample {label}: expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate!r}")
    if int(orig_sample_rate) == int(sample_rate):
        return samples
    if not samples.is_floating_point():
        raise InputError(f"resample: expected floating-point samples, got {samples.dtype}")
    kernel, blocks, width, orig, new = _sinc_kernel(int(orig_sample_rate), int(sample_rate), quality)
    kernel = kernel.to(device=samples.device, dtype=samples.dtype)  # (taps, new)
    taps = kernel.shape[0]
    products = [(kernel[t0:t1, p0:p1], p0, p1, t0, t1) for p0, p1, t0, t1 in blocks]
    shape, n = samples.shape, samples.shape[-1]
    x = samples.reshape(-1, n)
    batch = x.shape[0]
    # torchaudio's framing (pad by the filter half-width, one window of `taps` input samples
    # every `orig`, `new` output phases per window), applied as block-sparse matrix products
    # instead of its strided conv1d: each phase reads only the ~2 x lowpass_filter_width taps
    # its windowed sinc covers, so ~13x fewer multiplications for 16 -> 44.1 kHz.
    frames = torch.nn.functional.pad(x, (width, width + orig)).unfold(-1, taps, orig)  # (B, L, taps) view
    n_frames = frames.shape[1]
    step = max(1, (1 << 24) // (batch * taps))  # bound the unfolded copy of long inputs
    out = None if step >= n_frames else x.new_empty(batch, n_frames, new)
    for l0 in range(0, n_frames, step):
        chunk = frames[:, l0:l0 + step]
        rows = chunk.reshape(-1, taps)  # a contiguous copy: windows overlap in the view
        res = rows.new_empty(rows.shape[0], new)
        for weights, p0, p1, t0, t1 in products:
            res[:, p0:p1].addmm_(rows[:, t0:t1], weights, beta=0)
        res = res.view(batch, chunk.shape[1], new)
        if out is None:
            out = res
        else:
            out[:, l0:l0 + step] = res
    length = -(-new * n // orig)  # ceil(n * new / orig)
    return out.reshape(batch, -1)[:, :length].reshape(*shape[:-1], length)


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig_sample_rate: int, sample_rate: int,
                 quality: str) -> tuple[torch.Tensor, list[tuple[int, int, int, int]], int, int, int]:
    """torchaudio's windowed-sinc kernel for this rate pair, built once, with its band structure.

    Taps below 1e-15 of the largest (the window's flat tails: sinc zeros times the window's
    edge) are set to exactly 0; what they carried is below double precision's resolution
    of each output sum (< 1e-19 of the largest tap in all).

    Returns:
        ``(kernel (taps, new) float64, blocks (p0, p1, t0, t1) of output phases and the
        taps they read, width, orig, new)`` with ``orig``/``new`` the rates divided by
        their gcd.
    """
    import torchaudio.transforms as T

    resampler = T.Resample(orig_sample_rate, sample_rate, dtype=torch.float64, **_RESAMPLE_SETTINGS[quality])
    kernel = resampler.kernel[:, 0].T.contiguous()  # (taps, new)
    kernel[kernel.abs() < 1e-15 * kernel.abs().max()] = 0.0
    gcd = math.gcd(orig_sample_rate, sample_rate)
    return kernel, column_blocks(kernel, step=8, overhead=256), resampler.width, orig_sample_rate // gcd, sample_rate // gcd


def load_audio(source: AudioSource, sample_rate: int | None = None, *, start: float | None = None,
               duration: float | None = None, max_duration: float | None = DEFAULT_MAX_DURATION,
               min_duration: float | None = None, mono: bool = False, quality: str = "default",
               device: str | torch.device | None = None) -> Waveform:
    """Decode an audio file (or its bytes) into a float32 :class:`Waveform`.

    Args:
        source: a path, or the bytes of a whole audio file.
        sample_rate: resample to this rate (``None``: keep the file's).
        start: first second to read (default 0); the file is seeked, not decoded up to it.
        duration: seconds to read from ``start`` (default: to the end).  A window past the
            end is shortened to what the file has.
        max_duration: refuse to decode more than this many seconds in one go (``None``: no limit).
            Only applies when no ``duration`` is given.
        min_duration: refuse fewer seconds of decoded audio than this (``None``: any length;
            :data:`MIN_GUIDE_DURATION` for a sound that guides an edit).
        mono: average the channels into one.
        quality: resampler, ``"default"`` or ``"kaiser_best"`` (see :func:`resample`).
        device: where the samples go (resampling runs there).

    Returns:
        ``Waveform(samples (channels, n) float32 in [-1, 1], sample_rate)``.

    Raises:
        AudioError: not a file, not audio, a corrupt or truncated header, no samples,
            NaN/Inf samples, an absurd sample rate, more than 8 channels, longer than
            ``max_duration``, shorter than ``min_duration``.  All-silent audio and a file
            shorter than its header promises (truncated) only log a warning.
        InputError: bad ``start``/``duration``/``sample_rate`` values.
    """
    import soundfile

    name, handle = _open_source(source)
    if sample_rate is not None and not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise InputError(f"sample_rate: expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {sample_rate!r}")
    try:
        sound = soundfile.SoundFile(handle)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: not a readable audio file ({_reason(exc)}); expected WAV, FLAC, Ogg Vorbis "
                         "or MP3 with a valid header") from None
    with sound:
        rate, channels, frames = int(sound.samplerate), int(sound.channels), int(sound.frames)
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioError(f"{name}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz "
                             "(corrupt header?)")
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"{name}: {channels} channels; expected 1..{MAX_CHANNELS}")
        if frames <= 0:
            raise AudioError(f"{name}: the file holds no samples (0 frames)")
        # libsndfile shortens a WAV's frame count to the bytes present, so a cut-off file looks
        # complete; its header's data size still tells how long it was meant to be.
        promised = _wav_header_frames(source, sound)
        truncated = ""
        if promised is not None and promised > frames:
            truncated = f"; the header promises {promised / rate:.2f} s: truncated file?"
        first, count = _window_frames(frames, rate, start, duration, name=name)
        if duration is None and max_duration is not None and count / rate > max_duration:
            raise AudioError(f"{name}: {count / rate:.1f} s to decode is longer than the {max_duration:g} s limit; "
                             "pass start/duration to read a window, or raise max_duration")
        try:
            if first:
                sound.seek(first)
            data = sound.read(count, dtype="float32", always_2d=True)  # (n, channels)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: decoding failed ({_reason(exc)}); the file is corrupt or truncated") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: no samples could be decoded (header promises {frames} frames; truncated file?)")
    if data.shape[0] < count:
        _warn_once("%s: decoded %d of the %d frames the header promises (truncated file?)", name, data.shape[0], count)
    bad = ~np.isfinite(data)
    if bad.any():
        where = int(np.argmax(bad.any(axis=1)))
        raise AudioError(f"{name}: {int(bad.sum())} NaN/Inf samples (first at {where / rate:.3f} s); "
                         "expected finite samples")
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        raise AudioError(f"{name}: samples reach {peak:.3g}; expected audio in about [-1, 1] (float files are read "
                         f"up to {MAX_PEAK:g}: beyond that its spectrum overflows float32)")
    check_min_duration(data.shape[0], rate, min_duration, name, truncated)
    if truncated:  # warned only when the sound is used anyway (an error above already says it)
        _warn_once("%s: holds %d of the %d frames its header promises (%.3f of %.2f s; truncated file?)",
                       name, frames, promised, frames / rate, promised / rate)
    samples = torch.from_numpy(np.ascontiguousarray(data.T))  # (channels, n)
    if device is not None:
        samples = samples.to(device)
    wave = Waveform(samples, rate)
    if peak == 0:
        _warn_once("%s: the audio is all silence; its log-mel will be flat", name)
    if mono:
        wave = wave.to_mono()
    if sample_rate is not None:
        wave = wave.resample(int(sample_rate), quality=quality)
    return wave


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    """Log a warning about a file once per process: a command decodes a guiding sound twice (checked
    before the models load, then used), and the same note twice reads like two problems."""
    text = message % args
    if text not in _warned:
        if len(_warned) >= 10_000:  # a long-running server: forget, rather than grow without end
            _warned.clear()
        _warned.add(text)
        logger.warning(text)


def check_guide_sound(path: str | os.PathLike, *, what: str = "--sound") -> float:
    """Decode a sound that is to guide an edit, before any model is loaded; returns its duration.

    Raises:
        AudioError: it cannot be decoded, or it is shorter than :data:`MIN_GUIDE_DURATION`
            (the message starts with ``what``, the flag it came from).
    """
    try:
        return load_audio(path, min_duration=MIN_GUIDE_DURATION).duration
    except AudioError as exc:
        raise AudioError(f"{what}: {exc}") from None


def check_min_duration(samples: int, rate: int, min_duration: float | None, name: str, detail: str = "") -> None:
    """Refuse ``samples`` at ``rate`` Hz shorter than ``min_duration`` seconds (``None``: any length).

    Raises:
        AudioError: "NAME: 0.023 ms of audio (1 samples at 44100 Hz); expected at least 0.0464399 s, 2048
            samples" (``detail`` goes inside the parentheses, e.g. a truncated file's header note); the
            minimum in samples too: 2047 samples read "46.4 ms" beside a 0.0464399 s minimum.
    """
    if min_duration is not None and samples < min_duration * rate:
        raise AudioError(f"{name}: {_seconds(samples / rate)} of audio ({samples} samples at {rate} Hz{detail}); "
                         f"expected at least {min_duration:g} s, {math.ceil(min_duration * rate)} samples")


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms" if value >= 5e-5 else f"{value * 1000:.2g} ms"  # one sample is not "0.0 ms"


def _wav_header_frames(source: object, sound) -> int | None:
    """Frames a RIFF/WAVE header's data chunk promises, or ``None`` (not a WAV, or no usable size)."""
    if sound.format != "WAV":
        return None
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:65536])
        else:
            with open(source, "rb") as fh:
                head = fh.read(65536)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align, pos = None, 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20:pos + 22], "little")
        elif chunk == b"data":
            # 0 and 0xFFFFFFFF mark streamed files whose size was never filled in
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def audio_info(source: AudioSource) -> dict:
    """Header facts without decoding: ``{"sample_rate", "channels", "frames", "duration", "format", "subtype"}``.

    Raises:
        AudioError: as :func:`load_audio` for unreadable files.
    """
    import soundfile

    name, handle = _open_source(source)
    try:
        with soundfile.SoundFile(handle) as sound:
            return {"sample_rate": int(sound.samplerate), "channels": int(sound.channels), "frames": int(sound.frames),
                    "duration": sound.frames / sound.samplerate, "format": sound.format, "subtype": sound.subtype}
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: not a readable audio file ({_reason(exc)})") from None


def _open_source(source: AudioSource) -> tuple[str, object]:
    """``(name for messages, what soundfile opens)``; checks paths exist and are non-empty files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = getattr(source, "name", "<bytes>")  # NamedBytes: the file they were read from
        data = bytes(source)
        if not data:
            raise AudioError(f"{name}: empty (0 bytes); expected the bytes of an audio file")
        return name, io.BytesIO(data)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"audio: expected a path or file bytes, got {type(source).__name__}")
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise AudioError(f"{name}: no such file")
    if not path.is_file():
        raise AudioError(f"{name}: not a file (a folder or device); expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{name}: empty file (0 bytes); expected audio")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{name}: not readable (permission denied)")
    return name, name


def _window_frames(frames: int, rate: int, start: float | None, duration: float | None, *, name: str) -> tuple[int, int]:
    """``(first frame, frame count)`` of a ``start``/``duration`` window inside ``frames``."""
    first = 0
    if start is not None:
        if not np.isfinite(start) or start < 0:
            raise InputError(f"start: expected seconds >= 0, got {start!r}")
        first = int(round(start * rate))
        if first >= frames:
            raise InputError(f"start: {start:g} s is at/after the end of {name} ({frames / rate:.3f} s)")
    count = frames - first
    if duration is not None:
        if not np.isfinite(duration) or duration <= 0:
            raise InputError(f"duration: expected seconds > 0, got {duration!r}")
        count = min(count, max(1, int(round(duration * rate))))
    return first, count


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    # libsndfile messages start with "Error opening <repr of the file>: "; the name is ours already
    text = text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else (text or type(exc).__name__)
    if "possibly a pipe" in text:
        # what libsndfile says, by path, of a file it cannot parse (e.g. a cut-off MP3); the file
        # was checked to be a regular, readable file, so the real reason is that it cannot be decoded
        return "it cannot be decoded: not a recognised audio format, or a truncated or corrupt file"
    return text
