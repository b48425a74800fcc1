"""The command line under bad input and faults: exit code 1 means "did not converge" and
nothing else; bad input is 2, I/O is 3, a bug is 4; messages name the file and the problem; a
solve that did not converge does not replace a good ``--out``."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import neuralsolve as ns
from neuralsolve.checkpoint import save_checkpoint
from neuralsolve.cli import main
from neuralsolve.datasets import write_dataset, write_system
from neuralsolve.datasets.generators import darcy

GOOD = sp.csr_array(sp.diags_array([-1.0, 4.0, -1.0], offsets=[-1, 0, 1], shape=(10, 10)))


@pytest.fixture
def system(tmp_path: Path) -> Path:
    return write_system(tmp_path / "a.mtx", GOOD)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_an_empty_matrix_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ZeroDivisionError deep in the solver, a traceback and exit 1."""
    path = tmp_path / "e.mtx"
    path.write_text("%%MatrixMarket matrix coordinate real general\n0 0 0\n")
    code, err = _run(["solve", str(path)], capsys)
    assert code == 2 and "'" + str(path) + "' holds a 0 x 0 matrix" in err
    with pytest.raises(ValueError, match="A is 0 x 0"):
        ns.solve(np.zeros((0, 0)), np.zeros(0))


def test_a_non_square_matrix_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "operand has shape (3,) but the operator is (3, 4)" (an internal vector)."""
    path = write_system(tmp_path / "r.mtx", sp.eye_array(3, 4, format="csr"))
    code, err = _run(["solve", str(path)], capsys)
    assert code == 2 and "r.mtx' holds a 3 x 4 matrix, which is not square" in err


def test_a_right_hand_side_of_the_wrong_length_names_both_files(
    system: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "b.npy", np.ones(7))
    code, err = _run(["solve", str(system), "--rhs", str(tmp_path / "b.npy")], capsys)
    assert code == 2 and "b.npy' has shape (7,), but" in err and "a.mtx' is 10 x 10" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "--problem", "poisson2d", "--n", "4"],
        ["bench", "--problem", "poisson2d:4", "--methods", "cg", "--no-plot"],
        ["train", "operator", "--data", "missing.h5"],
        ["train", "pinn", "--problem", "peak2d", "--steps", "1"],
        ["train", "dcdm", "--problem", "poisson2d", "--n", "8", "--steps", "1"],
        ["eval", "missing.pt"],
    ],
)
def test_zero_threads_is_bad_input_everywhere(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([*argv, "--threads", "0"], capsys)
    assert code == 2 and "threads must be >= 1, got 0" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "--problem", "poisson2d", "--n", "4"],
        ["bench", "--problem", "poisson2d:4", "--methods", "cg", "--no-plot"],
        ["train", "pinn", "--problem", "peak2d", "--steps", "1"],
        ["eval", "missing.pt"],
    ],
)
def test_a_device_this_machine_lacks_is_bad_input(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "AssertionError: Torch not compiled with CUDA enabled", a traceback, exit 1."""
    code, err = _run([*argv, "--device", "nosuch"], capsys)
    assert code == 2 and "--device 'nosuch' is not a torch device" in err
    if torch.cuda.is_available():
        bad, match = f"cuda:{torch.cuda.device_count()}", "CUDA GPU(s)"
    elif torch.backends.cuda.is_built():
        bad, match = "cuda", "no CUDA GPU is visible"
    else:
        bad, match = "cuda", "was built without CUDA"
    code, err = _run([*argv, "--device", bad], capsys)
    assert code == 2 and f"--device {bad!r}" in err and match in err


