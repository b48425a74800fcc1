"""Every example runs in its reduced mode and passes its own checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    env = {**os.environ, "NEURALSOLVE_QUICK": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 4


def test_dcdm_optimizers_refuses_an_unknown_network() -> None:
    script = next(p for p in EXAMPLES if p.stem == "dcdm_optimizers")
    result = subprocess.run(
        [sys.executable, str(script), "--networks", "unet,cnn"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown network(s) ['cnn']; available: unet, paper" in result.stderr
