"""The operator-learning commands of ``neuralsolve``: ``data``, ``train operator``, ``eval``."""

from __future__ import annotations

import argparse
import json
import math
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
    o.add_argument("--model", default="fno", help="deeponet, fno, lsm or t1 (default: fno)")
    o.add_argument("--list-config", metavar="MODEL", help="print MODEL's config fields and exit")
    o.add_argument("--epochs", type=int, default=100, help="epochs (default: 100)")
    o.add_argument("--batch-size", type=int, default=20, help="global batch size (default: 20)")
    o.add_argument("--optimizer", default="adamw", help="a neuralsolve.optim name (default: adamw)")
    o.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
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
    o.add_argument("--seed", type=int, default=0, help="(default: 0)")
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

    from neuralsolve.operators import MODELS, evaluate, train_operator
    from neuralsolve.optim import TrainerConfig

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
    if args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; available: {', '.join(sorted(MODELS))}")
    set_threads(args)
    settings = parse_assignments(args.set)
    trainer_settings = {
        k[len("trainer.") :]: v for k, v in settings.items() if k.startswith("trainer.")
    }
    model_options = {k: v for k, v in settings.items() if not k.startswith("trainer.")}
    valid = {f.name for f in dataclasses.fields(TrainerConfig)}
    unknown = sorted(set(trainer_settings) - valid)
    if unknown:
        raise TypeError(f"unknown Trainer field(s) {unknown}; valid: {', '.join(sorted(valid))}")
    train, val, test, splits = _split_datasets(args.data, args)
    out = Path(args.out or f"runs/{args.model}")
    # one run per directory: the lock covers training, the test evaluation and summary.json
    # (rank 0 only: the other ranks of a torchrun launch write nothing)
    with rank_zero_lock(out):
        steps_per_epoch = max(1, len(train) // args.batch_size)
        options: dict[str, Any] = {
            "optimizer": args.optimizer,
            "optimizer_options": {"weight_decay": args.weight_decay} if args.weight_decay else {},
            "lr": args.lr,
            "schedule": args.schedule,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "device": args.device,
            "dtype": args.dtype,
            "seed": args.seed,
            "out_dir": str(out),
            "eval_every": steps_per_epoch if val is not None else 0,
            "checkpoint_every": steps_per_epoch,
            "log_every": max(1, steps_per_epoch // 5),
            "num_workers": args.workers,
            "progress": False if args.no_progress else None,
        }
        options.update(trainer_settings)
        config = TrainerConfig(**options)
        _, result = train_operator(
            args.model,
            train,
            config,
            val=val,
            model_options=model_options,
            loss=args.loss,
            splits={k: v.tolist() for k, v in splits.items()},
            resume=args.resume,
        )
        import torch.distributed as dist

        from neuralsolve.optim import close_distributed

        if dist.is_initialized():
            # every rank closes the group together before rank 0 evaluates alone
            rank = dist.get_rank()
            close_distributed()
            if rank != 0:
                return 0
        best = out / "best.pt"
        failure = result.stop_reason if result.stop_reason.startswith("non-finite") else None
        report: dict[str, Any] = {"rel_l2_mean": None, "rel_l2_max": None, "parameters": None}
        if best.exists():
            report = evaluate(best, test, batch_size=args.batch_size, device=args.device)
            test_errors = (report["rel_l2_mean"], report["rel_l2_max"])
            if failure is None and not all(math.isfinite(v) for v in test_errors):
                failure = (
                    f"non-finite test error (mean {report['rel_l2_mean']}, max "
                    f"{report['rel_l2_max']}): a test sample may hold NaN or infinite values"
                )
        summary = {
            "model": args.model,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "error": failure,
            "train_seconds": result.seconds,
            "seconds_per_epoch": result.seconds / max(1, result.steps / steps_per_epoch),
            "final_loss": result.final_loss,
            "val": result.eval,
            "test_rel_l2_mean": report["rel_l2_mean"],
            "test_rel_l2_max": report["rel_l2_max"],
            "parameters": report["parameters"],
            "samples": {k: len(v) for k, v in splits.items()},
        }
        write_report(
            out / "summary.json", {"meta": run_record(device=args.device), **summary}, indent=2
        )
        if failure is not None:
            print(
                f"neuralsolve train operator: error: {failure} (after {result.steps} steps; "
                f"wrote {out / 'summary.json'})",
                file=sys.stderr,
            )
            return 1
        print(
            f"{args.model}: {result.steps} steps in {result.seconds:.1f} s ({result.stop_reason}); "
            f"test rel. L2 mean {report['rel_l2_mean']:.4g}, max {report['rel_l2_max']:.4g} "
            f"on {report['samples']} samples; wrote {best}, {out / 'summary.json'}"
        )
        return 0


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
    report = evaluate(operator, data, batch_size=args.batch_size, device=args.device)
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
