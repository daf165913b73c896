"""Learning-rate schedules of the latent optimisation."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RampSchedule:
    """StyleCLIP's schedule: linear warm-up, flat, then a cosine ramp-down to 0.

    ``lr(t) = base · min(1, t / rampup) · (0.5 − 0.5·cos(π · min(1, (1 − t) / rampdown)))``
    with ``t = step / steps`` in [0, 1). Like StyleCLIP (and the paper's code) the
    first step has ``lr = 0``; the warm-up keeps Adam's first, badly estimated
    moments from throwing the code far from the source.

    Args:
        rampup: fraction of the run spent warming up (0 disables warm-up).
        rampdown: fraction of the run spent ramping down (0 disables ramp-down).
    """

    rampup: float = 0.05
    rampdown: float = 0.25

    def __call__(self, step: int, steps: int, base_lr: float) -> float:
        t = step / max(steps, 1)
        down = 1.0 if self.rampdown <= 0 else min(1.0, (1.0 - t) / self.rampdown)
        down = 0.5 - 0.5 * math.cos(down * math.pi)
        up = 1.0 if self.rampup <= 0 else min(1.0, t / self.rampup)
        return base_lr * down * up


@dataclass(frozen=True)
class ConstantSchedule:
    """A fixed learning rate (useful in tests and ablations)."""

    def __call__(self, step: int, steps: int, base_lr: float) -> float:
        return base_lr
