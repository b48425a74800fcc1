"""CG against scipy's CG, the invariants of CONVENTIONS 14, and every way a solve can end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns
from neuralsolve.solvers import CG, FlexibleCG, JacobiPreconditioner

from .conftest import CASES, make_case


def scipy_history(A: sp.csr_array, b: np.ndarray, rtol: float, M=None) -> tuple[int, np.ndarray]:
    """scipy's iteration count and true residual norms ||b - A x_k||."""
    hist = [np.linalg.norm(b)]
    spla.cg(A, b, rtol=rtol, M=M, callback=lambda xk: hist.append(np.linalg.norm(b - A @ xk)))
    return len(hist) - 1, np.array(hist)


@pytest.mark.parametrize(
    "case_name", [c for c in sorted(CASES) if not c.startswith("fem")] + ["fem-cube"]
)
def test_cg_matches_scipy_iterations_and_history(case_name: str) -> None:
    case = make_case(case_name)
    b = case.b.numpy() if isinstance(case.b, torch.Tensor) else case.b
    its, hist = scipy_history(case.matrix, b, 1e-10)
    res = ns.solve(case.A, case.b, method="cg", rtol=1e-10)
    assert res.converged
    n = case.matrix.shape[0]
    if its < n:
        # CG converging in fewer than n steps does so by the spectrum, and the count is the
        # algorithm's: equal up to one step where the last residual lands near the threshold.
        assert abs(res.iterations - its) <= 1
    # Otherwise (spd-dense: n = 60 at cond 1e3 needs more than 2n steps at rtol 1e-10; the 1-D
    # Poisson cases end at exact-arithmetic termination, step n) loss of orthogonality decides
    # the count, and two correct float64 implementations differ by several steps (127 against
    # scipy's 129 with other BLAS builds): rounding noise, not a property of CG.
    m = min(20, its, res.iterations) + 1
    # The first 20 residual norms agree to 1e-8 relative (float64): the same algorithm, before
    # rounding has grown (the largest gap over these steps is 2e-9, spd-sparse). Norms at the
    # rounding level (a tiny system solved exactly in a few steps) are noise, not history.
    keep = hist[:m] > 1e-12 * hist[0]
    np.testing.assert_allclose(res.residual_norms[:m][keep], hist[:m][keep], rtol=1e-8)


def test_pcg_jacobi_matches_scipy_with_the_same_preconditioner() -> None:
    case = make_case("darcy2d")
    d = case.matrix.diagonal()
    M = spla.LinearOperator(case.matrix.shape, matvec=lambda r: r / d, dtype=np.float64)
    its, hist = scipy_history(case.matrix, case.b.numpy(), 1e-10, M=M)
    res = ns.solve(case.A, case.b, method="pcg-jacobi", rtol=1e-10)
    assert abs(res.iterations - its) <= 1
    np.testing.assert_allclose(res.residual_norms[:21], hist[:21], rtol=1e-8)


def test_flexible_cg_with_a_fixed_spd_preconditioner_equals_pcg() -> None:
    case = make_case("poisson3d-mixed-random")
    M = JacobiPreconditioner(case.A)
    a = CG(rtol=1e-10).solve(case.A, case.b, M=M)
    f = FlexibleCG(rtol=1e-10).solve(case.A, case.b, M=M)
    assert abs(a.iterations - f.iterations) <= 1
    # Polak-Ribiere equals Fletcher-Reeves in exact arithmetic when M is fixed: the histories
    # agree while rounding is small (the first iterations).
    np.testing.assert_allclose(a.residual_norms[:15], f.residual_norms[:15], rtol=1e-8)


def test_flexible_cg_converges_with_a_variable_preconditioner() -> None:
    prob = ns.datasets.poisson((16, 16), bc="dirichlet")
    d = prob.A.diagonal()
    calls = [0]

    def M(r: torch.Tensor) -> torch.Tensor:  # a different SPD scaling at each call
        calls[0] += 1
        return r / d * (1.0 + 0.5 * np.sin(calls[0]))

    res = ns.solve(prob.A, prob.b, method="fcg", M=M, rtol=1e-8)
    assert res.converged and calls[0] > 1


