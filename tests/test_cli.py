"""The command line and the benchmark engine, run small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuralsolve as ns
from neuralsolve import bench
from neuralsolve.bench import BenchConfig, format_table, run_benchmark
from neuralsolve.cli import main

from .conftest import random_spd_sparse


def test_solve_a_matrix_market_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    A = random_spd_sparse(50, seed=1)
    ns.datasets.write_system(tmp_path / "sys.mtx", A)
    out = tmp_path / "x.npy"
    code = main(
        [
            "solve",
            str(tmp_path / "sys.mtx"),
            "--method",
            "pcg-amg",
            "--rtol",
            "1e-10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "status      success" in text and "error       ||x - 1||" in text
    np.testing.assert_allclose(np.load(out), np.ones(50), rtol=1e-7)


def test_solve_json_with_rhs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    A = random_spd_sparse(40, seed=2)
    ns.datasets.write_system(tmp_path / "sys.h5", A)
    np.save(tmp_path / "b.npy", np.arange(40.0))
    assert (
        main(["solve", str(tmp_path / "sys.h5"), "--rhs", str(tmp_path / "b.npy"), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["converged"] and report["unknowns"] == 40 and report["rel_residual"] <= 1e-6


def test_solve_a_mesh_writes_vtu(tmp_path: Path) -> None:
    mesh = ns.datasets.unit_square_mesh(6)
    mesh.write(tmp_path / "m.vtu")
    assert (
        main(
            [
                "solve",
                str(tmp_path / "m.vtu"),
                "--method",
                "pcg-ic",
                "--out",
                str(tmp_path / "u.vtu"),
            ]
        )
        == 0
    )
    assert (tmp_path / "u.vtu").exists()


def test_solve_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "--problem", "poisson3d", "--n", "8", "--max-iters", "2"]) == 1
    assert main(["solve", str(tmp_path / "missing.mtx")]) == 2
    assert "missing.mtx" in capsys.readouterr().err
    assert main(["solve", "--problem", "poisson3d", "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["solve"]) == 2
    assert main([]) == 2


def test_listings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0 and "pcg-amg" in capsys.readouterr().out
    assert main(["problems"]) == 0 and "obstacle3d" in capsys.readouterr().out
    assert main(["info"]) == 0 and "torch" in capsys.readouterr().out


def test_bench_writes_table_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bench",
            "--problem",
            "poisson3d:10",
            "--problem",
            "obstacle2d:24",
            "--methods",
            "cg,pcg-ic,scipy-cg,pyamg-sa,direct",
            "--out-dir",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "vs scipy-cg" in out and "poisson3d-10" in out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["meta"]) >= {"torch", "threads", "cpu", "neuralsolve", "config"}
    assert len(report["results"]) == 10
    keys = {
        "problem",
        "n",
        "unknowns",
        "method",
        "converged",
        "iterations",
        "setup_s",
        "solve_s",
        "rel_residual",
        "residual_norms",
        "peak_mb",
    }
    for r in report["results"]:
        assert keys <= set(r)
        assert r["converged"] and r["rel_residual"] <= 1e-6 * 1.001
    png = (tmp_path / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_skips_and_errors_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A method that raises (here cg-fused, as where no compiler exists) is recorded as an error
    # and the run goes on. Raising it on purpose keeps the test from compiling a kernel (10-30 s).
    real_one = bench._one

    def one(method: str, *args: object) -> dict:
        if method == "cg-fused":
            raise RuntimeError("no C++ compiler found")
        return real_one(method, *args)

    monkeypatch.setattr(bench, "_one", one)
    config = BenchConfig(
        problems=(("poisson2d", 12),),
        methods=("cg", "direct", "cg-fused"),
        direct_max_unknowns=100,
        rhs=2,
    )
    report = run_benchmark(config, progress=False)
    by = {r["method"]: r for r in report["results"]}
    assert "skipped" in by["direct"]
    assert by["cg-fused"]["error"] == "RuntimeError: no C++ compiler found"
    assert by["cg"]["converged"] and np.asarray(by["cg"]["residual_norms"]).shape[1] == 2
    table = format_table(report)
    assert "skipped" in table and "error" in table


def test_bench_default_runs_both_deflated_methods_and_notes_the_network() -> None:
    from neuralsolve.bench import DEFAULT_METHODS

    assert {"cg-deflated", "dcdm-deflated"} <= set(DEFAULT_METHODS)
    config = BenchConfig(problems=(("obstacle3d", 12),), methods=("dcdm-deflated", "cg"))
    report = run_benchmark(config, progress=False)
    dcdm = next(r for r in report["results"] if r["method"] == "dcdm-deflated")
    calls = dcdm["stats"]["network_calls"]
    assert dcdm["converged"] and calls == dcdm["iterations"] > 0
    table = format_table(report)
    assert f"dcdm-deflated on obstacle3d-12: network {calls} calls" in table
    assert "ms per call" in table and "level 0" in table
    assert "cg on obstacle3d-12: network" not in table


def test_bench_method_options_override_the_run_iteration_limit(tmp_path: Path) -> None:
    args = [
        "bench",
        "--problem",
        "poisson2d:24",
        "--methods",
        "cg,pcg-jacobi",
        "--max-iters",
        "500",
    ]
    args += ["--set", "cg.max_iters=3", "--out-dir", str(tmp_path), "--no-plot", "--no-progress"]
    assert main(args) == 0
    by = {r["method"]: r for r in json.loads((tmp_path / "bench.json").read_text())["results"]}
    assert by["cg"]["iterations"] == 3 and not by["cg"]["converged"]
    assert by["pcg-jacobi"]["converged"] and by["pcg-jacobi"]["iterations"] > 3


def test_bench_reports_batch_speedup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["bench", "--problem", "poisson2d:16", "--methods", "cg", "--rhs", "3", "--sequential"]
    assert main([*args, "--out-dir", str(tmp_path), "--no-plot", "--no-progress"]) == 0
    assert "batch speedup" in capsys.readouterr().out
    (r,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert r["sequential_s"] > 0 and r["batch_speedup"] == pytest.approx(
        r["sequential_s"] / r["solve_s"]
    )


def test_bench_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        BenchConfig(methods=("cg", "magic"))
    with pytest.raises(ValueError, match="rhs and repeat"):
        BenchConfig(rhs=0)
    with pytest.raises(ValueError, match="unknown problem"):
        main_args = ["bench", "--problem", "nonexistent-problem"]
        from neuralsolve.cli.app import _problem_specs, build_parser

        _problem_specs(build_parser().parse_args(main_args))


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "neuralsolve.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "bench" in result.stdout
