"""Reading linear systems and writing solutions.

Readers (by file suffix):

* Matrix Market ``.mtx`` / ``.mm`` (``scipy.io.mmread``, after the header is checked against
  the file's size and the memory available); a right-hand side is read from a sibling
  ``<stem>_b.mtx`` when present (the SuiteSparse convention). :func:`write_system` stamps
  both files with one write id (a ``%neuralsolve-write-id`` comment) and removes an older
  sibling when it writes no right-hand side; a sibling whose id differs from the matrix's is
  refused, never paired;
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

Every reader checks what it reads before using it: CSR/CSC arrays (bounds, monotone
``indptr``, lengths; :func:`~neuralsolve.linop.check_compressed_arrays`), declared sizes against
the data and the memory available, real (not complex) values, and ``b``/``x`` lengths; a
failure is a :class:`~neuralsolve.errors.DataFormatError` naming the file and the array.

Writers are atomic (temporary file, then rename): :func:`write_system` (``.h5``, ``.mtx``,
``.npz``) and :func:`write_solution` (``.npy``, ``.h5``, and ``.vtu`` / ``.xdmf`` for a problem
with a mesh or a grid, for ParaView).
"""

from __future__ import annotations

import contextlib
import os
import uuid
import zipfile
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
from neuralsolve.linop import check_compressed_arrays

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
        sibling = _rhs_sibling(p)
        b = None
        if sibling.exists():
            _check_same_write(p, sibling)
            b = read_rhs(sibling)
            _check_vector_length(b, A, sibling, "the right-hand side")
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


WRITE_ID = "neuralsolve-write-id:"
_BANNER = "%%MatrixMarket matrix coordinate real general"
# the fewest bytes one entry can take in the file ("1 1 1\n", "1 1\n", "1\n")
_MIN_ENTRY_BYTES = {("coordinate", "pattern"): 4, ("coordinate", "other"): 6, ("array", "other"): 2}


@dataclass
class _MtxHeader:
    format: str  # coordinate or array
    field: str  # real, integer, pattern, complex
    symmetry: str
    rows: int
    cols: int
    entries: int
    write_id: str | None
    data_bytes: int  # bytes after the size line


def _rhs_sibling(p: Path) -> Path:
    return p.with_name(f"{p.stem}_b{p.suffix}")


def _available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``; the physical size where unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62


