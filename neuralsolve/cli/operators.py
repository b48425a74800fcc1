"""The operator-learning commands of ``neuralsolve``: ``data``, ``train operator``, ``eval``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from neuralsolve.report import run_record, write_report
from neuralsolve.runlock import rank_zero_lock

from ._common import add_threads_arg, parse_assignments, set_threads, usage

__all__ = ["GENERATOR_SUMMARIES", "add_data_parser", "add_eval_parser", "add_train_operator_parser"]

EPILOG_DATA = """\
examples:
  neuralsolve data darcy --n 64 --samples 1200 --out darcy64.h5
  neuralsolve data burgers --n 256 --samples 1200 --set nu=0.05 --out burgers.h5
  neuralsolve data info darcy64.h5          # also reads PDEBench files

Samples are generated with the project's own solvers (Darcy and Poisson: pcg-amg / batched CG
to rtol 1e-10; Burgers: pseudo-spectral ETDRK4), seeded: sample i depends only on (seed, i).
"""

EPILOG_TRAIN = """\
examples:
  neuralsolve train operator --data darcy64.h5 --model lsm --epochs 200 --out runs/lsm
  neuralsolve train operator --data darcy64.h5 --model fno --set modes=16 --set width=32 --resolution 32
  neuralsolve train operator --data darcy64.h5 --model t1 --loss spectral --optimizer adamw --lr 1e-3
  neuralsolve train operator --data darcy64.h5 --model lsm --out runs/lsm --resume
  torchrun --nproc-per-node 2 -m neuralsolve.cli train operator --data darcy64.h5 --model fno --out runs/fno
  neuralsolve train operator --data darcy16.h5 --model fno --seeds 3 --test-data darcy32.h5
  neuralsolve train operator --data darcy16.h5 --model fno,lsm,t1,deeponet --epochs 50 --out runs/cmp

