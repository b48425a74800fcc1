"""The solver protocol: one base for the shared hyperparameters, set up once and solve many."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns
from neuralsolve.solvers import CG, METHODS, PreparedSolver, Solver, SolverBase
from neuralsolve.solvers.convergence import ConvergenceControl, start


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_follows_the_protocol_with_one_set_of_defaults(name: str) -> None:
    solver = ns.solvers.make_solver(name)
    assert isinstance(solver, SolverBase)
    assert isinstance(solver, Solver)
    shared = {f.name: f.default for f in dataclasses.fields(solver) if f.name in ("rtol", "atol")}
    assert shared == {"rtol": 1e-6, "atol": 0.0}
    assert solver.check_spd is True
    with pytest.raises(ValueError, match="rtol must be finite"):
        ns.solvers.make_solver(name, rtol=float("nan"))


@pytest.mark.parametrize("method", ["cg", "pcg-ic", "pcg-amg", "cg-deflated", "dcdm", "scipy-cg"])
def test_setup_once_solves_many_like_the_one_call_entry(method: str) -> None:
    prob = ns.datasets.make_problem("obstacle2d", 16)
    solver = ns.solvers.make_solver(method, rtol=1e-8)
    np.random.seed(0)  # noqa: NPY002  (pyamg draws its spectral-radius start vector from the global state)
    prepared = solver.setup(prob.A)
    assert isinstance(prepared, PreparedSolver)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        b = torch.randn(prob.A.shape[0], generator=g, dtype=torch.float64)
        np.random.seed(0)  # noqa: NPY002
        once = solver.solve(prob.A, b)
        again = prepared.solve(b)
        assert again.converged and once.converged
        assert again.iterations == once.iterations
        np.testing.assert_allclose(again.residual_norms, once.residual_norms, rtol=1e-12)
        torch.testing.assert_close(again.x, once.x, rtol=0, atol=1e-12)


def test_prepared_preconditioner_is_built_once_and_reported_per_solve() -> None:
    prob = ns.datasets.make_problem("poisson2d", 16)
    prepared = CG(preconditioner="ic", rtol=1e-8).setup(prob.A)
    first = prepared.solve(prob.b)
    second = prepared.solve(2 * prob.b)
    factor = prepared.context.preconditioner
    assert prepared.solve(prob.b).stats["preconditioner"] == "ic"
    assert prepared.context.preconditioner is factor  # the same factor served every solve
    torch.testing.assert_close(second.x, 2 * first.x, rtol=1e-7, atol=0)
    assert second.stats["setup_s"] >= prepared.setup_s


def test_prepared_network_counts_its_calls_per_solve() -> None:
    prob = ns.datasets.make_problem("poisson2d", 16)
    prepared = ns.solvers.make_solver("pcg-dcdm").setup(prob.A)
    first = prepared.solve(prob.b)
    second = prepared.solve(prob.b)
    assert first.stats["network_calls"] == second.stats["network_calls"] > 0
    assert second.iterations == first.iterations


def test_prepared_solve_validates_each_right_hand_side() -> None:
    prob = ns.datasets.make_problem("poisson2d", 8)
    prepared = CG().setup(prob.A)
    with pytest.raises(ValueError, match="b has shape"):
        prepared.solve(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ns.NonFiniteError):
        prepared.solve(torch.full((64,), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="does not take a callback"):
        ns.solvers.make_solver("scipy-cg").setup(prob.A).solve(prob.b, callback=print)


def test_cg_deflated_is_cg_with_a_coarse_space_and_matches_dense_deflated_cg() -> None:
    """cg-deflated is CG with ``deflation_block``; checked against deflated CG written out in
    float64 numpy with the assembled ``A`` and ``Z`` (Saad et al. 2000, Algorithm 2.1)."""
    prob = ns.datasets.make_problem("obstacle2d", 16)
    solver = ns.solvers.make_solver("cg-deflated", deflation_block=4, rtol=1e-10)
    assert type(solver) is CG and solver.deflation_block == 4
    res = solver.solve(prob.A, prob.b)
    assert res.converged and res.stats["method"] == "cg-deflated"

    A = prob.A.to_scipy().toarray()
    b = prob.b.numpy()
    deflation = ns.solvers.deflation.BlockDeflation(prob.A, 4)
    Z = deflation.prolong(torch.eye(deflation.vectors, dtype=torch.float64)).numpy().T  # (n, m)
    E = Z.T @ A @ Z
    x = Z @ np.linalg.solve(E, Z.T @ b)
    r = b - A @ x
    p = r - Z @ np.linalg.solve(E, Z.T @ A @ r)
    history = [np.linalg.norm(r)]
    for _ in range(res.iterations):
        Ap = A @ p
        alpha = (r @ r) / (p @ Ap)
        x = x + alpha * p
        r_new = r - alpha * Ap
        beta = (r_new @ r_new) / (r @ r)
        r = r_new
        p = r - Z @ np.linalg.solve(E, Z.T @ A @ r) + beta * p
        history.append(np.linalg.norm(r))
    # The history starts with ||b - A x0|| before the coarse correction and ends with the true
    # residual; in between, the recursive residuals agree with the dense run's to rounding
    # (1e-6 relative leaves room for float64 drift over ~50 iterations of a short recurrence).
    assert res.residual_norms[0] == pytest.approx(np.linalg.norm(b), rel=1e-12)
    np.testing.assert_allclose(res.residual_norms[1:-1], history[1:-1], rtol=1e-6)
    assert res.residual_norms[-1] == pytest.approx(np.linalg.norm(b - A @ res.x.numpy()), rel=1e-6)
    exact = spla.spsolve(prob.A.to_scipy().tocsc(), b)
    assert np.linalg.norm(res.x.numpy() - exact) <= 1e-8 * np.linalg.norm(exact) * 1e3


def test_cg_deflated_refuses_what_it_cannot_deflate() -> None:
    with pytest.raises(ValueError, match="deflation_block"):
        CG(deflation_block=1)
    with pytest.raises(ValueError, match="does not deflate"):
        CG(fused=True, deflation_block=8)
    dense = torch.eye(8, dtype=torch.float64) * 2
    with pytest.raises(TypeError, match="structured-grid operator"):
        CG(deflation_block=2).solve(dense, torch.ones(8, dtype=torch.float64))


def test_convergence_control_start_and_end_of_iteration() -> None:
    """The loop API on a 2-column block: x0 = 0 for a zero right-hand side, a candidate whose
    true residual fails is handed back for replacement, the callback can stop the solve."""
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    B = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    X0 = torch.ones_like(B)

    def apply_A(X: torch.Tensor) -> torch.Tensor:
        return X @ A

    settings = CG(rtol=1e-3, true_residual_every=100)
    control, X, R = start(settings, B, X0, apply_A, max_iters=5)
    assert control.matvecs == 1
    torch.testing.assert_close(R, B - apply_A(X))
    torch.testing.assert_close(X[1], torch.zeros(3, dtype=torch.float64))
    assert control.status[1] is ns.Status.SUCCESS  # zero b: done at x = 0
    assert control.running
    control.begin_iteration()
    # claim a tiny recursive residual for column 0 although its true residual is not small
    claimed = torch.tensor([1e-12, 0.0], dtype=torch.float64)
    replaced = control.end_iteration(
        claimed,
        torch.tensor([False, True]),
        true_residual=lambda: B - apply_A(X),
        iterate=lambda: X,
        callback=None,
    )
    assert replaced is not None and replaced.columns == [0]
    torch.testing.assert_close(replaced.residual[0], B[0] - A @ X[0])
    assert control.status[0] is None and control.matvecs == 2
    control.begin_iteration()
    stop = control.end_iteration(
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([False, True]),
        true_residual=lambda: B - apply_A(X),
        iterate=lambda: X,
        callback=lambda info: info.iteration == 2,
    )
    assert stop is None and control.status[0] is ns.Status.CALLBACK_STOP
    assert not control.running
    assert isinstance(control, ConvergenceControl)
