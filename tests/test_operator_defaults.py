"""Model settings from the data's grid: derived defaults, refusals of settings that cannot work
on the grid, the resolved config in the checkpoint, the grid-transfer guard of LSM, seeds with
their spread, the several-model comparison, and PDEBench-layout Darcy files."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralsolve.cli import main
from neuralsolve.datasets import H5Dataset, write_dataset, write_pdebench_darcy
from neuralsolve.datasets.generators import (
    burgers_initial_condition,
    darcy,
    vorticity_initial_condition,
)
from neuralsolve.datasets.hdf5 import describe
from neuralsolve.errors import GridTransferWarning
from neuralsolve.operators import create, evaluate, load_operator, train_operator
from neuralsolve.operators.comparison import aggregate_seeds, comparison_split, format_table
from neuralsolve.operators.defaults import (
    WALL_PADDING,
    WRAP_THRESHOLD,
    default_lr,
    lsm_layout,
    resolve_options,
    wraparound,
)
from neuralsolve.optim import TrainerConfig


@pytest.fixture(scope="module")
def darcy16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = darcy(16, 24, seed=3)
    path = tmp_path_factory.mktemp("data") / "darcy16.h5"
    return write_dataset(path, data.inputs, data.outputs, pde=data.pde)


# ----------------------------------------------------------------------------- derived fields
@pytest.mark.parametrize(("n", "modes"), [(8, 2), (16, 4), (32, 8), (64, 12), (256, 12)])
def test_fno_modes_follow_the_grid(n: int, modes: int) -> None:
    options, derived = resolve_options("fno", (n, n), {})
    assert options["modes"] == modes and "modes" in derived


def test_fno_modes_beyond_the_grid_are_refused_with_what_would_work() -> None:
    with pytest.raises(ValueError, match=r"modes=12 is more than a 16 x 16 grid holds.*modes <= 8"):
        resolve_options("fno", (16, 16), {"modes": 12})
    options, derived = resolve_options("fno", (16, 16), {"modes": 8, "width": 20})
    assert options == {"modes": 8, "width": 20} and derived == {}  # given values are kept
    with pytest.raises(ValueError, match="at most n // 2 = 32 x 8"):  # per axis
        resolve_options("fno", (64, 16), {"modes": (12, 12)})


def _periodic_field(n: int, samples: int, seed: int) -> np.ndarray:
    """Smooth random fields on the periodic unit square (no end point): a sum of random
    Fourier modes up to wavenumber 4, shape ``(samples, 1, n, n)``."""
    rng = np.random.default_rng(seed)
    x = np.arange(n) / n
    out = np.zeros((samples, 1, n, n))
    for kx in range(-4, 5):
        for ky in range(-4, 5):
            phase = rng.uniform(0, 2 * np.pi, samples)[:, None, None]
            amp = rng.normal(size=samples)[:, None, None] / (1 + kx * kx + ky * ky)
            out[:, 0] += amp * np.cos(2 * np.pi * (kx * x[:, None] + ky * x[None, :]) + phase)
    return out


@pytest.mark.parametrize("n", [16, 64])
def test_periodic_inputs_give_no_fno_padding(n: int) -> None:
    test = wraparound(_periodic_field(n, 32, seed=n))
    # the step across the edge is one more neighbour step: ratio near 1, within the threshold
    assert test.periodic and all(0.5 < r < WRAP_THRESHOLD for r in test.ratios)
    options, derived = resolve_options("fno", (n, n), {}, periodic=test)
    assert options["padding"] == 0.0 and "inputs wrap around" in derived["padding"]
    # a periodic grid that repeats its end point: the edges are equal, ratio 0
    x = np.linspace(0, 1, n + 1)
    assert wraparound(np.sin(2 * np.pi * x)[None, None]).ratios == pytest.approx((0.0,), abs=1e-12)
    # the 1-D Burgers initial condition of our generator (periodic interval)
    rng = np.random.default_rng(0)
    u0 = np.stack([burgers_initial_condition(256, rng) for _ in range(8)])  # (8, 256)
    assert wraparound(u0[:, None]).periodic
    # and the Navier-Stokes initial vorticity (periodic unit square)
    w0 = np.stack([vorticity_initial_condition(32, rng) for _ in range(8)])  # (8, 32, 32)
    assert wraparound(w0[:, None]).periodic


@pytest.mark.parametrize("n", [16, 32])
def test_darcy_inputs_give_fno_padding(n: int) -> None:
    a = darcy(n, 16, seed=5).inputs  # piecewise-constant coefficient, walls at the edges
    test = wraparound(a)
    assert not test.periodic and min(test.ratios) > 2 * WRAP_THRESHOLD
    options, derived = resolve_options("fno", (n, n), {}, periodic=test)
    assert options["padding"] == WALL_PADDING == 0.125
    assert "inputs do not wrap around" in derived["padding"]
    # one axis periodic and the other not is not periodic: FNO pads every axis alike
    mixed = _periodic_field(n, 8, seed=1)
    mixed[..., :] += np.linspace(0, 5, n)  # a ramp along the last axis
    assert not wraparound(mixed).periodic and wraparound(mixed).ratios[0] < WRAP_THRESHOLD


def test_lsm_periodic_follows_the_wraparound_test() -> None:
    periodic = wraparound(_periodic_field(16, 32, seed=2))
    options, derived = resolve_options("lsm", (16, 16), {}, periodic=periodic)
    assert options["periodic"] is True and "circular" in derived["periodic"]
    assert "inputs wrap around" in derived["periodic"]
    walls = wraparound(darcy(16, 8, seed=5).inputs)
    options, derived = resolve_options("lsm", (16, 16), {}, periodic=walls)
    assert options["periodic"] is False and "do not wrap around" in derived["periodic"]
    # a layout that zero-pads the grid (85 -> 96) cannot be periodic: False, and said why
    options, derived = resolve_options("lsm", (85, 85), {}, periodic=True)
    assert options["periodic"] is False and "zero-pad the grid to 96 x 96" in derived["periodic"]
    # given: kept; no test: the config's default (False), nothing derived
    options, derived = resolve_options("lsm", (16, 16), {"periodic": False}, periodic=periodic)
    assert options["periodic"] is False and "periodic" not in derived
    assert "periodic" not in resolve_options("lsm", (16, 16), {})[0]
    # the derived flag builds a model that runs on the grid with circular convolutions
    options, _ = resolve_options("lsm", (16, 16), {"width": 8, "heads": 4}, periodic=periodic)
    model = create("lsm", dim=2, **options)
    assert model.config.periodic and model(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_given_padding_wins_and_no_data_leaves_the_default() -> None:
    walls = wraparound(np.linspace(0, 1, 16)[None, None, :, None] * np.ones((4, 1, 16, 16)))
    options, derived = resolve_options("fno", (16, 16), {"padding": 0.0}, periodic=walls)
    assert options["padding"] == 0.0 and "padding" not in derived
    assert "padding" not in resolve_options("fno", (16, 16), {})[0]  # no test: config's 0
    assert resolve_options("fno", (16, 16), {}, periodic=True)[0]["padding"] == 0.0
    # a channel constant along an axis (0 / 0) does not count as a wall
    const = np.ones((2, 1, 8, 8))
    assert wraparound(const).ratios == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"expected \(samples, channels, \*grid\)"):
        wraparound(np.ones((4, 16)))


def test_t1_modes_follow_the_grid_and_are_checked() -> None:
    options, _ = resolve_options("t1", (16, 16), {})
    assert options["modes"] == 8 and options["resolution"] == (16, 16)
    assert resolve_options("t1", (64, 64), {"transform": "fft"})[0]["modes"] == 12
    with pytest.raises(ValueError, match="t1: modes=24 is more DCT modes than a 16 x 16 grid"):
        resolve_options("t1", (16, 16), {"modes": 24})


@pytest.mark.parametrize(
    ("grid", "levels", "patch"),
    [((16, 16), 3, (4, 4)), ((32, 32), 4, (4, 4)), ((64, 64), 5, (4, 4)), ((85, 85), 4, (4, 4)),
     ((256,), 5, (4,)), ((2, 2), 1, (2, 2)), ((64, 16), 3, (4, 4))],
)  # fmt: skip
def test_lsm_layout_needs_little_padding(grid: tuple, levels: int, patch: tuple) -> None:
    assert lsm_layout(grid) == (levels, patch)
    model = create("lsm", dim=len(grid), levels=levels, patch=patch, width=8)
    for n, m in zip(grid, model.multiple, strict=True):
        padded = -(-n // m) * m
        assert padded - n <= 0.15 * n  # 85 -> 96, as the LSM paper pads its Darcy grid
        assert padded // 2 ** (levels - 1) >= patch[0]  # the coarsest level holds a patch


def test_lsm_defaults_and_refusal_on_a_small_grid() -> None:
    options, derived = resolve_options("lsm", (16, 16), {})
    assert (options["levels"], options["patch"], options["width"]) == (3, 4, 16)
    assert set(derived) == {"levels", "patch", "width"}
    # the paper's 5 levels with patch 4 need a multiple of 64: a 16 x 16 grid would be padded
    # to 64 x 64, 16x the cells
    with pytest.raises(
        ValueError, match=r"padded to 64 x 64 \(16.0x the cells.*levels=3 with patch=4"
    ):
        resolve_options("lsm", (16, 16), {"levels": 5, "patch": 4})
    # one of the two given: the other is derived
    options, derived = resolve_options("lsm", (32, 32), {"patch": 2})
    assert options["patch"] == 2 and options["levels"] == 4 and "levels" in derived
    assert resolve_options("lsm", (64, 64), {"width": 32})[0]["width"] == 32  # given: kept


def test_default_learning_rates() -> None:
    assert default_lr("fno") == 3e-3 and default_lr("lsm") == 3e-3
    assert default_lr("some-other-model") == 1e-3


# ----------------------------------------------------------------------------- training record
def test_resolved_config_is_logged_and_recorded(darcy16: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    config = TrainerConfig(lr=2e-3, epochs=1, batch_size=8, out_dir=str(tmp_path), progress=False)
    op, _ = train_operator(
        "fno", H5Dataset(darcy16, range(16)), config, model_options={"width": 8, "layers": 1},
        log=lines.append,
    )  # fmt: skip
    text = "\n".join(lines)
    assert "fno on a 16 x 16 grid: modes=4*, width=8, layers=1" in text
    assert "lr=0.002" in text and "derived: modes: min(12, n // 4)" in text
    assert "padding=0.125*" in text and "padding: 0.125 (walls: inputs do not wrap around" in text
    record = load_operator(tmp_path / "best.pt").metadata["resolved"]
    assert list(record["config"]["modes"]) == [4, 4]
    assert record["given"] == {"width": 8, "layers": 1}
    assert record["config"]["padding"] == 0.125 and "do not wrap" in record["derived"]["padding"]
    assert record["grid"] == [16, 16] and record["trainer"]["lr"] == 2e-3
    assert op.metadata["resolved"] == record
    # LSM's periodic flag is derived and recorded like FNO's padding
    lsm, _ = train_operator(
        "lsm", H5Dataset(darcy16, range(16)), TrainerConfig(steps=1, batch_size=8, progress=False),
        model_options={"width": 8, "heads": 4},
    )  # fmt: skip
    record = lsm.metadata["resolved"]
    assert record["config"]["periodic"] is False and "do not wrap" in record["derived"]["periodic"]


def test_lsm_refuses_another_grid_unless_asked(darcy16: Path) -> None:
    config = TrainerConfig(lr=1e-3, steps=1, batch_size=8, progress=False)
    train = H5Dataset(darcy16, range(16))
    op, _ = train_operator("lsm", train, config, model_options={"width": 8, "heads": 4})
    coarse = H5Dataset(darcy16, range(16, 24), resolution=8)
    with pytest.raises(ValueError, match=r"trained on a 16 x 16 grid.*8 x 8.*0\.48.*--allow-other"):
        evaluate(op, coarse)
    with pytest.warns(GridTransferWarning, match="does not transfer across resolutions"):
        report = evaluate(op, coarse, allow_other_grid=True)
    assert report["grid"] == [8, 8] and math.isfinite(report["rel_l2_mean"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training grid: no warning
        evaluate(op, H5Dataset(darcy16, range(16, 24)))
    # a resolution-invariant model is not held back
    fno, _ = train_operator("fno", train, config, model_options={"width": 8, "layers": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(fno, coarse)


# ----------------------------------------------------------------------------- seeds
def test_aggregate_seeds_gives_mean_and_min_max() -> None:
    rows = [
        {"label": "fno", "seed": 0, "test_rel_l2": 0.10, "test_rel_l2_max": 0.5, "rel_l2_32x32": 0.2,
         "parameters": 10, "s_per_step": 0.1, "s_per_epoch": 1.0, "lr": 3e-3},
        {"label": "fno", "seed": 1, "test_rel_l2": 0.14, "test_rel_l2_max": 0.7, "rel_l2_32x32": 0.3,
         "parameters": 10, "s_per_step": 0.3, "s_per_epoch": 3.0, "lr": 3e-3},
        {"label": "lsm", "seed": 0, "test_rel_l2": 0.05, "test_rel_l2_max": 0.2, "rel_l2_32x32": None,
         "parameters": 20, "s_per_step": 0.2, "s_per_epoch": 2.0, "lr": 1e-3},
        {"label": "lsm", "seed": 1, "test_rel_l2": 0.07, "test_rel_l2_max": 0.3, "rel_l2_32x32": None,
         "parameters": 20, "s_per_step": 0.2, "s_per_epoch": 2.0, "lr": 1e-3},
    ]  # fmt: skip
    fno, lsm = aggregate_seeds(rows)
    assert fno["seeds"] == [0, 1] and fno["test_rel_l2"] == pytest.approx(0.12)
    assert (fno["test_rel_l2_seed_min"], fno["test_rel_l2_seed_max"]) == (0.10, 0.14)
    assert fno["test_rel_l2_max"] == pytest.approx(0.6)  # the mean of the per-sample maxima
    assert fno["s_per_step"] == pytest.approx(0.2) and lsm["rel_l2_32x32"] is None
    table = format_table([fno, lsm], extra=["rel_l2_32x32"], spread=True)
    assert (
        "| fno | 2 | 0.1200 (0.1000-0.1400) | 0.6000 (0.5000-0.7000) | 0.2500 (0.2000-0.3000) |"
        in table
    )
    assert "at 32x32" in table and "| lsm | 2 | 0.0600 (0.0500-0.0700)" in table


# ----------------------------------------------------------------------------- CLI
def test_comparison_split_can_test_on_the_cli_samples() -> None:
    # the benchmark scripts' default: the test samples follow the training ones
    assert comparison_split(1200, 300, 100) == (range(300), range(300, 400))
    # -1: the file's last samples, those `train operator --val 0` tests on
    assert comparison_split(1200, 300, 100, -1) == (range(300), range(1100, 1200))
    assert comparison_split(1200, 300, 100, 500) == (range(300), range(500, 600))
    with pytest.raises(ValueError, match="overlap"):
        comparison_split(1200, 300, 100, 250)
    with pytest.raises(ValueError, match="run past"):
        comparison_split(1200, 300, 100, 1150)
    with pytest.raises(ValueError, match="overlap"):
        comparison_split(350, 300, 100, -1)


def test_cli_compares_models_over_seeds(
    darcy16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    code = main([
        "train", "operator", "--data", str(darcy16), "--model", "fno,deeponet", "--seeds", "2",
        "--epochs", "1", "--batch-size", "4", "--train", "16", "--val", "0", "--test", "8",
        "--test-data", str(darcy16), "--out", str(out), "--no-progress", "--threads", "1",
    ])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "fno on a 16 x 16 grid: modes=4*" in text and "lr=0.003" in text
    report = json.loads((out / "comparison.json").read_text())
    rows = {r["label"]: r for r in report["results"]}
    assert set(rows) == {"fno", "deeponet"} and report["meta"]["seeds"] == [0, 1]
    for r in rows.values():
        assert r["seeds"] == [0, 1] and len(r["test_rel_l2_per_seed"]) == 2
        assert r["test_rel_l2_seed_min"] <= r["test_rel_l2"] <= r["test_rel_l2_seed_max"]
        assert r["rel_l2_16x16"] == pytest.approx(r["test_rel_l2"])  # the same file and samples
    assert rows["fno"]["lr"] == 3e-3 and rows["deeponet"]["lr"] == 1e-3
    # the seeds differ (initial weights and batch order), so their errors differ
    assert len(set(rows["fno"]["test_rel_l2_per_seed"])) == 2
    for model in ("fno", "deeponet"):
        for seed in (0, 1):
            summary = json.loads((out / model / f"seed{seed}" / "summary.json").read_text())
            assert summary["seed"] == seed and summary["resolved"]["model"] == model
    assert "| fno | 2 |" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").stat().st_size > 1000


def test_cli_refuses_settings_that_cannot_work(
    darcy16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "operator", "--data", str(darcy16), "--out", str(tmp_path / "r"),
            "--no-progress"]  # fmt: skip
    assert main([*base, "--set", "modes=12"]) == 2
    assert "use modes <= 8" in capsys.readouterr().err
    assert main([*base, "--model", "lsm", "--set", "levels=5", "--set", "patch=4"]) == 2
    assert "levels=3 with patch=4" in capsys.readouterr().err
    assert main([*base, "--model", "fno,lsm", "--set", "width=8"]) == 2
    assert "names several models" in capsys.readouterr().err
    assert main([*base, "--model", "fno,fno"]) == 2
    assert main([*base, "--seeds", "0"]) == 2
    assert main([*base, "--model", "fno,lsm", "--resume"]) == 2


# ----------------------------------------------------------------------------- PDEBench layout
def test_pdebench_darcy_writer_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.random((5, 1, 8, 6)).astype(np.float32)
    u = rng.random((5, 1, 8, 6)).astype(np.float32)
    path = write_pdebench_darcy(tmp_path / "d.h5", a, u, beta=1.0)
    info = describe(path)
    assert info["layout"] == "pdebench-darcy" and info["input_shape"] == (1, 8, 6)
    x, y = H5Dataset(path)[3]
    torch.testing.assert_close(x, torch.from_numpy(a[3]))
    torch.testing.assert_close(y, torch.from_numpy(u[3]))
    with pytest.raises(ValueError, match=r"expected inputs \(N, 1, H, W\)"):
        write_pdebench_darcy(tmp_path / "e.h5", a[:, :, :, None], u)
    assert not (tmp_path / "e.h5").exists()


def test_cli_eval_refuses_lsm_on_another_grid_unless_asked(
    darcy16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "lsm"
    code = main([
        "train", "operator", "--data", str(darcy16), "--model", "lsm", "--set", "width=8",
        "--set", "heads=4", "--epochs", "1", "--batch-size", "8", "--train", "16", "--val", "0",
        "--test", "8", "--out", str(run), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["eval", str(run / "best.pt"), "--resolution", "8"]) == 2
    err = capsys.readouterr().err
    assert "trained on a 16 x 16 grid" in err and "--allow-other-grid" in err
    with pytest.warns(GridTransferWarning, match="0.48 at 32 x 32"):
        assert main(["eval", str(run / "best.pt"), "--resolution", "8", "--allow-other-grid"]) == 0
    assert main(["eval", str(run / "best.pt")]) == 0  # its own grid
