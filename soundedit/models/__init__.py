"""Model loaders: StyleGAN2 generators, the IR-SE50 identity net, audio encoders, CLIP space.

Each loader takes a weights.lock name or a local path.  Imports are lazy so that
using one model does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load_generator": "soundedit.models.stylegan2.loading",
    "Generator": "soundedit.models.stylegan2.generator",
    "load_identity_net": "soundedit.models.identity",
    "IdentityNet": "soundedit.models.identity",
    "load_audio_encoder": "soundedit.models.audio_encoder",
    "AudioEncoder": "soundedit.models.audio_encoder",
    "load_clip_space": "soundedit.models.clip_space",
    "ClipSpace": "soundedit.models.clip_space",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'soundedit.models' has no attribute {name!r}")
