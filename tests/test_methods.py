"""Conformance: every registered method on every case, against a float64 direct solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns

from .conftest import CASES, Case, make_case

# cg-fused compiles a kernel per grid shape (seconds each); it has its own tests.
METHODS = [m for m in ns.available_methods() if m != "cg-fused"]
# The DCDM network runs on 2-D and 3-D grids: other cases must get a clear error instead.
GRID_ONLY = {"dcdm", "pcg-dcdm", "dcdm-deflated"}
# Deflation cuts the grid into boxes: it needs a grid, of any dimension.
ANY_GRID = {"cg-deflated"}
# The registry's 2-D and 3-D grid cases (checked in the test): where the learned methods run.
GRID_2D_3D = [c for c in sorted(CASES) if c.startswith(("poisson2d", "poisson3d", "darcy2d"))]
# Learned methods on those cases are held to an iteration budget in their own test below, not
# to "it converged eventually" in the grid.
GRID_PAIRS = [
    (case_name, method)
    for case_name in sorted(CASES)
    for method in METHODS
    if not (method in GRID_ONLY and case_name in GRID_2D_3D)
]


def _check_solution(case: Case, res: ns.SolveResult, method: str, rtol: float) -> None:
    """The answer, its residual and the result's contract, checked in float64."""
    b = case.b.numpy() if isinstance(case.b, torch.Tensor) else case.b
    x = res.x.numpy() if isinstance(res.x, torch.Tensor) else res.x
    assert type(res.x) is type(case.b)  # numpy in, numpy out; torch in, torch out
    true = np.linalg.norm(b - case.matrix @ x)
    # The stopping rule holds for the true residual, recomputed here in float64.
    assert true <= rtol * np.linalg.norm(b) * (1 + 1e-6)
    # Two evaluations of b - A x differ by rounding, about eps * ||A|| ||x|| / ||b||.
    rounding = (
        100
        * np.finfo(np.float64).eps
        * spla.norm(case.matrix)
        * np.linalg.norm(x)
        / np.linalg.norm(b)
    )
    assert res.stats["rel_residual"] == pytest.approx(
        true / np.linalg.norm(b), rel=1e-6, abs=rounding
    )
    # Against scipy's direct solve: ||x - x*|| / ||x*|| <= cond(A) * rtol; cond <= 1e4 here.
    x_ref = spla.spsolve(case.matrix.tocsc(), b)
    assert np.linalg.norm(x - x_ref) <= 1e-4 * np.linalg.norm(x_ref)
    # The result's shapes and history follow the contract.
    assert res.residual_norms.ndim == 1
    assert len(res.residual_norms) == res.iterations + 1
    assert res.residual_norms[0] == pytest.approx(np.linalg.norm(b), rel=1e-10)
    assert res.stats["method"] == method
    assert res.stats["setup_s"] >= 0 and res.stats["solve_s"] >= 0


@pytest.mark.parametrize(("case_name", "method"), GRID_PAIRS)
def test_every_method_solves_every_case(case_name: str, method: str) -> None:
    case = make_case(case_name)
    rtol = 1e-9
    if method in GRID_ONLY:  # only cases without a 2-D or 3-D grid are left here
        with pytest.raises((TypeError, ValueError), match="grid"):
            ns.solve(case.A, case.b, method=method, rtol=rtol)
        return
    if method in ANY_GRID and not hasattr(case.A, "grid_shape"):
        with pytest.raises(TypeError, match="structured-grid operator"):
            ns.solve(case.A, case.b, method=method, rtol=rtol)
        return
    res = ns.solve(case.A, case.b, method=method, rtol=rtol)
    assert res.converged, (case_name, method, res)
    _check_solution(case, res, method, rtol)


# pcg-dcdm with the shipped models takes more iterations than CG on these cases (1.5x on
# poisson2d-mixed-spheres, not converged in 2x on poisson2d-neumann, 933 against 141 on
# poisson3d-neumann-spheres): a known weakness of the method, recorded here so that a fix shows.
PCG_DCDM_OVER_BUDGET = {"poisson2d-mixed-spheres", "poisson2d-neumann", "poisson3d-neumann-spheres"}
LEARNED_CASES = [
    pytest.param(
        case_name,
        method,
        marks=[
            pytest.mark.xfail(
                raises=AssertionError, strict=True, reason="pcg-dcdm needs more than CG's budget"
            )
        ]
        if method == "pcg-dcdm" and case_name in PCG_DCDM_OVER_BUDGET
        else [],
    )
    for case_name in GRID_2D_3D
    for method in sorted(GRID_ONLY)
]


