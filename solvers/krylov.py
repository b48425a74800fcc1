"""Batched conjugate gradients in torch: CG, preconditioned CG and flexible CG.

Each solver is a frozen dataclass of hyperparameters; the problem goes to
``solve(A, b, *, x0=None, M=None, callback=None)``. All of them stop a column when

.. math::  \\|b - A x\\|_2 \\le \\max(\\mathrm{rtol}\\,\\|b\\|_2,\\ \\mathrm{atol})

holds for the *true* residual (recomputed before a column is declared converged, replacing the
recursive residual when the check fails, and every ``true_residual_every`` iterations to detect
stagnation at the dtype's precision). A block ``b`` of shape
``(n, k)`` is ``k`` independent solves sharing each operator application; a column that
converges is frozen while the others go on.

References
----------
Hestenes & Stiefel, "Methods of conjugate gradients for solving linear systems", J. Res. NBS 49
(1952). Notay, "Flexible conjugate gradients", SIAM J. Sci. Comput. 22 (2000) (the flexible
variant's Polak-Ribiere beta). Van der Vorst & Ye, "Residual replacement strategies for Krylov
subspace iterative methods", SIAM J. Sci. Comput. 22 (2000).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from neuralsolve.errors import NotSPDError
from neuralsolve.linop import LinearOperator
from neuralsolve.result import SolveResult, Status
from neuralsolve.stencil import StencilOperator
from neuralsolve.validation import PreparedSystem, check_tolerances, prepare_system

from .precond import ApplyFn, make_preconditioner, resolve_preconditioner
from .tracking import Callback, ColumnTracker, IterationInfo, merge_results, rowdot, rownorm

__all__ = ["CG", "FlexibleCG", "require_spd"]


# Vectors of length n a CG column keeps in memory (x, r, p, A p, b, z).
WORKING_VECTORS = 6


@functools.cache
def cpu_cache_bytes() -> int:
    """The largest CPU cache (L2/L3) from Linux sysfs; 32 MiB where it cannot be read."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if level >= 2 and digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or 32 * 2**20


def require_spd(op: LinearOperator, method: str) -> None:
    """Refuse an operator known not to be symmetric positive definite (NotSPDError)."""
    if op.symmetric is False or op.positive_definite is False:
        raise NotSPDError(
            f"{method} needs a symmetric positive definite operator, but A is tagged "
            f"symmetric={op.symmetric}, positive_definite={op.positive_definite}. For a "
            "non-symmetric or indefinite matrix use e.g. scipy.sparse.linalg.gmres or minres; "
            "pass check_spd=False to run anyway (e.g. a consistent singular system)"
        )


def buffered_apply(op: LinearOperator, k: int) -> ApplyFn:
    """``Pt -> A Pt`` for batch-first blocks; for an unmasked stencil it writes into one
    reused buffer (the result is valid until the next call), avoiding a large allocation per
    product."""
    if isinstance(op, StencilOperator) and op.mask is None:
        grid = op.grid_shape
        out = torch.empty((k, *grid), dtype=op.dtype, device=op.device)
        n = op.shape[0]

        def apply(Pt: torch.Tensor) -> torch.Tensor:
            return op.apply_grid(Pt.view(k, *grid), out).view(k, n)

        return apply
    return op.apply_batch


