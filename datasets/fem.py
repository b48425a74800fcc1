"""P1 finite elements for ``-Δu = f`` with Dirichlet data on triangle and tetrahedral meshes.

Meshes are read with meshio (any format it knows, or a ``meshio.Mesh``). On each simplex ``T``
with vertices ``v_0..v_d`` the barycentric gradients are the columns of ``E^{-1}``
(``E = [v_1 - v_0, ..., v_d - v_0]^T``) and ``∇λ_0 = -Σ ∇λ_i``; the element stiffness is
``|T| ∇λ_a · ∇λ_b`` and the element mass ``|T| (1 + δ_ab) / ((d + 1)(d + 2))``. The load is
``M f`` with ``f`` at the nodes (second order). Nodes on boundary facets (facets of one cell
only) carry the Dirichlet value ``g``; the system keeps the interior nodes:
``A = K_II``, ``b = (M f)_I - K_IB g_B``, symmetric positive definite. The scheme converges at
second order in the nodal maximum norm on smooth solutions (checked in the tests).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import meshio
import numpy as np
import scipy.sparse as sp
import torch

from neuralsolve.checks import check_int
from neuralsolve.errors import DataFormatError, NonFiniteError
from neuralsolve.linop import SparseOperator, check_dtype, torch_dtype

__all__ = ["FEMProblem", "poisson_fem", "read_mesh", "unit_cube_mesh", "unit_square_mesh"]

Data = float | Callable[..., np.ndarray]


@dataclass
class FEMProblem:
    """A P1 finite-element Poisson problem on a mesh.

    Attributes
    ----------
    A : SparseOperator
        Stiffness matrix on the interior nodes (SPD).
    b : torch.Tensor
        ``(n,)`` load vector with the Dirichlet data moved to the right.
    mesh : meshio.Mesh
        The mesh (points and the simplex cells used).
    interior, boundary : numpy.ndarray
        Point indices of the unknowns and of the Dirichlet nodes.
    boundary_values : numpy.ndarray
        ``g`` at the boundary nodes.
    """

    name: str
    A: SparseOperator
    b: torch.Tensor
    mesh: meshio.Mesh
    interior: np.ndarray
    boundary: np.ndarray
    boundary_values: np.ndarray
    cell_type: str
    _matrix: sp.csr_array | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def matrix(self) -> sp.csr_array:
        """The stiffness matrix as scipy CSR."""
        if self._matrix is None:
            self._matrix = self.A.to_scipy()
        return self._matrix

    def full_solution(self, x: Any) -> np.ndarray:
        """Nodal values on every mesh point: ``x`` inside, ``g`` on the boundary (0 on points no
        cell uses)."""
        vec = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if vec.shape[0] != self.n:
            raise ValueError(f"expected a vector of length {self.n}, got shape {vec.shape}")
        u = np.zeros(
            len(self.mesh.points) if vec.ndim == 1 else (len(self.mesh.points), vec.shape[1])
        )
        u[self.interior] = vec
        u[self.boundary] = self.boundary_values if vec.ndim == 1 else self.boundary_values[:, None]
        return u


def read_mesh(path: str | Path) -> meshio.Mesh:
    """Read a mesh with meshio; a missing or unreadable file raises an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
    captured = io.StringIO()
    try:
        # meshio reports some failures by printing and calling sys.exit(1)
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            return meshio.read(path)
    except (Exception, SystemExit) as exc:
        detail = " ".join(captured.getvalue().split()) or f"{type(exc).__name__}: {exc}"
        raise DataFormatError(f"could not read mesh {str(path)!r} with meshio: {detail}") from None


def _simplices(mesh: meshio.Mesh, name: str) -> tuple[str, np.ndarray]:
    for cell_type in ("tetra", "triangle"):
        blocks = [c.data for c in mesh.cells if c.type == cell_type]
        if blocks:
            return cell_type, np.concatenate(blocks).astype(np.int64)
    found = sorted({c.type for c in mesh.cells}) or ["none"]
    raise DataFormatError(
        f"mesh {name} has no 'triangle' or 'tetra' cells (found: {', '.join(found)})"
    )


def _evaluate(data: Data, coords: np.ndarray, what: str) -> np.ndarray:
    if callable(data):
        vals = np.asarray(data(*coords.T), dtype=np.float64)
        vals = np.broadcast_to(vals, (coords.shape[0],)).copy()
    else:
        vals = np.full(coords.shape[0], float(data))
    if not np.all(np.isfinite(vals)):
        raise NonFiniteError(f"{what} gives NaN or infinite values")
    return vals


