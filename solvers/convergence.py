"""Convergence control shared by every iterative loop (CG, fused CG, DCDM).

A loop calls :func:`start` for its first iterate and residual, then, per iteration,
:meth:`ConvergenceControl.begin_iteration`, its own update of ``x`` and ``r``, and
:meth:`ConvergenceControl.end_iteration`, which makes the periodic and confirming true-residual
checks, records the history and calls the user's callback; it hands back the columns whose
recursive residual the loop must replace by the true one. :meth:`ConvergenceControl.conclude`
makes the :class:`~neuralsolve.SolveResult`.

Each right-hand side (a row of the batch-first block) converges on its own: when its recursive
residual passes the tolerance, the true residual ``b - A x`` is recomputed; the column is done
only if the true residual passes too, otherwise the recursive residual is replaced by the true one
and the iteration goes on. The true residual is also recomputed every ``true_residual_every``
iterations to watch the gap between the two (without replacing: CG's recurrence stays the
textbook one, as in scipy). Three checks in a row where rounding dominates and the true residual
did not halve end the column with ``Status.STAGNATION`` (the dtype's floor is above the tolerance).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from neuralsolve.result import SolveResult, Status, combine_status

__all__ = [
    "ConvergenceControl",
    "IterationInfo",
    "Replacement",
    "merge_results",
    "rowdot",
    "rownorm",
    "start",
]

STALL_CHECKS = 3
STALL_FACTOR = 0.5


def rowdot(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Dot products of matching rows of two ``(k, n)`` blocks, shape ``(k,)``.

    One ``torch.dot`` per row: rows are contiguous, and this is several times faster than a
    reduction over a block (measured).
    """
    if X.shape[0] == 1:
        return torch.dot(X[0], Y[0]).reshape(1)
    return torch.stack([torch.dot(x, y) for x, y in zip(X, Y, strict=True)])


def rownorm(X: torch.Tensor) -> torch.Tensor:
    """2-norms of the rows of a ``(k, n)`` block, shape ``(k,)``."""
    return torch.linalg.vector_norm(X, dim=1)


@dataclass(frozen=True)
class IterationInfo:
    """What a callback receives after each iteration.

    Attributes
    ----------
    iteration : int
        Iterations done so far (1 after the first).
    x : torch.Tensor
        The current iterate, batch-first ``(k, n)`` (a view: do not modify it).
    residual_norms : torch.Tensor
        ``(k,)`` current residual norms.
    """

    iteration: int
    x: torch.Tensor
    residual_norms: torch.Tensor


Callback = Callable[[IterationInfo], object]
ApplyFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Replacement:
    """Columns whose true residual failed a convergence check: the loop sets their recursive
    residual to the true one (and restarts their direction where its recurrence needs it).

    Attributes
    ----------
    columns : list of int
        The columns to replace.
    index : torch.Tensor
        The same, as an index tensor on the residual's device.
    residual : torch.Tensor
        The true residual ``B - A X`` of every column, in the loop's own layout.
    norms : torch.Tensor
        ``(k,)`` its row norms.
    """

    columns: list[int]
    index: torch.Tensor
    residual: torch.Tensor
    norms: torch.Tensor


def _norms(R: torch.Tensor) -> torch.Tensor:
    """Row norms of a block in any layout whose first axis is the column."""
    return torch.linalg.vector_norm(R.reshape(R.shape[0], -1), dim=1)


class LoopSettings(Protocol):
    """The hyperparameters :func:`start` reads from a solver."""

    rtol: float
    atol: float
    true_residual_every: int


