"""Reference solvers from scipy and pyamg, run under the project's stopping rule and result type.

They run on the CPU in numpy (tensors on another device travel through host memory) and solve
the columns of a block one after another. Their stopping rules map onto
``||b - A x|| <= max(rtol ||b||, atol)``:

* ``scipy-cg``: ``scipy.sparse.linalg.cg(rtol=rtol, atol=atol)`` uses exactly this rule;
* ``pyamg-sa`` / ``pyamg-rs``: ``solve(tol=max(rtol, atol / ||b||), accel="cg")`` stops on
  ``||r|| < tol ||b||``;
* ``direct``: one sparse LU solve (SuperLU), judged by the same rule afterwards.

Every result carries the true residual of its answer. Residual histories cost one extra
product per iteration (these libraries do not expose the residual): ``history="callback"``
records them in the timed run, ``history="rerun"`` (used by the benchmark) times a run without
them and records them in a second, untimed run, and ``history="none"`` skips them (the history is
then the initial and final residual).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from neuralsolve.errors import NotSPDError
from neuralsolve.linop import LinearOperator, as_operator
from neuralsolve.result import SolveResult, Status, combine_status
from neuralsolve.validation import PreparedSystem

from .base import SolverBase
from .precond import explicit_matrix

__all__ = ["DirectSolver", "PyAMGSolver", "ScipyCG"]

HISTORY_MODES = ("callback", "rerun", "none")


@dataclass(frozen=True, kw_only=True)
class _ReferenceBase(SolverBase):
    history: str = "callback"

    label: ClassVar[str] = "reference"  # type: ignore[misc]
    takes_callback: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.history not in HISTORY_MODES:
            raise ValueError(f"history must be one of {HISTORY_MODES}, got {self.history!r}")

    def _solve(
        self, system: PreparedSystem, context: Any, callback: Any, setup_s: float
    ) -> SolveResult:
        """Solve ``A x = b`` (see the module notes for how the stopping rule maps)."""
        return self._run(system, context, setup_s)

    def _setup(self, op: LinearOperator, M: Any) -> Any:
        raise NotImplementedError

    def _solve_column(
        self, context: Any, b: np.ndarray, x0: np.ndarray | None, tol: float, record: bool
    ) -> tuple[np.ndarray, int, list[float] | None, Status]:
        raise NotImplementedError

    def _run(self, system: PreparedSystem, context: Any, setup_s: float) -> SolveResult:
        mat = context["matrix"]
        np_dtype = np.float64 if system.A.dtype == torch.float64 else np.float32
        B = system.B.detach().cpu().numpy().astype(np_dtype)
        X0 = None if system.X0 is None else system.X0.detach().cpu().numpy().astype(np_dtype)
        k = B.shape[0]
        xs, iters, hists, statuses, elapsed_all = [], [], [], [], []
        solve_s = 0.0
        for j in range(k):
            b = B[j]
            x0 = None if X0 is None else X0[j]
            bnorm = float(np.linalg.norm(b))
            tol = max(self.rtol * bnorm, self.atol)
            t = time.perf_counter()
            x, it, hist, status = self._solve_column(
                context, b, x0, tol, self.history == "callback"
            )
            dt = time.perf_counter() - t
            solve_s += dt
            if self.history == "rerun":
                _, _, hist, _ = self._solve_column(context, b, x0, tol, True)
            r0 = float(np.linalg.norm(b - mat @ x0)) if x0 is not None else bnorm
            true = float(np.linalg.norm(b - mat @ x))
            if hist is None:
                hist = [r0] + ([true] if it > 0 else [])
            else:
                hist = list(hist[: it + 1])
                if hist:
                    hist[-1] = true
            if status is Status.SUCCESS and not true <= tol:
                status = Status.NOT_CONVERGED
            xs.append(x)
            iters.append(it)
            hists.append(hist)
            statuses.append(status)
            # Per-iteration times of a reference run are not observable: spread evenly.
            elapsed_all.append([dt * i / max(1, len(hist) - 1) for i in range(len(hist))])
        X = torch.from_numpy(np.stack(xs)).to(device=system.B.device, dtype=system.B.dtype)
        length = max(len(h) for h in hists)
        H = np.array([h + [h[-1]] * (length - len(h)) for h in hists]).T  # (iters+1, k)
        bn = np.linalg.norm(B, axis=1)
        rel = [
            float(np.linalg.norm(B[j] - mat @ xs[j]) / bn[j])
            if bn[j] > 0
            else float(np.linalg.norm(mat @ xs[j]))
            for j in range(k)
        ]
        single = k == 1
        stats: dict[str, Any] = {
            "method": self.label,
            "setup_s": setup_s,
            "solve_s": solve_s,
            "matvecs": None,
            "rel_residual": max(rel),
            "elapsed": elapsed_all[int(np.argmax([len(h) for h in hists]))],
            "history": self.history,
            "k": k,
            "dtype": str(system.A.dtype).replace("torch.", ""),
            "device": "cpu",
        }
        stats.update(
            {key: v for key, v in context.items() if key != "matrix" and not key.startswith("_")}
        )
        return SolveResult(
            x=system.wrap(X),
            status=combine_status(statuses),
            iterations=max(iters),
            residual_norms=H[:, 0] if single else H,
            stats=stats,
            column_status=None if single else tuple(statuses),
            column_iterations=None if single else tuple(iters),
        )


@dataclass(frozen=True, kw_only=True)
class ScipyCG(_ReferenceBase):
    """``scipy.sparse.linalg.cg`` on the assembled matrix (or the operator, if matrix-free)."""

    label: ClassVar[str] = "scipy-cg"

    def _setup(self, op: LinearOperator, M: Any) -> Any:
        mat = op.to_scipy()
        ctx: dict[str, Any] = {"matrix": mat}
        if M is not None:
            ctx["_M"] = as_operator(M, check=False).to_scipy()
        return ctx

    def _solve_column(
        self, context: Any, b: np.ndarray, x0: np.ndarray | None, tol: float, record: bool
    ) -> tuple[np.ndarray, int, list[float] | None, Status]:
        mat = context["matrix"]
        count = [0]
        hist: list[float] | None = None
        if record:
            hist = [
                float(np.linalg.norm(b - mat @ x0)) if x0 is not None else float(np.linalg.norm(b))
            ]

            def cb(xk: np.ndarray) -> None:
                count[0] += 1
                hist.append(float(np.linalg.norm(b - mat @ xk)))  # type: ignore[union-attr]
        else:

            def cb(xk: np.ndarray) -> None:
                count[0] += 1

        maxiter = self.max_iters if self.max_iters is not None else 10 * b.shape[0]
        if maxiter == 0:
            x = np.zeros_like(b) if x0 is None else x0.copy()
            return x, 0, hist, Status.MAX_ITERATIONS
        bnorm = float(np.linalg.norm(b))
        x, info = spla.cg(
            mat,
            b,
            x0=x0,
            rtol=self.rtol if bnorm > 0 else 0.0,
            atol=self.atol,
            maxiter=maxiter,
            M=context.get("_M"),
            callback=cb,
        )
        status = (
            Status.SUCCESS
            if info == 0
            else (Status.MAX_ITERATIONS if info > 0 else Status.NOT_CONVERGED)
        )
        return x, count[0], hist, status


@dataclass(frozen=True, kw_only=True)
class PyAMGSolver(_ReferenceBase):
    """pyamg's own solver: a hierarchy (``kind``) accelerated by pyamg's CG."""

    kind: str = "sa"
    cycle: str = "V"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("sa", "rs"):
            raise ValueError(f"unknown AMG kind {self.kind!r}: use 'sa' or 'rs'")

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"pyamg-{self.kind}"

    def _setup(self, op: LinearOperator, M: Any) -> Any:
        import pyamg

        if M is not None:
            raise ValueError(f"{self.label} builds its own multigrid preconditioner; do not pass M")
        mat = explicit_matrix(op, self.label)
        build = pyamg.smoothed_aggregation_solver if self.kind == "sa" else pyamg.ruge_stuben_solver
        ml = build(mat)
        return {
            "matrix": mat,
            "_ml": ml,
            "levels": len(ml.levels),
            "operator_complexity": float(ml.operator_complexity()),
        }

    def _solve_column(
        self, context: Any, b: np.ndarray, x0: np.ndarray | None, tol: float, record: bool
    ) -> tuple[np.ndarray, int, list[float] | None, Status]:
        ml = context["_ml"]
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0:  # the solution of A x = 0 is 0 (as for every method here)
            return np.zeros_like(b), 0, [0.0] if record else None, Status.SUCCESS
        r0 = float(np.linalg.norm(b - context["matrix"] @ x0)) if x0 is not None else bnorm
        if r0 <= tol:
            return (
                (np.zeros_like(b) if x0 is None else x0.copy()),
                0,
                [r0] if record else None,
                Status.SUCCESS,
            )
        maxiter = self.max_iters if self.max_iters is not None else 10 * b.shape[0]
        if maxiter == 0:
            return (
                (np.zeros_like(b) if x0 is None else x0.copy()),
                0,
                [r0] if record else None,
                Status.MAX_ITERATIONS,
            )
        count = [0]
        residuals: list[float] | None = [] if record else None
        x = ml.solve(
            b,
            x0=x0,
            tol=tol / bnorm,
            maxiter=maxiter,
            cycle=self.cycle,
            accel="cg",
            residuals=residuals,
            callback=lambda xk: count.__setitem__(0, count[0] + 1),
        )
        true = float(np.linalg.norm(b - context["matrix"] @ x))
        status = Status.SUCCESS if true <= tol else Status.MAX_ITERATIONS
        return x, count[0], residuals, status


@dataclass(frozen=True, kw_only=True)
class DirectSolver(_ReferenceBase):
    """Sparse LU (SuperLU through ``scipy.sparse.linalg.splu``); one factorisation per call,
    reused for every column. ``rtol``/``atol`` only judge the answer.

    ``ordering="auto"`` takes minimum degree on ``A + A^T`` with SuperLU's symmetric mode for a
    symmetric matrix (3x faster with half the fill of COLAMD on a 3-D Poisson matrix, measured)
    and COLAMD otherwise; ``stats["ordering"]`` says which. Fill grows fast in 3-D: a 64^3
    Poisson matrix took 507 s and 21 GB with COLAMD on the development machine.
    """

    ordering: str = "auto"

    label: ClassVar[str] = "direct"
    needs_spd: ClassVar[bool] = False
    ORDERINGS: ClassVar[tuple[str, ...]] = ("auto", "MMD_AT_PLUS_A", "COLAMD", "MMD_ATA", "NATURAL")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ordering not in self.ORDERINGS:
            raise ValueError(f"unknown ordering {self.ordering!r}; use one of {self.ORDERINGS}")

    def _setup(self, op: LinearOperator, M: Any) -> Any:
        if M is not None:
            raise ValueError("the direct solver takes no preconditioner M")
        mat = explicit_matrix(op, "direct")
        ordering = self.ordering
        if ordering == "auto":
            ordering = "MMD_AT_PLUS_A" if op.symmetric else "COLAMD"
        options = {"SymmetricMode": True} if ordering == "MMD_AT_PLUS_A" else {}
        try:
            lu = spla.splu(sp.csc_matrix(mat), permc_spec=ordering, options=options)
        except RuntimeError as exc:  # "Factor is exactly singular"
            raise NotSPDError(f"the direct solver could not factor A: {exc}") from exc
        return {
            "matrix": mat,
            "_lu": lu,
            "fill_nnz": int(lu.L.nnz + lu.U.nnz),
            "ordering": ordering,
        }

    def _solve_column(
        self, context: Any, b: np.ndarray, x0: np.ndarray | None, tol: float, record: bool
    ) -> tuple[np.ndarray, int, list[float] | None, Status]:
        x = context["_lu"].solve(b)
        if not np.all(np.isfinite(x)):
            return np.zeros_like(b), 1, None, Status.NON_FINITE
        return x, 1, None, Status.SUCCESS
