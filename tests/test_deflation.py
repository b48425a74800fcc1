"""Subdomain deflation: the box space and coarse matrix against assembled ones, deflated CG
against a float64 reference of Saad et al.'s algorithm, and deflated DCDM's invariants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns
from neuralsolve.solvers import DCDM
from neuralsolve.solvers.deflation import BlockDeflation, nested_dissection


def _box_matrix(prob: ns.datasets.PoissonProblem, block: int) -> np.ndarray:
    """``Z`` built independently: box index of every active cell from its grid position."""
    grid = prob.A.grid_shape
    position = np.indices(grid).reshape(len(grid), -1).T  # C order, as the unknowns
    mask = prob.A.mask
    active = np.ones(len(position), bool) if mask is None else mask.numpy().reshape(-1) > 0
    boxes = [-(-s // block) for s in grid]
    box = np.ravel_multi_index(tuple((position[active] // block).T), boxes)
    used, column = np.unique(box, return_inverse=True)
    Z = np.zeros((int(active.sum()), len(used)))
    Z[np.arange(len(column)), column] = 1.0
    return Z


CASES = [
    ("obstacle3d", 13, 4),  # solids, a grid that is no multiple of the box
    ("poisson3d", 12, 3),
    ("darcy2d", 21, 5),  # variable coefficients
    ("obstacle2d", 20, 8),
]


@pytest.mark.parametrize(("name", "n", "block"), CASES)
def test_box_space_and_coarse_matrix_match_the_assembled_ones(
    name: str, n: int, block: int
) -> None:
    prob = ns.datasets.make_problem(name, n, seed=3)
    deflation = BlockDeflation(prob.A, block)
    Z = _box_matrix(prob, block)
    assert deflation.vectors == Z.shape[1]
    X = torch.randn(3, Z.shape[0], dtype=torch.float64)
    C = torch.randn(3, Z.shape[1], dtype=torch.float64)
    np.testing.assert_allclose(deflation.restrict(X).numpy(), X.numpy() @ Z, atol=1e-12)
    np.testing.assert_allclose(deflation.prolong(C).numpy(), C.numpy() @ Z.T, atol=0)
    E = Z.T @ (prob.matrix @ Z)  # the probed coarse matrix against the assembled product
    probed = deflation._coarse_matrix().toarray()
    np.testing.assert_allclose(probed, E, rtol=0, atol=1e-12 * np.abs(E).max())
    solved = deflation.coarse_solve(C).numpy()
    np.testing.assert_allclose(solved @ E, C.numpy(), atol=1e-9 * np.abs(C.numpy()).max())


def test_nested_dissection_separates_the_halves_and_cuts_the_fill() -> None:
    """E is factored in nested-dissection order: a permutation whose first split leaves two
    halves with no coupling in E, and a factor with fewer entries than SuperLU's own COLAMD
    order gives, that still solves E to 1e-10."""
    prob = ns.datasets.make_problem("obstacle3d", 40, seed=0)
    deflation = BlockDeflation(prob.A, 2)  # 20^3 boxes less those inside solids
    E = deflation._coarse_matrix()
    positions = deflation._box_positions()
    m = deflation.vectors
    order = nested_dissection(positions)
    np.testing.assert_array_equal(np.sort(order), np.arange(m))
    # the first split: a plane x = 9 (the longest axis is the first of equals) separates the rest
    left, right = positions[:, 0] < 9, positions[:, 0] > 9
    assert abs(E[np.ix_(left, right)]).sum() == 0 and abs(E[np.ix_(left, ~right)]).sum() > 0
    assert (positions[order[-int((positions[:, 0] == 9).sum()) :], 0] == 9).all()
    colamd = spla.splu(E.tocsc())
    assert deflation._lu.nnz < 0.8 * (colamd.L.nnz + colamd.U.nnz)
    Y = np.random.default_rng(0).standard_normal((m, 2))
    X = deflation._lu.solve(Y)
    np.testing.assert_allclose(E @ X, Y, atol=1e-10 * np.abs(Y).max())


def _deflated_cg(A, b: np.ndarray, Z: np.ndarray, iters: int) -> list[float]:
    """Saad, Yeung, Erhel, Guyomarc'h (SIAM J. Sci. Comput. 2000), Algorithm 3.1, in float64."""
    E = Z.T @ (A @ Z)
    coarse = lambda v: Z @ np.linalg.solve(E, Z.T @ v)  # noqa: E731
    x = coarse(b)
    r = b - A @ x
    p = r - coarse(A @ r)
    history = [np.linalg.norm(b)]  # the solver's history starts at ||b - A x0||, x0 = 0
    for _ in range(iters):
        Ap = A @ p
        alpha = (r @ r) / (p @ Ap)
        x = x + alpha * p
        r_new = r - alpha * Ap
        beta = (r_new @ r_new) / (r @ r)
        r = r_new
        p = beta * p + r - coarse(A @ r)
        history.append(np.linalg.norm(r))
    return history