def start(
    settings: LoopSettings,
    B: torch.Tensor,
    X0: torch.Tensor | None,
    apply_A: ApplyFn,
    *,
    max_iters: int,
    deflation: Any = None,
) -> tuple[ConvergenceControl, torch.Tensor, torch.Tensor]:
    """The first iterate, its residual and the control of a loop over ``(k, n)`` blocks.

    ``X`` is ``X0`` (the caller's private copy, updated in place) or zeros; a column whose
    right-hand side is zero starts (and ends) at ``x = 0``, whatever ``x0`` was (as in scipy).
    ``R = B - A X``, one product counted only when ``X0`` is given. With a ``deflation``
    (:class:`~neuralsolve.solvers.deflation.BlockDeflation`) the iterating columns then get
    the coarse correction, so that ``Z^T R = 0`` (one more product).

    Parameters
    ----------
    settings : solver
        Its ``rtol``, ``atol`` and ``true_residual_every``.
    B, X0 : torch.Tensor
        Right-hand sides and initial guesses (or ``None``), ``(k, n)``.
    apply_A : callable
        ``X -> A X`` on ``(k, n)`` blocks.
    max_iters : int
        The iteration limit.

    Returns
    -------
    control : ConvergenceControl
    X, R : torch.Tensor
        ``(k, n)`` blocks the loop owns.
    """
    bnorm = rownorm(B)
    X = X0 if X0 is not None else torch.zeros_like(B)
    zero_rhs = bnorm == 0
    if bool(zero_rhs.any()):
        X[zero_rhs] = 0
    R = B - apply_A(X) if X0 is not None else B.clone()
    control = ConvergenceControl(
        bnorm,
        rownorm(R),
        settings.rtol,
        settings.atol,
        max_iters=max_iters,
        true_residual_every=settings.true_residual_every,
        matvecs=int(X0 is not None),
    )
    if deflation is not None and control.any_active:
        R = deflation.correct_start(B, X, R, control.active, apply_A)
        control.matvecs += 1
    return control, X, R


