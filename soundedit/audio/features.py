"""Log-mel features on the device, fixed-length policies, and the authors' exact input transform.

:class:`LogMel` is librosa's ``power_to_db(melspectrogram(y), ref=np.max, top_db)``
rescaled to [0, 1] by ``/ top_db + 1`` (``/ 80 + 1`` in the paper's code), written
in torch so it runs batched, differentiably and identically on CPU and GPU:

* power spectrogram: ``torch.stft`` with a periodic Hann window, centred frames
  with reflect padding (librosa 0.8's default, which the authors used), power 2;
* mel: Slaney mel scale with Slaney (area) normalisation, as ``librosa.filters.mel``
  and torchaudio's ``melscale_fbanks(norm="slaney", mel_scale="slaney")``;
* dB: ``10 log10(max(S, 1e-10)) - 10 log10(max(S_max, 1e-10))`` per clip,
  clamped at ``-top_db``.

Why not ``torchaudio.transforms.MelSpectrogram`` itself: torchaudio builds its
filterbank in float32, which leaves up to 0.5 % error in the filters' small tail
weights; near the -80 dB floor that moves values by ~1.4e-5 after ``/80``, more
than the authors' checkpoint tolerates.  Here the window and filterbank are
computed in float64 (as librosa does) and the filterbank is applied block-sparsely
(each FFT bin feeds at most two filters), which is also ~4x cheaper on CPU.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from soundedit.audio.banded import column_blocks
from soundedit.audio.io import AudioSource, Waveform, audio_info, check_min_duration, load_audio, resample
from soundedit.config import AudioConfig
from soundedit.errors import InputError

AMIN = 1e-10  # librosa's power_to_db floor

CROP_POLICIES = ("start", "centre", "center", "loudest", "random")
PAD_POLICIES = ("silence", "loop")

# The authors' inference transform (their released encoder was trained on it).
OFFICIAL_SAMPLE_RATE = 44100
OFFICIAL_N_MELS = 128
OFFICIAL_FRAMES = 864  # time frames after zero-pad/crop (~10 s at 44.1 kHz, hop 512)
OFFICIAL_ROWS = 512  # rows after their cv2.resize(x, (128, 512))
OFFICIAL_INPUT_SHAPE = (1, OFFICIAL_N_MELS, OFFICIAL_ROWS)  # per clip: (channels, H, W) after a plain reshape


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, *, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular mel filters, computed in float64.

    Equal to ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney")``.

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float64.
    """
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise InputError(f"mel range: expected 0 <= f_min < f_max <= sample_rate/2 ({sample_rate / 2:g}), "
                         f"got f_min={f_min!r}, f_max={f_max!r}")
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points.diff()  # (n_mels + 1,)
    ramps = hz_points[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return weights * (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]  # Slaney: unit area per filter


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = _MIN_LOG_HZ / _F_SP, math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return torch.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


class _ClipPlan:
    """Work arrays and prepared views of the CPU fast path, reused from clip to clip of a batch.

    Reuse matters: fresh multi-megabyte arrays per clip cost page faults comparable to the
    arithmetic itself, and slicing the filterbank per clip costs as much as small products.
    """

    _last = threading.local()  # per thread, the plan of the last call (kept for the next one)
    MAX_KEPT_BYTES = 64 << 20

    @classmethod
    def for_clips(cls, n: int, logmel: "LogMel") -> "_ClipPlan":
        """The plan for clips of ``n`` samples, reusing this thread's last one when it fits."""
        key = (id(logmel), n, logmel.fb2.data_ptr(), logmel.window.data_ptr())
        plan = getattr(cls._last, "plan", None)
        if plan is not None and plan.key == key:
            return plan
        plan = cls(n, logmel)
        plan.key = key
        # Keep it for the next call only when small: the buffers of a long recording (about
        # 9x its samples) should not outlive the call that needed them.
        cls._last.plan = plan if plan.nbytes <= cls.MAX_KEPT_BYTES else None
        return plan

    def __init__(self, n: int, logmel: "LogMel") -> None:
        cfg, dtype = logmel.config, logmel.compute_dtype
        self.n, self.half = n, cfg.n_fft // 2
        self.reflect = logmel._pad_mode(n) == "reflect"
        self.window = logmel.window
        self.padded = torch.zeros(n + 2 * self.half, dtype=dtype)
        self.frames_in = self.padded.unfold(0, cfg.n_fft, cfg.hop_length)  # (frames, n_fft) view
        self.frames = torch.empty(self.frames_in.shape, dtype=dtype)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.spec = torch.empty(self.frames.shape[0], self.half + 1, dtype=complex_dtype)
        # (frames, 2 * n_freqs): real and imaginary parts interleaved as they lie in memory
        self.spec_sq = torch.view_as_real(self.spec).view(self.frames.shape[0], -1)
        self.mel = torch.empty(cfg.n_mels, self.frames.shape[0], dtype=dtype)
        self.products = [(logmel.fb2[m0:m1, k0:k1].contiguous(), self.spec_sq[:, k0:k1].T, self.mel[m0:m1])
                         for k0, k1, m0, m1 in logmel._blocks2]
        self.nbytes = sum(t.numel() * t.element_size() for t in (self.padded, self.frames, self.spec, self.mel))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Mel power ``(n_mels, frames)`` of one clip ``(n,)`` (a view of a reused buffer)."""
        n, half, padded = self.n, self.half, self.padded
        padded[half:half + n] = x
        if self.reflect:  # centred frames, reflected at both ends (torch.stft's / librosa's); else zeros stay
            padded[:half] = x[1:half + 1].flip(0)
            padded[half + n:] = x[n - half - 1:n - 1].flip(0)
        torch.mul(self.frames_in, self.window, out=self.frames)
        torch.fft.rfft(self.frames, out=self.spec)
        self.spec_sq.square_()
        self.mel.zero_()
        # |X|^2 = re^2 + im^2 is summed inside the products (every filterbank column doubled).
        for weights, power, mel in self.products:
            mel.addmm_(weights, power)
        return self.mel


class LogMel(nn.Module):
    """Waveforms -> normalised log-mel, ``power_to_db(mel, ref=max, top_db) / top_db + 1`` in [0, 1].

    Args:
        config: sample rate, n_fft, hop, n_mels, f_min/f_max, top_db (the paper's defaults).
        compute_dtype: precision of the STFT.  float32 (default) is within ~1e-5 of
            librosa; float64 reproduces librosa (which transforms in float64) to ~1e-7
            and is what :func:`official_model_input` uses.
        normalize: ``False`` returns dB (``<= 0``, floored at ``-top_db``) instead.

    Input ``(N, n)`` or ``(n,)`` waveforms at ``config.sample_rate``; output
    ``(N, n_mels, 1 + n // hop_length)`` float32 (``(n_mels, frames)`` for 1-D input).
    Each clip is normalised to its own maximum.
    """

    def __init__(self, config: AudioConfig | None = None, *, compute_dtype: torch.dtype = torch.float32,
                 normalize: bool = True) -> None:
        super().__init__()
        self.config = config = config or AudioConfig()
        if config.hop_length <= 0 or config.n_fft <= 0 or config.n_mels <= 0 or config.top_db <= 0:
            raise InputError(f"AudioConfig: n_fft, hop_length, n_mels and top_db must be positive, got {config}")
        self.compute_dtype = compute_dtype
        self.normalize = normalize
        fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, f_min=config.f_min, f_max=config.f_max)
        self._blocks = column_blocks(fb, step=64, overhead=0)
        # The CPU fast path multiplies the squared real and imaginary parts (interleaved, as
        # the complex spectrum lies in memory) by a filterbank with every column doubled, so
        # |X|^2 = re^2 + im^2 is summed inside the product instead of in a strided pass.
        fb2 = fb.repeat_interleave(2, dim=1)
        self._blocks2 = column_blocks(fb2)
        # Buffers are derived from the config, so they stay out of state_dicts.
        self.register_buffer("fb", fb.to(compute_dtype), persistent=False)
        self.register_buffer("fb2", fb2.to(compute_dtype), persistent=False)
        window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.to(compute_dtype), persistent=False)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram ``(N, n_mels, frames)`` in ``compute_dtype`` (librosa's ``melspectrogram``)."""
        x = waveform.to(self.compute_dtype)
        if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
            return self._power(x)
        # On CPU, one clip at a time through reused buffers: each spectrogram stays in cache
        # (~3x faster than one big batch for 5 s clips), and a clip's result does not depend
        # on its batch-mates (batched small matmuls take other kernels, which round differently).
        plan = _ClipPlan.for_clips(x.shape[-1], self)
        out = x.new_empty(x.shape[0], self.config.n_mels, plan.mel.shape[-1])
        for clip, dest in zip(x, out):
            dest.copy_(plan(clip))
        return out

    def _power(self, x: torch.Tensor) -> torch.Tensor:
        """Batched and differentiable: ``torch.stft`` then the block-sparse filterbank."""
        cfg = self.config
        spec = torch.stft(x, cfg.n_fft, cfg.hop_length, window=self.window, center=True,
                          pad_mode=self._pad_mode(x.shape[-1]), return_complex=True)  # (N, n_freqs, frames)
        power = spec.real.square() + spec.imag.square()
        # Block-sparse filterbank product: each block of FFT bins only reaches a few mel rows.
        mel = power.new_zeros(power.shape[0], cfg.n_mels, power.shape[-1])
        for k0, k1, m0, m1 in self._blocks:
            mel[:, m0:m1] += torch.matmul(self.fb[m0:m1, k0:k1], power[:, k0:k1])
        return mel

    def _pad_mode(self, n: int) -> str:
        # Reflect padding needs more than n_fft // 2 samples; a shorter click is zero-padded instead.
        return "reflect" if n > self.config.n_fft // 2 else "constant"

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim not in (1, 2):
            raise InputError(f"LogMel: expected waveforms (N, n) or (n,), got {tuple(waveform.shape)}")
        squeeze = waveform.ndim == 1
        x = waveform[None] if squeeze else waveform
        power = self.power(x)
        db = power_to_db(power, top_db=self.config.top_db, inplace=not power.requires_grad)
        if self.normalize:
            db = db.div_(self.config.top_db).add_(1.0) if not db.requires_grad else db / self.config.top_db + 1.0
        out = db.float()
        return out[0] if squeeze else out


def power_to_db(power: torch.Tensor, *, top_db: float | None = 80.0, amin: float = AMIN,
                inplace: bool = False) -> torch.Tensor:
    """``librosa.power_to_db(S, ref=np.max, amin, top_db)`` per clip (over the last two axes).

    Args:
        power: ``(..., n_mels, frames)`` non-negative.
        top_db: floor at ``max - top_db`` (``None``: no floor).
        inplace: overwrite ``power`` with the result (same numbers, no new arrays; not for
            tensors that need gradients).

    Returns:
        dB, same shape, maximum 0 per clip.
    """
    ref = torch.clamp(power.amax(dim=(-2, -1), keepdim=True), min=amin)
    if inplace:
        log_spec = power.clamp_(min=amin).log10_().mul_(10.0).sub_(10.0 * torch.log10(ref))
        if top_db is not None:
            log_spec.clamp_(min=log_spec.amax(dim=(-2, -1), keepdim=True) - top_db)
        return log_spec
    log_spec = 10.0 * torch.log10(torch.clamp(power, min=amin)) - 10.0 * torch.log10(ref)
    if top_db is not None:
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True) - top_db)
    return log_spec


# ----------------------------------------------------------------------------------------------
# fixed length


def fix_length(samples: torch.Tensor, length: int, *, crop: str = "start", pad: str = "silence",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut or pad the last axis to exactly ``length`` samples (or frames) by an explicit policy.

    Args:
        samples: ``(..., n)``; all leading rows (channels of one clip) share one window.
        length: wanted size of the last axis.
        crop: which window of a longer input: ``"start"``, ``"centre"`` (``"center"``),
            ``"loudest"`` (highest energy, earliest on ties) — deterministic — or
            ``"random"`` (training only; needs ``generator``).
        pad: how a shorter input is filled at the end: ``"silence"`` (zeros) or ``"loop"``
            (the clip repeated).
        generator: the random source of ``crop="random"``.

    Returns:
        ``(..., length)``.
    """
    if crop not in CROP_POLICIES:
        raise InputError(f"crop: expected one of {', '.join(CROP_POLICIES)}, got {crop!r}")
    if pad not in PAD_POLICIES:
        raise InputError(f"pad: expected one of {', '.join(PAD_POLICIES)}, got {pad!r}")
    if length <= 0:
        raise InputError(f"length: expected a positive size, got {length!r}")
    n = samples.shape[-1]
    if n == 0:
        raise InputError("fix_length: the input is empty (0 samples)")
    if n < length:
        if pad == "loop":
            reps = -(-length // n)
            return samples.repeat(*([1] * (samples.ndim - 1)), reps)[..., :length]
        return torch.nn.functional.pad(samples, (0, length - n))
    if n == length:
        return samples
    offset = _crop_offset(samples, length, crop, generator)
    return samples[..., offset:offset + length]


def _crop_offset(samples: torch.Tensor, length: int, crop: str, generator: torch.Generator | None) -> int:
    spare = samples.shape[-1] - length
    if crop == "start":
        return 0
    if crop in ("centre", "center"):
        return spare // 2
    if crop == "random":
        if generator is None:
            raise InputError("crop='random' is for training and needs a torch.Generator (generator=...); "
                             "use start/centre/loudest for deterministic results")
        return int(torch.randint(0, spare + 1, (1,), generator=generator, device=generator.device))
    # loudest: energy of every window from a cumulative sum (float64 so long sums stay exact enough)
    energy = samples.detach().to(torch.float64).square().reshape(-1, samples.shape[-1]).sum(dim=0)
    cumsum = torch.nn.functional.pad(energy.cumsum(0), (1, 0))
    window_energy = cumsum[length:] - cumsum[:-length]
    return int(torch.argmax(window_energy))  # argmax returns the first maximum


def prepare_clips(clips: Sequence[AudioSource | Waveform] | AudioSource | Waveform, config: AudioConfig | None = None,
                  *, crop: str | None = None, pad: str | None = None, generator: torch.Generator | None = None,
                  device: str | torch.device | None = None, num_workers: int = 0,
                  min_duration: float | None = None) -> torch.Tensor:
    """Load clips and bring them to the encoder's fixed-length mono input.

    Args:
        clips: paths, file bytes or :class:`Waveform` s (or one of them).
        config: target sample rate and ``duration``; default crop/pad policies.
        crop, pad: override ``config.crop`` / ``config.pad`` (see :func:`fix_length`).
        generator: for ``crop="random"`` (training).
        device: where the batch is resampled and returned.
        num_workers: decode files in this many threads (libsndfile releases the GIL).
        min_duration: refuse a clip with fewer seconds than this (``AudioError`` naming the file, or
            ``clip K`` for a :class:`Waveform`).

    Returns:
        ``(N, round(duration * sample_rate))`` float32, ready for :class:`LogMel`.
    """
    config = config or AudioConfig()
    items = list(clips) if isinstance(clips, (list, tuple)) else [clips]
    if not items:
        raise InputError("clips: expected at least one clip, got none")
    length = int(round(config.duration * config.sample_rate))
    crop, pad = crop or config.crop, pad or config.pad

    def native(index: int, item: AudioSource | Waveform) -> tuple[torch.Tensor, int]:
        # Cut each clip at its own rate first: only the kept part gets resampled.
        if isinstance(item, Waveform):
            check_min_duration(item.samples.shape[-1], item.sample_rate, min_duration, f"clip {index + 1}")
            wave = item
        else:
            wave = _load_for_crop(item, config.duration, crop, device, min_duration)
        wave = wave.to_mono().to(device) if device is not None else wave.to_mono()
        n = int(round(config.duration * wave.sample_rate))
        return fix_length(wave.samples[0], n, crop=crop, pad=pad, generator=generator), wave.sample_rate

    if num_workers > 1 and generator is None:  # decoding releases the GIL; a random crop stays in order
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(num_workers) as pool:
            cut = list(pool.map(native, range(len(items)), items))
    else:
        cut = [native(i, item) for i, item in enumerate(items)]
    rates = sorted({r for _, r in cut})
    groups = {rate: [i for i, (_, r) in enumerate(cut) if r == rate] for rate in rates}
    # One batched resampling per source rate; when all clips share one, its result is
    # returned as is (rows may be strided views: LogMel reads them without a copy).
    resampled = {rate: fix_length(resample(torch.stack([cut[i][0] for i in idx]).float(), rate, config.sample_rate),
                                  length) for rate, idx in groups.items()}
    if len(rates) == 1:
        return resampled[rates[0]]
    out = torch.empty(len(items), length, dtype=torch.float32, device=cut[0][0].device)
    for rate, idx in groups.items():
        out[idx] = resampled[rate]
    return out


def _load_for_crop(source: AudioSource, duration: float, crop: str, device: str | torch.device | None,
                   min_duration: float | None) -> Waveform:
    """Decode only the window a start/centre crop keeps, so long files are not read whole."""
    if crop == "start":
        return load_audio(source, duration=duration, device=device, min_duration=min_duration)
    if crop in ("centre", "center"):
        total = audio_info(source)["duration"]
        start = (total - duration) / 2 if total > duration else None
        return load_audio(source, start=start, duration=duration, device=device, min_duration=min_duration)
    return load_audio(source, device=device, min_duration=min_duration)


# ----------------------------------------------------------------------------------------------
# the authors' transform


def official_layout(mel: torch.Tensor, *, crop: str = "start") -> torch.Tensor:
    """The authors' layout of normalised log-mel: ``(N, 128, T)`` -> ``(N, 1, 128, 512)``.

    Zero-pads (at the end) or crops the time axis to 864 frames, resizes the
    ``(128, 864)`` array like OpenCV's ``cv2.resize(x, (128, 512))`` (INTER_LINEAR:
    half-pixel centres, no antialiasing when shrinking) into 512 rows x 128
    columns, then reshapes row-major (not a transpose) to ``(1, 128, 512)``.
    Their encoder was trained on exactly this scrambled layout.  The authors
    cropped longer clips at a random offset; here the window is ``crop``
    (deterministic by default).  Differentiable; runs on ``mel``'s device.

    Returns:
        ``(N, 1, 128, 512)`` in ``mel``'s dtype.
    """
    if mel.ndim != 3 or mel.shape[1] != OFFICIAL_N_MELS:
        raise InputError(f"official_layout: expected (N, {OFFICIAL_N_MELS}, frames), got {tuple(mel.shape)}")
    x = fix_length(mel, OFFICIAL_FRAMES, crop=crop, pad="silence")  # (N, 128, 864)
    rows = _linear_resize_matrix(OFFICIAL_N_MELS, OFFICIAL_ROWS, dtype=mel.dtype, device=mel.device)  # (512, 128)
    cols = _linear_resize_matrix(OFFICIAL_FRAMES, OFFICIAL_N_MELS, dtype=mel.dtype, device=mel.device)  # (128, 864)
    resized = rows @ x @ cols.T  # (N, 512 rows, 128 cols), the array cv2 returns
    return resized.reshape(mel.shape[0], *OFFICIAL_INPUT_SHAPE)  # row-major reshape, as numpy's


def _linear_resize_matrix(src: int, dst: int, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``(dst, src)`` weights of OpenCV's INTER_LINEAR along one axis.

    OpenCV maps ``sx = (dx + 0.5) * (src / dst) - 0.5`` (computed in double, stored
    as float), takes ``floor`` and the float fraction, and clamps at both edges to
    the border pixel with weight 1 — no antialiasing filter when shrinking.
    """
    scale = 1.0 / (dst / src)  # OpenCV: scale_x = 1. / inv_scale_x
    pos = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    left = torch.floor(pos)
    frac = (pos - left).to(torch.float64)
    left = left.to(torch.int64)
    frac = torch.where(left < 0, torch.zeros_like(frac), frac)
    left = torch.clamp(left, min=0)
    at_end = left >= src - 1
    frac = torch.where(at_end, torch.zeros_like(frac), frac)
    left = torch.where(at_end, torch.full_like(left, src - 1), left)
    right = torch.clamp(left + 1, max=src - 1)
    matrix = torch.zeros(dst, src, dtype=torch.float64)
    idx = torch.arange(dst)
    matrix.index_put_((idx, left), 1.0 - frac, accumulate=True)
    matrix.index_put_((idx, right), frac, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=4)
def _official_logmel(device: torch.device) -> LogMel:
    """The authors' mel transform (float64, as librosa), built once per device."""
    config = AudioConfig(sample_rate=OFFICIAL_SAMPLE_RATE, n_fft=2048, hop_length=512, n_mels=OFFICIAL_N_MELS,
                         top_db=80.0)
    return LogMel(config, compute_dtype=torch.float64).to(device)


def official_model_input(source: AudioSource | Waveform, *, crop: str = "start",
                         device: str | torch.device | None = None, min_duration: float | None = None,
                         name: str = "clip") -> torch.Tensor:
    """What the authors' inference code fed their released encoder (``resnet18_57.pth``), bit for bit.

    ``librosa.load(path, sr=44100)`` (mono by channel mean, kaiser_best resampling) ->
    ``melspectrogram`` (n_fft 2048, hop 512, 128 Slaney mels, centred reflect-padded
    frames) -> ``power_to_db(ref=np.max) / 80 + 1`` -> :func:`official_layout`.

    Args:
        source: a path, file bytes, or a decoded :class:`Waveform` (resampled the same way).
        crop: window of clips longer than 864 frames (~10 s); the authors took a random one.
        device: where to compute (default CPU).
        min_duration: refuse a clip with fewer seconds than this (as :func:`prepare_clips`).
        name: how that error names a :class:`Waveform` (a file is named by its path).

    Returns:
        ``(1, 1, 128, 512)`` float32.
    """
    if isinstance(source, Waveform):
        check_min_duration(source.samples.shape[-1], source.sample_rate, min_duration, name)
        wave = source.to_mono().resample(OFFICIAL_SAMPLE_RATE, quality="kaiser_best")
    else:
        # The whole file, as theirs: the dB reference is the maximum over all of it.
        wave = load_audio(source, OFFICIAL_SAMPLE_RATE, mono=True, quality="kaiser_best", min_duration=min_duration)
    if device is not None:
        wave = wave.to(device)
    mel = _official_logmel(wave.samples.device)(wave.samples)  # (1, 128, T) float32, as librosa's float32 result
    # Their padded array is float64 (np.zeros) holding the float32 mel, so resize in float64.
    return official_layout(mel.to(torch.float64), crop=crop).float()


def log_mel(clips: Any, config: AudioConfig | None = None, *, device: str | torch.device | None = None) -> torch.Tensor:
    """Convenience: :func:`prepare_clips` then :class:`LogMel`, ``(N, n_mels, frames)``."""
    config = config or AudioConfig()
    x = prepare_clips(clips, config, device=device)
    with torch.no_grad():
        return LogMel(config).to(x.device)(x)
