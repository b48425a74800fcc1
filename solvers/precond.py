"""Preconditioners: set up once from ``A`` (timed), applied to batches many times.

Every preconditioner approximates ``A^{-1}`` by a fixed symmetric positive definite map ``M``
and is used as a *left* preconditioner by PCG: the iteration minimises the A-norm of the error
over the preconditioned Krylov space, and the residual norm it reports and tests is always the
unpreconditioned ``||b - A x||_2``. ``.as_preconditioner()`` returns ``M`` as a
:class:`~neuralsolve.linop.LinearOperator` for any solver that takes ``M=``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from neuralsolve.errors import NotSPDError
from neuralsolve.linop import CallableOperator, LinearOperator, as_operator, same_device

__all__ = [
    "PRECONDITIONERS",
    "AMGPreconditioner",
    "JacobiPreconditioner",
    "Preconditioner",
    "make_preconditioner",
    "resolve_preconditioner",
]


class Preconditioner:
    """Base class: ``M ~ A^{-1}``, SPD, applied batch-first.

    Subclasses set up in ``__init__`` (the wall time lands in ``setup_s``) and implement
    ``apply(Rt)`` for a block ``Rt`` of shape ``(k, n)``.
    """

    name = "identity"

    def __init__(self, A: Any) -> None:
        op = as_operator(A)
        if op.shape[0] != op.shape[1]:
            raise ValueError(f"a preconditioner needs a square operator, got shape {op.shape}")
        self.shape = op.shape
        self.dtype = op.dtype
        self.device = op.device
        self.setup_s = 0.0
        self.info: dict[str, Any] = {}

    def apply(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(M @ Rt.T).T`` for a batch ``Rt`` of shape ``(k, n)``, written into ``out`` when
        given (hot loops pass a buffer they own, so that no large tensor is allocated per
        application)."""
        return Rt.clone() if out is None else out.copy_(Rt)

    def as_preconditioner(self) -> LinearOperator:
        """``M`` as a symmetric positive definite :class:`LinearOperator` (left preconditioner)."""
        return CallableOperator(
            lambda X: self.apply(X.T.contiguous()).T,
            self.shape,
            dtype=self.dtype,
            device=self.device,
            batched=True,
            symmetric=True,
            positive_definite=True,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} n={self.shape[0]} setup_s={self.setup_s:.3g}>"


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


_BLAS_CONTROLLER: Any = None


def single_threaded_blas() -> Any:
    """A context in which numpy's BLAS runs on one thread.

    Inside a torch solve, pyamg's cycle calls numpy's OpenBLAS, whose worker threads keep
    spinning afterwards and starve torch's own threads: on 2 cores this made pcg-amg 2.4x
    slower than pyamg's own solver on a 32^3 problem (0.11 s vs 0.047 s, same 7 iterations;
    0.046 s with one BLAS thread). The limit is scoped: BLAS threads are restored on exit.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def explicit_matrix(A: Any, who: str) -> sp.csr_array:
    """The CSR matrix of ``A`` for set-ups that need entries (IC, AMG, direct solves)."""
    op = as_operator(A)
    mat = op.to_scipy()
    if isinstance(mat, np.ndarray):
        return sp.csr_array(mat)
    if not sp.issparse(mat):
        raise TypeError(
            f"{who} needs the matrix entries, but {type(op).__name__} is matrix-free: pass a "
            "sparse/dense matrix or a gallery operator, or use method='cg' / 'pcg-jacobi'"
        )
    return sp.csr_array(mat)


def _ic(A: Any, **options: Any) -> Preconditioner:
    from .ichol import ICPreconditioner

    return ICPreconditioner(A, **options)


PRECONDITIONERS: dict[str, Callable[..., Preconditioner]] = {
    "jacobi": JacobiPreconditioner,
    "ic": _ic,
    "amg": AMGPreconditioner,
}


def make_preconditioner(name: str, A: Any, **options: Any) -> Preconditioner:
    """Build a preconditioner by name (``"jacobi"``, ``"ic"``, ``"amg"``)."""
    if name not in PRECONDITIONERS:
        raise ValueError(
            f"unknown preconditioner {name!r}; available: {', '.join(PRECONDITIONERS)}"
        )
    return PRECONDITIONERS[name](A, **options)


ApplyFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def resolve_preconditioner(M: Any, A: LinearOperator) -> tuple[ApplyFn | None, dict[str, Any]]:
    """Turn a user's ``M`` into a batch-first apply function ``(Rt, out) -> Zt`` and a
    description for ``stats``. The function may write into ``out`` (and return it) or return a
    new tensor.

    ``M`` may be ``None``, a :class:`Preconditioner`, a :class:`LinearOperator` (or anything
    :func:`as_operator` accepts as a matrix), or a callable ``r -> z`` on single vectors of
    shape ``(n,)`` (applied column by column, as scipy does).
    """
    if M is None:
        return None, {"preconditioner": None}
    if isinstance(M, Preconditioner):
        _check_like(M.shape, M.dtype, M.device, A, "M")
        return M.apply, {"preconditioner": M.name, **M.info}
    if isinstance(M, LinearOperator) or isinstance(M, np.ndarray | torch.Tensor) or sp.issparse(M):
        op = as_operator(M, check=False)
        _check_like(op.shape, op.dtype, op.device, A, "M")
        return (lambda Rt, out=None: op.apply_batch(Rt)), {"preconditioner": type(op).__name__}
    if callable(M):
        n = A.shape[0]

        def apply(Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            zs = []
            for r in Rt:
                z = M(r)
                if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n,):
                    got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                    raise ValueError(
                        f"the preconditioner callable returned {got}; expected a tensor of shape ({n},)"
                    )
                zs.append(z)
            return torch.stack(zs)

        return apply, {"preconditioner": "callable"}
    raise TypeError(
        f"M must be a Preconditioner, a LinearOperator, a matrix or a callable, got {type(M).__name__}"
    )


def _check_like(
    shape: tuple[int, int], dtype: torch.dtype, device: torch.device, A: LinearOperator, name: str
) -> None:
    if tuple(shape) != tuple(A.shape):
        raise ValueError(f"{name} has shape {tuple(shape)} but A is {A.shape}: they must match")
    if dtype != A.dtype:
        raise TypeError(
            f"{name} is {dtype} but A is {A.dtype}: build it from the same operator or convert it"
        )
    if not same_device(device, A.device):
        raise ValueError(f"{name} is on {device} but A is on {A.device}: move one of them")