Model fields left out are derived from the training grid (FNO's and T1's modes, LSM's levels,
patch and width, DeepONet's sensors), FNO's padding from whether the training inputs wrap
around (0.125 of each axis for walls, 0 for a periodic problem), and the learning rate from the
model; the resolved config is printed before training and recorded in the checkpoint (and summary.json). A field given
with --set that cannot work on the grid is refused with what would. With --seeds K or several
models, each run goes to OUT/MODEL/seedS and OUT/comparison.{json,md,png} holds the mean and
min-max over the seeds for each model.

The split is by index: the first samples train, then validation, then test (--train/--val/--test:
counts, or fractions below 1). best.pt is the model with the lowest validation error (the last
model when --val is 0); last.pt resumes. OUT is locked while a run uses it (OUT/run.lock): a
second run with the same --out stops at once. A NaN or infinite validation or test error ends
the command with exit code 1 (summary.json records it, as null, with the reason). Model fields: `--set key=value` (see
`neuralsolve train operator --list-config MODEL`); Trainer fields: `--set trainer.key=value`.
"""

EPILOG_EVAL = """\
examples:
  neuralsolve eval runs/lsm/best.pt --data darcy64.h5 --json --plot
  neuralsolve eval runs/fno/best.pt --resolution 64          # the test split, at another resolution

Without --data the file recorded in the checkpoint is used; the test split recorded at training
is evaluated unless --split all. Errors are relative L2 per sample; times are model time only.
"""


# kept here (not imported) so that building the parser imports no torch; a test checks that
# these are exactly neuralsolve.datasets.generators.GENERATORS
GENERATOR_SUMMARIES = {
    "darcy": "2-D Darcy flow -div(a grad u) = 1, a in {12, 3} from a thresholded GRF (FNO's data)",
    "burgers": "1-D viscous Burgers, periodic: u0 -> u(t_final), pseudo-spectral ETDRK4",
    "poisson": "2-D Poisson -lap u = f with random (GRF) sources, zero Dirichlet",
    "navier_stokes": "2-D Navier-Stokes vorticity, periodic, FNO forcing: w0 -> w(t_final), "
    "pseudo-spectral ETDRK4",
}


def _count(text: str) -> int | float:
    value = float(text)
    return int(value) if value >= 1 and value == int(value) else value


def add_data_parser(sub: Any) -> None:
    """Add ``data`` to the top-level sub-parsers."""
    d = sub.add_parser(
        "data",
        help="generate operator-learning datasets (HDF5) or describe one",
        description="Generate (input, output) datasets with the project's solvers, or print a file's layout.",
        epilog=EPILOG_DATA,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = d.add_subparsers(dest="data_command", metavar="KIND")
    for name, summary in GENERATOR_SUMMARIES.items():
        g = dsub.add_parser(name, help=summary, description=summary)
        g.add_argument("--n", type=int, help="grid points per axis (default: the generator's)")
        g.add_argument(
            "--samples", type=int, default=1200, help="number of samples (default: 1200)"
        )
        g.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        g.add_argument("--out", required=True, help="output file (.h5)")
        g.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="other generator options"
        )
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
        g.set_defaults(func=_cmd_data_generate, generator=name)
    info = dsub.add_parser("info", help="print the layout of an HDF5 dataset (ours or PDEBench)")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_cmd_data_info)
    d.set_defaults(func=lambda args: usage(d))


def add_train_operator_parser(tsub: Any) -> None:
    """Add ``operator`` to the ``train`` sub-commands."""
    o = tsub.add_parser(
        "operator",
        help="train a neural operator on an HDF5 dataset",
        description="Train DeepONet, FNO, LSM or T1 on (input, output) pairs from an HDF5 file.",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    o.add_argument("--data", help="HDF5 dataset (ours or PDEBench)")
    o.add_argument(
        "--model",
        default="fno",
        help="deeponet, fno, lsm or t1, or several comma-separated (fno,lsm,t1,deeponet): each "
        "is trained on the same split and budget, and OUT/comparison.{json,md,png} compares "
        "them (default: fno)",
    )
    o.add_argument("--list-config", metavar="MODEL", help="print MODEL's config fields and exit")
    o.add_argument("--epochs", type=int, default=100, help="epochs (default: 100)")
    o.add_argument("--batch-size", type=int, default=20, help="global batch size (default: 20)")
    o.add_argument("--optimizer", default="adamw", help="a neuralsolve.optim name (default: adamw)")
    o.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: the model's: fno 3e-3, lsm 3e-3, t1 3e-3, deeponet 1e-3)",
    )
    o.add_argument("--weight-decay", type=float, default=1e-4, help="(default: 1e-4)")
    o.add_argument(
        "--schedule", default="cosine", help="linear, cosine, wsd or constant (default: cosine)"
    )
    o.add_argument("--loss", default="l2", choices=["l2", "spectral"], help="(spectral: t1 only)")
    o.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config field")
    o.add_argument("--resolution", type=int, help="train on a sub-sampled grid (default: full)")
    o.add_argument(
        "--train", type=_count, default=None, help="training samples (default: the rest)"
    )
    o.add_argument("--val", type=_count, default=0.1, help="validation samples (default: 0.1)")
    o.add_argument("--test", type=_count, default=0.2, help="test samples (default: 0.2)")
    o.add_argument("--input-step", type=int, default=0, help="time-series files: input frame")
    o.add_argument("--output-step", type=int, default=-1, help="time-series files: target frame")
    o.add_argument("--out", default=None, help="run directory (default: runs/MODEL)")
    o.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    o.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    o.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train with seeds SEED .. SEED+K-1 (OUT/seedS each) and report the mean and "
        "min-max of the test error over them (default: 1)",
    )
    o.add_argument(
        "--test-data",
        action="append",
        metavar="FILE",
        help="also evaluate on the test samples of FILE (the same samples as --data on another "
        "grid, e.g. 32 x 32 for a model trained at 16 x 16); repeatable",
    )
    o.add_argument(
        "--allow-other-grid",
        action="store_true",
        help="evaluate a model tied to its training grid (lsm) on --test-data at another grid "
        "anyway (it warns with the measured transfer error)",
    )
    o.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    o.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    o.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    add_threads_arg(o)
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.set_defaults(func=_cmd_train_operator)


def add_eval_parser(sub: Any) -> None:
    """Add ``eval`` to the top-level sub-parsers."""
    e = sub.add_parser(
        "eval",
        help="evaluate a trained operator: error table, throughput, plot",
        description="Relative L2 error per sample (mean/median/max) and inference throughput.",
        epilog=EPILOG_EVAL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("checkpoint", help="best.pt or last.pt of a `train operator` run")
    e.add_argument("--data", help="HDF5 dataset (default: the one recorded in the checkpoint)")
    e.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    e.add_argument("--resolution", type=int, help="evaluate on a sub-sampled grid")
    e.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    e.add_argument(
        "--allow-other-grid",
        action="store_true",
        help="evaluate a model tied to its training grid (lsm) at another --resolution anyway",
    )
    e.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    e.add_argument("--json", action="store_true", help="print JSON and write OUT_DIR/eval.json")
    e.add_argument("--plot", action="store_true", help="write OUT_DIR/eval.png")
    e.add_argument("--out-dir", help="(default: the checkpoint's directory)")
    add_threads_arg(e)
    e.set_defaults(func=_cmd_eval)


# ----------------------------------------------------------------------------- data
def _cmd_data_generate(args: argparse.Namespace) -> int:
    from neuralsolve.datasets.generators import generate

    options = parse_assignments(args.set)
    if args.n is not None:
        options["n"] = args.n
    path = generate(
        args.generator,
        out=args.out,
        samples=args.samples,
        seed=args.seed,
        progress=False if args.no_progress else None,
        **options,
    )
    print(f"wrote {path}")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from neuralsolve.datasets.hdf5 import describe, format_description

    info = describe(args.file)
    print(json.dumps(info, indent=2, default=str) if args.json else format_description(info))
    return 0


# ----------------------------------------------------------------------------- train
def _split_datasets(path: str, args: argparse.Namespace) -> tuple[Any, Any, Any, dict]:
    from neuralsolve.datasets.operator_data import H5Dataset, split_indices

    full = H5Dataset(
        path, resolution=args.resolution, input_step=args.input_step, output_step=args.output_step
    )
    splits = split_indices(len(full), train=args.train, val=args.val, test=args.test)

    def part(name: str) -> Any:
        return H5Dataset(
            path,
            splits[name],
            resolution=args.resolution,
            input_step=args.input_step,
            output_step=args.output_step,
        )

    val = part("val") if len(splits["val"]) else None
    return part("train"), val, part("test"), splits


def _cmd_train_operator(args: argparse.Namespace) -> int:
    import dataclasses

    from neuralsolve.operators import MODELS

    if args.list_config:
        if args.list_config not in MODELS:
            raise ValueError(
                f"unknown model {args.list_config!r}; available: {', '.join(sorted(MODELS))}"
            )
        config_cls = MODELS[args.list_config][1]
        print(f"{args.list_config} config fields (--set key=value):")
        for f in dataclasses.fields(config_cls):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            print(f"  {f.name} = {default!r}")
        return 0
    if not args.data:
        raise ValueError("--data is required: an HDF5 dataset (make one with `neuralsolve data`)")
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(
            f"unknown model(s) {unknown or [args.model]}; available: {', '.join(sorted(MODELS))} "
            "(several: --model fno,lsm)"
        )
    if len(set(models)) != len(models):
        raise ValueError(f"--model names a model twice: {args.model!r}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    compare = len(models) > 1 or args.seeds > 1
    if compare and args.resume:
        raise ValueError("--resume continues one run: use it with one --model and --seeds 1")
    if compare and os.environ.get("WORLD_SIZE", "1") != "1":
        raise ValueError(
            "several models or seeds run one after another in one process: launch them without "
            "torchrun, or run one model and seed per torchrun launch"
        )
    set_threads(args)
    settings = parse_assignments(args.set)
    trainer_settings = {
        k[len("trainer.") :]: v for k, v in settings.items() if k.startswith("trainer.")
    }
    model_options = {k: v for k, v in settings.items() if not k.startswith("trainer.")}
    from neuralsolve.optim import TrainerConfig

    valid = {f.name for f in dataclasses.fields(TrainerConfig)}
    unknown = sorted(set(trainer_settings) - valid)
    if unknown:
        raise TypeError(f"unknown Trainer field(s) {unknown}; valid: {', '.join(sorted(valid))}")
    if len(models) > 1 and model_options:
        raise ValueError(
            f"--set {', '.join(sorted(model_options))} is a model field, and --model names "
            f"several models ({', '.join(models)}): compare them with their defaults, or train "
            "one model with --set"
        )
    train, val, test, splits = _split_datasets(args.data, args)
    extra_tests = _extra_tests(args, splits)
    out = Path(args.out or ("runs/" + "-".join(models) if len(models) > 1 else f"runs/{models[0]}"))
    runs: list[dict[str, Any]] = []
    # one run per directory: the lock covers training, the test evaluation and summary.json
    # (rank 0 only: the other ranks of a torchrun launch write nothing)
    with rank_zero_lock(out):
        for model in models:
            for k in range(args.seeds):
                seed = args.seed + k
                run_dir = out / model if len(models) > 1 else out
                if args.seeds > 1:
                    run_dir = run_dir / f"seed{seed}"
                if compare:
                    print(f"== {model}, seed {seed} -> {run_dir}", flush=True)
                record = _train_one(
                    args, model, seed, run_dir, model_options, trainer_settings,
                    (train, val, test, splits, extra_tests),
                )  # fmt: skip
                if record is None:  # a torchrun rank other than 0
                    return 0
                runs.append(record)
                if record["error"] is not None:
                    print(
                        f"neuralsolve train operator: error: {record['error']} (after "
                        f"{record['steps']} steps; wrote {run_dir / 'summary.json'})",
                        file=sys.stderr,
                    )
                    return 1
                print(_run_line(record, run_dir), flush=True)
        if compare:
            _write_comparison(out, runs, args, extra_tests)
    return 0


def _extra_tests(args: argparse.Namespace, splits: dict) -> dict[str, Any]:
    """``--test-data`` files: the same test samples (by index) in another file, e.g. the same
    set on a finer grid; named by their grid."""
    from neuralsolve.datasets.operator_data import H5Dataset

    extra: dict[str, Any] = {}
    for path in args.test_data or []:
        full = H5Dataset(path, input_step=args.input_step, output_step=args.output_step)
        test_idx = splits["test"]
        if len(test_idx) and int(max(test_idx)) >= len(full):
            raise ValueError(
                f"--test-data {path!r} has {len(full)} samples, but the test split reaches "
                f"sample {int(max(test_idx))}: it must hold the same samples as --data, in order"
            )
        data = H5Dataset(path, test_idx, input_step=args.input_step, output_step=args.output_step)
        a0, _ = data[0]
        name = "x".join(map(str, a0.shape[1:]))
        extra[name if name not in extra else f"{name}_{len(extra)}"] = data
    return extra


def _train_one(
    args: argparse.Namespace,
    model: str,
    seed: int,
    out: Path,
    model_options: dict[str, Any],
    trainer_settings: dict[str, Any],
    data: tuple[Any, Any, Any, dict, dict[str, Any]],
) -> dict[str, Any] | None:
    """Train one model with one seed into ``out``; evaluate it on the test split (and the
    ``--test-data`` sets); write ``out/summary.json``. ``None`` on torchrun ranks other
    than 0."""
    import warnings

    from neuralsolve.errors import GridTransferWarning
    from neuralsolve.operators import evaluate, train_operator
    from neuralsolve.operators.defaults import default_lr
    from neuralsolve.optim import TrainerConfig

    train, val, test, splits, extra_tests = data
    steps_per_epoch = max(1, len(train) // args.batch_size)
    options: dict[str, Any] = {
        "optimizer": args.optimizer,
        "optimizer_options": {"weight_decay": args.weight_decay} if args.weight_decay else {},
        "lr": args.lr if args.lr is not None else default_lr(model),
        "schedule": args.schedule,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
        "seed": seed,
        "out_dir": str(out),
        "eval_every": steps_per_epoch if val is not None else 0,
        "checkpoint_every": steps_per_epoch,
        "log_every": max(1, steps_per_epoch // 5),
        "num_workers": args.workers,
        "progress": False if args.no_progress else None,
    }
    options.update(trainer_settings)
    config = TrainerConfig(**options)
    operator, result = train_operator(
        model,
        train,
        config,
        val=val,
        model_options=model_options,
        loss=args.loss,
        splits={k: v.tolist() for k, v in splits.items()},
        resume=args.resume,
        log=lambda text: print(text, flush=True),
    )
    import torch.distributed as dist

    from neuralsolve.optim import close_distributed

    if dist.is_initialized():
        # every rank closes the group together before rank 0 evaluates alone
        rank = dist.get_rank()
        close_distributed()
        if rank != 0:
            return None
    best = out / "best.pt"
    failure = result.stop_reason if result.stop_reason.startswith("non-finite") else None
    report: dict[str, Any] = {"rel_l2_mean": None, "rel_l2_max": None, "parameters": None}
    other: dict[str, Any] = {}
    if best.exists():
        report = evaluate(best, test, batch_size=args.batch_size, device=args.device)
        test_errors = (report["rel_l2_mean"], report["rel_l2_max"])
        if failure is None and not all(math.isfinite(v) for v in test_errors):
            failure = (
                f"non-finite test error (mean {report['rel_l2_mean']}, max "
                f"{report['rel_l2_max']}): a test sample may hold NaN or infinite values"
            )
        for name, data_set in extra_tests.items():
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", GridTransferWarning)
                    rep = evaluate(
                        best, data_set, batch_size=args.batch_size, device=args.device,
                        allow_other_grid=args.allow_other_grid,
                    )  # fmt: skip
                for w in caught:
                    print(f"warning: {w.message}", file=sys.stderr)
                other[name] = rep["rel_l2_mean"]
            except ValueError as exc:
                print(f"{model} not evaluated on {name}: {exc}", file=sys.stderr)
                other[name] = None
    steps_done = max(1, result.steps)
    summary = {
        "model": model,
        "seed": seed,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "error": failure,
        "train_seconds": result.seconds,
        "seconds_per_epoch": result.seconds / max(1, result.steps / steps_per_epoch),
        "seconds_per_step": result.seconds / steps_done,
        "final_loss": result.final_loss,
        "val": result.eval,
        "test_rel_l2_mean": report["rel_l2_mean"],
        "test_rel_l2_max": report["rel_l2_max"],
        "test_rel_l2_other_grids": other,
        "parameters": report["parameters"],
        "samples": {k: len(v) for k, v in splits.items()},
        "resolved": operator.metadata["resolved"],  # type: ignore[index]
    }
    write_report(
        out / "summary.json", {"meta": run_record(device=args.device), **summary}, indent=2
    )
    summary["losses"] = result.losses
    summary["epochs"] = result.steps / steps_per_epoch
    summary["test_samples"] = report.get("samples")
    return summary


def _run_line(record: dict[str, Any], out: Path) -> str:
    other = "".join(
        f"; at {k}: {'-' if v is None else format(v, '.4g')}"
        for k, v in record["test_rel_l2_other_grids"].items()
    )
    return (
        f"{record['model']} (seed {record['seed']}): {record['steps']} steps in "
        f"{record['train_seconds']:.1f} s ({record['seconds_per_step']:.3f} s/step, "
        f"{record['stop_reason']}); test rel. L2 mean {record['test_rel_l2_mean']:.4g}, max "
        f"{record['test_rel_l2_max']:.4g} on {record['test_samples']} samples{other}; wrote "
        f"{out / 'best.pt'}, {out / 'summary.json'}"
    )


def _write_comparison(
    out: Path, runs: list[dict[str, Any]], args: argparse.Namespace, extra: dict[str, Any]
) -> None:
    """Aggregate the runs per model (mean and min-max over seeds) into
    ``out/comparison.json``, ``.md`` and ``.png``, and print the table."""
    from neuralsolve.fileio import atomic_path
    from neuralsolve.operators.comparison import aggregate_seeds, format_table, plot_comparison

    rows = aggregate_seeds(
        [
            {
                "label": r["model"],
                "seed": r["seed"],
                "test_rel_l2": r["test_rel_l2_mean"],
                "test_rel_l2_max": r["test_rel_l2_max"],
                "parameters": r["parameters"],
                "train_s": r["train_seconds"],
                "s_per_epoch": r["seconds_per_epoch"],
                "s_per_step": r["seconds_per_step"],
                "epochs": r["epochs"],
                "losses": r["losses"],
                "lr": r["resolved"]["trainer"]["lr"],
                **{f"rel_l2_{k}": v for k, v in r["test_rel_l2_other_grids"].items()},
            }
            for r in runs
        ]
    )
    grid = "x".join(map(str, runs[0]["resolved"]["grid"]))
    keys = [f"rel_l2_{k}" for k in extra]
    table = format_table(rows, extra=keys, spread=True)
    meta = {
        **run_record(device=args.device),
        "data": str(Path(args.data).resolve()),
        "grid": grid,
        "seeds": [args.seed + k for k in range(args.seeds)],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "test_data": {k: str(Path(v.path).resolve()) for k, v in extra.items()},
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs],
    }
    write_report(out / "comparison.json", {"meta": meta, "results": rows}, indent=2)
    with atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(table + "\n")
    seeds = f"{args.seeds} seed{'s' if args.seeds > 1 else ''}"
    plot_comparison(out / "comparison.png", rows, f"{Path(args.data).name} ({grid}), {seeds}")
    print(table)
    print(f"wrote {out / 'comparison.json'}, {out / 'comparison.md'}, {out / 'comparison.png'}")


# ----------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from neuralsolve.datasets.operator_data import H5Dataset
    from neuralsolve.operators import evaluate, load_operator, plot_predictions

    set_threads(args)
    operator = load_operator(args.checkpoint, map_location=args.device)
    meta = operator.metadata  # type: ignore[attr-defined]
    data_info = meta.get("data", {})
    path = args.data or data_info.get("path")
    if not path:
        raise ValueError("the checkpoint records no data file: pass --data FILE")
    steps = {k: data_info[k] for k in ("input_step", "output_step") if data_info.get(k) is not None}
    full = H5Dataset(path, resolution=args.resolution, **steps)
    indices = None
    if args.split != "all":
        recorded = meta.get("splits", {}).get(args.split)
        if not recorded:
            raise ValueError(
                f"the checkpoint records no {args.split!r} split: use --split all "
                f"(splits recorded: {sorted(k for k, v in meta.get('splits', {}).items() if v)})"
            )
        if max(recorded) >= len(full):
            raise ValueError(
                f"the checkpoint's {args.split} split reaches sample {max(recorded)}, but "
                f"{path!r} has {len(full)} samples: is it the file the model was trained on?"
            )
        indices = np.asarray(recorded)
    data = H5Dataset(path, indices, resolution=args.resolution, **steps)
    report = evaluate(
        operator,
        data,
        batch_size=args.batch_size,
        device=args.device,
        allow_other_grid=args.allow_other_grid,
    )
    report.update(
        {
            "checkpoint": str(args.checkpoint),
            "data": str(path),
            "split": args.split,
            "model": meta["operator"]["name"],
            "trained_grid": data_info.get("grid"),
        }
    )
    out_dir = Path(args.out_dir or Path(args.checkpoint).parent)
    print(
        f"{report['model']} on {report['samples']} samples ({args.split}) at grid "
        f"{'x'.join(map(str, report['grid']))}: rel. L2 mean {report['rel_l2_mean']:.4g}, "
        f"median {report['rel_l2_median']:.4g}, max {report['rel_l2_max']:.4g}; "
        f"{report['ms_per_sample']:.3g} ms/sample ({report['parameters']} parameters)",
        file=sys.stderr if args.json else sys.stdout,
    )
    if args.plot:
        png = plot_predictions(operator, data, out_dir / "eval.png")
        print(f"wrote {png}", file=sys.stderr)
    if args.json:
        from neuralsolve.fileio import atomic_path

        text = json.dumps(report, indent=2)
        with atomic_path(out_dir / "eval.json") as tmp:
            tmp.write_text(text + "\n")
        print(text)
    return 0
