"""``neuralsolve train gp``: a run writes its record, a killed run resumes to the same losses,
bad input exits with code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuralsolve.cli import main

from .conftest import kill_after_checkpoint

SMALL = [
    "train", "gp", "--problem", "poisson1d-hf", "--param", "case=P4", "--n", "40", "--Q", "5",
    "--log-every", "1", "--checkpoint-every", "2", "--grid", "401", "--no-progress",
    "--threads", "1",
]  # fmt: skip


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_checkpoint_metrics_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--steps", "6", "--out", str(out), "--closed-form", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem"] == "poisson1d-hf" and summary["params"]["case"] == "P4"
    assert summary["steps"] == 6 and 0 < summary["rel_l2"] < 10
    # the closed-form sweeps lower the loss; Chebyshev (N = 64) is at rounding level
    losses = summary["closed_form"]["loss"]
    assert len(losses) == 2 and losses[1] <= losses[0]
    assert summary["reference"]["rel_l2"] < 1e-10
    assert len(_losses(out)) == 6
    assert (out / "last.pt").exists() and (out / "gp.png").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_losses(tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    command = [sys.executable, "-m", "neuralsolve.cli", *SMALL, "--steps", "400"]
    command += ["--no-reference"]
    subprocess.run([*command, "--out", str(ref)], check=True, timeout=300, capture_output=True)
    lines_at_kill = kill_after_checkpoint([*command, "--out", str(killed)], killed, 10, poll=0.005)
    assert 10 <= lines_at_kill < 400
    subprocess.run(
        [*command, "--out", str(killed), "--resume"], check=True, timeout=300, capture_output=True
    )
    assert _losses(killed) == _losses(ref)  # bit-identical


def test_closed_form_at_fixed_precision_and_noise_free(tmp_path: Path) -> None:
    # P4 on 60 points, initial SM kernel, jitter 1e-8: the low-noise MAP is at 7.8e-5
    # (docs/benchmarks/gp_hm.md); the noise-free collocation is the other closed form
    base = [
        "train", "gp", "--problem", "poisson1d-hf", "--param", "case=P4", "--n", "60",
        "--kernel", "sm", "--jitter", "1e-8", "--steps", "1", "--closed-form", "1",
        "--no-progress", "--no-reference", "--threads", "1",
    ]  # fmt: skip
    assert main([*base, "--precision", "4.85e8", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["closed_form"]["rel_l2"] < 1e-3
    assert main([*base, "--precision", "inf", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["closed_form"]["method"] == "dense solve"  # 1-D
    assert summary["closed_form"]["rel_l2"] < 1e-2


def test_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    base = ["train", "gp", "--out", str(tmp_path), "--no-progress", "--steps", "1"]
    assert main([*base, "--problem", "poisson3d-hf"]) == 2
    assert "unknown" in capsys.readouterr().err
    # 100 wavelengths of sin(100x) on [0, 2 pi] need n >= 201 grid points
    assert main([*base, "--problem", "poisson1d-hf", "--n", "100"]) == 2
    assert "pass n >= 201" in capsys.readouterr().err
    assert main([*base, "--problem", "poisson1d-hf", "--Q", "0"]) == 2
    assert "Q" in capsys.readouterr().err
