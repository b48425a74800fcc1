"""Learning-rate schedules as torch LR schedulers.

Each is a ``torch.optim.lr_scheduler.LambdaLR`` whose factor is a small callable object, so the
schedule is saved in the scheduler's ``state_dict`` and a resumed run continues it exactly.

* ``"linear"`` (the default): linear warm-up from 0 over ``warmup_steps``, then linear decay
  to 0 at ``total_steps``. Defazio et al. (2023, arXiv 2310.07831) show linear decay is
  worst-case optimal for the last iterate and matches or beats cosine in practice.
* ``"cosine"``: warm-up, then half a cosine down to ``min_factor``.
* ``"wsd"`` (warm-up, stable, decay): warm-up, constant, then a linear decay to 0 over the last
  ``decay_fraction`` of the steps.
* ``"constant"``: warm-up, then constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neuralsolve.checks import check_int, check_positive_int

__all__ = ["SCHEDULES", "ScheduleFactor", "make_schedule"]

SCHEDULES = ("linear", "cosine", "wsd", "constant")


@dataclass(frozen=True)
class ScheduleFactor:
    """The multiplier of the base learning rate at a step (a picklable callable)."""

    kind: str
    total_steps: int
    warmup_steps: int = 0
    min_factor: float = 0.0
    decay_fraction: float = 0.2

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        after = step - self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, after / span))
        if self.kind == "linear":
            return max(0.0, 1.0 - progress)
        if self.kind == "cosine":
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (
                1.0 + math.cos(math.pi * progress)
            )
        decay_start = self.total_steps - round(self.decay_fraction * self.total_steps)
        if step < decay_start:
            return 1.0
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))


def make_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    min_factor: float = 0.0,
    decay_fraction: float = 0.2,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler by name (see the module notes), stepped once per optimizer step."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; available: {', '.join(SCHEDULES)}")
    check_positive_int("total_steps", total_steps)
    check_int("warmup_steps", warmup_steps, minimum=0, maximum=total_steps)
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
    factor = ScheduleFactor(name, total_steps, warmup_steps, min_factor, decay_fraction)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