class ConvergenceControl:
    """Statuses, iteration counts, residual history and timing of a batch of solves.

    Parameters
    ----------
    bnorm : torch.Tensor
        ``(k,)`` norms of the right-hand sides.
    r0norm : torch.Tensor
        ``(k,)`` norms of the initial residuals.
    rtol, atol : float
        The stopping rule ``||b - A x|| <= max(rtol ||b||, atol)``.
    max_iters : int
        The iteration limit (:attr:`running` turns false there).
    true_residual_every : int
        :meth:`end_iteration` recomputes ``b - A x`` every this many iterations.
    matvecs : int
        Products already spent (``b - A x0``).
    """

    def __init__(
        self,
        bnorm: torch.Tensor,
        r0norm: torch.Tensor,
        rtol: float,
        atol: float,
        *,
        max_iters: int,
        true_residual_every: int,
        matvecs: int = 0,
    ) -> None:
        self.k = bnorm.numel()
        self.bnorm = bnorm
        self.tol = torch.clamp(rtol * bnorm, min=atol)
        self.tol_host = self.tol.cpu().numpy()
        self.max_iters = max_iters
        self.true_residual_every = true_residual_every
        self.status: list[Status | None] = [None] * self.k
        self.iterations = [0] * self.k
        self.history: list[torch.Tensor] = [r0norm.clone()]
        self.last = r0norm.clone()
        self.best_true = np.full(self.k, np.inf)
        self.stalls = np.zeros(self.k, dtype=np.int64)
        self.t0 = time.perf_counter()
        self.elapsed = [0.0]
        self.matvecs = matvecs
        r0 = r0norm.cpu().numpy()
        for j in range(self.k):
            if not np.isfinite(r0[j]):
                self.status[j] = Status.NON_FINITE
            elif r0[j] <= self.tol_host[j]:
                self.status[j] = Status.SUCCESS
        self.iteration = 0

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> torch.Tensor:
        """``(k,)`` bool tensor on the device: columns still iterating."""
        return torch.tensor([s is None for s in self.status], device=self.tol.device)

    @property
    def any_active(self) -> bool:
        return any(s is None for s in self.status)

    @property
    def running(self) -> bool:
        """Some column is still iterating and the iteration limit is not reached."""
        return self.any_active and self.iteration < self.max_iters

    def active_list(self) -> list[int]:
        return [j for j, s in enumerate(self.status) if s is None]

    def stop(self, columns: list[int], status: Status) -> None:
        for j in columns:
            if self.status[j] is None:
                self.status[j] = status

    def stop_all(self, status: Status) -> None:
        self.stop(self.active_list(), status)

    def stop_nonpositive(self, values: torch.Tensor, status: Status) -> list[int]:
        """Stop active columns whose ``values`` (a curvature ``p.Ap`` or an inner product
        ``r.z``) is not positive: with ``status``, or ``NON_FINITE`` for NaN/inf. Returns them."""
        v = values.cpu().numpy()
        bad = [j for j in self.active_list() if not (v[j] > 0)]
        for j in bad:
            self.status[j] = status if np.isfinite(v[j]) else Status.NON_FINITE
        return bad

    # ------------------------------------------------------------------ per iteration
    def begin_iteration(self) -> None:
        self.iteration += 1
        for j in self.active_list():
            self.iterations[j] = self.iteration

    def candidates(self, rnorm: torch.Tensor) -> list[int]:
        """Active columns whose recursive residual passes the tolerance (or is not finite)."""
        r = rnorm.cpu().numpy()
        return [j for j in self.active_list() if not (r[j] > self.tol_host[j])]

    def check_true(
        self, columns: list[int], recursive: torch.Tensor, true_norm: torch.Tensor
    ) -> tuple[list[int], list[int]]:
        """Judge candidate columns by their true residual; return (converged, to_replace).

        A candidate whose true residual fails the test counts as a stall unless the true
        residual at least halved since the best one seen.
        """
        t = true_norm.cpu().numpy()
        done, replace = [], []
        for j in columns:
            if not np.isfinite(t[j]):
                self.status[j] = Status.NON_FINITE
            elif t[j] <= self.tol_host[j]:
                self.status[j] = Status.SUCCESS
                done.append(j)
            else:
                self._note(j, t[j], stalled=not t[j] < STALL_FACTOR * self.best_true[j])
                replace.append(j)
        return done, replace

    def confirm(
        self, columns: list[int], recursive: torch.Tensor, true_norm: torch.Tensor
    ) -> tuple[torch.Tensor, list[int]]:
        """:meth:`check_true` on the candidate ``columns`` after one product ``b - A x`` (counted
        here). Returns the norms to record (the true ones for the candidates) and the columns
        whose recursive residual the caller must replace by the true one."""
        self.matvecs += 1
        _, replace = self.check_true(columns, recursive, true_norm)
        idx = torch.tensor(columns, device=recursive.device)
        return recursive.index_copy(0, idx, true_norm[idx]), replace

    def observe_true(self, recursive: torch.Tensor, true_norm: torch.Tensor) -> None:
        """A periodic true-residual check of the active columns. A column stalls when its
        recursive residual has drifted below half the true one (rounding dominates) and the true
        residual did not halve since the best one seen."""
        r, t = recursive.cpu().numpy(), true_norm.cpu().numpy()
        for j in self.active_list():
            if not np.isfinite(t[j]):
                self.status[j] = Status.NON_FINITE
                continue
            drift = r[j] < 0.5 * t[j]
            self._note(j, t[j], stalled=drift and not t[j] < STALL_FACTOR * self.best_true[j])

    def _note(self, j: int, true: float, *, stalled: bool) -> None:
        self.best_true[j] = min(self.best_true[j], true)
        self.stalls[j] = self.stalls[j] + 1 if stalled else 0
        if self.stalls[j] >= STALL_CHECKS:
            self.status[j] = Status.STAGNATION

    def record(self, rnorm: torch.Tensor, frozen: torch.Tensor) -> None:
        """Append this iteration's norms; columns in ``frozen`` (bool ``(k,)``) keep their last."""
        self.last = torch.where(frozen, self.last, rnorm)
        self.history.append(self.last.clone())
        self.elapsed.append(time.perf_counter() - self.t0)

    def end_iteration(
        self,
        rnorm: torch.Tensor,
        frozen: torch.Tensor,
        *,
        true_residual: Callable[[], torch.Tensor],
        iterate: Callable[[], torch.Tensor],
        callback: Callback | None,
    ) -> Replacement | None:
        """Close an iteration: the checks on the true residual, the history, the callback.

        Parameters
        ----------
        rnorm : torch.Tensor
            ``(k,)`` recursive residual norms after this iteration's step.
        frozen : torch.Tensor
            ``(k,)`` bool: columns that took no step (they keep their last recorded norm).
        true_residual : callable
            ``() -> B - A X`` in the loop's layout (first axis the column); called every
            ``true_residual_every`` iterations and when a column's recursive residual passes
            the tolerance. Each call counts one product.
        iterate : callable
            ``() -> X`` as ``(k, n)``, for the callback.
        callback : callable or None
            Called with an :class:`IterationInfo`; returning ``True`` stops every column with
            ``Status.CALLBACK_STOP``.

        Returns
        -------
        Replacement or None
            The columns whose true residual did not pass: the loop must replace their
            recursive residual by ``Replacement.residual``.
        """
        if self.iteration % self.true_residual_every == 0:
            self.observe_true(rnorm, _norms(true_residual()))
            self.matvecs += 1
        replacement = None
        candidates = self.candidates(rnorm)
        if candidates:
            R_true = true_residual()
            true = _norms(R_true)
            rnorm, replace = self.confirm(candidates, rnorm, true)
            if replace:
                index = torch.tensor(replace, device=R_true.device)
                replacement = Replacement(replace, index, R_true, true)
        self.record(rnorm, frozen)
        if (
            callback is not None
            and callback(IterationInfo(self.iteration, iterate(), rnorm)) is True
        ):
            self.stop_all(Status.CALLBACK_STOP)
        return replacement

    # ------------------------------------------------------------------ result
    def conclude(
        self,
        system: Any,
        Xt: torch.Tensor,
        R_final: torch.Tensor,
        *,
        method: str,
        setup_s: float,
        extra: dict[str, Any],
    ) -> SolveResult:
        """The result of a loop, given its iterate ``Xt`` and the true final residual
        ``R_final = B - A Xt`` (both batch-first, one product already counted here)."""
        self.matvecs += 1
        true = torch.linalg.vector_norm(R_final.reshape(self.k, -1), dim=1)
        bn = self.bnorm
        rel = torch.where(bn > 0, true / torch.where(bn > 0, bn, 1), true)
        op = system.A
        extra = {
            **extra,
            "k": self.k,
            "column_block": self.k,
            "dtype": str(op.dtype).replace("torch.", ""),
            "device": str(op.device),
        }
        return self.finish(
            system.wrap(Xt),
            method=method,
            setup_s=setup_s,
            extra=extra,
            rel_residual=float(rel.max()),
        )

    def finish(
        self,
        x: object,
        *,
        method: str,
        setup_s: float,
        extra: dict[str, object],
        rel_residual: float,
    ) -> SolveResult:
        self.stop_all(Status.MAX_ITERATIONS)
        statuses = tuple(s if s is not None else Status.MAX_ITERATIONS for s in self.status)
        hist = torch.stack(self.history).cpu().numpy()
        single = self.k == 1
        stats: dict[str, object] = {
            "method": method,
            "setup_s": setup_s,
            "solve_s": time.perf_counter() - self.t0,
            "matvecs": self.matvecs,
            "rel_residual": rel_residual,
            "elapsed": list(self.elapsed),
        }
        stats.update(extra)
        return SolveResult(
            x=x,
            status=combine_status(statuses),
            iterations=max(self.iterations) if self.iterations else 0,
            residual_norms=hist[:, 0] if single else hist,
            stats=stats,
            column_status=None if single else statuses,
            column_iterations=None if single else tuple(self.iterations),
        )


