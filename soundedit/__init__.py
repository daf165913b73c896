"""soundedit: edit images with sound (Sound-Guided Semantic Image Manipulation, CVPR 2022).

The public API is small and loaded lazily, so ``import soundedit`` is cheap::

    import soundedit as se
    wav = se.load_audio("rain.wav")
    G = se.load_generator("landscape-256")
    editor = se.Editor.from_pretrained(generator="landscape-256", audio_encoder="authors-resnet18")
    result = editor.edit(audio="rain.wav", source=3)

Everything not in ``__all__`` is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "Waveform": "soundedit.audio",
    "load_audio": "soundedit.audio",
    "load_generator": "soundedit.models",
    "load_identity_net": "soundedit.models",
    "load_audio_encoder": "soundedit.models",
    "load_clip_space": "soundedit.models",
    "Editor": "soundedit.editing",
    "EditResult": "soundedit.editing",
    "optimize_latent": "soundedit.editing",
    "AudioConfig": "soundedit.config",
    "EncoderConfig": "soundedit.config",
    "EditConfig": "soundedit.config",
    "TrainConfig": "soundedit.config",
    "SoundeditError": "soundedit.errors",
    "InputError": "soundedit.errors",
    "AudioError": "soundedit.errors",
    "CheckpointError": "soundedit.errors",
    "WeightsError": "soundedit.errors",
}
_SUBMODULES = {"audio", "models", "editing", "weights", "text", "training", "evaluation", "inversion", "config"}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"soundedit.{name}")
    raise AttributeError(f"module 'soundedit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)
