"""Preconditioners: IC(0) against a textbook implementation, triangular solves, AMG vs pyamg."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import neuralsolve as ns
from neuralsolve.solvers import AMGPreconditioner, ICPreconditioner, JacobiPreconditioner, ichol0
from neuralsolve.solvers.precond.ichol import row_levels

from .conftest import random_spd_sparse


def ic0_dense(A: np.ndarray) -> np.ndarray:
    """Right-looking IC(0) (Golub & Van Loan, Alg. 11.1.x): Cholesky with updates restricted
    to the pattern of tril(A)."""
    n = len(A)
    L = np.tril(A).astype(np.float64)
    pattern = L != 0
    for k in range(n):
        L[k, k] = np.sqrt(L[k, k])
        for i in range(k + 1, n):
            if pattern[i, k]:
                L[i, k] /= L[k, k]
        for j in range(k + 1, n):
            for i in range(j, n):
                if pattern[i, j]:
                    L[i, j] -= L[i, k] * L[j, k]
    return L


@pytest.mark.parametrize(
    "build",
    [
        lambda: ns.datasets.poisson((7, 6)).matrix,
        lambda: ns.datasets.poisson((4, 4, 3), bc="mixed", coefficient="darcy").matrix,
        lambda: (
            ns.datasets.poisson_fem(ns.datasets.unit_cube_mesh(3)).matrix
        ),  # has triangles in its graph
        lambda: random_spd_sparse(60, seed=3),
    ],
    ids=["stencil2d", "darcy3d", "fem-tets", "random"],
)
def test_ichol0_matches_the_textbook_algorithm(build) -> None:
    A = sp.csr_array(build())
    L = ichol0(A).toarray()
    np.testing.assert_allclose(
        L, ic0_dense(A.toarray()), rtol=1e-12, atol=1e-12 * np.abs(A.data).max()
    )
    # IC(0)'s defining property: L L^T equals A on the pattern of A.
    LLt = L @ L.T
    pattern = A.toarray() != 0
    np.testing.assert_allclose(LLt[pattern], A.toarray()[pattern], rtol=1e-10)


def test_levels_of_a_grid_are_its_wavefronts() -> None:
    A = ns.datasets.poisson((5, 4, 3)).matrix
    levels = row_levels(sp.csr_array(sp.tril(A, k=-1)))
    i, j, k = np.unravel_index(np.arange(60), (5, 4, 3))
    np.testing.assert_array_equal(levels, i + j + k)


@pytest.mark.parametrize("case", ["stencil", "fem"])
def test_triangular_solve_backends_agree(case: str) -> None:
    A = (
        ns.datasets.poisson((9, 8, 7), obstacle="spheres").A
        if case == "stencil"
        else ns.datasets.poisson_fem(ns.datasets.unit_cube_mesh(4)).A
    )
    R = torch.randn(3, A.shape[0], dtype=torch.float64)
    levels = ICPreconditioner(A, trisolve="levels")
    # M r = (L L^T)^{-1} r, checked against a dense solve with the same factor.
    L = levels.factor.toarray()
    expected = np.linalg.solve(L @ L.T, R.numpy().T).T
    np.testing.assert_allclose(levels.apply(R).numpy(), expected, rtol=1e-10, atol=1e-12)
    from neuralsolve.solvers.precond.ichol import native_trisolve_available

    if native_trisolve_available(torch.device("cpu")):
        native = ICPreconditioner(A, trisolve="native")
        np.testing.assert_allclose(native.apply(R).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ic_breakdown_is_retried_with_a_shift() -> None:
    # SPD but not an M-matrix: zero-fill IC breaks down without a shift.
    A = np.array(
        [
            [3.0, -2.0, 0.0, 2.0],
            [-2.0, 3.0, -2.0, 0.0],
            [0.0, -2.0, 3.0, -2.0],
            [2.0, 0.0, -2.0, 3.0],
        ]
    )
    assert np.linalg.eigvalsh(A).min() > 0
    with pytest.raises(ArithmeticError):
        ichol0(sp.csr_array(A))
    with pytest.warns(ns.errors.PreconditionerShiftWarning, match="diag"):
        M = ICPreconditioner(A)
    assert M.info["ic_shift"] > 0
    res = ns.solve(A, np.ones(4), M=M, rtol=1e-10)
    assert res.converged


def test_ic_and_jacobi_refuse_a_non_positive_diagonal() -> None:
    A = sp.csr_array(np.array([[1.0, 0.0], [0.0, -2.0]]))
    with pytest.raises(ns.NotSPDError, match=r"A\[1, 1\] = -2"):
        JacobiPreconditioner(A)
    with pytest.raises(ns.NotSPDError, match="positive diagonal"):
        ICPreconditioner(A)


def test_matrix_free_operator_cannot_be_factored() -> None:
    op = ns.as_operator(lambda x: 2 * x, shape=(5, 5), dtype="float64").with_tags(
        symmetric=True, positive_definite=True
    )
    with pytest.raises(TypeError, match="matrix-free"):
        ns.solve(op, torch.ones(5, dtype=torch.float64), method="pcg-ic")
    assert ns.solve(op, torch.ones(5, dtype=torch.float64), method="cg").converged


@pytest.mark.parametrize("kind", ["sa", "rs"])
def test_pcg_amg_iterations_match_pyamg(kind: str) -> None:
    for prob in (
        ns.datasets.poisson((20, 20, 20)),
        ns.datasets.poisson((24, 24, 24), bc="mixed", obstacle="spheres"),
    ):
        ours = ns.solve(
            prob.A, prob.b, method="pcg-amg", rtol=1e-8, preconditioner_options={"kind": kind}
        )
        theirs = ns.solve(prob.A, prob.b, method=f"pyamg-{kind}", rtol=1e-8)
        assert ours.converged and theirs.converged
        assert abs(ours.iterations - theirs.iterations) <= 2, (ours.iterations, theirs.iterations)


def test_a_preconditioner_is_built_once_and_reused() -> None:
    prob = ns.datasets.poisson((12, 12, 12))
    M = AMGPreconditioner(prob.A)
    assert M.setup_s > 0 and M.info["levels"] >= 2
    B = prob.random_rhs(2, seed=3)
    for j in range(2):
        res = ns.solve(prob.A, B[:, j].contiguous(), M=M, rtol=1e-8)
        assert res.converged and res.iterations < 15
    op = M.as_preconditioner()
    assert op.is_spd and op.shape == prob.A.shape
    assert ns.solve(prob.A, prob.b, M=op, rtol=1e-8).converged


def test_preconditioner_must_match_the_operator() -> None:
    prob = ns.datasets.poisson((6, 6))
    other = JacobiPreconditioner(ns.datasets.poisson((5, 5)).A)
    with pytest.raises(ValueError, match="M has shape"):
        ns.solve(prob.A, prob.b, M=other)
    with pytest.raises(TypeError, match="M must be"):
        ns.solve(prob.A, prob.b, M="jacobi")
    with pytest.raises(ValueError, match="unknown AMG kind"):
        AMGPreconditioner(prob.A, kind="ml")
    with pytest.raises(ValueError, match="trisolve"):
        ICPreconditioner(prob.A, trisolve="magic")
