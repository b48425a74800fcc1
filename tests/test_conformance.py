"""The operator conformance mixin (neuralsolve.testing) applied to the operators built outside
linop: the curvature operators of a model, the preconditioners' operator views, and the FEM
stiffness matrices, each against a dense float64 reference computed another way."""

from __future__ import annotations

import numpy as np
import pyamg
import pytest
import torch
from torch.func import functional_call

import neuralsolve as ns
from neuralsolve.datasets.fem import poisson_fem, unit_cube_mesh, unit_square_mesh
from neuralsolve.linop import CallableOperator
from neuralsolve.optim.curvature import fisher_operator, ggn_operator, hessian_operator
from neuralsolve.solvers import AMGPreconditioner, ICPreconditioner, JacobiPreconditioner, ichol0
from neuralsolve.testing import OperatorConformance


# ------------------------------------------------------------------ the mixin checks something
class TestDenseThroughTheMixin(OperatorConformance):
    def make(self):
        M = np.random.default_rng(1).standard_normal((6, 4))
        return ns.as_operator(M), M


class _OffByOne(OperatorConformance):
    """An operator whose products are wrong in one entry: the mixin must notice."""

    def make(self):
        M = np.random.default_rng(2).standard_normal((5, 5))
        Mt = torch.from_numpy(M)
        wrong = Mt.clone()
        wrong[2, 3] += 1e-6
        return CallableOperator(lambda X: wrong @ X, (5, 5), dtype=torch.float64), M


def test_the_mixin_catches_a_wrong_product() -> None:
    with pytest.raises(AssertionError, match="A @ x"):
        _OffByOne().test_matvec_and_matmat_match_dense()
    with pytest.raises(AssertionError, match="to_dense"):
        _OffByOne().test_to_dense_and_to_scipy()