@dataclass(frozen=True, kw_only=True)
class _KrylovBase:
    """Shared hyperparameters and the solve loop of CG and flexible CG."""

    rtol: float = 1e-6
    atol: float = 0.0
    max_iters: int | None = None
    preconditioner: str | None = None
    preconditioner_options: Mapping[str, Any] = field(default_factory=dict)
    true_residual_every: int = 50
    check_spd: bool = True
    column_block: int | str = "auto"

    flexible: ClassVar[bool] = False
    family: ClassVar[str] = "cg"

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol, self.max_iters)
        if not isinstance(self.true_residual_every, int) or self.true_residual_every < 1:
            raise ValueError(
                f"true_residual_every must be a positive integer, got {self.true_residual_every!r}"
            )
        if self.column_block != "auto" and (
            isinstance(self.column_block, bool)
            or not isinstance(self.column_block, int)
            or self.column_block < 1
        ):
            raise ValueError(
                f"column_block must be 'auto' or a positive integer, got {self.column_block!r}"
            )
        if self.preconditioner is not None and not isinstance(self.preconditioner, str):
            raise TypeError(
                f"preconditioner must be a name ('jacobi', 'ic', 'amg') or None, got "
                f"{type(self.preconditioner).__name__}; pass a built preconditioner as M= to solve()"
            )

    @property
    def label(self) -> str:
        prefix = "fcg" if self.flexible else "pcg"
        if self.preconditioner:
            return f"{prefix}-{self.preconditioner}"
        return "fcg" if self.flexible else "cg"

    def solve(
        self,
        A: Any,
        b: Any,
        *,
        x0: Any = None,
        M: Any = None,
        callback: Callback | None = None,
    ) -> SolveResult:
        """Solve ``A x = b``.

        Parameters
        ----------
        A : LinearOperator or matrix
            Symmetric positive definite (see ``check_spd``).
        b : torch.Tensor or numpy.ndarray
            ``(n,)`` or ``(n, k)``.
        x0 : same kind as ``b``, optional
            Initial guess (not modified).
        M : Preconditioner, LinearOperator, matrix or callable, optional
            Preconditioner ``~ A^{-1}`` (exclusive with the ``preconditioner`` field).
        callback : callable, optional
            Called after every iteration with an :class:`IterationInfo`; returning ``True``
            stops the solve with ``Status.CALLBACK_STOP``.

        Returns
        -------
        SolveResult
        """
        t_setup = time.perf_counter()
        system = prepare_system(A, b, x0)
        if self.check_spd:
            require_spd(system.A, self.label)
        if M is not None and self.preconditioner is not None:
            raise ValueError(
                f"got both M= and preconditioner={self.preconditioner!r}: pass one of them"
            )
        extra: dict[str, Any] = {}
        if self.preconditioner is not None:
            built = make_preconditioner(
                self.preconditioner, system.A, **dict(self.preconditioner_options)
            )
            apply_M, extra = resolve_preconditioner(built, system.A)
            extra["preconditioner_setup_s"] = built.setup_s
        else:
            apply_M, extra = resolve_preconditioner(M, system.A)
        setup_s = time.perf_counter() - t_setup
        block = self._column_block(system) if callback is None else system.k
        if system.k <= block:
            return self._iterate(system, apply_M, callback, setup_s, extra)
        parts = [self._iterate(part, apply_M, None, setup_s, extra) for part in system.split(block)]
        return merge_results(parts, system, setup_s=setup_s, column_block=block)

    def _column_block(self, system: PreparedSystem) -> int:
        """How many columns to iterate together (see ``column_block``)."""
        if self.column_block != "auto":
            return int(self.column_block)
        if system.A.device.type != "cpu":
            return system.k
        per_column = system.B.shape[1] * system.B.element_size() * WORKING_VECTORS
        return max(1, min(system.k, cpu_cache_bytes() // 2 // per_column))

    # ------------------------------------------------------------------ the loop
    def _iterate(
        self,
        system: PreparedSystem,
        apply_M: ApplyFn | None,
        callback: Callback | None,
        setup_s: float,
        extra: dict[str, Any],
    ) -> SolveResult:
        op, B = system.A, system.B
        k, n = B.shape
        apply_A = buffered_apply(op, k)
        max_iters = self.max_iters if self.max_iters is not None else 10 * n
        bnorm = rownorm(B)
        X = system.X0 if system.X0 is not None else torch.zeros_like(B)
        zero_rhs = bnorm == 0
        if bool(zero_rhs.any()):
            X[zero_rhs] = 0  # the solution of A x = 0 is 0, whatever x0 was (as in scipy)
        matvecs = 0
        if system.X0 is not None:
            R = B - apply_A(X)
            matvecs += 1
        else:
            R = B.clone()
        rr = rowdot(R, R)
        tracker = ColumnTracker(bnorm, rr.sqrt(), self.rtol, self.atol)
        tracker.matvecs = matvecs
        if tracker.any_active and max_iters > 0:
            self._loop(op, apply_A, apply_M, B, X, R, rr, tracker, max_iters, callback)
        return tracker.conclude(
            system, X, B - apply_A(X), method=self.label, setup_s=setup_s, extra=extra
        )

    def _loop(
        self,
        op: LinearOperator,
        apply_A: ApplyFn,
        apply_M: ApplyFn | None,
        B: torch.Tensor,
        X: torch.Tensor,
        R: torch.Tensor,
        rr: torch.Tensor,
        tracker: ColumnTracker,
        max_iters: int,
        callback: Callback | None,
    ) -> None:
        flexible = self.flexible
        Zbuf = torch.empty_like(R) if apply_M is not None else None  # one buffer for M r
        Z = apply_M(R, Zbuf) if apply_M is not None else R
        rz = rowdot(R, Z) if apply_M is not None else rr
        if apply_M is not None:
            tracker.stop_nonpositive(rz, Status.PRECONDITIONER_INDEFINITE)
        P = Z.clone()
        R_old = torch.empty_like(R) if flexible else None
        while tracker.any_active and tracker.iteration < max_iters:
            tracker.begin_iteration()
            AP = apply_A(P)
            tracker.matvecs += 1
            pAp = rowdot(P, AP)
            stopped = tracker.stop_nonpositive(pAp, Status.INDEFINITE)
            if stopped:  # their x stays as it is: zero the step (0 * NaN would not be 0)
                P[stopped] = 0
                AP[stopped] = 0
            active = tracker.active
            alpha = torch.where(active, rz / pAp, torch.zeros_like(pAp))[:, None]
            if R_old is not None:
                R_old.copy_(R)
            X.addcmul_(P, alpha)
            R.addcmul_(AP, alpha, value=-1.0)
            rr = rowdot(R, R)
            rnorm = rr.sqrt()
            if tracker.iteration % self.true_residual_every == 0:
                tracker.observe_true(rnorm, rownorm(B - apply_A(X)))
                tracker.matvecs += 1
            candidates = tracker.candidates(rnorm)
            restart: list[int] = []
            if candidates:
                R_true = B - apply_A(X)
                true = rownorm(R_true)
                rnorm, replace = tracker.confirm(candidates, rnorm, true)
                if replace:
                    ridx = torch.tensor(replace, device=R.device)
                    R[ridx] = R_true[ridx]
                    rr = rr.index_copy(0, ridx, true[ridx] ** 2)
                    restart = replace
            tracker.record(rnorm, ~active)
            if (
                callback is not None
                and callback(IterationInfo(tracker.iteration, X, rnorm)) is True
            ):
                tracker.stop_all(Status.CALLBACK_STOP)
            if not tracker.any_active:
                break
            Z = apply_M(R, Zbuf) if apply_M is not None else R
            rz_new = rowdot(R, Z) if apply_M is not None else rr
            if apply_M is not None:
                tracker.stop_nonpositive(rz_new, Status.PRECONDITIONER_INDEFINITE)
            if flexible:
                beta = (
                    rz_new - rowdot(R_old, Z)
                ) / rz  # Polak-Ribiere: z.(r - r_old) / z_old.r_old
            else:
                beta = rz_new / rz
            active = tracker.active
            if restart:  # a replaced residual starts a fresh direction: p = z
                beta[restart] = 0
            beta = torch.where(active, beta, torch.zeros_like(beta))[:, None]
            torch.addcmul(Z, P, beta, out=P)
            if not bool(active.all()):
                P[~active] = 0  # frozen columns take no further steps (and carry no NaN)
            rz = rz_new


@dataclass(frozen=True, kw_only=True)
class CG(_KrylovBase):
    """Conjugate gradients, preconditioned when ``preconditioner`` or ``M`` is given.

    Pseudocode (per column; ``M = I`` without a preconditioner)::

        r = b - A x0;  z = M r;  p = z
        repeat:
            alpha = (r.z) / (p.A p)          # stop INDEFINITE if p.A p <= 0
            x += alpha p;  r -= alpha A p
            if ||r|| <= max(rtol ||b||, atol): recompute r = b - A x; stop if it passes
            z = M r;  beta = (r.z)_new / (r.z)_old;  p = z + beta p

    Parameters
    ----------
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol ||b||, atol)`` (true residual).
    max_iters : int, optional
        Default ``10 n``.
    preconditioner : {"jacobi", "ic", "amg"}, optional
        Build this preconditioner from ``A`` at each solve (its time is in ``setup_s``); to
        reuse one across solves, build it once and pass it as ``M``.
    preconditioner_options : mapping
        Keyword arguments of the preconditioner (e.g. ``{"kind": "rs"}`` for AMG).
    true_residual_every : int
        Recompute ``b - A x`` every this many iterations to detect stagnation (the recursive
        residual drifting away from the true one at the dtype's precision).
    check_spd : bool
        Refuse operators tagged not SPD (``NotSPDError``); ``False`` runs anyway.
    column_block : "auto" or int
        For a block ``b`` of ``k`` columns: how many iterate together. ``"auto"``: on a CPU, as
        many as fit in half the largest cache (a 64^3 column needs ~12 MB; iterating 8 of them
        together ran 2x slower than one at a time on a 32 MB-L3 machine, while at 32^3 the
        block ran 1.85x faster); on other devices all of them. ``stats["column_block"]`` says
        what was used. A callback turns blocking off.
    fused : bool
        Run fused iterations compiled with ``torch.compile`` (stencil operators, no
        preconditioner or Jacobi): about 3x less memory traffic per iteration; the first call
        compiles (seconds, reported as ``compile_s`` inside ``setup_s``, cached for the process
        and on disk by torch).

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.poisson((32, 32))
    >>> res = ns.solvers.CG(rtol=1e-8).solve(prob.A, prob.b)
    >>> res.converged
    True
    """

    fused: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fused and self.preconditioner not in (None, "jacobi"):
            raise ValueError(
                f"fused=True supports no preconditioner or 'jacobi', got {self.preconditioner!r}"
            )

    @property
    def label(self) -> str:
        base = super().label
        return f"{base}-fused" if self.fused else base

    def _iterate(
        self,
        system: PreparedSystem,
        apply_M: ApplyFn | None,
        callback: Callback | None,
        setup_s: float,
        extra: dict[str, Any],
    ) -> SolveResult:
        if not self.fused:
            return super()._iterate(system, apply_M, callback, setup_s, extra)
        from .fused import fused_cg

        return fused_cg(self, system, callback, setup_s, extra, user_M=apply_M)


@dataclass(frozen=True, kw_only=True)
class FlexibleCG(_KrylovBase):
    """Flexible preconditioned CG for preconditioners that are not a fixed SPD map.

    Identical to :class:`CG` except for the Polak-Ribiere choice
    ``beta = z_new.(r_new - r_old) / (z_old.r_old)``, which keeps the method convergent when
    ``M`` changes between iterations (an inner iterative solve, a neural network). With a fixed
    SPD ``M`` it matches PCG in exact arithmetic. Same parameters as :class:`CG` (without
    ``fused``).
    """

    flexible: ClassVar[bool] = True