def poisson_fem(
    mesh: meshio.Mesh | str | Path,
    *,
    f: Data = 1.0,
    g: Data = 0.0,
    dtype: Any = torch.float64,
    device: torch.device | str = "cpu",
) -> FEMProblem:
    """Assemble ``-Δu = f`` in the mesh's domain with ``u = g`` on its boundary (P1 elements).

    Parameters
    ----------
    mesh : meshio.Mesh, str or Path
        Triangle (2-D) or tetrahedral (3-D) mesh; points of a triangle mesh may carry a constant
        third coordinate.
    f, g : float or callable
        Source and Dirichlet data: constants or functions of the coordinates ``(x, y[, z])``.

    Returns
    -------
    FEMProblem

    Raises
    ------
    DataFormatError
        Unreadable mesh, no simplex cells, degenerate cells, or no interior node.
    """
    name = repr(str(mesh)) if isinstance(mesh, str | Path) else "(meshio.Mesh)"
    if isinstance(mesh, str | Path):
        mesh = read_mesh(mesh)
    if not isinstance(mesh, meshio.Mesh):
        raise TypeError(f"mesh must be a meshio.Mesh or a path, got {type(mesh).__name__}")
    torch_dt = check_dtype(torch_dtype(dtype), "dtype")
    cell_type, cells = _simplices(mesh, name)
    d = 3 if cell_type == "tetra" else 2
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.shape[1] < d:
        raise DataFormatError(
            f"mesh {name} has {points.shape[1]}-D points but {cell_type} cells need {d}-D"
        )
    if d == 2 and points.shape[1] == 3 and np.ptp(points[:, 2]) > 0:
        raise DataFormatError(
            f"mesh {name} is a surface in 3-D; poisson_fem needs a planar triangle mesh"
        )
    coords = points[:, :d]
    if cells.min() < 0 or cells.max() >= len(points):
        raise DataFormatError(f"mesh {name} has cells referring to points that do not exist")

    # Element matrices, vectorised over cells.
    E = coords[cells[:, 1:]] - coords[cells[:, :1]]  # (m, d, d): rows are edges from v0
    det = np.linalg.det(E)
    vol = np.abs(det) / (2.0 if d == 2 else 6.0)
    scale = np.max(np.abs(E)) ** d if E.size else 1.0
    if np.any(vol <= 1e-14 * scale):
        bad = int(np.flatnonzero(vol <= 1e-14 * scale)[0])
        raise DataFormatError(f"mesh {name} has degenerate (zero-volume) cells, e.g. cell {bad}")
    Einv = np.linalg.inv(E)  # columns are the gradients of lambda_1..lambda_d
    grads = np.empty((len(cells), d + 1, d))
    grads[:, 1:, :] = np.transpose(Einv, (0, 2, 1))
    grads[:, 0, :] = -grads[:, 1:, :].sum(axis=1)
    K_loc = vol[:, None, None] * grads @ np.transpose(grads, (0, 2, 1))
    M_loc = vol[:, None, None] * (np.ones((d + 1, d + 1)) + np.eye(d + 1)) / ((d + 1) * (d + 2))
    rows = np.repeat(cells, d + 1, axis=1).reshape(-1)
    cols = np.tile(cells, (1, d + 1)).reshape(-1)
    npts = len(points)
    K = sp.csr_array(sp.coo_array((K_loc.reshape(-1), (rows, cols)), shape=(npts, npts)))
    Mm = sp.csr_array(sp.coo_array((M_loc.reshape(-1), (rows, cols)), shape=(npts, npts)))

    boundary = _boundary_nodes(cells, d)
    used = np.unique(cells)
    interior = np.setdiff1d(used, boundary)
    if interior.size == 0:
        raise DataFormatError(f"mesh {name} has no interior node: refine it")
    fvals = _evaluate(f, coords, "f")
    gvals = _evaluate(g, coords[boundary], "g")
    load = Mm @ fvals
    A = sp.csr_array(K[interior][:, interior])
    A.sort_indices()
    b = load[interior] - K[interior][:, boundary] @ gvals
    used_mesh = meshio.Mesh(points, [(cell_type, cells)])
    return FEMProblem(
        name=f"fem-{cell_type}-{len(cells)}",
        A=SparseOperator.from_scipy(
            A, dtype=torch_dt, device=device, symmetric=True, positive_definite=True
        ),
        b=torch.from_numpy(b).to(device=device, dtype=torch_dt),
        mesh=used_mesh,
        interior=interior,
        boundary=boundary,
        boundary_values=gvals,
        cell_type=cell_type,
        _matrix=A if torch_dt == torch.float64 else None,
    )


def _boundary_nodes(cells: np.ndarray, d: int) -> np.ndarray:
    """Nodes of the facets that belong to exactly one cell."""
    facets = np.concatenate([cells[:, list(c)] for c in itertools.combinations(range(d + 1), d)])
    facets.sort(axis=1)
    uniq, counts = np.unique(facets, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])


def unit_square_mesh(n: int) -> meshio.Mesh:
    """A structured triangulation of ``[0, 1]^2``: ``n x n`` squares, two triangles each."""
    n = check_int("n", n, minimum=1)
    x = np.linspace(0.0, 1.0, n + 1)
    X, Y = np.meshgrid(x, x, indexing="ij")
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, e = idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, e], 1), np.stack([a, e, c], 1)])
    return meshio.Mesh(points, [("triangle", tris)])


def unit_cube_mesh(n: int) -> meshio.Mesh:
    """A structured tetrahedralisation of ``[0, 1]^3``: ``n^3`` cubes, six tetrahedra each
    (Kuhn's conforming split along the paths from (0,0,0) to (1,1,1))."""
    n = check_int("n", n, minimum=1)
    x = np.linspace(0.0, 1.0, n + 1)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    points = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    idx = np.arange((n + 1) ** 3).reshape(n + 1, n + 1, n + 1)
    base = idx[:-1, :-1, :-1].ravel()
    stride = np.array([(n + 1) ** 2, n + 1, 1])
    tets = []
    for perm in itertools.permutations(range(3)):
        verts = [base]
        offset = np.zeros_like(base)
        for axis in perm:
            offset = offset + stride[axis]
            verts.append(base + offset)
        tets.append(np.stack(verts, axis=1))
    return meshio.Mesh(points, [("tetra", np.concatenate(tets))])
