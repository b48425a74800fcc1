"""System and solution files: round trips, formats other tools read, and clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import meshio
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch

import neuralsolve as ns
from neuralsolve.datasets import read_rhs, read_system, write_solution, write_system
from neuralsolve.fileio import atomic_path

from .conftest import random_spd_sparse


@pytest.mark.parametrize("suffix", [".h5", ".npz", ".mtx"])
def test_system_round_trip(tmp_path: Path, suffix: str) -> None:
    A = random_spd_sparse(30, seed=1)
    b = np.arange(30.0)
    path = write_system(tmp_path / f"sys{suffix}", A, b)
    system = read_system(path)
    assert (system.A - A).count_nonzero() == 0 or np.abs((system.A - A).data).max() < 1e-15
    np.testing.assert_array_equal(system.b, b)


def test_files_are_readable_by_other_tools(tmp_path: Path) -> None:
    A = random_spd_sparse(20, seed=2)
    write_system(tmp_path / "a.npz", A)
    assert np.allclose(sp.load_npz(tmp_path / "a.npz").toarray(), A.toarray())
    write_system(tmp_path / "a.mtx", A)
    assert np.allclose(scipy.io.mmread(tmp_path / "a.mtx").toarray(), A.toarray())
    write_system(tmp_path / "a.h5", A, version_note="x")
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["neuralsolve_format"] == "linear-system" and f.attrs["version"] == 1
        assert f.attrs["version_note"] == "x"
    sp.save_npz(tmp_path / "scipy.npz", sp.csr_matrix(A))
    assert read_system(tmp_path / "scipy.npz").A.shape == (20, 20)


def test_solutions(tmp_path: Path) -> None:
    prob = ns.datasets.poisson((6, 5, 4), obstacle="spheres", seed=1)
    x = ns.solve(prob.A, prob.b, method="direct").x
    np.testing.assert_array_equal(np.load(write_solution(tmp_path / "x.npy", x)), x.numpy())
    with h5py.File(write_solution(tmp_path / "x.h5", x, problem=prob)) as f:
        np.testing.assert_array_equal(f["x"][()], x.numpy())
    grid = meshio.read(write_solution(tmp_path / "x.vtu", x, problem=prob))
    u = grid.cell_data["u"][0]
    assert u.shape == (6 * 5 * 4,) and np.isnan(u).sum() == (~prob.mask).sum()
    fem = ns.datasets.poisson_fem(ns.datasets.unit_square_mesh(5))
    xf = ns.solve(fem.A, fem.b).x
    for suffix in (".vtu", ".xdmf"):
        mesh = meshio.read(write_solution(tmp_path / f"u{suffix}", xf, problem=fem))
        assert mesh.point_data["u"].shape == (36,)
    with pytest.raises(ValueError, match="needs the problem"):
        write_solution(tmp_path / "u.vtu", xf)
    with pytest.raises(ns.DataFormatError, match=".txt"):
        write_solution(tmp_path / "u.txt", xf)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "keep.npy"
    np.save(target, np.ones(3))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npy"]


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mtx"):
        read_system(tmp_path / "missing.mtx")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ns.DataFormatError, match="bad.h5.*not a readable HDF5"):
        read_system(bad)
    with h5py.File(tmp_path / "nokey.h5", "w") as f:
        f.create_dataset("A/data", data=np.ones(2))
    with pytest.raises(ns.DataFormatError, match="nokey.h5.*'A/indices'"):
        read_system(tmp_path / "nokey.h5")
    (tmp_path / "bad.mtx").write_text("not a matrix market file")
    with pytest.raises(ns.DataFormatError, match="bad.mtx"):
        read_system(tmp_path / "bad.mtx")
    np.savez(tmp_path / "other.npz", foo=np.ones(3))
    with pytest.raises(ns.DataFormatError, match="other.npz.*lacks the keys"):
        read_system(tmp_path / "other.npz")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ns.DataFormatError, match="trunc.npz"):
        read_system(tmp_path / "trunc.npz")
    with pytest.raises(ns.DataFormatError, match="unknown system file suffix"):
        read_system(Path(__file__))
    with pytest.raises(ns.DataFormatError, match="load_problem"):
        (tmp_path / "m.msh").write_text("")
        read_system(tmp_path / "m.msh")
    with pytest.raises(ns.DataFormatError, match="no dataset 'b'"):
        read_rhs(
            tmp_path / "a.h5"
            if (tmp_path / "a.h5").exists()
            else write_system(tmp_path / "a.h5", sp.eye_array(2))
        )


# ----------------------------------------------------------------------------- hostile files
def _tridiagonal(n: int = 4) -> sp.csr_array:
    return sp.csr_array(sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n)))


def _spoil(arrays: dict[str, np.ndarray], how: str) -> None:
    """Break the CSR arrays (``indptr``, ``indices``, ``data``) of a 4 x 4 tridiagonal."""
    ptr, idx = arrays["indptr"], arrays["indices"]
    if how == "index too large":
        idx[3] = 10**6
    elif how == "negative index":
        idx[3] = -5
    elif how == "decreasing indptr":
        ptr[2] = 9
    elif how == "indptr too short":
        arrays["indptr"] = ptr[:-1]
    elif how == "indptr end":
        ptr[-1] -= 1
    elif how == "data too short":
        arrays["data"] = arrays["data"][:-1]


SPOILS = {
    "index too large": r"indices' holds column index 1000000 at position 3, outside \[0, 4\)",
    "negative index": r"indices' holds column index -5 at position 3",
    "decreasing indptr": r"indptr' decreases at position 3 \(9 then 8\)",
    "indptr too short": r"indptr' has 4 entries, expected 5",
    "indptr end": r"indptr' ends at 9 but .*indices' has 10",
    "data too short": r"indices' has 10 entries but .*data' has 9",
}


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize("how", list(SPOILS))
def test_a_broken_csr_structure_is_refused_naming_file_and_array(
    tmp_path: Path, suffix: str, how: str
) -> None:
    """Before: a segfault or abort inside scipy, or a silent wrong answer."""
    A = _tridiagonal()
    arrays = {"indptr": A.indptr.copy(), "indices": A.indices.copy(), "data": A.data.copy()}
    _spoil(arrays, how)
    path = tmp_path / f"bad{suffix}"
    if suffix == ".h5":
        with h5py.File(path, "w") as f:
            f.attrs["shape"] = [4, 4]
            for k, v in arrays.items():
                f[f"A/{k}"] = v
    else:
        np.savez(path, format=np.array("csr"), shape=np.array([4, 4]), **arrays)
    prefix = "A/" if suffix == ".h5" else ""
    with pytest.raises(ns.DataFormatError, match=rf"bad\{suffix}.*'{prefix}{SPOILS[how]}"):
        read_system(path)


def test_as_operator_checks_the_structure_of_scipy_matrices() -> None:
    bad = sp.csr_array((np.ones(2), np.array([0, 5]), np.array([0, 1, 2])), shape=(2, 2))
    with pytest.raises(ValueError, match=r"column index 5 at position 1, outside \[0, 2\)"):
        ns.as_operator(bad)


def _mtx(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_matrix_market_header_is_checked_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a 76-byte file declaring 3e8 x 3e8 allocated gigabytes."""
    head = "%%MatrixMarket matrix coordinate real general\n"
    huge = _mtx(tmp_path / "huge.mtx", head + "300000000 300000000 1\n1 1 1.0\n")
    with pytest.raises(ns.DataFormatError, match=r"huge\.mtx.*299999999 of its rows are empty"):
        read_system(huge)
    short = _mtx(tmp_path / "short.mtx", head + "40 40 1000\n1 1 1.0\n")
    with pytest.raises(ns.DataFormatError, match=r"short\.mtx.*1000 entries.*truncated"):
        read_system(short)
    over = _mtx(tmp_path / "over.mtx", head + "2 2 5\n" + "1 1 1.0\n" * 5)
    with pytest.raises(ns.DataFormatError, match=r"over\.mtx.*5 entries.*room for 4"):
        read_system(over)
    # symmetric storage: 2 stored entries fill all 4 rows of this nonsingular matrix
    sym = "%%MatrixMarket matrix coordinate real symmetric\n4 4 2\n2 1 1.0\n4 3 1.0\n"
    A = read_system(_mtx(tmp_path / "sym.mtx", sym)).A
    assert A.shape == (4, 4) and A.nnz == 4
    fits = write_system(tmp_path / "fits.mtx", _tridiagonal(100))
    monkeypatch.setattr("neuralsolve.datasets.io._available_memory", lambda: 4096)
    with pytest.raises(ns.DataFormatError, match=r"fits\.mtx.*more than the .* available"):
        read_system(fits)


