"""Boxes: uniform interior and boundary points, containment, the unit-cube maps, bad input."""

from __future__ import annotations

import pytest
import torch

from neuralsolve.domain import Box


def test_uniform_points_fill_the_box_with_the_right_mean() -> None:
    box = Box((-1.0, 0.0, 2.0), (1.0, 4.0, 3.0))
    g = torch.Generator().manual_seed(0)
    X = box.uniform(20_000, generator=g)
    assert X.shape == (20_000, 3) and X.dtype == torch.float64
    assert bool(box.contains(X).all())
    # the mean of a uniform coordinate is the axis midpoint; 5 standard errors of 20k draws
    width = torch.tensor([2.0, 4.0, 1.0], dtype=torch.float64)
    se = width / 12**0.5 / 20_000**0.5
    assert bool(((X.mean(0) - torch.tensor([0.0, 2.0, 2.5])).abs() < 5 * se).all())
    torch.testing.assert_close(box.to_unit(box.from_unit(X)), X)


def test_boundary_points_lie_on_the_surface_faces_weighted_by_area() -> None:
    box = Box((0.0, 0.0), (4.0, 1.0))  # the two long faces hold 8 of the 10 units of perimeter
    X = box.boundary_uniform(10_000, generator=torch.Generator().manual_seed(1))
    lo, hi = box.bounds()
    on = ((X - lo).abs() < 1e-15) | ((X - hi).abs() < 1e-15)
    assert bool(on.any(dim=1).all()) and bool(box.contains(X).all())
    long_faces = float(on[:, 1].double().mean())
    assert abs(long_faces - 0.8) < 5 * (0.8 * 0.2 / 10_000) ** 0.5


def test_bad_boxes_and_points_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="axis 1 is"):
        Box((0.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="as many lower as upper"):
        Box((0.0,), (1.0, 2.0))
    with pytest.raises(ValueError, match="positive integer"):
        Box.cube(2).uniform(0)
    box = Box.cube(2, -1.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        box.check_points(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="outside the box"):
        box.check_points(torch.tensor([[0.0, 0.0], [1.5, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        box.check_points(torch.tensor([[float("nan"), 0.0]], dtype=torch.float64))
    with pytest.raises(TypeError, match="floating torch.Tensor"):
        box.check_points([[0.0, 0.0]])


def test_boundary_lift_matches_the_data_on_every_face_and_calls_it_only_there() -> None:
    box = Box((-1.0, 0.0, 2.0), (1.0, 3.0, 2.5))
    seen: list[torch.Tensor] = []

    def g(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return torch.sin(x[:, 0]) + x[:, 1] * x[:, 2]

    xb = box.boundary_uniform(300, generator=torch.Generator().manual_seed(0))
    corners = torch.tensor([[-1.0, 0.0, 2.0], [1.0, 3.0, 2.5], [1.0, 0.0, 2.2]])
    edge_and_face = torch.cat([xb, corners])
    torch.testing.assert_close(box.boundary_lift(g, edge_and_face), g(edge_and_face))
    seen.clear()
    inside = box.uniform(500, generator=torch.Generator().manual_seed(1))
    lifted = box.boundary_lift(g, inside)
    assert lifted.shape == (500,) and bool(torch.isfinite(lifted).all())
    assert all(bool(on_surface(box, p).all()) for p in seen)


def on_surface(box: Box, x: torch.Tensor) -> torch.Tensor:
    lo, hi = box.bounds(x.dtype)
    return ((x == lo) | (x == hi)).any(dim=1)


def test_boundary_lift_of_a_peak_inside_does_not_see_the_peak() -> None:
    box = Box.cube(2, -1.0, 1.0)

    def peak(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-1000 * (x - 0.5).square().sum(dim=1))

    assert float(box.boundary_lift(peak, torch.tensor([[0.5, 0.5]])).abs()) < 1e-100
