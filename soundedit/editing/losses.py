"""The three terms of the editing loss, each returned per batch item.

Per-item losses (shape ``(N,)``) are what make batched editing equal to N single
runs: the optimiser minimises their sum, and since no term mixes items and Adam
is element-wise, each item's code follows the same path it would alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance(embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − cos(embedding_i, target_i)`` per item.

    Args:
        embedding: ``(N, d)``.
        target: ``(N, d)`` or ``(d,)`` (broadcast).

    Returns:
        ``(N,)`` in [0, 2].
    """
    return 1 - F.cosine_similarity(embedding, target.expand_as(embedding), dim=-1)


def layer_distances(w: torch.Tensor, w_source: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance of each W+ layer to the source: ``(N, L, D) -> (N, L)``."""
    return (w - w_source).pow(2).sum(dim=-1)


def similarity_loss(w: torch.Tensor, w_source: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ_l weight_l · ‖w_l − w_s,l‖²`` per item.

    Args:
        w, w_source: ``(N, L, D)`` W+ codes.
        weights: ``(N, L)`` per-layer weights (see :class:`~soundedit.editing.gates.LayerWeights`).

    Returns:
        ``(total (N,), per_layer (N, L))`` — the per-layer terms feed the authors' gate rule.
    """
    per_layer = weights * layer_distances(w, w_source)
    return per_layer.sum(dim=1), per_layer


def identity_loss(source_embedding: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """``1 − cos(R(G(w_s)), R(G(w)))`` per item; inputs ``(N, 512)`` from ``IdentityNet.embed_faces``."""
    return cosine_distance(embedding, source_embedding)