def test_declared_hdf5_and_npz_sizes_are_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 200_000  # compresses to a few kB, but reads as 1.6 MB per array
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.attrs["shape"] = [n, n]
        f.create_dataset("A/indptr", data=np.zeros(n + 1, dtype=np.int64), compression="gzip")
        f["A/indices"] = np.zeros(0, dtype=np.int64)
        f["A/data"] = np.zeros(0)
    np.savez_compressed(
        tmp_path / "big.npz", format=np.array("csr"), shape=np.array([n, n]),
        indptr=np.zeros(n + 1, dtype=np.int64), indices=np.zeros(0, dtype=np.int64),
        data=np.zeros(0),
    )  # fmt: skip
    monkeypatch.setattr("neuralsolve.datasets.io._available_memory", lambda: 10**6)
    for name in ("big.h5", "big.npz"):
        assert (tmp_path / name).stat().st_size < 10**5
        with pytest.raises(ns.DataFormatError, match=rf"{name}.*more than the .* available"):
            read_system(tmp_path / name)


def test_complex_input_is_refused_never_truncated(tmp_path: Path) -> None:
    """Before: the imaginary part was dropped and the solve reported success."""
    cplx = _mtx(
        tmp_path / "c.mtx",
        "%%MatrixMarket matrix coordinate complex general\n2 2 2\n1 1 1.0 1.0\n2 2 1.0 -1.0\n",
    )
    with pytest.raises(ns.DataFormatError, match=r"c\.mtx.*complex.*imaginary part"):
        read_system(cplx)
    with pytest.raises(ns.DataFormatError, match=r"c\.mtx.*complex"):
        read_rhs(cplx)
    A = sp.csr_array(np.eye(2) * (1 + 1j))
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.attrs["shape"] = [2, 2]
        for k in ("data", "indices", "indptr"):
            f[f"A/{k}"] = getattr(A, k)
    with pytest.raises(ns.DataFormatError, match=r"c\.h5.*'A/data' is complex"):
        read_system(tmp_path / "c.h5")
    write_system(tmp_path / "cb.h5", sp.eye_array(2))
    with h5py.File(tmp_path / "cb.h5", "a") as f:
        f["b"] = np.array([1 + 1j, 1.0])
    with pytest.raises(ns.DataFormatError, match=r"cb\.h5.*'b' is complex"):
        read_system(tmp_path / "cb.h5")
    np.savez(
        tmp_path / "c.npz", format=np.array("csr"), shape=np.array([2, 2]),
        data=A.data, indices=A.indices, indptr=A.indptr,
    )  # fmt: skip
    with pytest.raises(ns.DataFormatError, match=r"c\.npz.*'data' is complex"):
        read_system(tmp_path / "c.npz")
    for matrix in (A, A.toarray(), torch.eye(2, dtype=torch.complex128)):
        with pytest.raises(TypeError, match="complex.*does not drop the imaginary part"):
            ns.as_operator(matrix, dtype="float64")