@pytest.mark.parametrize(("case_name", "method"), LEARNED_CASES)
def test_learned_method_needs_at_most_cgs_iterations(case_name: str, method: str) -> None:
    """A learned method is worth running only if it beats plain CG: its iteration budget is
    CG's count on the same system and tolerance (the shipped model, float64 data)."""
    case = make_case(case_name)
    assert len(case.A.grid_shape) in (2, 3)
    rtol = 1e-9
    cg = ns.solve(case.A, case.b, method="cg", rtol=rtol)
    assert cg.converged
    res = ns.solve(case.A, case.b, method=method, rtol=rtol, max_iters=cg.iterations)
    assert res.converged, (case_name, method, res.iterations, cg.iterations, res.status)
    assert res.iterations <= cg.iterations
    _check_solution(case, res, method, rtol)


@pytest.mark.parametrize(
    "method", ["cg", "pcg-jacobi", "pcg-ic", "pcg-amg", "fcg", "scipy-cg", "pyamg-sa", "direct"]
)
def test_block_right_hand_sides_converge_per_column(method: str) -> None:
    prob = ns.datasets.poisson((10, 10, 10), bc="mixed", obstacle="spheres", seed=2)
    B = prob.random_rhs(3, seed=1)
    B[:, 1] *= 1e-3  # columns of very different scales converge on their own
    res = ns.solve(prob.A, B, method=method, rtol=1e-8)
    assert res.converged
    assert res.x.shape == B.shape
    assert res.residual_norms.shape == (res.iterations + 1, 3)
    assert len(res.column_iterations) == 3 and len(res.column_status) == 3
    R = B.numpy() - prob.matrix @ res.x.numpy()
    assert np.all(
        np.linalg.norm(R, axis=0) <= 1e-8 * np.linalg.norm(B.numpy(), axis=0) * (1 + 1e-6)
    )
    # Each column equals the single-vector solve of that column.
    for j in range(3):
        single = ns.solve(prob.A, B[:, j].contiguous(), method=method, rtol=1e-8)
        assert single.iterations == res.column_iterations[j]
        # Same iterations on the same data: equal up to rounding amplified over the iterations.
        diff = np.linalg.norm(res.x[:, j].numpy() - single.x.numpy())
        assert diff <= 1e-8 * np.linalg.norm(single.x.numpy())


def test_float32_solves_converge() -> None:
    prob = ns.datasets.poisson((12, 12, 12), bc="mixed", obstacle="spheres").to(dtype=torch.float32)
    for method in ("cg", "pcg-jacobi", "pcg-ic", "pcg-amg"):
        res = ns.solve(prob.A, prob.b, method=method, rtol=1e-5)
        assert res.converged, method
        assert res.x.dtype == torch.float32


def test_column_blocks_give_the_same_answer_as_one_block() -> None:
    prob = ns.datasets.poisson((12, 12, 10), bc="mixed", obstacle="spheres", seed=1)
    B = prob.random_rhs(5, seed=2)
    together = ns.solve(prob.A, B, rtol=1e-9, column_block=5)
    blocked = ns.solve(prob.A, B, rtol=1e-9, column_block=2)
    assert blocked.stats["column_block"] == 2 and together.stats["column_block"] == 5
    assert blocked.column_iterations == together.column_iterations
    assert (
        blocked.residual_norms.shape
        == together.residual_norms.shape
        == (together.iterations + 1, 5)
    )
    np.testing.assert_allclose(blocked.residual_norms, together.residual_norms, rtol=1e-8)
    np.testing.assert_allclose(blocked.x.numpy(), together.x.numpy(), rtol=1e-9, atol=1e-12)
    assert blocked.stats["matvecs"] > together.stats["matvecs"]  # each block pays its own products
    with pytest.raises(ValueError, match="column_block"):
        ns.solve(prob.A, B, column_block=0)