@pytest.mark.parametrize(("name", "n", "block"), [("obstacle3d", 16, 4), ("darcy2d", 32, 8)])
def test_deflated_cg_reproduces_the_reference_residual_history(
    name: str, n: int, block: int
) -> None:
    prob = ns.datasets.make_problem(name, n, seed=3)
    res = ns.solve(
        prob.A, prob.b, method="cg-deflated", deflation_block=block, rtol=1e-14, max_iters=30
    )
    assert res.iterations == 30
    reference = _deflated_cg(prob.matrix, prob.b.numpy(), _box_matrix(prob, block), 30)
    bnorm = float(prob.b.norm())
    np.testing.assert_allclose(
        np.asarray(res.residual_norms) / bnorm, np.asarray(reference) / bnorm, atol=1e-8
    )
    plain = ns.solve(prob.A, prob.b, method="cg", rtol=1e-8)
    deflated = ns.solve(prob.A, prob.b, method="cg-deflated", deflation_block=block, rtol=1e-8)
    assert deflated.converged and deflated.iterations < plain.iterations
    assert deflated.stats["deflation_vectors"] == _box_matrix(prob, block).shape[1]


def test_deflated_dcdm_keeps_residuals_orthogonal_to_the_boxes_and_solves() -> None:
    """After the coarse correction every residual has zero sum over each box (the directions are
    A-orthogonal to the box space), and the answer is scipy's."""
    prob = ns.datasets.make_problem("obstacle3d", 16, seed=0)
    Z = _box_matrix(prob, 4)
    A = prob.matrix
    b = prob.b.numpy()
    box_sums: list[float] = []

    def watch(info: ns.solvers.tracking.IterationInfo) -> None:
        r = b - A @ info.x.numpy().reshape(-1)
        box_sums.append(float(np.abs(Z.T @ r).max() / np.linalg.norm(b)))

    res = ns.solve(prob.A, prob.b, method="dcdm-deflated", deflation_block=4, rtol=1e-8,
                   callback=watch)  # fmt: skip
    plain = ns.solve(prob.A, prob.b, method="dcdm", rtol=1e-8)
    assert res.converged and res.stats["model"].startswith("shipped:")
    assert len(box_sums) == res.iterations and max(box_sums) < 1e-10
    assert res.iterations < plain.iterations
    x_ref = spla.spsolve(A.tocsc(), b)
    np.testing.assert_allclose(res.x.numpy(), x_ref, atol=1e-6 * np.abs(x_ref).max())
    assert res.stats["deflation_block"] == 4 and res.stats["deflation_vectors"] == Z.shape[1]
    # a block of right-hand sides: each column as its own solve
    B = prob.random_rhs(3, seed=1)
    block = ns.solve(prob.A, B, method="dcdm-deflated", deflation_block=4, rtol=1e-8)
    for j in range(3):
        single = ns.solve(prob.A, B[:, j].contiguous(), method="dcdm-deflated",
                          deflation_block=4, rtol=1e-8)  # fmt: skip
        assert abs(single.iterations - block.column_iterations[j]) <= 1


def test_bad_deflation_options_are_refused() -> None:
    for bad in (1, 0, 2.5, True, "8"):
        with pytest.raises(ValueError, match="deflation_block"):
            DCDM(deflation_block=bad)
    matrix = ns.datasets.poisson((6, 6)).matrix
    with pytest.raises(TypeError, match="structured-grid operator"):
        BlockDeflation(ns.as_operator(matrix), 2)
    # all-Neumann with no pinned cell: the constants are in A's null space, and in E's
    for shape, block in (((16, 16, 16), 4), ((40, 40), 2)):
        singular = ns.datasets.poisson(shape, bc="neumann", gauge="none")
        with pytest.raises(ValueError, match="singular or not positive definite.*Pin one cell"):
            BlockDeflation(singular.A, block)
        BlockDeflation(ns.datasets.poisson(shape, bc="neumann").A, block)  # pinned: fine
    # the test is on pivots relative to E's diagonal: a 1e12 coefficient contrast is no reason
    contrast = np.ones((40, 40))
    contrast[:, 20:] = 1e12
    BlockDeflation(ns.datasets.poisson((40, 40), coefficient=contrast).A, 4)