def _gb(nbytes: float) -> str:
    """``1.6e9`` -> ``"1.6 GB"``, ``16384`` -> ``"16.4 kB"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def _check_fits(p: Path, nbytes: float, what: str) -> None:
    available = _available_memory()
    if nbytes > available:
        raise DataFormatError(
            f"{str(p)!r}: reading {what} takes about {_gb(nbytes)}, more than the "
            f"{_gb(available)} of memory available; refused before allocating (are the "
            "declared sizes right?)"
        )


def _read_mtx_header(p: Path) -> _MtxHeader:
    """Parse and check a Matrix Market header before scipy allocates anything."""
    size = p.stat().st_size
    if size == 0:
        raise DataFormatError(
            f"{str(p)!r} is empty: expected a Matrix Market file starting with {_BANNER!r}"
        )
    write_id = None
    with open(p, "rb") as fh:
        first = fh.readline(1024)
        if not first.lower().startswith(b"%%matrixmarket"):
            shown = first[:60].decode("utf-8", "replace").rstrip()
            raise DataFormatError(
                f"{str(p)!r} is not a Matrix Market file: its first line should be the banner "
                f"{_BANNER!r} (or with array/integer/pattern/symmetric), but it is {shown!r}"
            )
        words = first.decode("ascii", "replace").split()
        if len(words) != 5 or words[1].lower() != "matrix":
            raise DataFormatError(
                f"{str(p)!r} has a malformed Matrix Market banner {first.decode('ascii', 'replace').strip()!r}: "
                f"expected five words, e.g. {_BANNER!r}"
            )
        fmt, fld, symmetry = (w.lower() for w in words[2:])
        while True:
            line = fh.readline(4096)
            if not line:
                raise DataFormatError(f"{str(p)!r} ends before the size line of its header")
            text = line.decode("ascii", "replace").strip()
            if text.startswith("%"):
                if text[1:].strip().startswith(WRITE_ID):
                    write_id = text[1:].strip()[len(WRITE_ID) :].strip()
                continue
            if text:
                break
        data_bytes = size - fh.tell()
    if fmt not in ("coordinate", "array"):
        raise DataFormatError(
            f"{str(p)!r} declares format {fmt!r}; Matrix Market has 'coordinate' and 'array'"
        )
    if fld == "complex":
        raise DataFormatError(
            f"{str(p)!r} holds a complex matrix ('complex' in its banner); neuralsolve solves "
            "real systems and does not drop the imaginary part: write the real form "
            "[[Re A, -Im A], [Im A, Re A]] of the system instead"
        )
    if fld not in ("real", "integer", "pattern"):
        raise DataFormatError(
            f"{str(p)!r} declares field {fld!r}; readable: real, integer, pattern"
        )
    try:
        numbers = [int(w) for w in text.split()]
    except ValueError:
        numbers = []
    expected = 3 if fmt == "coordinate" else 2
    if len(numbers) != expected or min(numbers) < 0:
        raise DataFormatError(
            f"{str(p)!r} has the size line {text[:80]!r}; a {fmt} file needs {expected} "
            f"non-negative integers ({'rows columns entries' if expected == 3 else 'rows columns'})"
        )
    rows, cols = numbers[0], numbers[1]
    if fmt == "coordinate":
        entries = numbers[2]
        capacity = rows * (rows + 1) // 2 if symmetry != "general" and rows == cols else rows * cols
        if entries > capacity:
            raise DataFormatError(
                f"{str(p)!r} declares {entries} entries for a {rows} x {cols} {symmetry} matrix, "
                f"which has room for {capacity}"
            )
    else:
        entries = rows * cols if symmetry == "general" else rows * (rows + 1) // 2
    min_bytes = _MIN_ENTRY_BYTES[(fmt, "pattern" if fld == "pattern" else "other")]
    if entries * min_bytes > data_bytes:
        raise DataFormatError(
            f"{str(p)!r} declares a {rows} x {cols} matrix with {entries} entries, but only "
            f"{data_bytes} bytes of data follow the header (each entry takes at least "
            f"{min_bytes}): the file is truncated or its size line is wrong"
        )
    return _MtxHeader(fmt, fld, symmetry, rows, cols, entries, write_id, data_bytes)


def _read_mtx(p: Path, *, square: bool) -> Any:
    """``scipy.io.mmread(p)`` after the header checks; ``square``: a system matrix."""
    try:
        head = _read_mtx_header(p)
    except OSError as exc:
        raise DataFormatError(f"{str(p)!r} could not be read: {exc.strerror or exc}") from exc
    if head.format == "coordinate":
        stored = head.entries * (1 if head.symmetry == "general" else 2)
        # a stored entry fills one row, or two when it stands for its mirror image too
        rows_filled = head.entries * (1 if head.symmetry == "general" else 2)
        if square and head.rows == head.cols and rows_filled < head.rows:
            raise DataFormatError(
                f"{str(p)!r} declares a {head.rows} x {head.cols} {head.symmetry} matrix "
                f"with {head.entries} stored entries: at least {head.rows - rows_filled} of "
                "its rows are empty, so the system is singular; check the size line"
            )
        # COO triplets, then CSR (values, column indices, row pointers); twice at the peak
        nbytes = 2 * (24 * stored + 8 * (head.rows + 1))
    else:
        nbytes = 2 * 8 * head.rows * head.cols
    _check_fits(p, nbytes, f"a {head.rows} x {head.cols} matrix with {head.entries} entries")
    try:
        return scipy.io.mmread(p)
    except Exception as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable Matrix Market file: {exc}") from exc


def _read_mtx_matrix(p: Path) -> sp.csr_array:
    return _as_matrix(_read_mtx(p, square=True), p)


def _check_same_write(matrix: Path, sibling: Path) -> None:
    """Refuse a ``<name>_b.mtx`` that another write left beside ``<name>.mtx``."""
    mine = _read_mtx_header(matrix).write_id
    if mine is None:
        return  # not written by neuralsolve: the SuiteSparse convention pairs them
    theirs = _read_mtx_header(sibling).write_id
    if theirs != mine:
        raise DataFormatError(
            f"{str(sibling)!r} lies beside {str(matrix)!r} but was not written with it "
            f"(write id {theirs or 'none'}, the matrix has {mine}): it is a right-hand side of "
            "another system, so it is not used; delete it, or pass it explicitly "
            "(read_rhs / `neuralsolve solve --rhs`) if it is the one you want"
        )


def _check_vector_length(v: np.ndarray, A: Any, p: Path, what: str) -> None:
    if v.ndim not in (1, 2) or v.shape[0] != A.shape[0]:
        raise DataFormatError(
            f"{str(p)!r}: {what} has shape {v.shape}, but the matrix is {A.shape[0]} x "
            f"{A.shape[1]}: expected ({A.shape[0]},) or ({A.shape[0]}, k)"
        )


def _check_real(v: np.ndarray, p: Path, name: str) -> None:
    if v.dtype.kind == "c":
        raise DataFormatError(
            f"{str(p)!r}: {name!r} is complex ({v.dtype}); neuralsolve solves real systems and "
            "does not drop the imaginary part: store the real form [[Re A, -Im A], [Im A, Re A]] "
            "of the system instead"
        )
    if v.dtype.kind not in "fiub":
        raise DataFormatError(f"{str(p)!r}: {name!r} has dtype {v.dtype}, expected real numbers")


def _compressed_matrix(
    p: Path, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: Any, *,
    fmt: str, names: tuple[str, str, str],
) -> sp.csr_array:  # fmt: skip
    """A CSR array from file arrays, every structural property checked first."""
    try:
        dims = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 2:
        raise DataFormatError(
            f"{str(p)!r}: the shape {shape!r} is not two integers (rows, columns)"
        )
    _check_real(np.asarray(data), p, names[2])
    try:
        check_compressed_arrays(indptr, indices, data, dims, names=names, fmt=fmt)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DataFormatError(f"{str(p)!r} holds a broken {fmt.upper()} matrix: {exc}") from None
    cls = sp.csr_array if fmt == "csr" else sp.csc_array
    return sp.csr_array(cls((data, indices, indptr), shape=dims))


def _as_matrix(M: Any, p: Path) -> sp.csr_array:
    if sp.issparse(M):
        return sp.csr_array(M)
    arr = np.asarray(M)
    if arr.ndim != 2:
        raise DataFormatError(f"{str(p)!r} holds an array of shape {arr.shape}, expected a matrix")
    return sp.csr_array(arr)


def _read_npz(p: Path) -> LinearSystem:
    try:
        with zipfile.ZipFile(p) as zf:  # the declared (uncompressed) sizes, before reading
            _check_fits(p, sum(i.file_size for i in zf.infolist()), "its arrays")
    except zipfile.BadZipFile as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable .npz file: {exc}") from exc
    except OSError as exc:
        raise DataFormatError(f"{str(p)!r} could not be read: {exc.strerror or exc}") from exc
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
            A = _compressed_matrix(
                p, z["data"], z["indices"], z["indptr"], z["shape"], fmt=fmt,
                names=("indptr", "indices", "data"),
            )  # fmt: skip
            b = z["b"] if "b" in keys else None
            x = z["x"] if "x" in keys else None
    except DataFormatError:
        raise
    except Exception as exc:
        raise DataFormatError(f"{str(p)!r} is not a readable .npz file: {exc}") from exc
    return _checked_system(LinearSystem(A=A, b=b, x=x, path=p))


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
        keys = [k for k in ("A/data", "A/indices", "A/indptr", "b", "x") if k in f]
        for k in keys:
            if not isinstance(f[k], h5py.Dataset):
                raise DataFormatError(f"{str(p)!r}: {k!r} is a group, expected a dataset")
            _check_real(np.empty(0, dtype=f[k].dtype), p, k)
        # declared sizes (a compressed dataset can claim far more than the file holds)
        _check_fits(p, sum(f[k].size * f[k].dtype.itemsize for k in keys), "its datasets")
        try:
            arrays = {k: f[k][()] for k in keys}
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{str(p)!r}: a dataset could not be read ({exc})") from exc
        A = _compressed_matrix(
            p, arrays["A/data"], arrays["A/indices"], arrays["A/indptr"], shape, fmt="csr",
            names=("A/indptr", "A/indices", "A/data"),
        )  # fmt: skip
        b, x = arrays.get("b"), arrays.get("x")
    return _checked_system(LinearSystem(A=A, b=b, x=x, attrs=attrs, path=p))


def _checked_system(system: LinearSystem) -> LinearSystem:
    p = system.path or Path("<memory>")
    for name in ("b", "x"):
        v = getattr(system, name)
        if v is not None:
            v = np.asarray(v)
            _check_real(v, p, name)
            _check_vector_length(v, system.A, p, repr(name))
    return system


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
            M = _read_mtx(p, square=False)
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
    _check_real(b, p, "b")
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
            # one id in both files: a reader pairs them only when the ids agree, so a crash
            # between the two renames, or a sibling left by another write, is never paired
            stamp = f"{WRITE_ID} {uuid.uuid4().hex}"
            scipy.io.mmwrite(tmp, sp.coo_array(mat), comment=stamp, symmetry="general")
            sibling = _rhs_sibling(p)
            if b is not None:
                with atomic_path(sibling) as tb:
                    scipy.io.mmwrite(tb, b.reshape(len(b), -1), comment=stamp)
            elif sibling.exists():
                try:
                    sibling.unlink()  # an older write's right-hand side
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"cannot remove the stale right-hand side {str(sibling)!r}"
                    ) from exc
        else:
            raise DataFormatError(f"cannot write a system to {p.suffix!r}: use .h5, .npz or .mtx")
    return p


def _numpy_or_none(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def write_solution(
    path: str | Path,
    x: Any,
    *,
    problem: Any = None,
    name: str = "u",
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a solution atomically.

    ``.npy``: the array; ``.h5``: dataset ``x`` (attributes: version, problem name, and
    ``attrs``, e.g. the solve's ``status``, ``converged``, ``iterations``, ``rel_residual``);
    ``.vtu`` / ``.xdmf``: a ParaView file, which needs ``problem`` (a FEM problem: point data on
    its mesh; a gallery grid problem: cell data on the grid's quads/hexahedra, NaN in solids).
    ``attrs`` are stored only by ``.h5``.

    Raises
    ------
    FileWriteError
        The file could not be written (an earlier file at ``path`` is kept).
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
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
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