# ------------------------------------------------------------------ curvature operators
def _curvature_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A float64 MLP 3 -> 4 -> 2 (26 parameters) on 5 samples."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).double()
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    targets = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    return model, inputs, targets


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def _functional(model: torch.nn.Module):
    """``theta (d,) -> model outputs`` for a flat parameter vector, and that vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            k = int(np.prod(shape))
            params[name] = flat[i : i + k].reshape(shape)
            i += k
        return functional_call(model, params, (inputs,))

    return outputs, theta


class TestHessianOperator(OperatorConformance):
    def make(self):
        model, inputs, targets = _curvature_problem()
        outputs, theta = _functional(model)
        H = torch.autograd.functional.hessian(lambda t: _mse(outputs(t, inputs), targets), theta)
        return hessian_operator(model, _mse, inputs, targets), H.numpy()


class TestGGNOperator(OperatorConformance):
    def make(self):
        model, inputs, targets = _curvature_problem()
        outputs, theta = _functional(model)
        J = torch.autograd.functional.jacobian(lambda t: outputs(t, inputs).reshape(-1), theta)
        out = outputs(theta, inputs).detach()
        HL = torch.autograd.functional.hessian(
            lambda o: _mse(o.reshape(out.shape), targets), out.reshape(-1)
        )
        return ggn_operator(model, _mse, inputs, targets), (J.T @ HL @ J).numpy()


class TestFisherOperator(OperatorConformance):
    def make(self):
        model, inputs, targets = _curvature_problem()
        outputs, theta = _functional(model)

        def per_sample_losses(t: torch.Tensor) -> torch.Tensor:
            return torch.stack(
                [_mse(outputs(t, inputs[i : i + 1]), targets[i : i + 1]) for i in range(5)]
            )

        G = torch.autograd.functional.jacobian(per_sample_losses, theta)  # (N, d)
        return fisher_operator(model, _mse, inputs, targets), (G.T @ G / 5).numpy()


# ------------------------------------------------------------------ preconditioner views
def _laplacian_1d(n: int) -> np.ndarray:
    return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)


class TestJacobiView(OperatorConformance):
    def make(self):
        prob = ns.datasets.poisson((7, 6), coefficient="darcy", seed=3)
        d = prob.matrix.diagonal()
        return JacobiPreconditioner(prob.A).as_preconditioner(), np.diag(1.0 / d)


class TestJacobiViewFloat32(OperatorConformance):
    def make(self):
        prob = ns.datasets.poisson((7, 6), coefficient="darcy", seed=3)
        d = prob.matrix.diagonal()
        A32 = ns.as_operator(prob.matrix, dtype=torch.float32)
        return JacobiPreconditioner(A32).as_preconditioner(), np.diag(1.0 / d)


class TestICViewTridiagonal(OperatorConformance):
    # IC(0) of a tridiagonal SPD matrix has no dropped fill: it is the Cholesky factor, so M is
    # exactly A^{-1}. Two triangular solves with cond(A) ~ 50: 1e-10 leaves room for rounding.
    float64_tol = 1e-10

    def make(self):
        A = _laplacian_1d(12)
        return ICPreconditioner(A).as_preconditioner(), np.linalg.inv(A)


class TestICView2D(OperatorConformance):
    float64_tol = 1e-10  # two triangular solves, as above

    def make(self):
        prob = ns.datasets.poisson((6, 5), bc="mixed", seed=4)
        L = ichol0(prob.matrix).toarray()
        return ICPreconditioner(prob.A).as_preconditioner(), np.linalg.inv(L @ L.T)


class TestAMGView(OperatorConformance):
    def make(self):
        prob = ns.datasets.poisson((12, 12))
        P = AMGPreconditioner(prob.A)
        # pyamg's own cycle on the identity's columns: the reference the view must reproduce
        cycle = P.hierarchy.aspreconditioner(cycle="V")
        n = prob.matrix.shape[0]
        ref = np.stack([cycle.matvec(e) for e in np.eye(n)], axis=1)
        return P.as_preconditioner(), ref


# ------------------------------------------------------------------ FEM operators
class TestFEMSquare(OperatorConformance):
    # P1 on this right-triangle mesh (all diagonals one way) is the 5-point Laplacian stencil
    def make(self):
        m = 4
        T, I = _laplacian_1d(m), np.eye(m)
        return poisson_fem(unit_square_mesh(m + 1)).A, np.kron(T, I) + np.kron(I, T)


class TestFEMSquareFloat32(OperatorConformance):
    def make(self):
        m = 4
        T, I = _laplacian_1d(m), np.eye(m)
        return poisson_fem(unit_square_mesh(m + 1), dtype="float32").A, np.kron(T, I) + np.kron(
            I, T
        )


class TestFEMCube(OperatorConformance):
    # P1 on Kuhn's tetrahedralisation is h times the 7-point Laplacian stencil
    def make(self):
        n, m = 3, 2
        T, I = _laplacian_1d(m), np.eye(m)
        L = np.kron(np.kron(T, I), I) + np.kron(np.kron(I, T), I) + np.kron(np.kron(I, I), T)
        return poisson_fem(unit_cube_mesh(n)).A, L / n


class TestFEMJittered(OperatorConformance):
    # an unstructured mesh: the reference is assembled element by element, gradients of the
    # barycentric coordinates from the inverse of [[1, x_i, y_i]]
    def make(self):
        mesh = unit_square_mesh(5)
        rng = np.random.default_rng(5)
        pts = mesh.points.copy()
        inner = (pts > 0).all(axis=1) & (pts < 1).all(axis=1)
        pts[inner] += rng.uniform(-0.05, 0.05, size=(int(inner.sum()), 2))
        mesh.points = pts
        prob = poisson_fem(mesh)
        K = np.zeros((len(pts), len(pts)))
        for tri in mesh.cells_dict["triangle"]:
            C = np.column_stack([np.ones(3), pts[tri]])
            grads = np.linalg.inv(C)[1:].T  # (3 vertices, 2)
            area = abs(np.linalg.det(C)) / 2
            K[np.ix_(tri, tri)] += area * grads @ grads.T
        return prob.A, K[np.ix_(prob.interior, prob.interior)]


def test_amg_reference_is_pyamg_itself() -> None:
    # the AMG case above compares the view with the hierarchy it wraps; check once that this
    # hierarchy is pyamg's default smoothed aggregation, not something the view built its own way
    prob = ns.datasets.poisson((12, 12))
    ours = AMGPreconditioner(prob.A).hierarchy
    theirs = pyamg.smoothed_aggregation_solver(prob.matrix)
    assert len(ours.levels) == len(theirs.levels)
    assert ours.operator_complexity() == pytest.approx(theirs.operator_complexity())
