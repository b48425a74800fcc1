"""The method registry and :func:`solve`, the one entry point every method shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuralsolve.result import SolveResult

from .convergence import Callback
from .dcdm import DCDM, FlexibleDCDM
from .krylov import CG, FlexibleCG
from .reference import DirectSolver, PyAMGSolver, ScipyCG

__all__ = ["METHODS", "MethodSpec", "available_methods", "make_solver", "solve"]


@dataclass(frozen=True)
class MethodSpec:
    """A named method: how to build its solver, and what it is."""

    name: str
    solver: type
    defaults: dict[str, Any]
    summary: str
    backend: str

    def build(self, **options: Any) -> Any:
        valid = sorted(f.name for f in dataclasses.fields(self.solver) if f.init)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise TypeError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"for method {self.name!r}; valid options: {', '.join(valid)}"
            )
        return self.solver(**{**self.defaults, **options})


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec(
            "cg", CG, {}, "conjugate gradients (torch, batched; M= preconditions it)", "torch"
        ),
        MethodSpec(
            "cg-fused",
            CG,
            {"fused": True},
            "CG with fused iterations compiled by torch.compile (stencil operators)",
            "torch",
        ),
        MethodSpec(
            "pcg-jacobi",
            CG,
            {"preconditioner": "jacobi"},
            "CG + Jacobi (diagonal) preconditioner",
            "torch",
        ),
        MethodSpec(
            "pcg-ic",
            CG,
            {"preconditioner": "ic"},
            "CG + zero-fill incomplete Cholesky, applied by triangular solves",
            "torch",
        ),
        MethodSpec(
            "pcg-amg",
            CG,
            {"preconditioner": "amg"},
            "CG + one V-cycle of a pyamg smoothed-aggregation hierarchy",
            "torch",
        ),
        MethodSpec(
            "fcg",
            FlexibleCG,
            {},
            "flexible CG (Polak-Ribiere beta) for variable preconditioners M=",
            "torch",
        ),
        MethodSpec(
            "dcdm",
            DCDM,
            {},
            "deep conjugate directions: a CNN turns residuals into A-conjugate directions "
            "(structured grids; shipped model by default)",
            "torch",
        ),
        MethodSpec(
            "dcdm-deflated",
            DCDM,
            {"deflation_block": "auto", "network_level": "auto"},
            "dcdm with the solve deflated by the block-constant vectors of 3^d-cell boxes "
            "(a two-level method; structured grids); in 3-D the network runs on a grid of at "
            "most 32^3 cells, at least one down, followed by Jacobi smoothing; boxes of 3, or "
            "larger above 2^14 boxes",
            "torch",
        ),
        MethodSpec(
            "cg-deflated",
            CG,
            {"deflation_block": 8},
            "CG deflated by the block-constant vectors of 8^d-cell boxes (structured grids)",
            "torch",
        ),
        MethodSpec(
            "pcg-dcdm",
            FlexibleDCDM,
            {},
            "flexible CG preconditioned by the DCDM network (structured grids)",
            "torch",
        ),
        MethodSpec(
            "scipy-cg", ScipyCG, {}, "scipy.sparse.linalg.cg on the assembled matrix", "scipy"
        ),
        MethodSpec(
            "pyamg-sa", PyAMGSolver, {"kind": "sa"}, "pyamg smoothed aggregation + CG", "pyamg"
        ),
        MethodSpec("pyamg-rs", PyAMGSolver, {"kind": "rs"}, "pyamg Ruge-Stuben + CG", "pyamg"),
        MethodSpec(
            "direct", DirectSolver, {}, "sparse LU (SuperLU via scipy.sparse.linalg.splu)", "scipy"
        ),
    ]
}


def available_methods() -> dict[str, str]:
    """Method names and a line on each."""
    return {name: spec.summary for name, spec in METHODS.items()}


def _spec(method: str) -> MethodSpec:
    if not isinstance(method, str):
        raise TypeError(f"method must be a name (str), got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    return METHODS[method]


def make_solver(method: str, **options: Any) -> Any:
    """The solver object of a named method, e.g. ``make_solver("pcg-amg", rtol=1e-8)``."""
    return _spec(method).build(**options)


def solve(
    A: Any,
    b: Any,
    *,
    method: str = "cg",
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_iters: int | None = None,
    x0: Any = None,
    M: Any = None,
    callback: Callback | Callable[..., Any] | None = None,
    **options: Any,
) -> SolveResult:
    """Solve ``A x = b`` with a named method.

    Every method stops when the true residual satisfies
    ``||b - A x||_2 <= max(rtol * ||b||_2, atol)`` (per column for a block ``b``), and reports
    the same :class:`~neuralsolve.SolveResult`.

    Parameters
    ----------
    A : LinearOperator, torch.Tensor, numpy.ndarray, scipy sparse matrix or gallery operator
        The (symmetric positive definite, for the CG family) matrix.
    b : torch.Tensor or numpy.ndarray
        ``(n,)`` or ``(n, k)``; the answer comes back as the same kind, dtype and device.
    method : str
        One of :func:`available_methods` (``"cg"``, ``"pcg-ic"``, ``"pcg-amg"``, ``"direct"``, ...).
    rtol, atol : float
        Relative and absolute tolerances (keyword-only).
    max_iters : int, optional
        Iteration limit (default ``10 n``).
    x0 : optional
        Initial guess, same shape as ``b`` (not modified).
    M : optional
        Preconditioner for ``cg`` / ``fcg`` / ``scipy-cg``: a Preconditioner, LinearOperator,
        matrix or callable.
    callback : callable, optional
        Torch methods: called after each iteration with an ``IterationInfo``; ``True`` stops.
    **options
        The method's other hyperparameters (e.g. ``preconditioner_options={"kind": "rs"}``,
        ``true_residual_every=20``, ``history="none"``); unknown names raise ``TypeError``
        listing the valid ones.

    Returns
    -------
    SolveResult

    Raises
    ------
    TypeError, ValueError, NotSPDError, NonFiniteError
        For bad input, before any work (see the messages for the fix).

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.poisson((16, 16, 16))
    >>> res = ns.solve(prob.A, prob.b, method="pcg-ic", rtol=1e-8)
    >>> res.converged, res.iterations < 40
    (True, True)
    """
    solver = make_solver(method, rtol=rtol, atol=atol, max_iters=max_iters, **options)
    return solver.solve(A, b, x0=x0, M=M, callback=callback)
