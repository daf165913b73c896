"""Contrastive losses of alignment training (the paper's InfoNCE terms).

For a batch of N pairs (x_i, y_i) of L2-normalised embeddings and logit scale s = 1/τ:

    L(x<->y) = 1/N Σ_i [ l_i(x->y) + l_i(y->x) ],  l_i(x->y) = -log softmax_j(s <x_i, y_j>)[i]

Rows that share a target (``groups``: e.g. two clips of the same class with the
same prompt) are all positives of each other, with the target mass split evenly,
so the loss does not push a clip away from its own class's text.  With all groups
distinct this is exactly the formula above.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soundedit.training.distributed import all_gather_nograd, all_gather_with_grad


def info_nce(x: torch.Tensor, y: torch.Tensor, logit_scale: torch.Tensor | float, *,
             groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between matched rows of ``x`` and ``y``.

    Args:
        x: ``(N, d)`` embeddings (normalised by the caller).
        y: ``(N, d)`` embeddings; row i is x_i's positive.
        logit_scale: s = 1/τ multiplying cosine similarities.
        groups: optional ``(N,)`` integer ids; rows with equal ids are positives of each other.

    Returns:
        Scalar ``mean_i l_i(x->y) + mean_i l_i(y->x)``.
    """
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"info_nce: expected two (N, d) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    logits = logit_scale * (x @ y.t())  # (N, N): row i = x_i against every y_j
    n = x.shape[0]
    if groups is None:
        labels = torch.arange(n, device=x.device)
        return F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
    positive = (groups[:, None] == groups[None, :]).to(logits.dtype)
    target = positive / positive.sum(dim=1, keepdim=True)  # symmetric matrix, so the same for both directions
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


class AlignmentLoss(nn.Module):
    """L_total = w_t L(a<->t) + w_v L(a<->v) + w_a L(a<->â), each term only when its modality is given.

    Holds the CLIP-style logit scale: stored as log(s) like CLIP, learnable or
    fixed, clamped to ``max_logit_scale``.

    Args:
        logit_scale: initial s (CLIP: 1/0.07 ≈ 14.3).
        learnable: train log(s) (a parameter) or keep it fixed (a buffer).
        max_logit_scale: clamp of s (CLIP: 100).
        weight_text, weight_image, weight_augment: term weights.
    """

    def __init__(self, *, logit_scale: float = 1 / 0.07, learnable: bool = True, max_logit_scale: float = 100.0,
                 weight_text: float = 1.0, weight_image: float = 1.0, weight_augment: float = 1.0) -> None:
        super().__init__()
        if not 0 < logit_scale <= max_logit_scale:
            raise ValueError(f"logit_scale: expected 0 < s <= max_logit_scale={max_logit_scale}, got {logit_scale}")
        init = torch.tensor(math.log(logit_scale))
        if learnable:
            self.log_logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_logit_scale", init)
        self.max_logit_scale = max_logit_scale
        self.weights = {"text": weight_text, "image": weight_image, "augment": weight_augment}

    @property
    def logit_scale(self) -> torch.Tensor:
        """s = exp(log s), clamped to ``max_logit_scale``."""
        return self.log_logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(self, audio: torch.Tensor, *, text: torch.Tensor | None = None, image: torch.Tensor | None = None,
                audio_aug: torch.Tensor | None = None, text_groups: torch.Tensor | None = None,
                image_groups: torch.Tensor | None = None, gather: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms.

        Args:
            audio: ``(n, d)`` audio embeddings a (this rank's rows; normalised here).
            text: ``(n, d)`` frozen CLIP text embeddings t, or ``None``.
            image: ``(n, d)`` frozen CLIP image embeddings v, or ``None``.
            audio_aug: ``(n, d)`` embeddings â of the SpecAugment view, or ``None``.
            text_groups, image_groups: ``(n,)`` int64 ids; equal ids are shared targets.
            gather: under ``torch.distributed``, gather all ranks' rows (gradient-preserving)
                so the loss is the global batch's.

        Returns:
            ``(total, terms)`` with terms ``{"text"|"image"|"augment": float}`` (unweighted).
        """
        gather_grad = all_gather_with_grad if gather else (lambda t: t)
        gather_fixed = all_gather_nograd if gather else (lambda t: t)
        a = gather_grad(F.normalize(audio.float(), dim=-1))
        scale = self.logit_scale
        terms: dict[str, torch.Tensor] = {}
        if text is not None and self.weights["text"]:
            groups = None if text_groups is None else gather_fixed(text_groups)
            terms["text"] = info_nce(a, gather_fixed(F.normalize(text.float(), dim=-1)), scale, groups=groups)
        if image is not None and self.weights["image"]:
            groups = None if image_groups is None else gather_fixed(image_groups)
            terms["image"] = info_nce(a, gather_fixed(F.normalize(image.float(), dim=-1)), scale, groups=groups)
        if audio_aug is not None and self.weights["augment"]:
            terms["augment"] = info_nce(a, gather_grad(F.normalize(audio_aug.float(), dim=-1)), scale)
        if not terms:
            raise ValueError("AlignmentLoss: no term to compute (give text, image or audio_aug with a non-zero weight)")
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}
