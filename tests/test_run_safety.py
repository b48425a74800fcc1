"""Training runs never silently lose or mix results (issue 27, items 8-12): one run per
directory, non-finite validation and test metrics stop the run and fail the command, a longer
resumed run does not train at learning rate 0, corrupt checkpoints are refused, and a torn
metrics line does not block a resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neuralsolve.checkpoint import load_checkpoint, save_checkpoint
from neuralsolve.cli import main
from neuralsolve.datasets import write_dataset
from neuralsolve.errors import DataFormatError
from neuralsolve.optim import Trainer, TrainerConfig

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _strict_json_lines(path: Path) -> list[dict]:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path.name} holds a bare {name}: not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _task() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    X = torch.randn(16, 3)
    y = X.sum(1, keepdim=True)
    model = torch.nn.Linear(3, 1)
    return model, lambda m, _: ((m(X) - y) ** 2).mean()


# ----------------------------------------------------------------------------- item 8
SLOW_RUN = textwrap.dedent(
    """
    import sys, time, torch
    from neuralsolve.optim import Trainer, TrainerConfig
    model = torch.nn.Linear(2, 1)
    def loss(m, _):
        time.sleep(0.05)
        return (m(torch.ones(1, 2)) ** 2).sum()
    cfg = TrainerConfig(optimizer="sgd", lr=1e-3, steps=2000, out_dir=sys.argv[1],
                        progress=False, schedule="constant")
    Trainer(model, loss, cfg).fit()
    """
)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def test_a_second_run_in_the_same_directory_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(run)], env=ENV, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(run / "metrics.jsonl", proc)
        model, loss = _task()
        cfg = TrainerConfig(optimizer="sgd", steps=2, out_dir=str(run), progress=False)
        # before: both ran, their metrics.jsonl lines interleaved
        with pytest.raises(ValueError, match=rf"in use by process {proc.pid}"):
            Trainer(model, loss, cfg).fit()
    finally:
        proc.kill()
        proc.wait()
    with pytest.warns(UserWarning, match=rf"process {proc.pid}.*ended without releasing") as rec:
        result = Trainer(model, loss, cfg).fit()
    assert rec[0].category.__name__ == "StaleLockWarning"
    assert result.steps == 2
    # released at the end: a third run takes it without a word
    Trainer(model, loss, TrainerConfig(optimizer="sgd", steps=1, out_dir=str(run),
                                       progress=False)).fit()  # fmt: skip


def test_the_lock_is_reentrant_within_one_process_and_released(tmp_path: Path) -> None:
    from neuralsolve.runlock import run_lock

    with run_lock(tmp_path), run_lock(tmp_path):
        info = json.loads((tmp_path / "run.lock").read_text())
        assert info["pid"] == os.getpid()
    assert (tmp_path / "run.lock").read_text() == ""  # free
    with run_lock(tmp_path):
        pass


# ----------------------------------------------------------------------------- item 9
def test_a_non_finite_validation_metric_stops_the_run_and_the_record_stays_json(
    tmp_path: Path,
) -> None:
    model, loss = _task()
    calls = []

    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        calls.append(1)
        return {"rel_l2": 0.5 if len(calls) == 1 else float("nan"), "other": 1.0}

    cfg = TrainerConfig(optimizer="sgd", steps=8, eval_every=2, out_dir=str(tmp_path),
                        progress=False)  # fmt: skip
    result = Trainer(model, loss, cfg, eval_fn=eval_fn).fit()
    # before: "steps done", best.pt frozen at step 2, and metrics.jsonl held a bare NaN
    assert result.stop_reason.startswith("non-finite validation metric 'rel_l2'")
    assert result.steps == 4
    lines = _strict_json_lines(tmp_path / "metrics.jsonl")
    assert lines[-1]["eval"]["rel_l2"] is None
    assert load_checkpoint(tmp_path / "best.pt", kind="model")["step"] == 2


def _nan_dataset(path: Path, bad: int) -> Path:
    rng = np.random.default_rng(0)
    a = rng.random((20, 1, 16, 16)) + 1.0
    write_dataset(path, a, a**2, pde="test")
    with h5py.File(path, "r+") as f:
        f["outputs"][bad, 0, 3, 3] = np.nan
    return path


TRAIN_ARGS = [
    "train", "operator", "--model", "fno", "--epochs", "1", "--batch-size", "4",
    "--set", "modes=4", "--set", "width=8", "--set", "layers=1",
    "--train", "12", "--val", "4", "--test", "4", "--no-progress",
]  # fmt: skip


@pytest.mark.parametrize(("bad", "split"), [(13, "validation"), (17, "test")])
def test_train_operator_fails_on_non_finite_validation_or_test_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: int, split: str
) -> None:
    data = _nan_dataset(tmp_path / "d.h5", bad)
    run = tmp_path / "run"
    code = main([*TRAIN_ARGS, "--data", str(data), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 1, err  # before: 0, with a NaN (or a stale model's) error reported
    assert "non-finite" in err and split in err
    summary = json.loads((run / "summary.json").read_text(), parse_constant=float)
    assert json.dumps(summary, allow_nan=False)  # strict JSON: NaN became null
    _strict_json_lines(run / "metrics.jsonl")


# ----------------------------------------------------------------------------- item 10
def test_resuming_with_more_steps_extends_the_schedule_and_says_so(tmp_path: Path) -> None:
    model, loss = _task()
    cfg = dict(optimizer="sgd", lr=0.1, schedule="linear", out_dir=str(tmp_path), progress=False)
    Trainer(model, loss, TrainerConfig(steps=4, **cfg)).fit()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(UserWarning, match="linear schedule.*4 steps.*8 steps") as rec:
        result = Trainer(model, loss, TrainerConfig(steps=8, **cfg)).fit(resume=True)
    assert rec[0].category.__name__ == "ScheduleExtendedWarning"
    assert result.steps == 8
    lrs = {line["step"]: line["lr"] for line in _strict_json_lines(tmp_path / "metrics.jsonl")}
    # before: lr 0 from step 5 on, and the weights did not move
    assert lrs[5] == pytest.approx(0.1 * (1 - 5 / 8)) and lrs[7] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ----------------------------------------------------------------------------- item 11
def test_a_checkpoint_with_flipped_bytes_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "c.pt", {"w": torch.full((256,), 1.2345, dtype=torch.float32)}, kind="model"
    )
    raw = bytearray(path.read_bytes())
    at = raw.find(torch.tensor([1.2345] * 4, dtype=torch.float32).numpy().tobytes())
    assert at > 0
    raw[at + 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert zipfile.is_zipfile(path)
    # before: it loaded, with a wrong weight
    with pytest.raises(DataFormatError, match=r"c\.pt.*checksum"):
        load_checkpoint(path, kind="model")


# ----------------------------------------------------------------------------- item 12
def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path: Path) -> None:
    model, loss = _task()
    cfg = dict(optimizer="sgd", steps=6, checkpoint_every=2, out_dir=str(tmp_path),
               progress=False, schedule="constant")  # fmt: skip
    Trainer(model, loss, TrainerConfig(**cfg)).fit()
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as fh:
        fh.write('{"step": 7, "lo')  # a run killed in the middle of a write
    with pytest.warns(UserWarning, match="metrics.jsonl") as rec:
        Trainer(model, loss, TrainerConfig(**{**cfg, "steps": 8})).fit(resume=True)
    assert rec[0].category.__name__ == "TornRecordWarning"
    assert [line["step"] for line in _strict_json_lines(metrics)] == list(range(1, 9))


def test_a_corrupt_metrics_line_before_the_last_names_the_file(tmp_path: Path) -> None:
    model, loss = _task()
    cfg = dict(optimizer="sgd", steps=3, out_dir=str(tmp_path), progress=False)
    Trainer(model, loss, TrainerConfig(**cfg)).fit()
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"metrics\.jsonl.*line 2"):
        Trainer(model, loss, TrainerConfig(**cfg)).fit(resume=True)


def test_nan_metric_values_are_never_written_as_bare_nan(tmp_path: Path) -> None:
    from neuralsolve.optim.trainer import _append_metrics

    _append_metrics(tmp_path / "m.jsonl", {"step": 1, "loss": math.inf, "x": [math.nan]})
    assert _strict_json_lines(tmp_path / "m.jsonl") == [{"step": 1, "loss": None, "x": [None]}]


HOLD = textwrap.dedent(
    """
    import sys, time
    from neuralsolve.runlock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_train_operator_refuses_an_out_directory_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    a = rng.random((20, 1, 16, 16)) + 1.0
    data = write_dataset(tmp_path / "d.h5", a, a**2, pde="test")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        code = main([*TRAIN_ARGS, "--data", str(data), "--out", str(run)])
        err = capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"in use by process {proc.pid}" in err and "--out" in err
    assert not (run / "metrics.jsonl").exists()


def test_train_gp_refuses_an_out_directory_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        code = main([
            "train", "gp", "--problem", "poisson1d-hf", "--param", "case=P4", "--n", "60",
            "--steps", "2", "--closed-form", "1", "--out", str(run), "--no-progress",
        ])  # fmt: skip
        err = capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"in use by process {proc.pid}" in err
    assert not (run / "summary.json").exists() and not (run / "metrics.jsonl").exists()
