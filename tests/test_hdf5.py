"""Operator-learning data in HDF5: the own layout's round trip, atomic block writes, the
PDEBench layouts, sub-sampling, splits, normalisers, lazy multi-worker reads, clear errors."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from neuralsolve.datasets.hdf5 import describe, format_description
from neuralsolve.datasets.hdf5_writer import DatasetWriter, write_dataset
from neuralsolve.datasets.io import write_system
from neuralsolve.datasets.operator_data import H5Dataset, Normalizer, split_indices
from neuralsolve.datasets.subsampling import reachable_resolutions
from neuralsolve.errors import DataFormatError, NonFiniteError


def _pair(n: int = 6, grid: tuple[int, ...] = (8, 5), seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, *grid)).astype(np.float32)
    y = rng.standard_normal((n, 1, *grid)).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------- own layout, writing


def test_own_layout_round_trip(tmp_path: Path) -> None:
    x, y = _pair()
    coords = {"x": np.linspace(0, 1, 8), "y": np.linspace(0, 2, 5)}
    path = write_dataset(
        tmp_path / "d.h5",
        x,
        torch.from_numpy(y),
        pde="darcy",
        parameters={"alpha": 1.5, "n": np.int64(3), "shape": np.array([8, 5])},
        coordinates=coords,
        note="hello",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]  # no temporary left
    ds = H5Dataset(path)
    assert len(ds) == 6 and ds.layout == "neuralsolve"
    assert (ds.input_channels, ds.output_channels, ds.grid) == (2, 1, (8, 5))
    xi, yi = ds[3]
    assert xi.dtype == torch.float32 and xi.shape == (2, 8, 5) and yi.shape == (1, 8, 5)
    np.testing.assert_array_equal(xi.numpy(), x[3])
    np.testing.assert_array_equal(yi.numpy(), y[3])
    np.testing.assert_array_equal(ds[-1][0].numpy(), x[-1])
    X, Y = ds.load(block=4)
    np.testing.assert_array_equal(X.numpy(), x)
    np.testing.assert_array_equal(Y.numpy(), y)
    assert ds.attrs["parameters"] == {"alpha": 1.5, "n": 3, "shape": [8, 5]}
    assert ds.attrs["pde"] == "darcy" and ds.attrs["note"] == "hello"
    assert ds.attrs["grid_kind"] == "cell" and ds.attrs["version"] == 1
    np.testing.assert_array_equal(ds.coordinates["y"], coords["y"])  # type: ignore[index]

    info = describe(path)
    assert info["layout"] == "neuralsolve" and info["samples"] == 6
    assert info["input_shape"] == (2, 8, 5) and info["output_shape"] == (1, 8, 5)
    assert info["grid"] == (8, 5) and info["dtype"] == "float32"
    assert info["datasets"]["inputs"] == {"shape": (6, 2, 8, 5), "dtype": "float32"}
    assert set(info["datasets"]) == {"inputs", "outputs", "coordinates/x", "coordinates/y"}
    text = format_description(info)
    assert "neuralsolve" in text and "inputs" in text and "8 x 5" in text and "alpha" in text
    with h5py.File(path) as f:  # chunked by sample
        assert (
            f["inputs"].chunks == (1, 2, 8, 5) and f.attrs["neuralsolve_format"] == "operator-data"
        )


def test_float64_round_trip_is_exact(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((3, 1, 7))
    path = write_dataset(tmp_path / "d64.h5", x, x**2, pde="toy", grid_kind="node")
    assert describe(path)["dtype"] == "float64"
    ds = H5Dataset(path, dtype=torch.float64)
    X, Y = ds.load()
    np.testing.assert_array_equal(X.numpy(), x)
    np.testing.assert_array_equal(Y.numpy(), x**2)


def test_writer_in_blocks(tmp_path: Path) -> None:
    x, y = _pair(n=5)
    path = tmp_path / "blocks.h5"
    with DatasetWriter(path, 5, (2, 8, 5), (1, 8, 5), pde="darcy", dtype="float32") as w:
        w.write(3, x[3:], y[3:])
        assert not path.exists()  # written under a temporary name until the block ends
        w.write(0, x[:3], y[:3])
    X, Y = H5Dataset(path).load()
    np.testing.assert_array_equal(X.numpy(), x)
    np.testing.assert_array_equal(Y.numpy(), y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.h5"]


def test_writer_leaves_no_file_on_error_or_missing_rows(tmp_path: Path) -> None:
    x, y = _pair(n=6)
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(path, 6, (2, 8, 5), (1, 8, 5), pde="darcy") as w:
            w.write(0, x, y)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"rows 2-3, 5 of 0 to 5 have no data \(3 missing\)"):
        with DatasetWriter(path, 6, (2, 8, 5), (1, 8, 5), pde="darcy") as w:
            w.write(0, x[:2], y[:2])
            w.write(4, x[4:5], y[4:5])
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed rewrite
    write_dataset(path, x, y, pde="darcy")
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, 6, (2, 8, 5), (1, 8, 5), pde="other") as w:
            raise RuntimeError
    assert describe(path)["attrs"]["pde"] == "darcy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


def test_writer_validation(tmp_path: Path) -> None:
    x, y = _pair(n=4)
    path = tmp_path / "v.h5"
    with pytest.raises(ValueError, match=r"grid \(8, 4\) but input_shape \(2, 8, 5\)"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 4), pde="darcy")
    with pytest.raises(ValueError, match="grid_kind must be 'cell' or 'node'"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="darcy", grid_kind="vertex")
    with pytest.raises(ValueError, match=r"coordinates\['x'\] has shape \(7,\), expected \(8,\)"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="d", coordinates={"x": np.zeros(7)})
    with pytest.raises(ValueError, match="'z' is not a grid axis"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="d", coordinates={"z": np.zeros(5)})
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="d", dtype="int32")
    with pytest.raises(ValueError, match="set by the writer"):
        DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="d", version=2)
    writer = DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="darcy")
    with pytest.raises(RuntimeError, match="needs an open writer"):
        writer.write(0, x, y)
    bad = x.copy()
    bad[2, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"shape \(2, 8, 5\), expected \(k, 2, 8, 5\)"):
        with writer as w:
            w.write(0, x[0], y[0])
    with pytest.raises(NonFiniteError, match="inputs holds NaN.*sample 2"):
        with DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="darcy") as w:
            w.write(0, bad, y)
    with pytest.raises(NonFiniteError, match="float32's range.*sample 1"):
        with DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="darcy") as w:
            w.write(
                0, x, np.where(np.arange(4)[:, None, None, None] == 1, 1e300, y.astype(np.float64))
            )
    with pytest.raises(ValueError, match="rows 3 to 4 are outside the file's rows 0 to 3"):
        with DatasetWriter(path, 4, (2, 8, 5), (1, 8, 5), pde="darcy") as w:
            w.write(3, x[:2], y[:2])
    with pytest.raises(ValueError, match="parameters cannot be stored as JSON"):
        write_dataset(path, x, y, pde="darcy", parameters={"f": object()})
    with pytest.raises(ValueError, match=r"inputs\[:, None\]"):
        write_dataset(path, x[:, 0, :, 0], y[:, 0, :, 0], pde="darcy")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- PDEBench files


def test_pdebench_darcy(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nu = rng.random((4, 6, 6)).astype(np.float32)
    tensor = rng.random((4, 1, 6, 6)).astype(np.float32)
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as f:
        f["nu"] = nu
        f["tensor"] = tensor
        f["x-coordinate"] = np.linspace(0, 1, 6)
        f["y-coordinate"] = np.linspace(0, 1, 6)
    info = describe(path)
    assert info["layout"] == "pdebench-darcy" and info["input_shape"] == (1, 6, 6)
    ds = H5Dataset(path)
    x, y = ds[2]
    np.testing.assert_array_equal(x.numpy(), nu[2][None])
    np.testing.assert_array_equal(y.numpy(), tensor[2])
    assert set(ds.coordinates) == {"x", "y"}  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no time axis"):
        H5Dataset(path, input_step=1)


def test_pdebench_tensor_1d_and_steps(tmp_path: Path) -> None:
    tensor = np.random.default_rng(3).random((3, 5, 16)).astype(np.float32)  # (N, Nt, Nx)
    path = tmp_path / "1D_Advection_Sols_beta0.1.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = tensor
        f["x-coordinate"] = np.linspace(0, 1, 16)
        f["t-coordinate"] = np.linspace(0, 2, 6)
    info = describe(path)
    assert info["layout"] == "pdebench-tensor" and info["time_steps"] == 5
    assert info["input_shape"] == (1, 16)
    ds = H5Dataset(path)
    x, y = ds[1]
    np.testing.assert_array_equal(x.numpy(), tensor[1, 0][None])
    np.testing.assert_array_equal(y.numpy(), tensor[1, -1][None])
    ds = H5Dataset(path, [2, 0], input_step=1, output_step=3)
    assert (ds.input_step, ds.output_step) == (1, 3)
    X, Y = ds.load()
    np.testing.assert_array_equal(X.numpy(), tensor[[2, 0], 1][:, None])
    np.testing.assert_array_equal(Y.numpy(), tensor[[2, 0], 3][:, None])
    with pytest.raises(ValueError, match="output_step=5 is out of range.*5 time steps"):
        H5Dataset(path, output_step=5)


def test_pdebench_tensor_2d_channels_last(tmp_path: Path) -> None:
    tensor = np.random.default_rng(4).random((2, 4, 6, 5, 3)).astype(np.float32)
    path = tmp_path / "2D_tensor.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = tensor
        f["x-coordinate"] = np.linspace(0, 1, 6)
        f["y-coordinate"] = np.linspace(0, 1, 5)
    ds = H5Dataset(path, input_step=-2)
    assert ds.grid == (6, 5) and ds.input_channels == 3 and ds.output_channels == 3
    x, y = ds[1]
    np.testing.assert_array_equal(x.numpy(), np.moveaxis(tensor[1, 2], -1, 0))
    np.testing.assert_array_equal(y.numpy(), np.moveaxis(tensor[1, 3], -1, 0))


def test_pdebench_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = {name: rng.random((4, 6, 5, 2)).astype(np.float32) for name in ("0002", "0000", "0001")}
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(path, "w") as f:
        for name, d in data.items():  # created out of order: samples follow sorted names
            f[f"{name}/data"] = d
            f[f"{name}/grid/x"] = np.linspace(0, 1, 6)
            f[f"{name}/grid/y"] = np.linspace(0, 1, 5)
            f[f"{name}/grid/t"] = np.linspace(0, 1, 4)
    info = describe(path)
    assert info["layout"] == "pdebench-groups" and info["samples"] == 3
    assert info["input_shape"] == (2, 6, 5) and info["time_steps"] == 4
    ds = H5Dataset(path)
    x, y = ds[1]
    np.testing.assert_array_equal(x.numpy(), np.moveaxis(data["0001"][0], -1, 0))
    np.testing.assert_array_equal(y.numpy(), np.moveaxis(data["0001"][-1], -1, 0))
    X, Y = H5Dataset(path, [2, 0], input_step=1, output_step=2).load()
    np.testing.assert_array_equal(X[0].numpy(), np.moveaxis(data["0002"][1], -1, 0))
    np.testing.assert_array_equal(Y[1].numpy(), np.moveaxis(data["0000"][2], -1, 0))
    np.testing.assert_array_equal(ds.coordinates["x"], np.linspace(0, 1, 6))  # type: ignore[index]


# ----------------------------------------------------------------------------- sub-sampling


def test_subsampling_equals_numpy_slicing(tmp_path: Path) -> None:
    x, y = _pair(n=2, grid=(64, 65))
    coords = {"x": np.arange(64.0), "y": np.arange(65.0)}
    path = write_dataset(tmp_path / "fine.h5", x, y, pde="darcy", coordinates=coords)
    ds = H5Dataset(path, resolution=(32, 33))  # 64 -> 32: stride 2; 65 -> 33: stride 2, ends kept
    assert ds.grid == (32, 33) and ds.full_grid == (64, 65) and ds.strides == (2, 2)
    X, Y = ds.load()
    np.testing.assert_array_equal(X.numpy(), x[:, :, ::2, ::2])
    np.testing.assert_array_equal(Y.numpy(), y[:, :, ::2, ::2])
    np.testing.assert_array_equal(ds.coordinates["y"], coords["y"][::2])  # type: ignore[index]
    assert ds.coordinates["y"][-1] == 64.0  # type: ignore[index]
    X, _ = H5Dataset(path, resolution=(16, 17)).load()  # strides 4 and 4
    np.testing.assert_array_equal(X.numpy(), x[:, :, ::4, ::4])
    with pytest.raises(ValueError, match=r"resolution 30 .* 64 points.*reachable: 64, 32, 22, 16"):
        H5Dataset(path, resolution=(30, 33))
    with pytest.raises(ValueError, match="2 axes"):
        H5Dataset(path, resolution=(32,))
    z = np.random.default_rng(0).random((2, 1, 21)).astype(np.float32)
    X, _ = H5Dataset(write_dataset(tmp_path / "n.h5", z, z, pde="t"), resolution=6).load()
    np.testing.assert_array_equal(X.numpy(), z[:, :, ::4])  # (21 - 1) / (6 - 1) = 4
    assert 85 in reachable_resolutions(421) and 33 in reachable_resolutions(65)
    assert reachable_resolutions(64) == [64, 32, 22, 16, 10, 8, 4, 2, 1]


# ---------------------------------------------------------------------------------- splits


def test_split_indices() -> None:
    s = split_indices(10)
    assert [len(s[k]) for k in ("train", "val", "test")] == [8, 0, 2]
    assert s["test"].tolist() == [8, 9]
    s = split_indices(10, test=0.2, val=0.1)
    assert (s["train"].tolist(), s["val"].tolist(), s["test"].tolist()) == (
        list(range(7)),
        [7],
        [8, 9],
    )
    s = split_indices(10, train=3, val=2, test=2)  # val and test stay at the end
    assert (s["train"].tolist(), s["val"].tolist(), s["test"].tolist()) == (
        [0, 1, 2],
        [6, 7],
        [8, 9],
    )
    assert split_indices(10, train=1.0, test=0)["train"].size == 10
    with pytest.raises(ValueError, match="exceed the 10 available"):
        split_indices(10, test=8, val=3)
    with pytest.raises(ValueError, match="exceed the 10 available"):
        split_indices(10, train=9, test=2)
    with pytest.raises(ValueError, match="test=0.01 of 10 samples rounds to 0"):
        split_indices(10, test=0.01)
    with pytest.raises(ValueError, match="training split of 10 samples is empty"):
        split_indices(10, test=5, val=5)
    with pytest.raises(ValueError, match="float outside"):
        split_indices(10, test=1.5)
    with pytest.raises(ValueError, match="negative"):
        split_indices(10, val=-1)
    with pytest.raises(TypeError, match="count"):
        split_indices(10, test=True)
    with pytest.raises(ValueError, match="positive"):
        split_indices(0)


# ------------------------------------------------------------------------------ normaliser


def test_normalizer_statistics_and_inverse(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    scale = np.array([1.0, 10.0, 0.01])[None, :, None, None]
    shift = np.array([0.0, -5.0, 100.0])[None, :, None, None]
    data = rng.standard_normal((7, 3, 5, 4)) * scale + shift
    norm = Normalizer.fit(torch.from_numpy(data), batch=3)  # three blocks of samples
    # float64 statistics merged over blocks: agree with numpy's two-pass ones to rounding
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    np.testing.assert_allclose(norm.std.numpy(), data.std(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    t = torch.from_numpy(data)
    enc = norm.encode(t)
    np.testing.assert_allclose(enc.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-12)
    torch.testing.assert_close(norm.decode(enc), t, rtol=1e-12, atol=1e-12)

    path = write_dataset(tmp_path / "n.h5", data, 2 * data + 1, pde="toy")
    ds = H5Dataset(path, dtype=torch.float64)
    from_file = Normalizer.fit(ds, "output", batch=2)
    np.testing.assert_allclose(
        from_file.mean.numpy(), 2 * data.mean(axis=(0, 2, 3)) + 1, rtol=1e-12
    )
    np.testing.assert_allclose(from_file.std.numpy(), 2 * data.std(axis=(0, 2, 3)), rtol=1e-12)

    state = norm.state_dict()
    assert set(state) == {"mean", "std"}
    restored = Normalizer.identity(3)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.encode(t), enc, rtol=0, atol=0)
    torch.testing.assert_close(Normalizer.from_state_dict(state).std, norm.std, rtol=0, atol=0)
    assert norm.encode(t.float()).dtype == torch.float32

    const = Normalizer.fit(torch.ones(4, 1, 3))
    assert torch.isfinite(const.encode(torch.ones(2, 1, 3))).all()
    bad = data.copy()
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"channel\(s\) \[1\]"):
        Normalizer.fit(torch.from_numpy(bad))
    with pytest.raises(ValueError, match=r"expected \(B, 3, \*grid\)"):
        norm.encode(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="'input' or 'output'"):
        Normalizer.fit(ds, "target")


# ------------------------------------------------------------------- laziness and workers


def test_lazy_pickle_and_workers(tmp_path: Path) -> None:
    x, y = _pair(n=10, grid=(6, 6))
    path = write_dataset(tmp_path / "lazy.h5", x, y, pde="darcy")
    ds = H5Dataset(path, [9, 1, 3, 4, 5, 0, 2])
    assert ds._file is None  # no handle kept from the constructor
    np.testing.assert_array_equal(ds[0][0].numpy(), x[9])
    assert ds._file is not None and ds._pid == os.getpid()
    items = ds.__getitems__([2, 0, 0, 5])  # unsorted and repeated: order restored
    np.testing.assert_array_equal(np.stack([a.numpy() for a, _ in items]), x[[3, 9, 9, 0]])

    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None and len(clone) == 7
    np.testing.assert_array_equal(clone[6][1].numpy(), y[2])

    # the parent holds an open handle: forked workers must open their own
    serial = list(DataLoader(ds, batch_size=3, num_workers=0))
    parallel = list(
        DataLoader(
            ds,
            batch_size=3,
            num_workers=2,
            multiprocessing_context=multiprocessing.get_context("fork"),
        )
    )
    assert len(serial) == len(parallel) == 3
    for (xs, ys), (xp, yp) in zip(serial, parallel, strict=True):
        torch.testing.assert_close(xs, xp, rtol=0, atol=0)
        torch.testing.assert_close(ys, yp, rtol=0, atol=0)
    np.testing.assert_array_equal(serial[0][0].numpy(), x[[9, 1, 3]])
    np.testing.assert_array_equal(ds[1][0].numpy(), x[1])  # the parent's handle still works
    ds.close()
    assert ds._file is None


# ----------------------------------------------------------------------------------- errors


def test_index_errors(tmp_path: Path) -> None:
    x, y = _pair(n=4)
    path = write_dataset(tmp_path / "d.h5", x, y, pde="darcy")
    ds = H5Dataset(path, [0, 2])
    with pytest.raises(IndexError, match="index 2 is out of range.*0 to 1"):
        ds[2]
    with pytest.raises(ValueError, match=r"indices \[4, 7\] are out of range.*rows 0 to 3"):
        H5Dataset(path, [0, 4, 7])
    with pytest.raises(TypeError, match="integers"):
        H5Dataset(path, np.array([0.5]))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        H5Dataset(tmp_path / "missing.h5")


def test_bad_files_raise_data_format_error(tmp_path: Path) -> None:
    text = tmp_path / "bad.h5"
    text.write_bytes(b"this is not an HDF5 file\n" * 20)
    for reader in (describe, H5Dataset):
        with pytest.raises(DataFormatError, match="bad.h5.*not a readable HDF5"):
            reader(text)

    x, y = _pair(n=20, grid=(16, 16))
    trunc = write_dataset(tmp_path / "trunc.h5", x, y, pde="darcy")
    with open(trunc, "r+b") as fh:
        fh.truncate(trunc.stat().st_size // 2)
    for reader in (describe, H5Dataset):
        with pytest.raises(DataFormatError, match="trunc.h5"):
            reader(trunc)

    def make(name: str, **arrays: np.ndarray) -> Path:
        p = tmp_path / name
        with h5py.File(p, "w") as f:
            f.attrs["neuralsolve_format"] = "operator-data"
            f.attrs["version"] = 1
            for k, v in arrays.items():
                f[k] = v
        return p

    nokey = make("nokey.h5", inputs=x)
    for reader in (describe, H5Dataset):
        with pytest.raises(DataFormatError, match="nokey.h5.*no dataset 'outputs'"):
            reader(nokey)
    with pytest.raises(DataFormatError, match="mismatch.h5.*'outputs' holds 19 samples.*20"):
        describe(make("mismatch.h5", inputs=x, outputs=y[:19]))
    with pytest.raises(DataFormatError, match=r"dims.h5.*'inputs' has shape \(20, 16\)"):
        describe(make("dims.h5", inputs=x[:, 0, 0], outputs=y))
    with pytest.raises(DataFormatError, match=r"grid.h5.*'outputs' is on the grid \(16, 8\)"):
        describe(make("grid.h5", inputs=x, outputs=y[..., :8]))

    with h5py.File(tmp_path / "darcy.h5", "w") as f:
        f["nu"] = np.zeros((4, 6, 6))
        f["tensor"] = np.zeros((3, 1, 6, 6))
    with pytest.raises(
        DataFormatError, match="darcy.h5.*'tensor' holds 3 samples but 'nu' holds 4"
    ):
        describe(tmp_path / "darcy.h5")
    with h5py.File(tmp_path / "coord.h5", "w") as f:
        f["tensor"] = np.zeros((2, 3, 8))
        f["x-coordinate"] = np.zeros(7)
    with pytest.raises(DataFormatError, match=r"coord.h5.*'x-coordinate' has shape \(7,\)"):
        describe(tmp_path / "coord.h5")
    with h5py.File(tmp_path / "onestep.h5", "w") as f:
        f["tensor"] = np.zeros((2, 1, 8))
    with pytest.raises(DataFormatError, match="onestep.h5.*'tensor'.*1 time step"):
        describe(tmp_path / "onestep.h5")
    with h5py.File(tmp_path / "groups.h5", "w") as f:
        f["0000/data"] = np.zeros((3, 4, 1))
        f["0001/data"] = np.zeros((3, 5, 1))
    with pytest.raises(DataFormatError, match="groups.h5.*'0001/data' has shape"):
        describe(tmp_path / "groups.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(DataFormatError, match="other.h5.*found 'foo'.*expected 'inputs'"):
        describe(tmp_path / "other.h5")
    system = write_system(tmp_path / "system.h5", np.eye(3))
    with pytest.raises(DataFormatError, match="system.h5.*'linear-system'.*read_system"):
        describe(system)
