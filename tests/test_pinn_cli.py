"""``neuralsolve train pinn``: a run writes its record, a killed run resumes to the same losses
(the AAS flow included), and bad names are refused with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuralsolve.cli import main

from .conftest import kill_after_checkpoint

SMALL = [
    "train", "pinn", "--problem", "peak2d", "--sampler", "aas", "--n-points", "64",
    "--resample-every", "4", "--width", "8", "--depth", "2", "--log-every", "1",
    "--checkpoint-every", "2", "--grid", "21", "--no-progress", "--threads", "1",
    "--sampler-option", "steps=3", "--sampler-option", "n_candidates=256",
]  # fmt: skip


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_checkpoint_metrics_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--steps", "6", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem"] == "peak2d" and summary["sampler"] == "aas"
    assert summary["steps"] == 6 and summary["rel_l2"] > 0
    assert len(_losses(out)) == 6
    assert (out / "last.pt").exists() and (out / "pinn.png").exists()
    assert summary["loss_balance"] == "fixed" and summary["boundary_weight"] == 1.0


def test_grad_norm_balance_from_the_shell_records_its_weight(tmp_path: Path) -> None:
    out = tmp_path / "run"
    options = ["--loss-balance", "grad-norm", "--boundary-weight", "3"]
    assert main([*SMALL, *options, "--steps", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss_balance"] == "grad-norm"
    assert summary["boundary_weight"] > 0 and summary["boundary_weight"] != 3.0


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_losses(tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    command = [sys.executable, "-m", "neuralsolve.cli", *SMALL, "--steps", "60"]
    subprocess.run([*command, "--out", str(ref)], check=True, timeout=300, capture_output=True)
    lines_at_kill = kill_after_checkpoint([*command, "--out", str(killed)], killed, 10)
    assert 10 <= lines_at_kill < 60
    subprocess.run(
        [*command, "--out", str(killed), "--resume"], check=True, timeout=300, capture_output=True
    )
    assert _losses(killed) == _losses(ref)  # bit-identical, rounds and flow included


def test_unknown_problem_and_sampler_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["train", "pinn", "--problem", "peak3d", "--out", str(tmp_path)]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["train", "pinn", "--problem", "peak2d", "--sampler", "halton"]) == 2
    assert "halton" in capsys.readouterr().err


@pytest.mark.parametrize("weight", ["-1", "nan"])
def test_a_bad_boundary_weight_exits_2_naming_it(tmp_path: Path, capsys, weight: str) -> None:
    command = ["train", "pinn", "--problem", "peak2d", "--boundary-weight", weight]
    assert main([*command, "--out", str(tmp_path / "run")]) == 2
    assert "boundary_weight must be a finite non-negative number" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()
