"""Optimizers by name: ``create("muon", model.parameters(), lr=0.02)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from ._common import Check, OptimizerContract, beta_pair, nonnegative, positive
from .adam_family import AdamP, DiffGrad
from .hessian_diagonal import AdaHessian, Sophia
from .lbfgs import LBFGS
from .lowrank import DCTLowRank
from .mfac import MFAC
from .muon import Muon

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "available", "create"]

_ADAM_CHECKS: dict[str, Check] = {
    "lr": nonnegative,
    "betas": beta_pair,
    "eps": positive,
    "weight_decay": nonnegative,
}


class Adam(OptimizerContract, torch.optim.Adam):
    """``torch.optim.Adam`` whose parameter groups are validated like ours (torch checks only
    the defaults: a group with ``lr=-1`` or ``betas=(1.0, 0.999)`` ran)."""

    hyperparameter_checks: ClassVar[dict[str, Check]] = _ADAM_CHECKS


class AdamW(OptimizerContract, torch.optim.AdamW):
    """``torch.optim.AdamW`` whose parameter groups are validated like ours."""

    hyperparameter_checks: ClassVar[dict[str, Check]] = _ADAM_CHECKS


class SGD(OptimizerContract, torch.optim.SGD):
    """``torch.optim.SGD`` whose parameter groups are validated like ours."""

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "momentum": nonnegative,
        "weight_decay": nonnegative,
    }


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "muon": Muon,
    "mfac": MFAC,
    "sophia": Sophia,
    "adahessian": AdaHessian,
    "adamp": AdamP,
    "diffgrad": DiffGrad,
    "dct-lowrank": DCTLowRank,
    "lbfgs": LBFGS,
    # torch's own (their groups validated), for baselines and the Trainer's default
    "adam": Adam,
    "adamw": AdamW,
    "sgd": SGD,
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
