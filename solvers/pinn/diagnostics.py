"""Where a PINN's error comes from: its residual inside the box, or its boundary misfit.

For a problem ``-lap u = f`` on a 2-D box with Dirichlet data ``g``, the error
``e = u_θ - u*`` of a network ``u_θ`` solves

.. math::

    -\\Delta e = -\\Delta u_θ - f = r \\ \\text{in } Ω, \\qquad e = u_θ - g \\ \\text{on } ∂Ω,

with ``r`` the PINN's own residual. So ``e = e_r + e_b`` exactly, where ``e_r`` solves
``-lap e_r = r`` with zero boundary values (the part the residual causes) and ``e_b`` is the
harmonic function with the boundary misfit as its boundary values (the part the boundary term
causes). :func:`error_sources` computes both with the second-order five-point finite-difference
Laplacian on a uniform grid (scipy's sparse LU) and reports their relative L2 norms, with the
direct error and how well ``e_r + e_b`` reproduces it (the split's discretisation error).

A residual integrated against the Green's function is what the error measures: a residual of
zero mean over a small region (a dipole) leaves a small error, one of non-zero mean (a net
charge) leaves a far field. The split says which of the two loss terms to improve; it does not
say which collocation points would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from neuralsolve.checks import check_int

__all__ = ["error_sources"]

MAX_GRID = 1001
"""The finest grid :func:`error_sources` accepts: the sparse LU of the five-point Laplacian on
``1001^2`` points already takes gigabytes and minutes."""


def _laplacian_lu(n: int, h: float) -> Any:
    """The LU factors of the five-point ``-lap`` on the ``n x n`` interior points, spacing
    ``h``, zero Dirichlet values (row-major: the first axis is the slow one)."""
    T = sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]) / h**2
    A = sp.kron(T, sp.identity(n)) + sp.kron(sp.identity(n), T)
    return spla.splu(A.tocsc())


def _solve(lu: Any, rhs: np.ndarray, boundary: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """``w`` on the full grid: ``-lap w = rhs`` inside, ``w = boundary`` on the edge rows and
    columns (``boundary``'s interior is ignored)."""
    b = rhs[1:-1, 1:-1].copy()
    b[0, :] += boundary[0, 1:-1] / hx**2
    b[-1, :] += boundary[-1, 1:-1] / hx**2
    b[:, 0] += boundary[1:-1, 0] / hy**2
    b[:, -1] += boundary[1:-1, -1] / hy**2
    w = boundary.copy()
    n = rhs.shape[0] - 2
    w[1:-1, 1:-1] = lu.solve(b.ravel()).reshape(n, n)
    return w


def _fields_on_grid(problem: Any, model: Any, points: torch.Tensor, chunk: int = 8192) -> dict:
    """On ``points``, chunk by chunk, as float64 numpy arrays: the problem's residual of
    ``model`` (``"r"``, with the problem's own shape and finiteness checks), ``-lap u - f`` from
    the same network (``"poisson"``), the network's values ``"u"``, the forcing ``"f"`` and the
    exact solution ``"exact"``."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("r", "poisson", "u", "f", "exact")}
    for x in torch.split(points, chunk):
        D = problem.derivatives(x, model)
        f = problem.forcing(x)
        parts["r"].append(problem.residual(x, model).detach())
        parts["poisson"].append((-D.laplacian - f).detach())
        parts["u"].append(D.u.detach())
        parts["f"].append(f.detach())
        parts["exact"].append(problem.exact(x).detach())
    return {k: torch.cat(v).double().cpu().numpy() for k, v in parts.items()}


def error_sources(pinn: Any, grid: int = 401) -> dict[str, float]:
    """Split a 2-D ``-lap u = f`` PINN's error into the part its residual causes and the part
    its boundary misfit causes (module notes).

    Parameters
    ----------
    pinn : PINN
        A (trained) :class:`~neuralsolve.solvers.PINN` whose problem is 2-D, has a known exact
        solution, and whose residual is ``-lap u - f`` (checked at the grid points).
    grid : int
        Points per axis of the uniform grid, including the edges (``>= 5``; the box must be a
        square for the solver's single spacing; 401 resolves peak2d's peak with 6 points across
        its width, 601 with 9).

    Returns
    -------
    dict
        ``"rel_l2"``: ``||e|| / ||u*||`` on the grid; ``"from_residual"``: ``||e_r|| / ||u*||``;
        ``"from_boundary"``: ``||e_b|| / ||u*||``; ``"split_mismatch"``:
        ``||e_r + e_b - e|| / ||u*||`` (the finite-difference error of the split: it should be
        small against the other three); ``"boundary_max"``: the largest ``|e|`` on the edges;
        ``"grid"``.

    Raises
    ------
    NonFiniteError
        The network or its residual is NaN or infinite on the grid (the problem's own check).
    ValueError
        The problem is not 2-D, the box not square, no exact solution or forcing is known, the
        residual is not ``-lap u - f``, the exact solution is zero on the grid, or
        ``grid`` is outside ``[5, 1001]``.
    """
    problem = pinn.problem
    who = f"error_sources for problem {problem.name!r}"
    grid = check_int("grid", grid, minimum=5, maximum=MAX_GRID)
    box = problem.domain
    if box.dim != 2:
        raise ValueError(f"{who}: splits 2-D problems; this one is {box.dim}-D")
    (x0, y0), (x1, y1) = box.lower, box.upper
    if not np.isclose(x1 - x0, y1 - y0):
        raise ValueError(f"{who}: needs a square box, got [{x0}, {x1}] x [{y0}, {y1}]")
    if problem.exact is None or problem.forcing is None:
        raise ValueError(f"{who}: needs the exact solution and the forcing f of -lap u = f")
    xs = np.linspace(x0, x1, grid)
    ys = np.linspace(y0, y1, grid)
    hx, hy = xs[1] - xs[0], ys[1] - ys[0]
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=pinn.dtype)
    points = points.to(pinn.device)
    fields = _fields_on_grid(problem, pinn.model, points)
    r, r_check = fields["r"], fields["poisson"]
    scale = float(np.abs(r_check).max() + np.abs(fields["f"]).max())
    if not np.abs(r - r_check).max() <= 1e-4 * max(scale, 1.0):
        raise ValueError(
            f"{who}: the problem's residual is not -lap u - f (it differs from it by up to "
            f"{np.abs(r - r_check).max():.3g} on the grid), so the split does not hold"
        )
    u, exact, r = (fields[k].reshape(grid, grid) for k in ("u", "exact", "r"))
    e = u - exact
    edges = np.zeros_like(e)
    edges[0], edges[-1], edges[:, 0], edges[:, -1] = e[0], e[-1], e[:, 0], e[:, -1]
    lu = _laplacian_lu(grid - 2, hx)
    e_r = _solve(lu, r, np.zeros_like(e), hx, hy)
    e_b = _solve(lu, np.zeros_like(e), edges, hx, hy)

    def norm(f: np.ndarray) -> float:
        return float(np.sqrt((f**2).sum() * hx * hy))

    scale_u = norm(exact)
    if not scale_u > 0:
        raise ValueError(f"{who}: the exact solution is zero on the grid: no relative error")
    return {
        "rel_l2": norm(e) / scale_u,
        "from_residual": norm(e_r) / scale_u,
        "from_boundary": norm(e_b) / scale_u,
        "split_mismatch": norm(e_r + e_b - e) / scale_u,
        "boundary_max": float(np.abs(edges).max()),
        "grid": grid,
    }
