"""P1 finite elements: accuracy on manufactured solutions, boundary detection, bad meshes."""

from __future__ import annotations

from pathlib import Path

import meshio
import numpy as np
import pytest

import neuralsolve as ns

PI = np.pi


def _nodal_error(prob: ns.datasets.FEMProblem, exact) -> float:
    res = ns.solve(prob.A, prob.b, method="pcg-amg", rtol=1e-12)
    assert res.converged
    u = prob.full_solution(res.x)
    return float(
        np.abs(u - exact(*prob.mesh.points[:, : 3 if prob.cell_type == "tetra" else 2].T)).max()
    )


def test_triangles_converge_at_second_order() -> None:
    exact = lambda x, y: np.sin(PI * x) * np.sin(PI * y)  # noqa: E731
    errors = [
        _nodal_error(
            ns.datasets.poisson_fem(
                ns.datasets.unit_square_mesh(n), f=lambda x, y: 2 * PI**2 * exact(x, y)
            ),
            exact,
        )
        for n in (8, 16, 32)
    ]
    orders = [np.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert min(orders) >= 1.8, (errors, orders)


def test_tetrahedra_converge_at_second_order() -> None:
    exact = lambda x, y, z: np.sin(PI * x) * np.sin(PI * y) * np.sin(PI * z)  # noqa: E731
    errors = [
        _nodal_error(
            ns.datasets.poisson_fem(
                ns.datasets.unit_cube_mesh(n), f=lambda x, y, z: 3 * PI**2 * exact(x, y, z)
            ),
            exact,
        )
        for n in (4, 8, 16)
    ]
    orders = [np.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert min(orders) >= 1.75, (errors, orders)


def test_nonzero_dirichlet_data_is_exact_for_linear_solutions() -> None:
    # P1 reproduces linear functions exactly: u = 1 + 2x - y with f = 0.
    exact = lambda x, y: 1 + 2 * x - y  # noqa: E731
    prob = ns.datasets.poisson_fem(ns.datasets.unit_square_mesh(6), f=0.0, g=exact)
    assert _nodal_error(prob, exact) < 1e-10


def test_boundary_nodes_and_interior_count() -> None:
    prob = ns.datasets.poisson_fem(ns.datasets.unit_square_mesh(5))
    assert len(prob.boundary) == 4 * 5 and prob.n == 16
    cube = ns.datasets.poisson_fem(ns.datasets.unit_cube_mesh(3))
    assert cube.n == 8 and len(cube.boundary) == 4**3 - 8
    assert prob.A.is_spd


def test_mesh_from_file(tmp_path: Path) -> None:
    mesh = ns.datasets.unit_square_mesh(4)
    path = tmp_path / "square.vtu"
    mesh.write(path)
    prob = ns.datasets.poisson_fem(path)
    assert prob.n == 9


def test_bad_meshes(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.msh"):
        ns.datasets.poisson_fem(tmp_path / "nope.msh")
    garbage = tmp_path / "bad.vtu"
    garbage.write_text("this is not a mesh")
    with pytest.raises(ns.DataFormatError, match="bad.vtu"):
        ns.datasets.poisson_fem(garbage)
    lines = meshio.Mesh(np.array([[0.0, 0.0], [1.0, 0.0]]), [("line", np.array([[0, 1]]))])
    with pytest.raises(ns.DataFormatError, match="no 'triangle' or 'tetra' cells"):
        ns.datasets.poisson_fem(lines)
    flat = meshio.Mesh(
        np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), [("triangle", np.array([[0, 1, 2]]))]
    )
    with pytest.raises(ns.DataFormatError, match="degenerate"):
        ns.datasets.poisson_fem(flat)
    single = meshio.Mesh(
        np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [("triangle", np.array([[0, 1, 2]]))]
    )
    with pytest.raises(ns.DataFormatError, match="no interior node"):
        ns.datasets.poisson_fem(single)
    with pytest.raises(ns.NonFiniteError, match="f gives NaN"):
        ns.datasets.poisson_fem(
            ns.datasets.unit_square_mesh(3), f=lambda x, y: np.full_like(x, np.nan)
        )
