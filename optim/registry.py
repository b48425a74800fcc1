"""Optimizers by name: ``create("muon", model.parameters(), lr=0.02)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .adam_family import AdamP, DiffGrad
from .hessian_diagonal import AdaHessian, Sophia
from .lbfgs import LBFGS
from .lowrank import DCTLowRank
from .mfac import MFAC
from .muon import Muon

__all__ = ["OPTIMIZERS", "available", "create"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "muon": Muon,
    "mfac": MFAC,
    "sophia": Sophia,
    "adahessian": AdaHessian,
    "adamp": AdamP,
    "diffgrad": DiffGrad,
    "dct-lowrank": DCTLowRank,
    "lbfgs": LBFGS,
    # torch's own, for baselines and the Trainer's default
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def available() -> list[str]:
    """The registered optimizer names."""
    return list(OPTIMIZERS)


def create(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """An optimizer by name; unknown names and arguments raise errors that list the valid ones."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    try:
        return cls(params, **kwargs)
    except TypeError as exc:
        import inspect

        valid = [
            p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params")
        ]
        raise TypeError(
            f"bad arguments for optimizer {name!r} ({exc}); valid: {', '.join(valid)}"
        ) from None
