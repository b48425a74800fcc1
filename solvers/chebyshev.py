"""Chebyshev spectral collocation for steady Dirichlet problems on 1-D intervals and 2-D boxes.

The classical reference that the mesh-free solvers (GP-HM, PINNs) are printed beside.

Method
------
On ``[a, b]`` the Chebyshev-Gauss-Lobatto nodes are
``x_j = a + (b - a)(1 - cos(pi j / N)) / 2``, ``j = 0..N`` (ascending), with barycentric
weights ``w_j = (-1)^j delta_j`` (``delta_0 = delta_N = 1/2``, else 1). The interpolant of nodal
values ``u_j`` is the degree-``N`` polynomial

.. math::

    p(x) = \\frac{\\sum_j w_j u_j / (x - x_j)}{\\sum_j w_j / (x - x_j)}

(the barycentric formula of the second kind; Berrut & Trefethen, SIAM Review 46 (2004)), and
its derivatives at the nodes are ``D u`` and ``D^{(2)} u`` with ``D_ij = (w_j / w_i) /
(x_i - x_j)``, ``D^{(2)}_ij = 2 D_ij (D_ii - 1 / (x_i - x_j))`` off the diagonal and diagonals
from the rows summing to zero (Schneider & Werner 1986; Baltensperger & Trummer 2003).

The problem's own residual ``r = equation(x, u, grad u, d^2u/dx_k^2)`` is collocated at the
interior nodes, ``u = g`` at the boundary nodes, and solved by Newton's method: each step
solves ``J du = -r`` with ``J = diag(a) + sum_k diag(b_k) D_k + diag(c_k) D_k^{(2)}`` (the
pointwise partials ``a, b, c`` of the residual; one step for a linear problem, a second one to
confirm). In 1-D ``J`` is a dense ``(N-1) x (N-1)`` matrix. In 2-D the unknowns are an
``(N_1-1) x (N_2-1)`` array ``V`` and the constant-coefficient operator
``c_x A V + c_y V B^T + a V`` (``A``, ``B`` the second-derivative matrices with the boundary
rows and columns removed) is solved by **fast diagonalisation** (Lynch, Rice & Thomas,
Numer. Math. 6 (1964)): with ``A = P diag(lambda) P^{-1}`` and ``B = Q diag(mu) Q^{-1}``,
``V = P W Q^T`` with ``W_ij = (P^{-1} F Q^{-T})_ij / (c_x lambda_i + c_y mu_j + a)``, never
forming the ``N_1 N_2 x N_1 N_2`` matrix (the eigenvalues of the Chebyshev Dirichlet
second-derivative matrix are real and negative; Gottlieb & Lustman, SIAM J. Numer. Anal. 20
(1983)). When the coefficients vary (Allen-Cahn's ``3u^2 - 1``) each Newton step is solved by
GMRES preconditioned with that fast solve at the mean coefficients.

Resolution: Chebyshev collocation needs about ``pi`` nodes per wavelength (Gottlieb & Orszag
1977); a problem that states its angular ``frequency`` refuses ``N < frequency (b - a) / 2``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

from neuralsolve.checks import check_int, check_positive_float, check_positive_int
from neuralsolve.errors import ConvergenceError, NonFiniteError

from .gridpde import (
    check_grid_problem,
    check_resolution,
    error_axes,
    evaluate_field,
    linearize,
    problem_frequency,
    problem_name,
)

__all__ = [
    "ChebyshevResult",
    "ChebyshevSolver",
    "barycentric_matrix",
    "barycentric_weights",
    "chebyshev_nodes",
    "differentiation_matrices",
]

F64 = torch.float64
#: nodes per wavelength Chebyshev collocation needs at the least (about pi)
NODES_PER_WAVELENGTH = math.pi


def chebyshev_nodes(n: int, a: float = -1.0, b: float = 1.0) -> torch.Tensor:
    """The ``n + 1`` Chebyshev-Gauss-Lobatto nodes on ``[a, b]``, ascending, float64.

    ``x_j = a + (b - a)(1 + s_j) / 2`` with ``s_j = sin(pi (2j - n) / (2n)) = -cos(pi j / n)``
    (the sine form is exactly antisymmetric in rounding).
    """
    n = check_int("n", n, minimum=2)
    j = torch.arange(n + 1, dtype=F64)
    s = torch.sin(math.pi * (2 * j - n) / (2 * n))
    return a + (b - a) * (1 + s) / 2


def barycentric_weights(n: int) -> torch.Tensor:
    """``w_j = (-1)^j delta_j`` for the ``n + 1`` Chebyshev-Lobatto nodes (``delta`` = 1/2 at
    the two ends), float64. Scale-free: the formulas only use ratios."""
    n = check_int("n", n, minimum=2)
    w = torch.ones(n + 1, dtype=F64)
    w[1::2] = -1.0
    w[0] *= 0.5
    w[-1] *= 0.5
    return w


def differentiation_matrices(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D, D2)``: the first and second differentiation matrices of the interpolant through
    the nodes ``x`` with barycentric weights ``w`` (module notes), float64 ``(n+1, n+1)``."""
    dx = x[:, None] - x[None, :]
    off = ~torch.eye(len(x), dtype=torch.bool)
    inv = torch.zeros_like(dx)
    inv[off] = 1.0 / dx[off]
    D = (w[None, :] / w[:, None]) * inv
    D.fill_diagonal_(0.0)
    D.diagonal().copy_(-D.sum(dim=1))
    D2 = 2 * D * (D.diagonal()[:, None] - inv)
    D2.fill_diagonal_(0.0)
    D2.diagonal().copy_(-D2.sum(dim=1))
    return D, D2


