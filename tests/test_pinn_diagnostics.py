"""error_sources: the split of a -lap u = f PINN's error into the parts its residual and its
boundary misfit cause, checked on networks whose two parts are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsolve as ns
from neuralsolve.solvers import MLP, PINN
from neuralsolve.solvers.pinn.diagnostics import error_sources


class ExactPlus(torch.nn.Module):
    """``u* + a (1 + x) / 2 + b (1 - x^2)(1 - y^2)``: the first added term is harmonic (its
    error comes from the boundary only), the second vanishes on the boundary (its error comes
    from the residual only); the five-point Laplacian is exact on both."""

    def __init__(self, exact, a: float, b: float) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.exact, self.a, self.b = exact, a, b
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        x, y = p[:, 0], p[:, 1]
        bump = (1 - x**2) * (1 - y**2)
        return (self.exact(p) + self.a * (1 + x) / 2 + self.b * bump + 0 * self.dummy)[:, None]


def grid_norm(f: np.ndarray, h: float) -> float:
    return float(np.sqrt((f**2).sum() * h * h))


@pytest.mark.parametrize("a, b", [(0.01, 0.0), (0.0, 0.02), (0.01, -0.02)])
def test_the_split_matches_closed_forms(a: float, b: float) -> None:
    prob = ns.datasets.pde.make("peak2d")
    pinn = PINN(prob, net=ExactPlus(prob.exact, a, b), n_points=10, dtype="float64")
    grid = 81
    out = error_sources(pinn, grid=grid)
    xs = np.linspace(-1.0, 1.0, grid)
    h = xs[1] - xs[0]
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    exact = np.exp(-1000.0 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2))
    boundary_part = a * (1 + X) / 2
    residual_part = b * (1 - X**2) * (1 - Y**2)
    scale = grid_norm(exact, h)
    assert out["from_boundary"] == pytest.approx(grid_norm(boundary_part, h) / scale, abs=1e-9)
    assert out["from_residual"] == pytest.approx(grid_norm(residual_part, h) / scale, abs=1e-9)
    assert out["rel_l2"] == pytest.approx(
        grid_norm(boundary_part + residual_part, h) / scale, rel=1e-9
    )
    assert out["split_mismatch"] < 1e-9
    assert out["boundary_max"] == pytest.approx(abs(a), rel=1e-12)


def test_a_trained_network_splits_consistently() -> None:
    """On a real (briefly trained) network the split is only as exact as the grid: the two
    parts must add up to the direct error within the finite-difference error, which shrinks
    with the grid."""
    prob = ns.datasets.pde.make("peak2d", k=20.0)
    pinn = PINN(prob, net=MLP(width=16, depth=2, seed=1), n_points=200, dtype="float64")
    pinn.fit(100, optimizer="adam", lr=1e-2, progress=False)
    coarse, fine = error_sources(pinn, grid=41), error_sources(pinn, grid=161)
    assert fine["split_mismatch"] < 1e-3 * fine["rel_l2"]
    assert fine["split_mismatch"] < coarse["split_mismatch"]
    assert fine["from_residual"] + fine["from_boundary"] >= fine["rel_l2"] * (1 - 1e-6)
    assert math.isfinite(fine["boundary_max"]) and fine["boundary_max"] > 0


@pytest.mark.parametrize(
    "name, message",
    [
        ("two-peak2d", "residual is not -lap u - f"),
        ("exp5d", "splits 2-D problems; this one is 5-D"),
    ],
)
def test_problems_outside_the_split_are_refused(name: str, message: str) -> None:
    pinn = PINN(ns.datasets.pde.make(name), net=MLP(width=4, depth=1), n_points=10)
    with pytest.raises(ValueError, match=f"problem '{name}'.*{message}"):
        error_sources(pinn, grid=21)


@pytest.mark.parametrize("grid", [3, 100_000])
def test_a_grid_out_of_range_is_refused(grid: int) -> None:
    pinn = PINN(ns.datasets.pde.make("peak2d"), net=MLP(width=4, depth=1), n_points=10)
    with pytest.raises(ValueError, match="grid"):
        error_sources(pinn, grid=grid)


def test_a_non_finite_network_is_refused_by_name() -> None:
    pinn = PINN(ns.datasets.pde.make("peak2d"), net=MLP(width=4, depth=1), n_points=10)
    with torch.no_grad():
        next(pinn.model.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="problem 'peak2d'.*(NaN or infinite|not finite)"):
        error_sources(pinn, grid=21)
