"""Sound- and text-guided editing of StyleGAN2 latents in CLIP space.

Public entry points: :func:`optimize_latent` (the pure optimisation),
:class:`Editor` (models + sources + targets + presets), :class:`EditResult`,
:class:`MixResult`, and the helpers :func:`build_target`, :func:`resolve_source`,
:func:`style_mix`, :func:`parse_layers`, :func:`interpolate`, :data:`PRESETS`.
Submodules import torch, so they load on first attribute access.
"""

from __future__ import annotations

from soundedit._lazy import lazy_getattr

_LAZY = {
    "optimize_latent": "soundedit.editing.optimize",
    "Editor": "soundedit.editing.editor",
    "EditResult": "soundedit.editing.result",
    "MixResult": "soundedit.editing.result",
    "LayerWeights": "soundedit.editing.gates",
    "RampSchedule": "soundedit.editing.schedules",
    "build_target": "soundedit.editing.targets",
    "resolve_source": "soundedit.editing.sources",
    "style_mix": "soundedit.editing.mixing",
    "parse_layers": "soundedit.editing.mixing",
    "default_layers": "soundedit.editing.mixing",
    "interpolate": "soundedit.editing.mixing",
    "PRESETS": "soundedit.editing.presets",
    "preset_settings": "soundedit.editing.presets",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr("soundedit.editing", _LAZY)
