"""Batched conjugate gradients in torch: CG, preconditioned CG and flexible CG.

Each solver is a frozen dataclass of hyperparameters (:class:`~.base.SolverBase`); the problem
goes to ``solve(A, b, *, x0=None, M=None, callback=None)``, or to ``setup(A)`` once and then
``solve(b)`` for each right-hand side. All of them stop a column when

.. math::  \\|b - A x\\|_2 \\le \\max(\\mathrm{rtol}\\,\\|b\\|_2,\\ \\mathrm{atol})

holds for the *true* residual (recomputed before a column is declared converged, replacing the
recursive residual when the check fails, and every ``true_residual_every`` iterations to detect
stagnation at the dtype's precision). A block ``b`` of shape
``(n, k)`` is ``k`` independent solves sharing each operator application; a column that
converges is frozen while the others go on.

References
----------
Hestenes & Stiefel, "Methods of conjugate gradients for solving linear systems", J. Res. NBS 49
(1952). Saad, Yeung, Erhel & Guyomarc'h, "A deflated version of the conjugate gradient
algorithm", SIAM J. Sci. Comput. 21 (2000) (``deflation_block``). Notay, "Flexible conjugate
gradients", SIAM J. Sci. Comput. 22 (2000) (the flexible variant's Polak-Ribiere beta). Van der
Vorst & Ye, "Residual replacement strategies for Krylov subspace iterative methods", SIAM J.
Sci. Comput. 22 (2000).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from neuralsolve.checks import check_positive_int
from neuralsolve.linop import LinearOperator
from neuralsolve.result import SolveResult, Status
from neuralsolve.stencil import StencilOperator
from neuralsolve.validation import PreparedSystem

from .base import SolverBase
from .convergence import Callback, ConvergenceControl, merge_results, rowdot, start
from .deflation import BlockDeflation, check_deflation_block
from .fused import fused_cg
from .precond import ApplyFn, make_preconditioner, resolve_preconditioner

__all__ = ["CG", "FlexibleCG"]


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


@dataclass
class KrylovSetup:
    """What a CG-family solver builds from ``A`` once (see :meth:`SolverBase.setup`).

    Attributes
    ----------
    preconditioner : object or None
        The preconditioner built from ``preconditioner=``, or the ``M`` given to set-up.
    apply_M : callable or None
        ``(R, out) -> M R`` for batch-first blocks; ``None`` without a preconditioner.
    deflation : BlockDeflation or None
        The coarse space, with ``deflation_block``.
    extra : dict
        What the set-up reports in ``stats`` (preconditioner, its set-up seconds, ...).
    """

    preconditioner: Any
    apply_M: ApplyFn | None
    deflation: BlockDeflation | None
    extra: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class _KrylovBase(SolverBase):
    """Shared hyperparameters and the solve loop of CG and flexible CG."""

    preconditioner: str | None = None
    preconditioner_options: Mapping[str, Any] = field(default_factory=dict)
    true_residual_every: int = 50
    column_block: int | str = "auto"
    deflation_block: int | None = None

    flexible: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("true_residual_every", self.true_residual_every)
        if self.column_block != "auto":
            check_positive_int("column_block ('auto' or a count)", self.column_block)
        if self.preconditioner is not None and not isinstance(self.preconditioner, str):
            raise TypeError(
                f"preconditioner must be a name ('jacobi', 'ic', 'amg') or None, got "
                f"{type(self.preconditioner).__name__}; pass a built preconditioner as M= to solve()"
            )
        check_deflation_block(self.deflation_block)

    @property
    def label(self) -> str:
        prefix = "fcg" if self.flexible else "pcg"
        if self.preconditioner:
            name = f"{prefix}-{self.preconditioner}"
        else:
            name = "fcg" if self.flexible else "cg"
        return f"{name}-deflated" if self.deflation_block is not None else name

    def _setup(self, op: LinearOperator, M: Any) -> KrylovSetup:
        """The preconditioner (``preconditioner`` or ``M``) and the deflation space."""
        if M is not None and self.preconditioner is not None:
            raise ValueError(
                f"got both M= and preconditioner={self.preconditioner!r}: pass one of them"
            )
        if self.preconditioner is not None:
            built = make_preconditioner(
                self.preconditioner, op, **dict(self.preconditioner_options)
            )
            apply_M, extra = resolve_preconditioner(built, op)
            extra["preconditioner_setup_s"] = built.setup_s
            M = built
        else:
            apply_M, extra = resolve_preconditioner(M, op)
        deflation = None
        if self.deflation_block is not None:
            deflation = BlockDeflation(op, self.deflation_block)
            extra.update(deflation.info)
        return KrylovSetup(M, apply_M, deflation, extra)

    def _solve(
        self,
        system: PreparedSystem,
        context: KrylovSetup,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        block = self._column_block(system) if callback is None else system.k
        if system.k <= block:
            return self._iterate(system, context, callback, setup_s)
        parts = [self._iterate(part, context, None, setup_s) for part in system.split(block)]
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
        context: KrylovSetup,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        op, B = system.A, system.B
        k, n = B.shape
        apply_A = buffered_apply(op, k)
        max_iters = self.max_iters if self.max_iters is not None else 10 * n
        deflation = context.deflation
        control, X, R = start(self, B, system.X0, apply_A, max_iters=max_iters, deflation=deflation)
        if control.running:
            self._loop(apply_A, context.apply_M, deflation, B, X, R, control, callback)
        return control.conclude(
            system, X, B - apply_A(X), method=self.label, setup_s=setup_s, extra=context.extra
        )

    def _loop(
        self,
        apply_A: ApplyFn,
        apply_M: ApplyFn | None,
        deflation: BlockDeflation | None,
        B: torch.Tensor,
        X: torch.Tensor,
        R: torch.Tensor,
        control: ConvergenceControl,
        callback: Callback | None,
    ) -> None:
        flexible = self.flexible

        def deflated(Z: torch.Tensor) -> torch.Tensor:
            """``z - W E^{-1} W^T A z``: the new direction's part A-orthogonal to the coarse
            space (Saad, Yeung, Erhel, Guyomarc'h 2000); ``z`` itself without deflation."""
            if deflation is None:
                return Z
            control.matvecs += 1
            return deflation.project(Z, apply_A(Z))

        rr = rowdot(R, R)
        Zbuf = torch.empty_like(R) if apply_M is not None else None  # one buffer for M r
        Z = apply_M(R, Zbuf) if apply_M is not None else R
        rz = rowdot(R, Z) if apply_M is not None else rr
        if apply_M is not None:
            control.stop_nonpositive(rz, Status.PRECONDITIONER_INDEFINITE)
        P = deflated(Z).clone()
        R_old = torch.empty_like(R) if flexible else None
        while control.running:
            control.begin_iteration()
            AP = apply_A(P)
            control.matvecs += 1
            pAp = rowdot(P, AP)
            stopped = control.stop_nonpositive(pAp, Status.INDEFINITE)
            if stopped:  # their x stays as it is: zero the step (0 * NaN would not be 0)
                P[stopped] = 0
                AP[stopped] = 0
            active = control.active
            alpha = torch.where(active, rz / pAp, torch.zeros_like(pAp))[:, None]
            if R_old is not None:
                R_old.copy_(R)
            X.addcmul_(P, alpha)
            R.addcmul_(AP, alpha, value=-1.0)
            rr = rowdot(R, R)
            replaced = control.end_iteration(
                rr.sqrt(),
                ~active,
                true_residual=lambda: B - apply_A(X),
                iterate=lambda: X,
                callback=callback,
            )
            if replaced is not None:  # a replaced residual starts a fresh direction: p = z
                R[replaced.index] = replaced.residual[replaced.index]
                rr = rr.index_copy(0, replaced.index, replaced.norms[replaced.index] ** 2)
            if not control.any_active:
                break
            Z = apply_M(R, Zbuf) if apply_M is not None else R
            rz_new = rowdot(R, Z) if apply_M is not None else rr
            if apply_M is not None:
                control.stop_nonpositive(rz_new, Status.PRECONDITIONER_INDEFINITE)
            if flexible:
                beta = (
                    rz_new - rowdot(R_old, Z)
                ) / rz  # Polak-Ribiere: z.(r - r_old) / z_old.r_old
            else:
                beta = rz_new / rz
            active = control.active
            if replaced is not None:
                beta[replaced.columns] = 0
            beta = torch.where(active, beta, torch.zeros_like(beta))[:, None]
            torch.addcmul(deflated(Z), P, beta, out=P)
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
    deflation_block : int, optional
        Deflate the solve by the block-constant vectors of boxes of this many cells per side
        (method ``"cg-deflated"``, boxes of 8; stencil operators only): ``x0`` gets the coarse
        correction ``Z E^{-1} Z^T r0`` and each new direction is made A-orthogonal to
        ``range(Z)`` (one more product per iteration), as in Saad, Yeung, Erhel and
        Guyomarc'h's deflated CG. The coarse space
        (:class:`~neuralsolve.solvers.deflation.BlockDeflation`) is built at set-up.
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
        if self.fused and self.deflation_block is not None:
            raise ValueError(
                "fused=True does not deflate: drop deflation_block, or use fused=False "
                "(method 'cg-deflated')"
            )

    @property
    def label(self) -> str:
        base = super().label
        return f"{base}-fused" if self.fused else base

    def _iterate(
        self,
        system: PreparedSystem,
        context: KrylovSetup,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        if not self.fused:
            return super()._iterate(system, context, callback, setup_s)
        return fused_cg(self, system, callback, setup_s, context.extra, user_M=context.apply_M)


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
