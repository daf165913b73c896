"""Per-layer weights of the latent-similarity term ("adaptive layer masking").

The paper's regulariser is ``λ_sim · Σ_l σ(g_l) · ‖w_l − w_s,l‖²`` with a gate
``g_l`` per W+ layer trained together with ``w``.  Taken literally that is
degenerate: gradient descent on the loss lowers every ``σ(g_l)`` towards 0 and
simply switches the regulariser off.  The ``adaptive`` mode here keeps the
*total* regularisation fixed and only lets the gates redistribute it:

    weight_l = L · softmax(b · tanh(θ))_l        (L = n_latent, mean weight 1)

* The fixed budget (mean 1) means ``λ_sim`` keeps its meaning: with all gates
  equal the term is the plain L2 of ``uniform`` mode, and the gates can only
  move regularisation from the layers the edit needs to change (large
  ``‖w_l − w_s,l‖``) to the ones it does not.
* The bound ``b = ln(max_ratio) / 2`` keeps the most regularised layer at most
  ``max_ratio`` times the least.  Without it the minimiser of a linear function
  over the simplex puts the whole budget on the one layer that moved least,
  which would again disable the regulariser everywhere else.

``authors`` reproduces the released code's hand-written rule for comparison
(gates start at 1, weight ``σ(g_l)``, and after each step
``g_l ← g_l − 0.1 · s_l · (1 − s_l)`` with ``s_l`` the layer's weighted
distance), generalised from their fixed 14 layers to any ``n_latent``.
``uniform`` is plain L2 (all weights 1).  A tensor gives fixed weights.
"""

from __future__ import annotations

import math

import torch

from soundedit.errors import InputError

MASK_MODES = ("adaptive", "uniform", "authors")


class LayerWeights:
    """The per-item, per-layer weights of the similarity term for one optimisation.

    Args:
        mode: ``"adaptive"``, ``"uniform"``, ``"authors"``, or a tensor of fixed
            weights, shape ``(n_latent,)`` or ``(n_items, n_latent)``.
        n_items: batch size N.
        n_latent: number of W+ layers L (read from the generator).
        device: where the weights live.
        max_ratio: ``adaptive`` only: bound on the largest/smallest weight ratio.

    Attributes:
        params: trainable tensors to optimise with ``w`` (empty unless adaptive).
    """

    def __init__(self, mode: str | torch.Tensor, *, n_items: int, n_latent: int,
                 device: torch.device | str = "cpu", max_ratio: float = 10.0) -> None:
        self.n_items, self.n_latent = n_items, n_latent
        self.params: list[torch.Tensor] = []
        if isinstance(mode, torch.Tensor):
            fixed = mode.detach().to(device=device, dtype=torch.float32)
            if fixed.shape not in ((n_latent,), (n_items, n_latent)):
                raise InputError(f"layer_mask: expected a tensor of shape ({n_latent},) or ({n_items}, {n_latent}), "
                                 f"got {tuple(fixed.shape)}")
            if (fixed < 0).any():
                raise InputError("layer_mask: weights must be non-negative")
            self.mode = "fixed"
            self._fixed = fixed.expand(n_items, n_latent).clone()
            return
        if mode not in MASK_MODES:
            raise InputError(f"layer_mask: expected one of {', '.join(MASK_MODES)} or a tensor, got {mode!r}")
        if max_ratio < 1:
            raise InputError(f"max_ratio: expected >= 1, got {max_ratio}")
        self.mode = mode
        self._bound = math.log(max_ratio) / 2
        if mode == "adaptive":
            # θ = 0: every weight starts at 1, i.e. the optimisation starts as plain L2.
            self.theta = torch.zeros(n_items, n_latent, device=device, requires_grad=True)
            self.params = [self.theta]
        elif mode == "authors":
            self.gate = torch.ones(n_items, n_latent, device=device)  # their torch.ones(14)
        else:
            self._fixed = torch.ones(n_items, n_latent, device=device)

    def weights(self) -> torch.Tensor:
        """Current weights, shape ``(N, n_latent)``; differentiable in adaptive mode."""
        if self.mode == "adaptive":
            logits = self._bound * torch.tanh(self.theta)
            return self.n_latent * torch.softmax(logits, dim=1)
        if self.mode == "authors":
            return torch.sigmoid(self.gate)
        return self._fixed

    def gates(self) -> torch.Tensor:
        """The raw gate values ``(N, n_latent)`` for reports (θ, g, or the fixed weights)."""
        if self.mode == "adaptive":
            return self.theta.detach().clone()
        if self.mode == "authors":
            return self.gate.clone()
        return self._fixed.clone()

    @torch.no_grad()
    def after_step(self, weighted_layer_loss: torch.Tensor) -> None:
        """Apply the authors' hand-written update (no-op in the other modes).

        Args:
            weighted_layer_loss: ``(N, n_latent)`` — ``weight_l · ‖w_l − w_s,l‖²``
                of the step just taken (before λ_sim, as in their code).
        """
        if self.mode == "authors":
            s = weighted_layer_loss.detach()
            self.gate -= 0.1 * s * (1 - s)
