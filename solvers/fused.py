"""CG with fused iterations for stencil operators, compiled by ``torch.compile``.

A plain CG iteration makes about ten passes over memory in separate kernels (matvec, two dot
products, three vector updates), and on a CPU large temporaries also cost page faults. Here the
iteration is two compiled kernels over zero-padded grids:

1. ``p = pad(z) + beta p;  Ap = A p;  pAp = p . Ap``  (``z = r`` or ``D^{-1} r`` for Jacobi),
2. ``x += alpha p;  r -= alpha Ap;  rr = r . r;  rz = r . z``,

with the stencil applied by shifted slices of the padded ``p`` (no index masks), so each
iteration reads and writes every vector about once. Obstacles need no special case: the solve
runs on the whole grid with zeros in solid cells, where the operator's rows are zero, so it is
exactly CG on the active cells. The per-column convergence logic is the eager loop's
(:class:`~neuralsolve.solvers.tracking.ColumnTracker`).

The first call for a new grid shape, batch size or dtype compiles (seconds; reported as
``compile_s``, inside ``setup_s``); torch caches the result for the process and on disk.
"""

from __future__ import annotations

import time
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from neuralsolve.errors import GridStructureError
from neuralsolve.result import SolveResult, Status
from neuralsolve.stencil import StencilOperator, apply_padded
from neuralsolve.validation import PreparedSystem

from .tracking import Callback, ColumnTracker, IterationInfo

__all__ = ["fused_cg"]


def _interior(nd: int) -> tuple[slice, ...]:
    return (slice(None),) + (slice(1, -1),) * nd