class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def _deflated_systems(block: int) -> tuple[list, list, torch.Tensor, list]:
    """Two obstacle geometries on one grid, their flags and their deflation spaces."""
    from neuralsolve.solvers import geometry_flags

    probs = [ns.datasets.make_problem("obstacle2d", 12, seed=s) for s in (1, 2)]
    ops = [p.A for p in probs]
    flags = torch.stack([geometry_flags(op) for op in ops]).double()
    return probs, ops, flags, [BlockDeflation(op, block) for op in ops]


def test_deflated_loss_matches_the_formula_and_its_gradient() -> None:
    """The loss of the deflated method's first step: the unit residual left by the coarse
    correction, and the deflated direction, against dense float64 algebra; then gradcheck
    through the coarse solve."""
    from neuralsolve.solvers import DCDMNet
    from neuralsolve.solvers.dcdm_train import dcdm_loss

    probs, ops, flags, deflations = _deflated_systems(4)
    geometry = torch.tensor([0, 1, 1])
    gen = torch.Generator().manual_seed(0)
    b = torch.stack(
        [ops[g].to_grid(torch.randn(ops[g].shape[0], generator=gen, dtype=torch.float64))
         for g in geometry.tolist()]
    )  # fmt: skip
    loss = dcdm_loss(_Identity(), b, geometry, ops, flags, deflations)
    expected = []
    for i, g in enumerate(geometry.tolist()):
        A, Z = probs[g].matrix, _box_matrix(probs[g], 4)
        E = Z.T @ (A @ Z)
        coarse = lambda v: Z @ np.linalg.solve(E, Z.T @ v)  # noqa: B023, E731
        v = ops[g].from_grid(b[i]).numpy()
        r = v - A @ coarse(v)
        r /= np.linalg.norm(r)
        q = r - coarse(A @ r)
        s = (q @ r) / (q @ (A @ q))
        expected.append(np.sum((r - s * (A @ q)) ** 2))
    np.testing.assert_allclose(loss.item(), np.mean(expected), rtol=1e-10)
    assert loss.item() < dcdm_loss(_Identity(), b, geometry, ops, flags).item()

    torch.manual_seed(0)
    net = DCDMNet(dim=2, channels=2, coarse_channels=2, activation="gelu", coarsest=2).double()
    names = [name for name, _ in net.named_parameters()]

    def as_loss(*weights: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, weights, strict=True))
        model = lambda x: torch.func.functional_call(net, params, (x,))  # noqa: E731
        return dcdm_loss(model, b, geometry, ops, flags, deflations)

    weights = tuple(torch.randn_like(p).mul(0.3).requires_grad_() for p in net.parameters())
    assert as_loss(*weights).item() > 1e-3
    assert torch.autograd.gradcheck(as_loss, weights, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_training_for_the_deflated_method_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuralsolve.cli import main

    out = tmp_path / "run"
    args = [
        "train", "dcdm", "--problem", "obstacle2d", "--n", "16", "--geometries", "2",
        "--samples", "16", "--ritz", "30", "--steps", "6", "--eval-every", "6",
        "--batch-size", "4", "--set", "channels=4", "--deflation-block", "4",
        "--out", str(out), "--no-progress", "--export", str(tmp_path / "m.pt"),
    ]  # fmt: skip
    assert main(args) == 0
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["metadata"]["deflation_block"] == 4
    assert "--deflation-block 4" in record["command"]
    bad = [*args[:-5], "--deflation-block", "1", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "--deflation-block: deflation_block must be None" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before any data is written


def test_dcdm_deflated_defaults_to_boxes_of_3_and_beats_both_halves() -> None:
    """The registered method (boxes of 3, the shipped model) on an unseen 24^3 grid (training
    used 32^3 and 64^3): fewer iterations than plain DCDM and than deflated CG on the same
    boxes."""
    for name in ("obstacle3d", "poisson3d"):
        prob = ns.datasets.make_problem(name, 24, seed=0)
        res = ns.solve(prob.A, prob.b, method="dcdm-deflated", rtol=1e-6)
        plain = ns.solve(prob.A, prob.b, method="dcdm", rtol=1e-6)
        classical = ns.solve(prob.A, prob.b, method="cg-deflated", deflation_block=3, rtol=1e-6)
        assert res.converged and res.stats["deflation_block"] == 3
        assert res.iterations < plain.iterations and res.iterations < classical.iterations
