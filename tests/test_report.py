"""neuralsolve.report: one run record and one strict-JSON, atomic report writer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralsolve.report import run_record, to_json, write_report

RECORD_KEYS = {
    "neuralsolve", "torch", "numpy", "scipy", "pyamg", "python", "platform", "machine", "cpu",
    "cores", "threads", "device", "date", "command",
}  # fmt: skip


def test_run_record_names_the_environment() -> None:
    record = run_record(command=["neuralsolve", "bench", "--n", "8"])
    assert set(record) == RECORD_KEYS
    assert record["torch"] == torch.__version__
    assert record["threads"] == torch.get_num_threads()
    assert record["device"] == "cpu"
    assert record["command"] == "neuralsolve bench --n 8"
    assert record["date"].endswith("+00:00")
    json.dumps(record, allow_nan=False)  # plain JSON as it is


def test_write_report_is_strict_json_with_nan_as_null(tmp_path: Path) -> None:
    report = {
        "meta": {"shape": (2, 3), "path": tmp_path, "x": np.float32(0.5)},
        "results": [
            {"rel_residual": float("nan"), "iterations": np.int64(7), "t": torch.tensor(1.5)},
            {"rel_residual": math.inf, "history": np.array([1.0, np.nan])},
        ],
    }
    path = write_report(tmp_path / "out" / "r.json", report)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    back = json.loads(text)
    assert back["meta"] == {"shape": [2, 3], "path": str(tmp_path), "x": 0.5}
    assert back["results"][0] == {"rel_residual": None, "iterations": 7, "t": 1.5}
    assert back["results"][1] == {"rel_residual": None, "history": [1.0, None]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.json", {"meta": {}, "results": [1]})

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot")

    with pytest.raises(RuntimeError):
        write_report(path, {"meta": {}, "results": [Unprintable()]})
    assert json.loads(path.read_text()) == {"meta": {}, "results": [1]}


def test_to_json_keeps_plain_values() -> None:
    assert to_json({"a": [1, 2.5, "s", None, True]}) == {"a": [1, 2.5, "s", None, True]}