def merge_results(
    parts: list[SolveResult], system: Any, *, setup_s: float, column_block: int
) -> SolveResult:
    """One result from the results of solving a block's columns group by group.

    Histories of different lengths are padded with each column's last value; the solve time
    is the sum over the groups, and the per-iteration times are spread evenly over it.
    """
    statuses: list[Status] = []
    iterations: list[int] = []
    histories = []
    for p in parts:
        statuses += list(p.column_status) if p.column_status is not None else [p.status]
        iterations += (
            list(p.column_iterations) if p.column_iterations is not None else [p.iterations]
        )
        histories.append(
            p.residual_norms if p.residual_norms.ndim == 2 else p.residual_norms[:, None]
        )
    length = max(h.shape[0] for h in histories)
    hist = np.concatenate(
        [np.concatenate([h, np.repeat(h[-1:], length - h.shape[0], axis=0)]) for h in histories],
        axis=1,
    )
    X = torch.cat([p.x for p in parts], dim=1)  # (n, k)
    solve_s = sum(float(p.stats["solve_s"]) for p in parts)
    stats = dict(parts[0].stats)
    stats.update(
        setup_s=setup_s,
        solve_s=solve_s,
        matvecs=sum(int(p.stats["matvecs"]) for p in parts),
        rel_residual=max(float(p.stats["rel_residual"]) for p in parts),
        elapsed=list(np.linspace(0.0, solve_s, length)),
        k=len(statuses),
        column_block=column_block,
    )
    return SolveResult(
        x=system.wrap(X.T),
        status=combine_status(statuses),
        iterations=max(iterations),
        residual_norms=hist,
        stats=stats,
        column_status=tuple(statuses),
        column_iterations=tuple(iterations),
    )