def test_a_right_hand_side_of_the_wrong_length_names_the_file(tmp_path: Path) -> None:
    write_system(tmp_path / "s.h5", sp.eye_array(3), b=np.ones(5))
    with pytest.raises(ns.DataFormatError, match=r"s\.h5.*'b' has shape \(5,\).*3 x 3"):
        read_system(tmp_path / "s.h5")


def test_a_stale_right_hand_side_is_never_paired(tmp_path: Path) -> None:
    """Before: writing x.mtx without b left an older x_b.mtx that solve then used."""
    A = _tridiagonal()
    write_system(tmp_path / "x.mtx", A, b=np.arange(4.0))
    np.testing.assert_array_equal(read_system(tmp_path / "x.mtx").b, np.arange(4.0))
    write_system(tmp_path / "x.mtx", 2 * A)  # no right-hand side this time
    assert not (tmp_path / "x_b.mtx").exists()
    assert read_system(tmp_path / "x.mtx").b is None
    # a sibling from another write (or a crash between the two renames) is refused
    write_system(tmp_path / "y.mtx", A, b=np.ones(4))
    (tmp_path / "x_b.mtx").write_bytes((tmp_path / "y_b.mtx").read_bytes())
    with pytest.raises(ns.DataFormatError, match=r"x_b\.mtx.*beside .*x\.mtx.*not written with"):
        read_system(tmp_path / "x.mtx")
    np.testing.assert_array_equal(read_rhs(tmp_path / "x_b.mtx"), np.ones(4))  # explicit: fine
    # files from other tools carry no write id: the SuiteSparse convention still pairs them
    scipy.io.mmwrite(tmp_path / "z.mtx", A)
    scipy.io.mmwrite(tmp_path / "z_b.mtx", np.full((4, 1), 3.0))
    np.testing.assert_array_equal(read_system(tmp_path / "z.mtx").b, np.full(4, 3.0))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"e\.mtx' is empty: expected a Matrix Market file"),
        (b"garbage\x00\x01\n", r"e\.mtx' is not a Matrix Market file: its first line .*garbage"),
        (b"%%MatrixMarket matrix coordinate real\n", r"e\.mtx' has a malformed .*banner"),
        (b"%%MatrixMarket matrix coordinate real general\n2 2\n", r"e\.mtx' has the size line"),
    ],
)
def test_unreadable_matrix_market_files_say_what_is_wrong(
    tmp_path: Path, content: bytes, match: str
) -> None:
    """Before: "Line 1: Not a Matrix Market file. Missing banner." for all of these."""
    (tmp_path / "e.mtx").write_bytes(content)
    with pytest.raises(ns.DataFormatError, match=match):
        read_system(tmp_path / "e.mtx")


def test_a_matrix_market_file_we_may_not_read_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: scipy opened it in C++ and reported "Missing banner". (Root reads any file, so
    the refusal is simulated where the operating system gives it.)"""
    import builtins

    path = write_system(tmp_path / "locked.mtx", _tridiagonal())
    real_open = builtins.open

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded_open)
    with pytest.raises(ns.DataFormatError, match=r"locked\.mtx' could not be read: Permission"):
        read_system(path)