def test_an_output_path_that_is_a_directory_is_an_io_error(
    system: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: IsADirectoryError traceback, exit 1 (after the solve)."""
    (tmp_path / "x.npy").mkdir()
    code, err = _run(["solve", str(system), "--out", str(tmp_path / "x.npy")], capsys)
    assert code == 3 and "x.npy' (target: is a directory)" in err
    (tmp_path / "file").write_text("")
    code, err = _run(["solve", str(system), "--out", str(tmp_path / "file" / "x.npy")], capsys)
    assert code == 3 and "file' is not a directory" in err


def test_a_read_only_output_directory_is_an_io_error(
    system: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: PermissionError traceback, exit 1. (Root ignores permissions, so the refusal
    is simulated where the operating system gives it.)"""

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    code, err = _run(["solve", str(system), "--out", str(tmp_path / "x.npy")], capsys)
    assert code == 3 and "x.npy'" in err and "Permission denied" in err
    monkeypatch.undo()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            return  # root: the real check cannot be seen here
        code, err = _run(["solve", str(system), "--out", str(ro / "x.npy")], capsys)
        assert code == 3 and "is not writable" in err
    finally:
        ro.chmod(0o700)


def test_a_full_disk_is_an_io_error_and_keeps_the_earlier_file(
    system: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: OSError traceback, exit 1."""
    out = tmp_path / "x.npy"
    np.save(out, np.full(10, 7.0))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full)
    code, err = _run(["solve", str(system), "--out", str(out)], capsys)
    assert code == 3 and "x.npy'" in err and "No space left on device" in err
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(out), np.full(10, 7.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mtx", "x.npy"]


def test_a_bug_is_exit_4_with_a_traceback(
    system: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the exception escaped main() (exit 1 from Python, read as "not converged")."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ns, "solve", broken)
    code, err = _run(["solve", str(system)], capsys)
    assert code == 4 and "RuntimeError: boom" in err and "internal error" in err


def test_an_unconverged_solve_keeps_a_good_out(
    system: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the iterate of a failed solve replaced the converged solution."""
    out = tmp_path / "x.h5"
    assert main(["solve", str(system), "--out", str(out), "--rtol", "1e-10"]) == 0
    with h5py.File(out) as f:
        good = f["x"][()]
        assert f.attrs["converged"] and f.attrs["status"] == "success"
        assert f.attrs["iterations"] >= 2 and f.attrs["rel_residual"] <= 1e-10
    capsys.readouterr()
    code, err = _run(["solve", str(system), "--out", str(out), "--max-iters", "1"], capsys)
    assert code == 1 and "not written" in err and "--write-unconverged" in err
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["x"][()], good)
    code = main(
        ["solve", str(system), "--out", str(out), "--max-iters", "1", "--write-unconverged"]
    )
    assert code == 1
    with h5py.File(out) as f:
        assert not f.attrs["converged"] and f.attrs["status"] != "success"
        assert f.attrs["iterations"] == 1 and f.attrs["method"] == "cg"
        assert not np.array_equal(f["x"][()], good)


# ----------------------------------------------------------------------------- checkpoints
def _tiny_checkpoint(path: Path, **config_changes: int) -> Path:
    from neuralsolve.datasets.operator_data import Normalizer
    from neuralsolve.operators import create
    from neuralsolve.operators.base import config_dict
    from neuralsolve.operators.training import NormalizedOperator

    net = create("fno", in_channels=1, out_channels=1, dim=2, modes=4, width=8, layers=1)
    op = NormalizedOperator(net, Normalizer.identity(1), Normalizer.identity(1))
    info = config_dict(net)
    info["config"].update(config_changes)
    metadata = {"operator": info, "loss": "l2", "data": {}, "splits": {"test": [0]}}
    return save_checkpoint(path, {"model": op.state_dict(), "metadata": metadata}, kind="model")


def test_a_checkpoint_whose_config_does_not_fit_its_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a RuntimeError from load_state_dict (size mismatch), a traceback, exit 1."""
    from neuralsolve.operators import load_operator

    path = _tiny_checkpoint(tmp_path / "best.pt", width=16)
    with pytest.raises(ns.DataFormatError, match=r"best\.pt' do not fit .*shape \(file vs model\)"):
        load_operator(path)
    code, err = _run(["eval", str(path), "--data", str(tmp_path / "d.h5")], capsys)
    assert code == 2 and "best.pt' do not fit" in err
    bad = _tiny_checkpoint(tmp_path / "bad.pt", colour=3)
    with pytest.raises(ns.DataFormatError, match=r"bad\.pt' records a 'fno' config that cannot"):
        load_operator(bad)


def test_resume_with_another_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a RuntimeError from load_state_dict (missing/unexpected keys), exit 1."""
    data = darcy(8, 6, seed=0)
    path = write_dataset(tmp_path / "d.h5", data.inputs, data.outputs, pde=data.pde)
    common = ["train", "operator", "--data", str(path), "--epochs", "1", "--batch-size", "2",
              "--train", "4", "--val", "1", "--test", "1", "--out", str(tmp_path / "run"),
              "--no-progress"]  # fmt: skip
    fno = ["--model", "fno", "--set", "modes=2", "--set", "width=4", "--set", "layers=1"]
    assert main([*common, *fno]) == 0
    capsys.readouterr()
    code, err = _run([*common, "--model", "deeponet", "--resume"], capsys)
    assert code == 2 and "last.pt': it trains 'fno', this run builds 'deeponet'" in err
    code, err = _run([*common, *fno[:-1], "layers=2", "--resume"], capsys)
    assert code == 2 and "config differs in layers (1 there, 2 here)" in err
