"""Algebraic multigrid: one cycle of a pyamg hierarchy as preconditioner."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .base import Preconditioner, explicit_matrix, single_threaded_blas

__all__ = ["AMGPreconditioner"]


class AMGPreconditioner(Preconditioner):
    """One algebraic-multigrid V-cycle of a pyamg hierarchy as preconditioner.

    Parameters
    ----------
    A : operator or matrix
        Must have an explicit matrix (sparse, dense or stencil; ``to_scipy()`` gives CSR).
    kind : {"sa", "rs"}
        pyamg's smoothed aggregation (default) or Ruge-Stuben hierarchy.
    cycle : {"V", "W", "F"}
        Cycle type.
    **options
        Passed to ``pyamg.smoothed_aggregation_solver`` / ``ruge_stuben_solver``.

    Notes
    -----
    The cycle runs in pyamg's compiled smoothers on the CPU (its symmetric Gauss-Seidel makes
    the V-cycle symmetric, so it is a valid PCG preconditioner); tensors on another device
    travel through host memory for each application. Iteration counts then match pyamg's own
    ``solve(..., accel="cg")``.
    """

    name = "amg"

    def __init__(self, A: Any, *, kind: str = "sa", cycle: str = "V", **options: Any) -> None:
        super().__init__(A)
        import pyamg

        if kind not in ("sa", "rs"):
            raise ValueError(
                f"unknown AMG kind {kind!r}: use 'sa' (smoothed aggregation) or 'rs' (Ruge-Stuben)"
            )
        if cycle not in ("V", "W", "F"):
            raise ValueError(f"unknown cycle {cycle!r}: use 'V', 'W' or 'F'")
        t0 = time.perf_counter()
        mat = explicit_matrix(A, "AMG")
        build = pyamg.smoothed_aggregation_solver if kind == "sa" else pyamg.ruge_stuben_solver
        self.hierarchy = build(mat, **options)
        self._M = self.hierarchy.aspreconditioner(cycle=cycle)
        self._np_dtype = mat.dtype
        self.setup_s = time.perf_counter() - t0
        self.info = {
            "amg_kind": kind,
            "levels": len(self.hierarchy.levels),
            "operator_complexity": float(self.hierarchy.operator_complexity()),
        }

    def apply(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        R = Rt.detach().cpu().numpy()
        with single_threaded_blas():
            Z = np.stack([self._M.matvec(np.ascontiguousarray(r, dtype=self._np_dtype)) for r in R])
        Zt = torch.from_numpy(Z).to(device=Rt.device, dtype=Rt.dtype)
        return Zt if out is None else out.copy_(Zt)
