"""Jacobi: diagonal scaling, ``M = diag(A)^{-1}``."""

from __future__ import annotations

import time
from typing import Any

import torch

from neuralsolve.errors import NotSPDError
from neuralsolve.linop import as_operator

from .base import Preconditioner

__all__ = ["JacobiPreconditioner"]


class JacobiPreconditioner(Preconditioner):
    """Diagonal scaling ``M = diag(A)^{-1}``.

    Raises
    ------
    NotSPDError
        If a diagonal entry is not positive (then ``A`` is not SPD and ``M`` would not be).
    """

    name = "jacobi"

    def __init__(self, A: Any) -> None:
        super().__init__(A)
        t0 = time.perf_counter()
        d = as_operator(A).diagonal()
        bad = torch.nonzero(~(d > 0)).reshape(-1)
        if bad.numel():
            i = int(bad[0])
            raise NotSPDError(
                f"Jacobi needs a positive diagonal, but A[{i}, {i}] = {float(d[i]):.4g} "
                f"({bad.numel()} entries <= 0): A is not SPD"
            )
        self.inv_diagonal = 1.0 / d
        self.setup_s = time.perf_counter() - t0

    def apply(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return (
            torch.mul(Rt, self.inv_diagonal, out=out) if out is not None else Rt * self.inv_diagonal
        )
