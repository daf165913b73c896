"""Per-domain presets of the editing hyperparameters (plain data, overridable per flag).

Values are the paper's (Lee et al., CVPR 2022, Sec. 4): faces use the identity
loss and a stronger latent regulariser; scenes (landscape, LSUN church) and art
(WikiArt, which the paper treats like scenes) use a weak regulariser and no
identity term, because "keep the identity" has no meaning for a landscape.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from soundedit.errors import InputError

if TYPE_CHECKING:
    from soundedit.config import EditConfig

#: preset name -> settings; read-only so a caller cannot change the defaults for everyone.
PRESETS = MappingProxyType({
    "faces": MappingProxyType({"lambda_sim": 0.008, "lambda_id": 0.004}),
    "scenes": MappingProxyType({"lambda_sim": 0.002, "lambda_id": 0.0}),
    "art": MappingProxyType({"lambda_sim": 0.002, "lambda_id": 0.0}),
})

#: weights.lock generator name -> its domain's preset (used when no --preset is given).
GENERATOR_PRESETS = MappingProxyType({
    "ffhq-1024": "faces",
    "ffhq-1024-nvidia": "faces",
    "metfaces-1024": "faces",
    "landscape-256": "scenes",
    "church-256": "scenes",
    "afhqdog-512": "scenes",
    "wikiart-1024": "art",
})


def preset_settings(name: str, **overrides: float | None) -> dict[str, float]:
    """The settings of preset ``name`` with every non-``None`` override applied.

    Args:
        name: ``faces``, ``scenes`` or ``art``.
        **overrides: e.g. ``lambda_sim=0.01``; ``None`` keeps the preset's value.

    Raises:
        InputError: unknown preset name.
    """
    if name not in PRESETS:
        raise InputError(f"--preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    settings = dict(PRESETS[name])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def default_preset(generator: str | None) -> str:
    """The preset for a generator name (``faces`` for FFHQ ...); ``scenes`` when unknown."""
    return GENERATOR_PRESETS.get(str(generator), "scenes")


def resolve_config(config: "EditConfig", generator: str | None, **overrides: Any) -> "EditConfig":
    """The effective edit config: ``config``, then ``overrides`` (``None`` = keep), then the preset
    (given, or :func:`default_preset` of the ``generator`` name) filling in lambda_sim/lambda_id.

    One resolution for :meth:`Editor.settings` and for what a batch row's report is compared with.
    """
    cfg = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    preset = cfg.preset or default_preset(generator)
    return dataclasses.replace(cfg, preset=preset,
                               **preset_settings(preset, lambda_sim=cfg.lambda_sim, lambda_id=cfg.lambda_id))
