"""Model loaders: StyleGAN2 generators, the IR-SE50 identity net, audio encoders, CLIP space.

Each loader takes a weights.lock name or a local path.  Imports are lazy so that
using one model does not import the others.
"""

from __future__ import annotations

from soundedit._lazy import lazy_getattr

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

__getattr__ = lazy_getattr("soundedit.models", _LAZY)
