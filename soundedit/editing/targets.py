"""Target embeddings of an edit: a sound (or a mix of sounds), a text prompt, or both.

All targets live in CLIP's joint space (unit norm).  A combination is the
normalised weighted sum of its parts, so ``audio_weight``/``text_weight`` set
how strongly each pulls the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from soundedit.errors import InputError, check_number

AudioLike = Any  # a path, bytes, or a soundedit.audio.Waveform


def _label(item: AudioLike) -> str:
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return getattr(item, "name", None) or "waveform"


def _loading(clip_space: Any) -> dict[str, Any]:
    """How to decode a guiding sound for the CLIP space's audio encoder: at its input rate (so sounds are
    mixed at the rate it wants) and, for the authors' layout, exactly as their ``librosa.load`` did
    (mono, kaiser_best resampling): then a single sound reaches the encoder bit for bit as
    :func:`soundedit.audio.official_model_input` would prepare the file itself."""
    encoder = getattr(clip_space, "audio_encoder", None)
    audio_cfg = getattr(getattr(encoder, "config", None), "audio", None)
    authors = getattr(encoder, "layout", None) == "official"
    return {"sample_rate": getattr(audio_cfg, "sample_rate", None), "mono": authors,
            "quality": "kaiser_best" if authors else "default"}


def load_sound(clip_space: Any, audio: AudioLike | list[AudioLike], gains_db: list[float] | None = None):
    """Load one or more sounds and mix them with per-sound gains (dB) into one ``Waveform``.

    A single sound is returned as loaded: the encoder's log-mel is normalised
    to its own maximum, so an overall gain would change nothing; gains only
    matter relative to each other (rain at −10 dB under thunder).

    Raises:
        InputError: gains that do not match the sounds, or a sound shorter than ``MIN_GUIDE_DURATION``
            (a fraction of the encoder's analysis window: mostly padding).
    """
    from soundedit.audio import Waveform, load_audio, mix
    from soundedit.audio.io import MIN_GUIDE_DURATION

    items = audio if isinstance(audio, (list, tuple)) else [audio]
    if not items:
        raise InputError("--sound: expected at least one sound, got none")
    if gains_db is not None and len(gains_db) != len(items):
        raise InputError(f"--gain: expected one gain per sound ({len(items)}), got {len(gains_db)}: {list(gains_db)}")
    loading = _loading(clip_space)
    waves = [a if isinstance(a, Waveform) else load_audio(a, min_duration=MIN_GUIDE_DURATION, **loading)
             for a in items]
    for i, w in enumerate(waves):
        if w.duration < MIN_GUIDE_DURATION:  # a Waveform given directly
            raise InputError(f"--sound {i + 1}: {w.duration * 1e3:.1f} ms of audio; expected at least "
                             f"{MIN_GUIDE_DURATION:g} s")
    if len(waves) == 1:
        return waves[0]
    if loading["sample_rate"] is not None:  # Waveforms given at other rates: the encoder's resampler, not mix's
        waves = [w.resample(loading["sample_rate"], quality=loading["quality"]) for w in waves]
    return mix(waves, list(gains_db) if gains_db is not None else [0.0] * len(waves))


def check_prompt(text: str | None, what: str = "--text") -> None:
    """A text target must say something: ``None`` (no text) passes, blank text raises ``InputError``."""
    if text is not None and not text.strip():
        raise InputError(f"{what}: expected a prompt, got {text!r}")


def build_target(clip_space: Any, *, audio: AudioLike | list[AudioLike] | None = None,
                 gains_db: list[float] | None = None, text: str | None = None,
                 audio_weight: float = 1.0, text_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, Any]]:
    """The target embedding of one edit.

    Args:
        clip_space: a ``ClipSpace`` (``embed_audio``, ``embed_text``).
        audio: a sound (path/bytes/``Waveform``) or several to mix.
        gains_db: one gain per sound (dB).
        text: a prompt.
        audio_weight, text_weight: weights of a sound+text combination.

    Returns:
        ``(target (1, d) unit norm, description)`` — the description (sounds, gains, text,
        weights, label) goes into the report.

    Raises:
        InputError: neither a sound nor a text, or negative/zero weights.
    """
    if audio is None and not text:
        raise InputError("target: expected a sound (--sound) and/or a text (--text), got neither")
    check_prompt(text)
    check_number(audio_weight, "audio_weight", low=0)
    check_number(text_weight, "text_weight", low=0)
    parts: list[torch.Tensor] = []
    weights: list[float] = []
    info: dict[str, Any] = {}
    labels: list[str] = []
    if audio is not None:
        items = audio if isinstance(audio, (list, tuple)) else [audio]
        wave = load_sound(clip_space, items, gains_db)
        with torch.no_grad():
            parts.append(clip_space.embed_audio(wave).float().reshape(1, -1))
        weights.append(float(audio_weight))
        info["sounds"] = [str(a) if isinstance(a, (str, os.PathLike)) else _label(a) for a in items]
        info["gains_db"] = list(gains_db) if gains_db is not None else [0.0] * len(items)
        labels.append(" + ".join(_label(a) for a in items))
    if text:
        with torch.no_grad():
            parts.append(clip_space.embed_text([text]).float().reshape(1, -1))
        weights.append(float(text_weight))
        info["text"] = text
        labels.append(repr(text))
    if len(parts) > 1:
        if min(weights) < 0 or sum(weights) <= 0:
            raise InputError(f"audio_weight/text_weight: expected non-negative weights with a positive sum, got {weights}")
        info["weights"] = {"audio": weights[0], "text": weights[1]}
    # a single part's weight is irrelevant (the target is normalised); a mix is the weighted sum of unit vectors
    target = parts[0] if len(parts) == 1 else sum(w * F.normalize(p, dim=-1) for w, p in zip(weights, parts))
    info["label"] = " + ".join(labels)
    return F.normalize(target, dim=-1), info
