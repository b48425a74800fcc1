"""What the grid solvers (Chebyshev collocation, GP-HM) share about a PDE problem.

A problem is taken duck-typed (this layer never imports ``neuralsolve.datasets``): it needs
``name``, ``domain`` (a :class:`~neuralsolve.domain.Box`), ``equation(x, D)`` (the residual as a
function of the points and of the derivatives ``D.u``, ``D.grad``, ``D.hess_diag``,
``D.laplacian``), ``boundary_values`` (the Dirichlet data ``g``) and, for the error,
``exact``. The grid solvers compute the derivatives themselves (spectral differentiation
matrices, kernel-derivative matrices) and hand them to the problem's own ``equation`` in a
:class:`~neuralsolve.derivatives.Derivatives`, so the equation is written once for PINNs and
grid solvers alike.

The residual of a PDE problem is local: ``r_i`` depends on ``u``, its gradient and its second
derivatives at point ``i`` only. :func:`linearize` uses that to read the coefficients of the
Newton linearisation ``dr = a du + sum_k b_k du_k + sum_k c_k du_kk`` off one backward pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neuralsolve.checks import check_int
from neuralsolve.derivatives import Derivatives
from neuralsolve.errors import NonFiniteError

__all__ = [
    "check_grid_problem",
    "check_resolution",
    "error_axes",
    "evaluate_field",
    "linearize",
    "problem_frequency",
    "problem_name",
]


def problem_name(problem: Any) -> str:
    """``repr`` of the problem's name (for messages)."""
    return repr(getattr(problem, "name", type(problem).__name__))


def check_grid_problem(problem: Any, solver: str, *, max_dim: int = 2) -> None:
    """Raise unless ``problem`` looks like a steady ``PDEProblem`` on a box of 1..max_dim axes."""
    for attr in ("name", "domain", "equation", "boundary_values"):
        if not hasattr(problem, attr):
            raise TypeError(
                f"{solver}: problem must be a neuralsolve.datasets.pde.PDEProblem (e.g. "
                f"ns.datasets.pde.make('poisson1d-hf')), got {type(problem).__name__} without "
                f".{attr}"
            )
    if getattr(problem, "time_dependent", False):
        raise ValueError(
            f"{solver}: problem {problem_name(problem)} is time-dependent; this solver handles "
            "steady boundary-value problems (u = g on the whole boundary): use the PINN"
        )
    d = problem.domain.dim
    if not 1 <= d <= max_dim:
        raise ValueError(
            f"{solver}: problem {problem_name(problem)} has {d} dimensions; this solver works "
            f"on 1..{max_dim}-D tensor grids"
        )


def problem_frequency(problem: Any, frequency: float | None) -> float | None:
    """The highest angular frequency of the solution: ``frequency`` when given, else the
    problem's ``params["frequency"]`` when it states one, else ``None``."""
    if frequency is None:
        frequency = getattr(problem, "params", {}).get("frequency")
    if frequency is None:
        return None
    f = float(frequency)
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"frequency must be a finite non-negative number, got {frequency!r}")
    return f


def check_resolution(
    solver: str,
    problem: Any,
    sizes: tuple[int, ...],
    frequency: float | None,
    points_per_wavelength: float,
    what: str,
    offset: int = 0,
) -> None:
    """Refuse a grid of ``sizes`` intervals per axis that cannot resolve ``frequency``.

    Axis ``k`` of length ``L_k`` holds ``frequency L_k / (2 pi)`` wavelengths; it needs at least
    ``points_per_wavelength`` of ``what`` per wavelength. The message asks for
    ``n >= need + offset`` (``offset = 1`` when the caller's ``n`` counts points, not
    intervals).
    """
    if frequency is None:
        return
    for k, n in enumerate(sizes):
        length = problem.domain.upper[k] - problem.domain.lower[k]
        need = math.ceil(points_per_wavelength * frequency * length / (2 * math.pi))
        if n < need:
            raise ValueError(
                f"{solver}: {n} {what} on axis {k} cannot resolve problem "
                f"{problem_name(problem)}'s frequency {frequency:g} on an interval of length "
                f"{length:.4g} ({frequency * length / (2 * math.pi):.1f} wavelengths need at "
                f"least {points_per_wavelength:g} {what} each): pass n >= {need + offset}"
            )