def barycentric_matrix(nodes: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``E`` ``(m, n+1)`` with ``E @ u`` the barycentric interpolant of the nodal values ``u``
    at the ``m`` points ``x`` (a row is a unit vector where a point hits a node)."""
    x = x.to(F64).reshape(-1)
    diff = x[:, None] - nodes[None, :]
    hit = diff == 0
    diff = torch.where(hit, torch.ones_like(diff), diff)
    E = w[None, :] / diff
    E = E / E.sum(dim=1, keepdim=True)
    rows = hit.any(dim=1)
    if bool(rows.any()):
        E[rows] = hit[rows].to(F64)
    return E


@dataclass
class ChebyshevResult:
    """What :meth:`ChebyshevSolver.solve` did.

    Attributes
    ----------
    values : Tensor
        The nodal values, ``(N+1,)`` in 1-D, ``(N_1+1, N_2+1)`` in 2-D (``indexing="ij"``).
    nodes : tuple of Tensor
        The nodes of each axis.
    newton_iterations : int
    residual_norm : float
        ``max |r|`` over the interior nodes at the end (relative to ``max |r|`` at ``u = 0``
        in ``relative_residual``).
    relative_residual : float
    converged : bool
    seconds : float
    gmres_iterations : list of int
        Per Newton step (2-D with variable coefficients; empty otherwise).
    """

    values: torch.Tensor
    nodes: tuple[torch.Tensor, ...]
    newton_iterations: int
    residual_norm: float
    relative_residual: float
    converged: bool
    seconds: float
    gmres_iterations: list[int] = field(default_factory=list)


class _FastDiag:
    """The fast-diagonalisation solve of ``c_x A V + c_y V B^T + a V = F`` (module notes)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        lam, P = torch.linalg.eig(A)
        mu, Q = torch.linalg.eig(B)
        # real spectra (Gottlieb & Lustman); keep the real parts
        self.lam, self.mu = lam.real, mu.real
        self.P, self.Q = P.real, Q.real
        self.Pinv = torch.linalg.inv(self.P)
        self.Qinv = torch.linalg.inv(self.Q)

    def solve(self, F: torch.Tensor, cx: float, cy: float, a: float) -> torch.Tensor:
        denom = cx * self.lam[:, None] + cy * self.mu[None, :] + a
        if bool((denom.abs() < 1e-300).any()):
            raise ValueError(
                "the constant-coefficient operator is singular on this grid (a coefficient "
                "cancels an eigenvalue of the second-derivative matrix): change N"
            )
        W = (self.Pinv @ F @ self.Qinv.T) / denom
        return self.P @ W @ self.Q.T


class ChebyshevSolver:
    """Chebyshev collocation (Newton for nonlinear equations) for a steady Dirichlet problem.

    Parameters
    ----------
    problem : PDEProblem
        A steady 1-D or 2-D problem of :mod:`neuralsolve.datasets.pde` (``poisson1d-hf``,
        ``poisson2d-hf``, ``allen-cahn``, ``peak2d``, ...), or anything with the same
        ``name``, ``domain``, ``equation``, ``boundary_values`` (and ``exact`` for
        :meth:`error`).
    n : int or tuple of int
        Polynomial degree per axis (``N + 1`` nodes); one int for every axis.
    frequency : float, optional
        The solution's highest angular frequency (``100`` for ``sin(100x)``); default the
        problem's ``params["frequency"]``. Refuses ``N < frequency (b - a) / 2`` (fewer than
        ``pi`` nodes per wavelength).
    tol : float
        Newton stops when the step's max-norm is at most ``tol (1 + max |u|)``.
    max_newton : int
        Newton iterations at most (a linear problem takes 2: the solve and the check).
    gmres_rtol : float
        Relative tolerance of each Newton step's GMRES (2-D, variable coefficients).

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.pde.make("poisson1d-hf", case="P1")
    >>> cheb = ns.solvers.ChebyshevSolver(prob, n=384)
    >>> res = cheb.solve()
    >>> cheb.error() < 1e-9
    True

    References
    ----------
    L. N. Trefethen, *Spectral Methods in MATLAB*, SIAM (2000), ch. 6-7 and 14.
    """

    def __init__(
        self,
        problem: Any,
        n: int | tuple[int, ...] = 384,
        *,
        frequency: float | None = None,
        tol: float = 1e-12,
        max_newton: int = 30,
        gmres_rtol: float = 1e-13,
    ) -> None:
        who = "ChebyshevSolver"
        check_grid_problem(problem, who)
        self.problem = problem
        d = problem.domain.dim
        sizes = (n,) * d if isinstance(n, int) and not isinstance(n, bool) else tuple(n)
        if len(sizes) != d:
            raise ValueError(f"{who}: n has {len(sizes)} entries for a {d}-D problem: pass {d}")
        self.n = tuple(check_int("n", v, minimum=4) for v in sizes)
        self.frequency = problem_frequency(problem, frequency)
        check_resolution(
            who, problem, self.n, self.frequency, NODES_PER_WAVELENGTH, "Chebyshev intervals"
        )
        self.tol = check_positive_float("tol", tol)
        self.max_newton = check_positive_int("max_newton", max_newton)
        self.gmres_rtol = check_positive_float("gmres_rtol", gmres_rtol)
        lo, hi = problem.domain.lower, problem.domain.upper
        self.nodes = tuple(chebyshev_nodes(m, lo[k], hi[k]) for k, m in enumerate(self.n))
        self.weights = tuple(barycentric_weights(m) for m in self.n)
        mats = [
            differentiation_matrices(x, w) for x, w in zip(self.nodes, self.weights, strict=True)
        ]
        self.D1 = tuple(m[0] for m in mats)
        self.D2 = tuple(m[1] for m in mats)
        self.result: ChebyshevResult | None = None

    # ---------------------------------------------------------------- grid helpers
    @property
    def dim(self) -> int:
        return len(self.n)

    def grid_points(self) -> torch.Tensor:
        """The ``prod(N_k + 1)`` nodes as ``(n, d)`` rows (``indexing="ij"`` order)."""
        mesh = torch.meshgrid(*self.nodes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)

    def _derivs(self, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(grad, hess)`` ``(n, d)`` of the nodal array ``U``."""
        if self.dim == 1:
            return (self.D1[0] @ U)[:, None], (self.D2[0] @ U)[:, None]
        g = torch.stack([self.D1[0] @ U, U @ self.D1[1].T], dim=-1).reshape(-1, 2)
        h = torch.stack([self.D2[0] @ U, U @ self.D2[1].T], dim=-1).reshape(-1, 2)
        return g, h

    def _interior(self, U: torch.Tensor) -> torch.Tensor:
        return U[1:-1] if self.dim == 1 else U[1:-1, 1:-1]

    # ---------------------------------------------------------------- solve
    def solve(self, u0: torch.Tensor | None = None) -> ChebyshevResult:
        """Collocate and solve (Newton). ``u0``: an initial guess of the nodal values (default:
        the boundary data on the boundary nodes and zero inside).

        Raises
        ------
        NonFiniteError
            The boundary data or the residual is NaN or infinite on the grid.
        ConvergenceError
            Newton did not converge in ``max_newton`` iterations.
        """
        t0 = time.perf_counter()
        prob, who = self.problem, f"problem {problem_name(self.problem)}"
        X = self.grid_points()
        shape = tuple(m + 1 for m in self.n)
        g = evaluate_field(prob.boundary_values, X, f"{who} boundary values").reshape(shape)
        if u0 is None:
            U = torch.zeros(shape, dtype=F64)
            if self.dim == 1:
                U[[0, -1]] = g[[0, -1]]
            else:
                U[[0, -1], :] = g[[0, -1], :]
                U[:, [0, -1]] = g[:, [0, -1]]
        else:
            U = torch.as_tensor(u0, dtype=F64).reshape(shape).clone()
            if not bool(torch.isfinite(U).all()):
                raise NonFiniteError("u0 holds NaN or infinite values: pass finite values")
        fast = None
        if self.dim == 2:
            fast = _FastDiag(self.D2[0][1:-1, 1:-1], self.D2[1][1:-1, 1:-1])
        r0 = None
        gmres_its: list[int] = []
        converged = False
        its = 0
        previous: tuple[torch.Tensor, ...] | None = None
        last_step = math.inf
        for its in range(1, self.max_newton + 1):  # noqa: B007 (its is read after the loop)
            grad, hess = self._derivs(U)
            r, a, b, c = linearize(prob, X, U.reshape(-1), grad, hess)
            R = self._interior(r.reshape(shape))
            rmax = float(R.abs().max())
            if r0 is None:
                r0 = rmax
            # a linear problem: the coefficients did not move, and the last step was a direct
            # solve (not GMRES), so it solved the problem
            linear = (
                previous is not None
                and not gmres_its
                and all(torch.equal(p, q) for p, q in zip(previous, (a, b, c), strict=True))
            )
            if linear:
                converged = True
                break
            previous = (a, b, c)
            # inexact Newton (GMRES): a loose solve while far, a tight one near the root
            eta = max(self.gmres_rtol, min(1e-4, (rmax / r0) ** 2 if r0 else 0.0))
            step = self._newton_step(R, a, b, c, shape, fast, gmres_its, eta)
            if self.dim == 1:
                U[1:-1] += step
            else:
                U[1:-1, 1:-1] += step
            if not bool(torch.isfinite(U).all()):
                raise NonFiniteError(f"ChebyshevSolver: Newton diverged to NaN on {who}")
            size, scale = float(step.abs().max()), 1 + float(U.abs().max())
            # converged: a step at the tolerance, or steps that stopped shrinking at rounding
            # level (the collocation matrix's condition number grows like N^4)
            if size <= self.tol * scale or (size <= 1e-7 * scale and size > 0.5 * last_step):
                converged = True
                break
            last_step = size
        grad, hess = self._derivs(U)
        r = linearize(prob, X, U.reshape(-1), grad, hess)[0]
        res = float(self._interior(r.reshape(shape)).abs().max())
        if not converged:
            raise ConvergenceError(
                f"ChebyshevSolver: Newton did not converge on {who} in {self.max_newton} "
                f"iterations (max residual {res:.3g}): raise max_newton, pass a better u0 or a "
                "larger n"
            )
        self.result = ChebyshevResult(
            values=U,
            nodes=self.nodes,
            newton_iterations=its,
            residual_norm=res,
            relative_residual=res / r0 if r0 else 0.0,
            converged=converged,
            seconds=time.perf_counter() - t0,
            gmres_iterations=gmres_its,
        )
        return self.result

    def _newton_step(
        self,
        R: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        c: torch.Tensor,
        shape: tuple[int, ...],
        fast: _FastDiag | None,
        gmres_its: list[int],
        eta: float,
    ) -> torch.Tensor:
        """``du`` on the interior nodes with ``J du = -R`` (module notes)."""
        if self.dim == 1:
            i = slice(1, -1)
            J = torch.diag(a[i]) + b[i, 0:1] * self.D1[0][i, i] + c[i, 0:1] * self.D2[0][i, i]
            return torch.linalg.solve(J, -R)
        assert fast is not None
        A_, B_ = (t.reshape(*shape, -1)[1:-1, 1:-1] for t in (b, c))
        a_ = a.reshape(shape)[1:-1, 1:-1]
        cx, cy, am = float(B_[..., 0].mean()), float(B_[..., 1].mean()), float(a_.mean())
        scale = max(abs(cx), abs(cy), abs(am), 1e-300)
        constant = (
            float(A_.abs().max()) == 0.0
            and float((B_[..., 0] - cx).abs().max()) <= 1e-14 * scale
            and float((B_[..., 1] - cy).abs().max()) <= 1e-14 * scale
            and float((a_ - am).abs().max()) <= 1e-14 * scale
        )
        if constant:
            return fast.solve(-R, cx, cy, am)
        m1, m2 = shape[0] - 2, shape[1] - 2
        D1x, D1y = self.D1[0][1:-1, 1:-1], self.D1[1][1:-1, 1:-1]
        D2x, D2y = self.D2[0][1:-1, 1:-1], self.D2[1][1:-1, 1:-1]

        def matvec(v: np.ndarray) -> np.ndarray:
            V = torch.from_numpy(np.asarray(v, dtype=np.float64)).reshape(m1, m2)
            out = (
                a_ * V
                + A_[..., 0] * (D1x @ V)
                + A_[..., 1] * (V @ D1y.T)
                + B_[..., 0] * (D2x @ V)
                + B_[..., 1] * (V @ D2y.T)
            )
            return out.reshape(-1).numpy()

        def precond(v: np.ndarray) -> np.ndarray:
            V = torch.from_numpy(np.asarray(v, dtype=np.float64)).reshape(m1, m2)
            return fast.solve(V, cx, cy, am).reshape(-1).numpy()

        n = m1 * m2
        J = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        M = spla.LinearOperator((n, n), matvec=precond, dtype=np.float64)
        count = [0]

        def cb(_: Any) -> None:
            count[0] += 1

        x, _ = spla.gmres(
            J,
            -R.reshape(-1).numpy(),
            M=M,
            rtol=eta,
            atol=0.0,
            restart=100,
            maxiter=20,
            callback=cb,
            callback_type="pr_norm",
        )
        gmres_its.append(count[0])
        return torch.from_numpy(x).reshape(m1, m2)

    # ---------------------------------------------------------------- evaluation
    def _values(self) -> torch.Tensor:
        if self.result is None:
            raise RuntimeError("ChebyshevSolver: call solve() before evaluating the solution")
        return self.result.values

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The interpolant at the points ``x`` ``(m, d)`` (anywhere in the box), ``(m,)``
        float64: barycentric interpolation along each axis."""
        U = self._values()
        self.problem.domain.check_points(x)
        x = x.to(F64)
        if self.dim == 1:
            return barycentric_matrix(self.nodes[0], self.weights[0], x[:, 0]) @ U
        out = []
        for chunk in torch.split(x, 8192):
            Ex = barycentric_matrix(self.nodes[0], self.weights[0], chunk[:, 0])
            Ey = barycentric_matrix(self.nodes[1], self.weights[1], chunk[:, 1])
            out.append(((Ex @ U) * Ey).sum(dim=1))
        return torch.cat(out)

    def predict_grid(self, *axes: torch.Tensor) -> torch.Tensor:
        """The interpolant on the tensor grid of ``axes`` (one 1-D tensor per axis), shape
        ``(len(axes[0]), ...)``: ``E_x U E_y^T`` in 2-D."""
        U = self._values()
        if len(axes) != self.dim:
            raise ValueError(f"predict_grid needs {self.dim} axes, got {len(axes)}")
        E = [barycentric_matrix(self.nodes[k], self.weights[k], ax) for k, ax in enumerate(axes)]
        return E[0] @ U if self.dim == 1 else E[0] @ U @ E[1].T

    def error(self, grid: int | None = None) -> float:
        """Relative L2 error ``||u - u*|| / ||u*||`` against the exact solution on a uniform
        tensor grid of ``grid`` points per axis (default: at least 10 per wavelength of the
        stated frequency, and at least 2001 in 1-D, 201 in 2-D)."""
        axes = error_axes(self.problem, grid, self.frequency)
        approx = self.predict_grid(*axes).reshape(-1)
        mesh = torch.meshgrid(*axes, indexing="ij")
        X = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        exact = evaluate_field(self.problem.exact, X, f"problem {problem_name(self.problem)}")
        return float(torch.linalg.vector_norm(approx - exact) / torch.linalg.vector_norm(exact))

    def __repr__(self) -> str:
        return f"ChebyshevSolver(problem={problem_name(self.problem)}, n={self.n})"
