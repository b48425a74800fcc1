"""Reading linear systems and writing solutions.

Readers (by file suffix):

* Matrix Market ``.mtx`` / ``.mm`` (``scipy.io.mmread``); a right-hand side is read from a
  sibling ``<stem>_b.mtx`` when present (the SuiteSparse convention);
* scipy ``.npz`` (``scipy.sparse.save_npz`` layout, optionally with extra arrays ``b``, ``x``);
* HDF5 ``.h5`` / ``.hdf5`` in the project's linear-system layout (below);
* meshes (``.msh``, ``.vtu``, ``.vtk``, ``.xdmf``, ...) through meshio: :func:`load_problem`
  assembles the P1 Poisson problem on them.

The HDF5 linear-system layout, version 1::

    /                attrs: neuralsolve_format = "linear-system", version = 1,
                            neuralsolve_version, shape = (m, n), plus free attributes
    /A/data          (nnz,)   float      CSR values
    /A/indices       (nnz,)   int        CSR column indices
    /A/indptr        (m + 1,) int        CSR row pointers
    /b               (n,) or (n, k)      optional right-hand side(s)
    /x               (n,) or (n, k)      optional solution(s)

Writers are atomic (temporary file, then rename): :func:`write_system` (``.h5``, ``.mtx``,
``.npz``) and :func:`write_solution` (``.npy``, ``.h5``, and ``.vtu`` / ``.xdmf`` for a problem
with a mesh or a grid, for ParaView).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import meshio
import numpy as np
import scipy.io
import scipy.sparse as sp
import torch

from neuralsolve._version import __version__
from neuralsolve.errors import DataFormatError
from neuralsolve.fileio import atomic_path, h5_writer

__all__ = [
    "MESH_SUFFIXES",
    "LinearSystem",
    "load_problem",
    "read_rhs",
    "read_system",
    "write_solution",
    "write_system",
]

MESH_SUFFIXES = {".msh", ".vtu", ".vtk", ".xdmf", ".xmf", ".mesh", ".med", ".inp", ".off", ".ply"}
MATRIX_SUFFIXES = {".mtx", ".mm", ".npz", ".h5", ".hdf5"}
LAYOUT_VERSION = 1


@dataclass
class LinearSystem:
    """A system read from a file: ``A`` (scipy CSR), optional ``b`` and ``x``, attributes."""

    A: sp.csr_array
    b: np.ndarray | None = None
    x: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"file {str(p)!r} does not exist")
    if p.is_dir():
        raise DataFormatError(f"{str(p)!r} is a directory, expected a file")
    return p


def read_system(path: str | Path) -> LinearSystem:
    """Read ``A`` (and ``b``/``x`` where the file has them) from ``.mtx``, ``.npz`` or ``.h5``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        The file is not of its suffix's format, is truncated, or misses a key (named).
    """
    p = _existing(path)
    suffix = p.suffix.lower()
    if suffix in (".mtx", ".mm"):
        A = _read_mtx_matrix(p)
        sibling = p.with_name(f"{p.stem}_b{p.suffix}")
        b = read_rhs(sibling) if sibling.exists() else None
        return LinearSystem(A=A, b=b, path=p)
    if suffix == ".npz":
        return _read_npz(p)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(p)
    if suffix in MESH_SUFFIXES:
        raise DataFormatError(
            f"{str(p)!r} is a mesh: use load_problem() to assemble a Poisson problem on it"
        )
    raise DataFormatError(
        f"unknown system file suffix {p.suffix!r} for {str(p)!r}; readable: "
        f"{', '.join(sorted(MATRIX_SUFFIXES))} (matrices) and {', '.join(sorted(MESH_SUFFIXES))} (meshes)"
    )


def _read_mtx_matrix(p: Path) -> sp.csr_array:
    try:
        M = scipy.io.mmread(p)
    except Exception as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable Matrix Market file: {exc}") from exc
    return _as_matrix(M, p)


def _as_matrix(M: Any, p: Path) -> sp.csr_array:
    if sp.issparse(M):
        return sp.csr_array(M)
    arr = np.asarray(M)
    if arr.ndim != 2:
        raise DataFormatError(f"{str(p)!r} holds an array of shape {arr.shape}, expected a matrix")
    return sp.csr_array(arr)


def _read_npz(p: Path) -> LinearSystem:
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"data", "indices", "indptr", "shape", "format"} <= keys:
                missing = sorted({"data", "indices", "indptr", "shape", "format"} - keys)
                raise DataFormatError(
                    f"{str(p)!r} lacks the keys {missing} of scipy.sparse.save_npz's layout (found {sorted(keys)})"
                )
            fmt = z["format"].item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            if fmt not in ("csr", "csc"):
                raise DataFormatError(
                    f"{str(p)!r} stores format {fmt!r}; neuralsolve reads csr or csc"
                )
            cls = sp.csr_array if fmt == "csr" else sp.csc_array
            A = sp.csr_array(cls((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])))
            b = z["b"] if "b" in keys else None
            x = z["x"] if "x" in keys else None
    except DataFormatError:
        raise
    except Exception as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable .npz file: {exc}") from exc
    return LinearSystem(A=A, b=b, x=x, path=p)


def _read_h5(p: Path) -> LinearSystem:
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable HDF5 file ({exc})") from exc
    with f:
        for key in ("A/data", "A/indices", "A/indptr"):
            if key not in f:
                raise DataFormatError(
                    f"{str(p)!r} has no dataset {key!r}: expected the neuralsolve linear-system "
                    "layout (A/data, A/indices, A/indptr, attribute shape; see the README)"
                )
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        shape = attrs.get("shape", f["A"].attrs.get("shape"))
        if shape is None:
            raise DataFormatError(f"{str(p)!r} has no 'shape' attribute on / or /A")
        try:
            A = sp.csr_array(
                (f["A/data"][()], f["A/indices"][()], f["A/indptr"][()]),
                shape=tuple(int(s) for s in shape),
            )
        except (ValueError, OSError) as exc:
            raise DataFormatError(
                f"{str(p)!r}: the CSR arrays under /A are inconsistent ({exc})"
            ) from exc
        b = f["b"][()] if "b" in f else None
        x = f["x"][()] if "x" in f else None
    return LinearSystem(A=A, b=b, x=x, attrs=attrs, path=p)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def read_rhs(path: str | Path) -> np.ndarray:
    """Read a right-hand side: ``.npy``, Matrix Market (dense array), or ``.h5`` dataset ``b``."""
    p = _existing(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            b = np.load(p, allow_pickle=False)
        elif suffix in (".mtx", ".mm"):
            M = scipy.io.mmread(p)
            b = M.toarray() if sp.issparse(M) else np.asarray(M)
        elif suffix in (".h5", ".hdf5"):
            with h5py.File(p, "r") as f:
                if "b" not in f:
                    raise DataFormatError(f"{str(p)!r} has no dataset 'b'")
                b = f["b"][()]
        else:
            raise DataFormatError(
                f"unknown right-hand-side suffix {p.suffix!r} for {str(p)!r}: use .npy, .mtx or .h5"
            )
    except DataFormatError:
        raise
    except Exception as exc:
        raise DataFormatError(f"could not read a right-hand side from {str(p)!r}: {exc}") from exc
    b = np.asarray(b)
    if b.ndim == 2 and b.shape[1] == 1:
        b = b[:, 0]
    if b.dtype.kind not in "fiu":
        raise DataFormatError(f"{str(p)!r} holds dtype {b.dtype}, expected real numbers")
    return b.astype(np.float64) if b.dtype.kind != "f" else b


def write_system(path: str | Path, A: Any, b: Any = None, x: Any = None, **attrs: Any) -> Path:
    """Write ``A`` (and ``b``, ``x``) atomically: ``.h5`` (the layout above), ``.npz`` or ``.mtx``."""
    p = Path(path)
    mat = sp.csr_array(A)
    b = _numpy_or_none(b)
    x = _numpy_or_none(x)
    suffix = p.suffix.lower()
    with atomic_path(p) as tmp:
        if suffix in (".h5", ".hdf5"):
            with h5_writer(tmp) as f:
                f.attrs["neuralsolve_format"] = "linear-system"
                f.attrs["version"] = LAYOUT_VERSION
                f.attrs["neuralsolve_version"] = __version__
                f.attrs["shape"] = np.asarray(mat.shape, dtype=np.int64)
                for k, v in attrs.items():
                    f.attrs[k] = v
                g = f.create_group("A")
                g.create_dataset("data", data=mat.data)
                g.create_dataset("indices", data=mat.indices)
                g.create_dataset("indptr", data=mat.indptr)
                g.attrs["format"] = "csr"
                if b is not None:
                    f.create_dataset("b", data=b)
                if x is not None:
                    f.create_dataset("x", data=x)
        elif suffix == ".npz":
            arrays: dict[str, Any] = {
                "format": np.array("csr"),
                "shape": np.asarray(mat.shape),
                "data": mat.data,
                "indices": mat.indices,
                "indptr": mat.indptr,
            }
            if b is not None:
                arrays["b"] = b
            if x is not None:
                arrays["x"] = x
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        elif suffix in (".mtx", ".mm"):
            scipy.io.mmwrite(tmp, sp.coo_array(mat), symmetry="general")
            if b is not None:
                with atomic_path(p.with_name(f"{p.stem}_b{p.suffix}")) as tb:
                    scipy.io.mmwrite(tb, b.reshape(len(b), -1))
        else:
            raise DataFormatError(f"cannot write a system to {p.suffix!r}: use .h5, .npz or .mtx")
    return p


def _numpy_or_none(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def write_solution(path: str | Path, x: Any, *, problem: Any = None, name: str = "u") -> Path:
    """Write a solution atomically.

    ``.npy``: the array; ``.h5``: dataset ``x`` (attributes: version, problem name);
    ``.vtu`` / ``.xdmf``: a ParaView file, which needs ``problem`` (a FEM problem: point data on
    its mesh; a gallery grid problem: cell data on the grid's quads/hexahedra, NaN in solids).
    """
    p = Path(path)
    vec = _numpy_or_none(x)
    if vec is None:
        raise TypeError("x must be an array")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        with atomic_path(p) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vec)
        return p
    if suffix in (".h5", ".hdf5"):
        with atomic_path(p) as tmp, h5_writer(tmp) as f:
            f.create_dataset("x", data=vec)
            f.attrs["neuralsolve_version"] = __version__
            if problem is not None:
                f.attrs["problem"] = str(getattr(problem, "name", ""))
        return p
    if suffix in (".vtu", ".xdmf", ".xmf", ".vtk"):
        mesh = _solution_mesh(problem, vec, name)
        with atomic_path(p) as tmp:
            mesh.write(
                tmp,
                file_format={".vtu": "vtu", ".xdmf": "xdmf", ".xmf": "xdmf", ".vtk": "vtk"}[suffix],
            )
        return p
    raise DataFormatError(f"cannot write a solution to {p.suffix!r}: use .npy, .h5, .vtu or .xdmf")


def _solution_mesh(problem: Any, vec: np.ndarray, name: str) -> meshio.Mesh:
    if problem is None:
        raise ValueError(
            "writing .vtu/.xdmf needs the problem (its mesh or grid): write_solution(path, x, problem=prob)"
        )
    if hasattr(problem, "full_solution"):  # FEM
        u = problem.full_solution(vec)
        return meshio.Mesh(problem.mesh.points, problem.mesh.cells, point_data={name: u})
    if hasattr(problem, "grid"):  # finite-volume grid
        u = problem.to_grid(vec, fill=np.nan)
        return _grid_mesh(problem.grid, u, name)
    raise TypeError(
        f"cannot build a mesh from {type(problem).__name__}: pass a gallery or FEM problem"
    )


def _grid_mesh(grid: Any, u: np.ndarray, name: str) -> meshio.Mesh:
    shape = grid.shape
    axes = [np.linspace(0.0, L, n + 1) for n, L in zip(shape, grid.lengths, strict=True)]
    mesh_axes = np.meshgrid(*axes, indexing="ij")
    points = np.stack([m.ravel() for m in mesh_axes], axis=1)
    if len(shape) == 2:
        points = np.concatenate([points, np.zeros((len(points), 1))], axis=1)
    idx = np.arange(points.shape[0]).reshape(tuple(n + 1 for n in shape))
    if len(shape) == 2:
        c = [idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]]
        cell_type = "quad"
    else:
        c = [
            idx[:-1, :-1, :-1],
            idx[1:, :-1, :-1],
            idx[1:, 1:, :-1],
            idx[:-1, 1:, :-1],
            idx[:-1, :-1, 1:],
            idx[1:, :-1, 1:],
            idx[1:, 1:, 1:],
            idx[:-1, 1:, 1:],
        ]
        cell_type = "hexahedron"
    cells = np.stack([a.ravel() for a in c], axis=1)
    data = u.reshape(len(cells), *u.shape[len(shape) :])
    return meshio.Mesh(points, [(cell_type, cells)], cell_data={name: [data]})


def load_problem(path: str | Path, **fem_options: Any) -> tuple[Any, np.ndarray | None, Any]:
    """Load what a file describes: ``(A, b, problem)``.

    A mesh gives the assembled P1 Poisson problem (``fem_options`` go to
    :func:`~neuralsolve.datasets.fem.poisson_fem`); a matrix file gives ``(A, b or None, None)``.
    """
    p = _existing(path)
    if p.suffix.lower() in MESH_SUFFIXES:
        from .fem import poisson_fem

        prob = poisson_fem(p, **fem_options)
        return prob.A, prob.b.cpu().numpy(), prob
    system = read_system(p)
    return system.A, system.b, None
