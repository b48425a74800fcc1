"""The solver protocol every linear solver follows, and its one base dataclass.

A solver is a frozen dataclass of hyperparameters (CONVENTIONS 3). Its work is split in two, in
the style of lineax's ``init`` / ``compute``:

* :meth:`SolverBase.setup` validates ``A`` and builds everything that depends on ``A`` only (an
  incomplete Cholesky factor, an AMG hierarchy, a deflation space, a loaded network), once;
* :meth:`PreparedSolver.solve` solves for one right-hand side or a block of them, as often as
  wanted, with what ``setup`` built.

``solver.solve(A, b)`` is the one-call entry, ``setup(A)`` then ``solve(b)``::

    prepared = CG(preconditioner="ic", rtol=1e-8).setup(A)   # factor once
    for b in right_hand_sides:
        res = prepared.solve(b)                              # solve many

Every solver stops a column when ``||b - A x||_2 <= max(rtol ||b||_2, atol)`` holds for its
true residual, and returns a :class:`~neuralsolve.SolveResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from neuralsolve.errors import NotSPDError
from neuralsolve.linop import LinearOperator
from neuralsolve.result import SolveResult
from neuralsolve.validation import PreparedSystem, check_tolerances, prepare_operator, prepare_rhs

from .convergence import Callback

__all__ = ["PreparedSolver", "Solver", "SolverBase", "require_spd"]


def require_spd(op: LinearOperator, method: str) -> None:
    """Refuse an operator known not to be symmetric positive definite (NotSPDError)."""
    if op.symmetric is False or op.positive_definite is False:
        raise NotSPDError(
            f"{method} needs a symmetric positive definite operator, but A is tagged "
            f"symmetric={op.symmetric}, positive_definite={op.positive_definite}. For a "
            "non-symmetric or indefinite matrix use e.g. scipy.sparse.linalg.gmres or minres; "
            "pass check_spd=False to run anyway (e.g. a consistent singular system)"
        )


@runtime_checkable
class Solver(Protocol):
    """What :func:`~neuralsolve.solve`, the benchmark and the CLI rely on."""

    rtol: float
    atol: float
    max_iters: int | None

    @property
    def label(self) -> str:
        """The method's name in results (``stats["method"]``)."""
        ...

    def setup(self, A: Any, *, M: Any = None) -> PreparedSolver:
        """Validate ``A`` and build what depends on it only."""
        ...

    def solve(
        self, A: Any, b: Any, *, x0: Any = None, M: Any = None, callback: Callback | None = None
    ) -> SolveResult:
        """``setup(A, M=M).solve(b, x0=x0, callback=callback)``."""
        ...


@dataclass(frozen=True, kw_only=True)
class SolverBase:
    """The hyperparameters every solver shares, and the set-up / solve split.

    Parameters
    ----------
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol ||b||, atol)`` on the true residual.
    max_iters : int, optional
        Iteration limit (each solver documents its default).
    check_spd : bool
        Refuse operators tagged not symmetric positive definite (``NotSPDError``); ``False``
        runs anyway (e.g. a consistent singular system).

    Notes
    -----
    Subclasses implement :meth:`_setup` (the ``A``-dependent work, returning a context) and
    :meth:`_solve` (one validated block of right-hand sides with that context).
    """

    rtol: float = 1e-6
    atol: float = 0.0
    max_iters: int | None = None
    check_spd: bool = True

    #: whether the method needs A to be SPD (``check_spd`` then refuses operators tagged not SPD)
    needs_spd: ClassVar[bool] = True
    #: whether the method calls a per-iteration callback
    takes_callback: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol, self.max_iters)

    @property
    def label(self) -> str:
        raise NotImplementedError

    def setup(self, A: Any, *, M: Any = None) -> PreparedSolver:
        """Validate ``A`` and build what depends on it only, once.

        Parameters
        ----------
        A : LinearOperator or matrix
            The operator (see :func:`~neuralsolve.as_operator`).
        M : optional
            A preconditioner, for the methods that take one.

        Returns
        -------
        PreparedSolver
            Solve with it as often as wanted; ``setup_s`` is the time spent here.
        """
        t0 = time.perf_counter()
        op = prepare_operator(A)
        if self.check_spd and self.needs_spd:
            require_spd(op, self.label)
        context = self._setup(op, M)
        return PreparedSolver(self, op, context, time.perf_counter() - t0)

    def solve(
        self, A: Any, b: Any, *, x0: Any = None, M: Any = None, callback: Callback | None = None
    ) -> SolveResult:
        """Solve ``A x = b``: :meth:`setup` then :meth:`PreparedSolver.solve`.

        Parameters
        ----------
        A : LinearOperator or matrix
        b : torch.Tensor or numpy.ndarray
            ``(n,)`` or ``(n, k)``; the answer comes back as the same kind.
        x0 : same kind as ``b``, optional
            Initial guess (not modified).
        M : optional
            Preconditioner ``~ A^{-1}``, for the methods that take one.
        callback : callable, optional
            Called after every iteration with an
            :class:`~neuralsolve.solvers.IterationInfo`; returning ``True`` stops the solve
            with ``Status.CALLBACK_STOP``.

        Returns
        -------
        SolveResult
        """
        self._check_callback(callback)
        return self.setup(A, M=M).solve(b, x0=x0, callback=callback)

    def _check_callback(self, callback: Callback | None) -> None:
        if callback is not None and not self.takes_callback:
            raise ValueError(
                f"{self.label} does not take a callback (it runs inside scipy/pyamg); use a torch "
                "method such as 'cg' for per-iteration callbacks"
            )

    def _setup(self, op: LinearOperator, M: Any) -> Any:
        raise NotImplementedError

    def _solve(
        self,
        system: PreparedSystem,
        context: Any,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        raise NotImplementedError


@dataclass(frozen=True)
class PreparedSolver:
    """A solver set up for one operator: :meth:`solve` as many right-hand sides as wanted.

    Attributes
    ----------
    solver : SolverBase
        The hyperparameters.
    A : LinearOperator
        The validated operator.
    context : object
        What the solver's set-up built (preconditioner, deflation space, network, ...).
    setup_s : float
        Seconds the set-up took; every result reports it as ``stats["setup_s"]`` (plus the
        validation of its own right-hand sides).
    """

    solver: SolverBase
    A: LinearOperator
    context: Any
    setup_s: float

    def solve(self, b: Any, *, x0: Any = None, callback: Callback | None = None) -> SolveResult:
        """Solve ``A x = b`` with the prepared operator (see :meth:`SolverBase.solve`)."""
        self.solver._check_callback(callback)
        t0 = time.perf_counter()
        system = prepare_rhs(self.A, b, x0)
        setup_s = self.setup_s + time.perf_counter() - t0
        return self.solver._solve(system, self.context, callback, setup_s)
