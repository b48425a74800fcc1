"""System and solution files: round trips, formats other tools read, and clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import meshio
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

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
