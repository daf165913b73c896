"""What an edit returns: :class:`EditResult` (tensors, history, metrics) and how it is saved."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class EditResult:
    """The outcome of :func:`~soundedit.editing.optimize_latent` or :meth:`Editor.edit` for N items.

    Attributes:
        w_plus: ``(N, n_latent, style_dim)`` edited W+ codes (CPU).
        w_source: ``(N, n_latent, style_dim)`` the codes the edits started from.
        image: ``(N, 3, H, W)`` edited images in about [-1, 1].
        source_image: ``(N, 3, H, W)`` the source images.
        target: ``(N, d)`` target embeddings.
        history: per-step loss terms ``clip``, ``sim``, ``id``, ``total`` (``(steps, N)``) and ``lr`` (``(steps,)``).
        gates: ``(N, n_latent)`` final raw gates (θ for adaptive, g for authors).
        layer_weights: ``(N, n_latent)`` final per-layer weights of the similarity term.
        frames: ``[(step, uint8 (N, 3, h, w))]`` intermediate images (at most 256 px), for ``progress.gif``.
        metrics: final per-item values (``(N,)``): ``target_cosine`` (edited image to target),
            ``source_target_cosine``, ``source_cosine`` (edited to source image in CLIP space),
            ``latent_distance``, and ``identity_cosine`` when an identity net was used.
        settings: the optimisation's hyperparameters.
        seconds: wall time of the optimisation loop.
        meta: per-result description the caller adds (sources, sounds, text, models, seeds);
            per-item values are lists of length N.
    """

    w_plus: torch.Tensor
    w_source: torch.Tensor
    image: torch.Tensor
    source_image: torch.Tensor
    target: torch.Tensor
    history: dict[str, torch.Tensor]
    gates: torch.Tensor
    layer_weights: torch.Tensor
    frames: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.w_plus.shape[0]

    def item(self, i: int) -> "EditResult":
        """The i-th edit of a batch as its own single-item result."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"EditResult.item: index {i} out of range for {n} items")
        sl = slice(i, i + 1) if i >= 0 else slice(n + i, n + i + 1)
        meta = {k: (v[sl] if isinstance(v, list) and len(v) == n else v) for k, v in self.meta.items()}
        return dataclasses.replace(
            self, w_plus=self.w_plus[sl], w_source=self.w_source[sl], image=self.image[sl],
            source_image=self.source_image[sl], target=self.target[sl],
            history={k: (v if k == "lr" else v[:, sl]) for k, v in self.history.items()},
            gates=self.gates[sl], layer_weights=self.layer_weights[sl],
            frames=[(s, f[sl]) for s, f in self.frames], metrics={k: v[sl] for k, v in self.metrics.items()},
            meta=meta)

    def final_losses(self) -> dict[str, list[float]]:
        """The last step's loss terms per item (empty lists after 0 steps)."""
        return {k: (v[-1].tolist() if v.shape[0] else []) for k, v in self.history.items() if k != "lr"}

    def report(self) -> dict[str, Any]:
        """A JSON-able summary: settings, meta, versions, final losses, metrics, gates."""
        from soundedit.editing.report import build_report

        return build_report(self)

    def save(self, out_dir: str | os.PathLike, **kwargs: Any) -> dict[str, Path]:
        """Write the outputs (see :func:`soundedit.editing.report.save_result`); returns name -> path."""
        from soundedit.editing.report import save_result

        return save_result(self, out_dir, **kwargs)


@dataclass
class MixResult:
    """A sound-guided and a text-guided edit of one source, mixed by layer range.

    Attributes:
        edits: the two edits (item 0 sound-guided, item 1 text-guided).
        w_plus: ``(1, n_latent, style_dim)`` the mixed code.
        image: ``(1, 3, H, W)`` the mixed image.
        layers: per W+ layer, which code it came from (``sound``/``text``/``source``).
        interpolation: ``(n, 3, H, W)`` images from the sound- to the text-guided code, or ``None``.
        metrics: ``sound_cosine``/``text_cosine`` of the mixed image to each target, ``(1,)``.
    """

    edits: EditResult
    w_plus: torch.Tensor
    image: torch.Tensor
    layers: list[str]
    interpolation: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def source_image(self) -> torch.Tensor:
        return self.edits.source_image[0:1]

    def report(self) -> dict[str, Any]:
        from soundedit.editing.report import build_mix_report

        return build_mix_report(self)

    def save(self, out_dir: str | os.PathLike, **kwargs: Any) -> dict[str, Path]:
        """Write the mix outputs (see :func:`soundedit.editing.report.save_mix`); returns name -> path."""
        from soundedit.editing.report import save_mix

        return save_mix(self, out_dir, **kwargs)
