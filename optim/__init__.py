"""Optimizers, curvature tools, schedules and the one Trainer that trains every model.

* optimizers (torch.optim contract): :class:`Muon`, :class:`MFAC`, :class:`Sophia`,
  :class:`AdaHessian`, :class:`AdamP`, :class:`DiffGrad`, :class:`DCTLowRank`, :class:`LBFGS`;
  by name with :func:`create`; :func:`matrix_dims` marks a parameter as a stack of
  matrices for Muon;
* :mod:`neuralsolve.optim.curvature`: Hessian / GGN / Fisher operators, Hutchinson, Lanczos, SLQ;
* :mod:`neuralsolve.optim.schedules`: warm-up + linear decay (default), cosine, WSD, constant;
* :class:`Trainer` / :class:`TrainerConfig`: the training loop (progress, JSONL metrics, atomic
  checkpoints, exact resume, DDP under torchrun; :func:`close_distributed` ends a DDP run on
  every rank together, and runs at exit when the Trainer opened the process group).
"""

from neuralsolve.params import matrix_dims

from . import curvature, schedules
from .adam_family import AdamP, DiffGrad
from .hessian_diagonal import AdaHessian, Sophia, gnb_loss
from .lbfgs import LBFGS
from .lowrank import DCTLowRank, dct_matrix
from .mfac import MFAC
from .muon import Muon, newton_schulz
from .registry import OPTIMIZERS, available, create
from .schedules import make_schedule
from .trainer import (
    ScheduleExtendedWarning,
    TornRecordWarning,
    Trainer,
    TrainerConfig,
    TrainResult,
    close_distributed,
)

__all__ = [
    "LBFGS",
    "MFAC",
    "OPTIMIZERS",
    "AdaHessian",
    "AdamP",
    "DCTLowRank",
    "DiffGrad",
    "Muon",
    "ScheduleExtendedWarning",
    "Sophia",
    "TornRecordWarning",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "available",
    "close_distributed",
    "create",
    "curvature",
    "dct_matrix",
    "gnb_loss",
    "make_schedule",
    "matrix_dims",
    "newton_schulz",
    "schedules",
]