# ------------------------------------------------------------------------- invariants
def test_x0_is_not_mutated_and_is_used() -> None:
    case = make_case("poisson2d-dirichlet")
    exact = spla.spsolve(case.matrix.tocsc(), case.b.numpy())
    x0 = torch.from_numpy(exact + 1e-3 * np.random.default_rng(0).standard_normal(len(exact)))
    saved = x0.clone()
    res = ns.solve(case.A, case.b, method="cg", x0=x0, rtol=1e-8)
    assert torch.equal(x0, saved)
    cold = ns.solve(case.A, case.b, method="cg", rtol=1e-8)
    assert res.iterations < cold.iterations
    assert res.residual_norms[0] == pytest.approx(
        np.linalg.norm(case.b.numpy() - case.matrix @ x0.numpy())
    )


@pytest.mark.parametrize("method", [m for m in ns.available_methods() if m != "cg-fused"])
def test_zero_right_hand_side_gives_zero(method: str) -> None:
    case = make_case("poisson3d-dirichlet")
    b = torch.zeros_like(case.b)
    x0 = torch.ones_like(case.b)
    res = ns.solve(case.A, b, method=method, x0=None if method == "direct" else x0)
    assert res.converged and res.iterations <= (1 if method == "direct" else 0)
    assert torch.count_nonzero(res.x) == 0


@pytest.mark.parametrize(
    "method", ["cg", "pcg-jacobi", "pcg-ic", "pcg-amg", "fcg", "scipy-cg", "pyamg-sa"]
)
def test_max_iters_one_gives_one_iteration(method: str) -> None:
    case = make_case("poisson2d-dirichlet")
    res = ns.solve(case.A, case.b, method=method, max_iters=1, rtol=1e-12)
    assert res.iterations == 1
    assert res.status is ns.Status.MAX_ITERATIONS and not res.converged
    assert len(res.residual_norms) == 2


def test_max_iters_zero_does_nothing() -> None:
    case = make_case("poisson2d-dirichlet")
    res = ns.solve(case.A, case.b, max_iters=0)
    assert res.iterations == 0 and res.status is ns.Status.MAX_ITERATIONS
    assert torch.count_nonzero(res.x) == 0


def test_positional_tolerance_is_a_type_error() -> None:
    case = make_case("tridiagonal-scipy")
    with pytest.raises(TypeError):
        ns.solve(case.A, case.b, "cg", 1e-8)  # type: ignore[misc]
    with pytest.raises(TypeError):
        CG(1e-8)  # type: ignore[misc]


def test_atol_alone_stops_the_solve() -> None:
    case = make_case("poisson2d-dirichlet")
    atol = 1e-3 * float(np.linalg.norm(case.b.numpy()))
    res = ns.solve(case.A, case.b, rtol=0.0, atol=atol)
    assert res.converged
    assert np.linalg.norm(case.b.numpy() - case.matrix @ res.x.numpy()) <= atol
    assert res.residual_norms[-2] > atol  # it did not stop early


def test_callback_sees_every_iteration_and_can_stop() -> None:
    case = make_case("poisson2d-dirichlet")
    seen = []
    res = ns.solve(case.A, case.b, callback=lambda info: seen.append(info.iteration), rtol=1e-8)
    assert seen == list(range(1, res.iterations + 1))
    stopped = ns.solve(case.A, case.b, callback=lambda info: info.iteration >= 3, rtol=1e-12)
    assert stopped.status is ns.Status.CALLBACK_STOP and stopped.iterations == 3


def test_raise_for_status() -> None:
    case = make_case("poisson2d-dirichlet")
    res = ns.solve(case.A, case.b, max_iters=2)
    with pytest.raises(ns.ConvergenceError, match="max_iterations") as info:
        res.raise_for_status()
    assert info.value.result is res
    ok = ns.solve(case.A, case.b)
    assert ok.raise_for_status() is ok


