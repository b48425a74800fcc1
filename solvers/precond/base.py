"""The preconditioner base class, and what every preconditioner and solver shares: the
matrix entries for set-ups that need them, single-threaded BLAS for pyamg's cycles, and
:func:`resolve_preconditioner` (a user's ``M=`` -> a batch-first apply function).

Every preconditioner approximates ``A^{-1}`` by a fixed symmetric positive definite map ``M``
and is used as a *left* preconditioner by PCG: the iteration minimises the A-norm of the error
over the preconditioned Krylov space, and the residual norm it reports and tests is always the
unpreconditioned ``||b - A x||_2``. ``.as_preconditioner()`` returns ``M`` as a
:class:`~neuralsolve.linop.LinearOperator` for any solver that takes ``M=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from neuralsolve.linop import CallableOperator, LinearOperator, as_operator, same_device

__all__ = [
    "ApplyFn",
    "Preconditioner",
    "explicit_matrix",
    "resolve_preconditioner",
    "single_threaded_blas",
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
