"""Preconditioners: set up once from ``A`` (timed), applied to batches many times.

Every preconditioner approximates ``A^{-1}`` by a fixed symmetric positive definite map ``M``
and is used as a *left* preconditioner by PCG: the iteration minimises the A-norm of the error
over the preconditioned Krylov space, and the residual norm it reports and tests is always the
unpreconditioned ``||b - A x||_2``. ``.as_preconditioner()`` returns ``M`` as a
:class:`~neuralsolve.linop.LinearOperator` for any solver that takes ``M=``.

Modules: :mod:`.base` (the :class:`Preconditioner` base class, :func:`resolve_preconditioner`,
shared helpers), :mod:`.jacobi`, :mod:`.ichol` (IC(0)), :mod:`.amg` (pyamg); the registry
:data:`PRECONDITIONERS` and :func:`make_preconditioner` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .amg import AMGPreconditioner
from .base import (
    ApplyFn,
    Preconditioner,
    explicit_matrix,
    resolve_preconditioner,
    single_threaded_blas,
)
from .ichol import ICPreconditioner, ichol0
from .jacobi import JacobiPreconditioner

__all__ = [
    "PRECONDITIONERS",
    "AMGPreconditioner",
    "ApplyFn",
    "ICPreconditioner",
    "JacobiPreconditioner",
    "Preconditioner",
    "explicit_matrix",
    "ichol0",
    "make_preconditioner",
    "resolve_preconditioner",
    "single_threaded_blas",
]

PRECONDITIONERS: dict[str, Callable[..., Preconditioner]] = {
    "jacobi": JacobiPreconditioner,
    "ic": ICPreconditioner,
    "amg": AMGPreconditioner,
}


def make_preconditioner(name: str, A: Any, **options: Any) -> Preconditioner:
    """Build a preconditioner by name (``"jacobi"``, ``"ic"``, ``"amg"``)."""
    if name not in PRECONDITIONERS:
        raise ValueError(
            f"unknown preconditioner {name!r}; available: {', '.join(PRECONDITIONERS)}"
        )
    return PRECONDITIONERS[name](A, **options)