# ------------------------------------------------------------------------- failures
def test_indefinite_operator_ends_with_indefinite_and_finite_answer() -> None:
    # Symmetric with a positive diagonal (so not refused up front) but indefinite.
    A = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    b = np.array([1.0, -1.0, 1.0])
    res = ns.solve(A, b)
    assert res.status is ns.Status.INDEFINITE
    assert np.all(np.isfinite(res.x))


def test_indefinite_column_stops_alone() -> None:
    A = np.diag([1.0, -1.0, 2.0])
    ns_op = ns.as_operator(A, positive_definite=None)
    B = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # column 0 never sees the negative mode
    res = ns.solve(ns_op, B, check_spd=False)
    assert res.column_status[0] is ns.Status.SUCCESS
    assert res.column_status[1] is ns.Status.INDEFINITE
    assert res.status is ns.Status.INDEFINITE
    assert np.all(np.isfinite(res.x))


def test_non_finite_preconditioner_output_is_caught() -> None:
    case = make_case("poisson2d-dirichlet")
    res = ns.solve(case.A, case.b, M=lambda r: r * float("nan"))
    assert res.status is ns.Status.NON_FINITE
    assert torch.isfinite(res.x).all()


def test_indefinite_preconditioner_is_reported() -> None:
    case = make_case("poisson2d-dirichlet")
    res = ns.solve(case.A, case.b, M=lambda r: -r)
    assert res.status is ns.Status.PRECONDITIONER_INDEFINITE


def test_float32_below_its_precision_stagnates_instead_of_looping() -> None:
    prob = ns.datasets.poisson((32, 32), dtype=torch.float32)
    res = ns.solve(prob.A, prob.b, rtol=1e-12, max_iters=5000)
    assert res.status is ns.Status.STAGNATION
    assert res.iterations < 5000
    assert res.stats["rel_residual"] < 1e-5


def test_true_residual_is_checked_before_convergence() -> None:
    """A recursive residual that lies (float32, tight rtol) never yields SUCCESS unless the
    true residual passes."""
    prob = ns.datasets.poisson((24, 24, 24), dtype=torch.float32)
    res = ns.solve(prob.A, prob.b, rtol=2e-6, max_iters=2000)
    true = np.linalg.norm(
        prob.b.double().numpy() - prob.matrix.astype(np.float64) @ res.x.double().numpy()
    )
    if res.converged:
        assert true <= 2e-6 * np.linalg.norm(prob.b.double().numpy()) * 1.001
    else:
        assert res.status is ns.Status.STAGNATION


def test_singular_consistent_system_with_check_spd_false() -> None:
    prob = ns.datasets.poisson((16, 16), bc="neumann", gauge="none")
    with pytest.raises(ns.NotSPDError, match="check_spd=False"):
        ns.solve(prob.A, prob.b)
    res = ns.solve(prob.A, prob.b, check_spd=False, rtol=1e-8)
    assert res.converged
    r = prob.b.numpy() - prob.matrix @ res.x.numpy()
    assert np.linalg.norm(r) <= 1e-8 * np.linalg.norm(prob.b.numpy()) * 1.001


def test_solver_hyperparameters_are_validated() -> None:
    with pytest.raises(ValueError, match="rtol"):
        CG(rtol=-1.0)
    with pytest.raises(ValueError, match="rtol"):
        CG(rtol=float("nan"))
    with pytest.raises(TypeError, match="max_iters"):
        CG(max_iters=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="true_residual_every"):
        CG(true_residual_every=0)
    with pytest.raises(ValueError, match="fused"):
        CG(fused=True, preconditioner="ic")
    case = make_case("tridiagonal-scipy")
    with pytest.raises(ValueError, match="both M= and preconditioner"):
        CG(preconditioner="jacobi").solve(case.A, case.b, M=np.eye(100))


def test_unknown_method_and_option_list_the_valid_ones() -> None:
    case = make_case("tridiagonal-scipy")
    with pytest.raises(ValueError, match="available: cg, cg-fused, pcg-jacobi"):
        ns.solve(case.A, case.b, method="pcg-ilu")
    with pytest.raises(TypeError, match="valid options: .*rtol"):
        ns.solve(case.A, case.b, method="cg", tolerance=1e-3)
