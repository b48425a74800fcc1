"""What every solver returns: :class:`SolveResult` and the :class:`Status` of a solve."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConvergenceError

__all__ = ["SolveResult", "Status"]


class Status(enum.Enum):
    """How a solve ended. ``str(status)`` says what happened and what to try.

    The value is a short machine-readable name (used in JSON), the ``message`` a sentence for
    people.
    """

    SUCCESS = "success"
    MAX_ITERATIONS = "max_iterations"
    INDEFINITE = "indefinite"
    PRECONDITIONER_INDEFINITE = "preconditioner_indefinite"
    NON_FINITE = "non_finite"
    STAGNATION = "stagnation"
    CALLBACK_STOP = "callback_stop"
    NOT_CONVERGED = "not_converged"

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def converged(self) -> bool:
        return self is Status.SUCCESS

    def __str__(self) -> str:
        return f"{self.value}: {self.message}"


_MESSAGES = {
    Status.SUCCESS: "converged: ||b - A x|| <= max(rtol * ||b||, atol) for the true residual",
    Status.MAX_ITERATIONS: (
        "reached max_iters before the tolerance; raise max_iters, loosen rtol, or use a "
        "preconditioner (e.g. method='pcg-amg')"
    ),
    Status.INDEFINITE: (
        "curvature p·Ap <= 0: the operator is not positive definite; check the matrix (sign, "
        "boundary conditions) or use a method for indefinite systems such as "
        "scipy.sparse.linalg.minres"
    ),
    Status.PRECONDITIONER_INDEFINITE: (
        "r·M r <= 0: the preconditioner is not positive definite; use an SPD preconditioner, "
        "or the flexible method 'fcg' for a preconditioner that is not a fixed SPD map"
    ),
    Status.NON_FINITE: (
        "a NaN or infinite value appeared (overflow, or a preconditioner or callable that "
        "returned NaN); the last finite iterate is returned"
    ),
    Status.STAGNATION: (
        "the true residual stopped decreasing before the tolerance was met, usually because "
        "rtol is below what the dtype can reach (float32 gives about 1e-6 relative); use "
        "float64 or loosen rtol"
    ),
    Status.CALLBACK_STOP: "the callback asked to stop",
    Status.NOT_CONVERGED: (
        "the method finished but its answer does not meet the tolerance (an ill-conditioned "
        "system for a direct solve, or an external solver's own stopping rule)"
    ),
}


@dataclass(frozen=True)
class SolveResult:
    """The outcome of a linear solve.

    Attributes
    ----------
    x : torch.Tensor or numpy.ndarray
        The solution, of the shape, dtype, device and array type of ``b`` (numpy in, numpy out).
    status : Status
        How the solve ended; for several right-hand sides the first failure among the columns,
        ``SUCCESS`` only when every column converged.
    iterations : int
        Iterations done (the most over the columns).
    residual_norms : numpy.ndarray
        ``||r_k||`` for ``k = 0 .. iterations``, shape ``(iterations + 1,)``, or
        ``(iterations + 1, k)`` for ``k`` right-hand sides (a converged column keeps its last
        value). Entry 0 is ``||b - A x0||``; the last entry of a converged column is the true
        residual recomputed from ``x``.
    stats : dict
        ``method``, ``setup_s``, ``solve_s``, ``matvecs``, ``rel_residual`` (true
        ``||b - A x|| / ||b||``, the worst column), ``elapsed`` (seconds at each entry of
        ``residual_norms``) and method-specific entries.
    column_status, column_iterations : tuple or None
        Per right-hand side when ``b`` has shape ``(n, k)``; ``None`` for a single vector.
    """

    x: Any
    status: Status
    iterations: int
    residual_norms: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    column_status: tuple[Status, ...] | None = None
    column_iterations: tuple[int, ...] | None = None

    @property
    def converged(self) -> bool:
        """``True`` when every right-hand side met the tolerance."""
        return self.status is Status.SUCCESS

    def raise_for_status(self) -> SolveResult:
        """Raise :class:`~neuralsolve.errors.ConvergenceError` unless the solve converged.

        Returns ``self`` so that ``x = solve(A, b).raise_for_status().x`` reads naturally.
        """
        if not self.converged:
            method = self.stats.get("method", "the solver")
            raise ConvergenceError(
                f"{method} did not converge after {self.iterations} iterations "
                f"(relative residual {self.stats.get('rel_residual', float('nan')):.3e}): "
                f"{self.status}",
                self,
            )
        return self

    def __repr__(self) -> str:
        rel = self.stats.get("rel_residual", float("nan"))
        return (
            f"SolveResult(status={self.status.value}, iterations={self.iterations}, "
            f"rel_residual={rel:.3e}, method={self.stats.get('method')!r}, "
            f"solve_s={self.stats.get('solve_s', float('nan')):.4g})"
        )


def combine_status(statuses: Sequence[Status]) -> Status:
    """The overall status of several columns: ``SUCCESS`` only if all succeeded, else the
    first failure (in column order)."""
    for s in statuses:
        if s is not Status.SUCCESS:
            return s
    return Status.SUCCESS