def _phase1(
    R: torch.Tensor,
    PP: torch.Tensor,
    beta: torch.Tensor,
    coeffs: dict[str, Any],
    invd: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    nd = R.ndim - 1
    dims = tuple(range(1, nd + 1))
    Z = R if invd is None else R * invd
    PPn = F.pad(Z, (1, 1) * nd) + beta.view((-1,) + (1,) * nd) * PP
    AP = apply_padded(PPn, coeffs)
    pAp = (PPn[_interior(nd)] * AP).sum(dim=dims)
    return PPn, AP, pAp


def _phase2(
    X: torch.Tensor,
    R: torch.Tensor,
    PP: torch.Tensor,
    AP: torch.Tensor,
    alpha: torch.Tensor,
    invd: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    nd = R.ndim - 1
    dims = tuple(range(1, nd + 1))
    a = alpha.view((-1,) + (1,) * nd)
    Xn = X + a * PP[_interior(nd)]
    Rn = R - a * AP
    rr = (Rn * Rn).sum(dim=dims)
    rz = rr if invd is None else (Rn * Rn * invd).sum(dim=dims)
    return Xn, Rn, rr, rz


_COMPILED: OrderedDict[tuple[Any, ...], Callable[..., Any]] = OrderedDict()
MAX_COMPILED = 64


def _compiled(name: str, key: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled kernel ``name`` for one static shape/dtype/variant ``key``.

    Static shapes are about 2x faster than dynamic ones here (measured), but dynamo keeps one
    cache per code object and stops recompiling after a few shapes (falling back to eager
    without telling). So each key gets its own copy of the function's code object, hence its
    own cache; at most ``MAX_COMPILED`` are kept.
    """
    full_key = (name, *key)
    if full_key in _COMPILED:
        _COMPILED.move_to_end(full_key)
        return _COMPILED[full_key]
    fn = {"phase1": _phase1, "phase2": _phase2}[name]
    copy = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    _COMPILED[full_key] = torch.compile(copy, fullgraph=True, dynamic=False)
    while len(_COMPILED) > MAX_COMPILED:
        _COMPILED.popitem(last=False)
    return _COMPILED[full_key]


def fused_cg(
    solver: Any,
    system: PreparedSystem,
    callback: Callback | None,
    setup_s: float,
    extra: dict[str, Any],
    user_M: Any = None,
) -> SolveResult:
    """Run :class:`~neuralsolve.solvers.CG` with ``fused=True`` (called by ``CG.solve``)."""
    op = system.A
    if not isinstance(op, StencilOperator):
        raise GridStructureError(
            f"fused CG runs on stencil operators (a gallery problem's A), got {type(op).__name__}: "
            "use method='cg' (fused=False) for other operators"
        )
    if user_M is not None and solver.preconditioner is None:
        raise ValueError("fused CG takes no M=; use preconditioner='jacobi' or fused=False")
    t0 = time.perf_counter()
    B = system.B
    k = B.shape[0]
    nd = op.ndim
    grid = op.grid_shape
    coeffs = op.padded_coefficients()
    invd = None
    if solver.preconditioner == "jacobi":
        d = op.diagonal_grid()
        invd = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), torch.zeros_like(d))
    Bg = _to_grid_batch(op, B)
    Xg = _to_grid_batch(op, system.X0) if system.X0 is not None else torch.zeros_like(Bg)
    bnorm = torch.linalg.vector_norm(B, dim=1)
    zero_rhs = bnorm == 0
    if bool(zero_rhs.any()):
        Xg[zero_rhs] = 0
    key = (tuple(Bg.shape), op.dtype, op.device.type, op.is_uniform, invd is not None)
    phase1, phase2 = _compiled("phase1", key), _compiled("phase2", key)
    # Compile (or fetch from the cache) outside the timed loop.
    PP = torch.zeros((k, *(n + 2 for n in grid)), dtype=op.dtype, device=op.device)
    beta = torch.zeros(k, dtype=op.dtype, device=op.device)
    try:
        warm = phase1(Bg, PP, beta, coeffs, invd)
        phase2(Xg, Bg, warm[0], warm[1], beta, invd)
    except Exception as exc:  # inductor needs a working C++ compiler on CPU
        raise RuntimeError(
            f"torch.compile could not build the fused CG kernels ({type(exc).__name__}: {exc}); "
            "use method='cg' (fused=False), which needs no compiler"
        ) from exc
    compile_s = time.perf_counter() - t0
    extra = {**extra, "compile_s": compile_s, "fused": True}
    setup_s += compile_s

    matvecs = 0
    if system.X0 is not None:
        Rg = Bg - op.apply_grid(Xg)
        matvecs += 1
    else:
        Rg = Bg.clone()
    dims = tuple(range(1, nd + 1))
    rr = (Rg * Rg).sum(dim=dims)
    tracker = ColumnTracker(bnorm, rr.sqrt(), solver.rtol, solver.atol)
    tracker.matvecs = matvecs
    max_iters = solver.max_iters if solver.max_iters is not None else 10 * op.shape[0]
    rz = rr if invd is None else (Rg * Rg * invd).sum(dim=dims)
    zeros = torch.zeros_like(rz)
    while tracker.any_active and tracker.iteration < max_iters:
        tracker.begin_iteration()
        PP, AP, pAp = phase1(Rg, PP, beta, coeffs, invd)
        tracker.matvecs += 1
        stopped = tracker.stop_nonpositive(pAp, Status.INDEFINITE)
        if stopped:  # their x stays as it is: zero the step (0 * NaN would not be 0)
            PP[stopped] = 0
            AP[stopped] = 0
        active = tracker.active
        alpha = torch.where(active, rz / pAp, zeros)
        Xg, Rg, rr, rz_new = phase2(Xg, Rg, PP, AP, alpha, invd)
        rnorm = rr.sqrt()
        if tracker.iteration % solver.true_residual_every == 0:
            R_true = Bg - op.apply_grid(Xg)
            tracker.matvecs += 1
            tracker.observe_true(rnorm, torch.linalg.vector_norm(R_true.reshape(k, -1), dim=1))
        candidates = tracker.candidates(rnorm)
        restart: list[int] = []
        if candidates:
            R_true = Bg - op.apply_grid(Xg)
            tracker.matvecs += 1
            true = torch.linalg.vector_norm(R_true.reshape(k, -1), dim=1)
            _, replace = tracker.check_true(candidates, rnorm, true)
            idx = torch.tensor(candidates, device=Rg.device)
            rnorm = rnorm.index_copy(0, idx, true[idx])
            if replace:
                ridx = torch.tensor(replace, device=Rg.device)
                Rg[ridx] = R_true[ridx]
                rr_true = (R_true * R_true).sum(dim=dims)
                rz_true = rr_true if invd is None else (R_true * R_true * invd).sum(dim=dims)
                rz_new = rz_new.index_copy(0, ridx, rz_true[ridx])
                restart = replace
        tracker.record(rnorm, ~active)
        if callback is not None:
            x_now = _from_grid_batch(op, Xg)
            if callback(IterationInfo(tracker.iteration, x_now, rnorm)) is True:
                tracker.stop_all(Status.CALLBACK_STOP)
        if not tracker.any_active:
            break
        if invd is not None:
            tracker.stop_nonpositive(rz_new, Status.PRECONDITIONER_INDEFINITE)
        active = tracker.active
        beta = torch.where(active, rz_new / rz, zeros)
        if restart:  # a replaced residual starts a fresh direction: p = z
            beta[restart] = 0
        if not bool(active.all()):
            Rg[~active] = 0  # frozen columns: p = z = 0, so they take no further steps
        rz = rz_new
    X = _from_grid_batch(op, Xg)
    R_final = B - op._apply_batch(X)
    tracker.matvecs += 1
    true = torch.linalg.vector_norm(R_final, dim=1)
    rel = torch.where(bnorm > 0, true / torch.where(bnorm > 0, bnorm, 1), true)
    extra = {
        **extra,
        "k": k,
        "column_block": k,
        "dtype": str(op.dtype).replace("torch.", ""),
        "device": str(op.device),
    }
    return tracker.finish(
        system.wrap(X),
        method=solver.label,
        setup_s=setup_s,
        extra=extra,
        rel_residual=float(rel.max()),
    )


def _to_grid_batch(op: StencilOperator, Xt: torch.Tensor) -> torch.Tensor:
    """``(k, n)`` -> ``(k, *grid)`` with zeros at inactive cells (a fresh tensor)."""
    k = Xt.shape[0]
    if op.mask is None:
        return Xt.reshape(k, *op.grid_shape).clone()
    return torch.stack([op.to_grid(x) for x in Xt])


def _from_grid_batch(op: StencilOperator, U: torch.Tensor) -> torch.Tensor:
    return (
        torch.stack([op.from_grid(u) for u in U])
        if op.mask is not None
        else U.reshape(U.shape[0], -1).clone()
    )