def evaluate_field(fn: Any, x: torch.Tensor, what: str) -> torch.Tensor:
    """``fn(x)`` as a finite ``(n,)`` float64 tensor, or a clear error naming ``what``."""
    with torch.no_grad():
        v = fn(x)
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{what} returned {type(v).__name__}; expected a tensor of shape (n,)")
    v = v.reshape(-1) if v.ndim == 2 and v.shape[1] == 1 else v
    if tuple(v.shape) != (x.shape[0],):
        raise ValueError(f"{what} returned shape {tuple(v.shape)} for {x.shape[0]} points")
    bad = ~torch.isfinite(v)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        raise NonFiniteError(
            f"{what} is NaN or infinite at {int(bad.sum())} of {x.shape[0]} points, e.g. "
            f"x = {x[first].tolist()}: fix the problem's data there"
        )
    return v


def residual(
    problem: Any,
    x: torch.Tensor,
    u: torch.Tensor,
    grad: torch.Tensor | None,
    hess: torch.Tensor | None,
) -> torch.Tensor:
    """The problem's residual ``equation(x, D)`` from grid derivatives, checked: ``(n,)``."""
    D = Derivatives(x, u, grad, hess, tuple(range(x.shape[1])))
    r = problem.equation(x, D)
    if not isinstance(r, torch.Tensor) or tuple(r.shape) != (x.shape[0],):
        got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
        raise ValueError(
            f"problem {problem_name(problem)}: its equation returned {got} for {x.shape[0]} "
            f"points; expected ({x.shape[0]},)"
        )
    return r


def linearize(
    problem: Any, x: torch.Tensor, u: torch.Tensor, grad: torch.Tensor, hess: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(r, a, b, c)``: the residual and its pointwise partial derivatives.

    ``r`` ``(n,)``, ``a = dr/du`` ``(n,)``, ``b[:, k] = dr/du_k`` ``(n, d)``,
    ``c[:, k] = dr/du_kk`` ``(n, d)``, read off one backward pass of ``sum(r)`` (the residual
    is local, so the gradient of the sum holds each row's own partials).

    Raises
    ------
    NonFiniteError
        The residual is NaN or infinite (the message names the problem and the first point).
    """
    with torch.enable_grad():
        u_ = u.detach().clone().requires_grad_(True)
        g_ = grad.detach().clone().requires_grad_(True)
        h_ = hess.detach().clone().requires_grad_(True)
        r = residual(problem, x, u_, g_, h_)
        bad = ~torch.isfinite(r.detach())
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0])
            raise NonFiniteError(
                f"problem {problem_name(problem)}: the residual is NaN or infinite at "
                f"{int(bad.sum())} of {x.shape[0]} grid points, e.g. x = {x[first].tolist()}: "
                "check the problem's forcing there"
            )
        a, b, c = torch.autograd.grad(r.sum(), (u_, g_, h_), allow_unused=True)
    zeros = torch.zeros_like
    a = zeros(u) if a is None else a
    b = zeros(grad) if b is None else b
    c = zeros(hess) if c is None else c
    return r.detach(), a, b, c


def error_axes(problem: Any, grid: int | None, frequency: float | None) -> list[torch.Tensor]:
    """The uniform axes of an error grid: ``grid`` points per axis, or by default at least 10
    per wavelength of ``frequency`` (and at least 2001 in 1-D, 201 in 2-D)."""
    dom = problem.domain
    if getattr(problem, "exact", None) is None:
        raise ValueError(
            f"problem {problem_name(problem)} has no exact solution: compare two solvers instead"
        )
    axes = []
    for k in range(dom.dim):
        length = dom.upper[k] - dom.lower[k]
        if grid is None:
            m = 2001 if dom.dim == 1 else 201
            if frequency:
                m = max(m, math.ceil(10 * frequency * length / (2 * math.pi)) + 1)
        else:
            m = check_int("grid", grid, minimum=2)
        axes.append(torch.linspace(dom.lower[k], dom.upper[k], m, dtype=torch.float64))
    return axes
