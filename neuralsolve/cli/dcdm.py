"""``neuralsolve train dcdm``: Ritz-vector data, training, held-out evaluation, export."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from neuralsolve.report import run_record, write_report
from neuralsolve.runlock import rank_zero_lock
from neuralsolve.solvers.dcdm import DCDM, DEFAULT_DIRECTIONS

from ._common import add_threads_arg, parse_assignments, set_threads

__all__ = ["add_dcdm_parser"]

EPILOG = """\
examples:
  neuralsolve train dcdm --problem obstacle3d --n 32 --out runs/dcdm          # 3-D stage 1
  neuralsolve train dcdm --problem obstacle2d --n 64 --out runs/dcdm2d        # the shipped 2-D model
  neuralsolve train dcdm --out runs/dcdm --resume                              # continue a run
  neuralsolve train dcdm --n 64 --init runs/dcdm/best.pt --out runs/dcdm64     # a second stage
  neuralsolve train dcdm --problem obstacle3d,poisson3d --out runs/mixed       # several problems
  neuralsolve train dcdm --set channels=16 --set coarse_blocks=3 --steps 8000  # another network

Data: --geometries gallery geometries (seeds FIRST_SEED, FIRST_SEED+1, ...), --samples unit
right-hand sides drawn from --ritz Lanczos Ritz vectors per geometry (9x weight on the low half),
cached in OUT/rhs.h5 (or --data) and reused when its settings match. The loss is the paper's
one-step residual through the operator: no solved systems are needed. Every --eval-every steps,
DCDM solves two held-out geometries to rtol 1e-4; best.pt has the fewest iterations.
Network fields: --set key=value (dim, kind=unet|paper, channels, coarse_channels, fine_blocks,
coarse_blocks, coarsest, activation=relu|gelu|none, skip=true|false).
--export FILE writes the small model file (weights + config) and FILE.json, its record.
"""


def add_dcdm_parser(tsub: Any) -> None:
    """Add ``dcdm`` to the ``train`` sub-commands."""
    p = tsub.add_parser(
        "dcdm",
        help="train a DCDM network (residual -> search direction) on gallery problems",
        description="Train the deep conjugate-direction method's network without labels.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--problem",
        default="obstacle3d",
        help="gallery problem, or several of one dimension separated by commas, e.g. "
        "obstacle3d,poisson3d: geometries alternate between them (default: obstacle3d)",
    )
    p.add_argument("--n", type=int, default=32, help="cells per axis (default: 32)")
    p.add_argument("--geometries", type=int, default=8, help="training geometries (default: 8)")
    p.add_argument("--first-seed", type=int, default=100, help="first geometry seed (default: 100)")
    p.add_argument("--samples", type=int, default=2000, help="right-hand sides (default: 2000)")
    p.add_argument(
        "--ritz", type=int, default=400, help="Lanczos steps per geometry (default: 400)"
    )
    p.add_argument("--data", help="right-hand-side cache (default: OUT/rhs.h5)")
    p.add_argument("--steps", type=int, default=6000, help="optimizer steps (default: 6000)")
    p.add_argument("--batch-size", type=int, default=8, help="(default: 8)")
    p.add_argument("--optimizer", default="adam", help="a neuralsolve.optim name (default: adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument(
        "--schedule", default="cosine", help="linear, cosine, wsd, constant (default: cosine)"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a network config field")
    p.add_argument(
        "--eval-every", type=int, default=1000, help="steps between evaluations (default: 1000)"
    )
    p.add_argument(
        "--eval-directions",
        type=int,
        default=DEFAULT_DIRECTIONS,
        help="DCDM directions when evaluating, as the solver keeps by default "
        f"(default: {DEFAULT_DIRECTIONS}; the shipped 2-D model was picked with 16)",
    )
    p.add_argument(
        "--deflation-block",
        type=int,
        metavar="CELLS",
        help="train for the deflated method (dcdm-deflated): the loss and the held-out solves "
        "deflate by boxes of this many cells per side (dcdm-deflated solves with 3 up to 64^3); "
        "default: "
        "plain DCDM",
    )
    p.add_argument("--out", default="runs/dcdm", help="run directory (default: runs/dcdm)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="start from these weights (a best.pt or an exported model), e.g. a second stage "
        "at a larger --n from a model trained at a smaller one",
    )
    p.add_argument("--export", metavar="FILE", help="write the small model file from best.pt")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    add_threads_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train_dcdm)


def _cmd_train_dcdm(args: argparse.Namespace) -> int:
    import torch

    from neuralsolve.operators.dcdm_train import (
        DCDMDataConfig,
        export_model,
        generate_rhs,
        load_rhs,
        problem_names,
        train_dcdm,
    )
    from neuralsolve.optim import TrainerConfig
    from neuralsolve.solvers.dcdm_net import DCDMNetConfig

    set_threads(args)
    out = Path(args.out)
    data_config = DCDMDataConfig(
        problem=args.problem,
        n=args.n,
        geometries=args.geometries,
        first_seed=args.first_seed,
        samples=args.samples,
        ritz=args.ritz,
        seed=args.seed,
    )
    try:  # the solver's own check, before data and training rather than at the first evaluation
        DCDM(directions=args.eval_directions)
    except ValueError as err:
        raise ValueError(f"--eval-directions: {err}") from None
    try:
        DCDM(deflation_block=args.deflation_block)
    except ValueError as err:
        raise ValueError(f"--deflation-block: {err}") from None
    net_options = {"dim": data_config.dim, **parse_assignments(args.set)}
    net_config = DCDMNetConfig.from_dict(net_options)
    # one run per directory (neuralsolve.runlock): data cache, training, summary, export
    with rank_zero_lock(out):
        progress = False if args.no_progress else None
        data_path = Path(args.data) if args.data else out / "rhs.h5"
        if data_path.exists():
            data = load_rhs(data_path)
            if data.config != data_config:
                raise ValueError(
                    f"{str(data_path)!r} holds data for {data.config}, not for this run's settings "
                    f"{data_config}; remove it or pass another --data path"
                )
            print(f"using cached right-hand sides {data_path}")
        else:
            t0 = time.perf_counter()
            generate_rhs(data_config, data_path, progress=progress)
            data = load_rhs(data_path)
            print(
                f"wrote {data_path}: {data_config.samples} right-hand sides on {data_config.geometries} "
                f"{data_config.problem} geometries at n={data_config.n} in {time.perf_counter() - t0:.1f} s"
            )
        trainer_config = TrainerConfig(
            optimizer=args.optimizer,
            lr=args.lr,
            schedule=args.schedule,
            steps=args.steps,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
            log_every=50,
            eval_every=args.eval_every,
            checkpoint_every=args.eval_every,
            out_dir=str(out),
            progress=progress,
        )

        def report(scores: dict[str, float]) -> None:
            if progress is False:
                return
            parts = [
                f"{name}: dcdm {scores[f'dcdm_iters/{name}']:.1f} vs cg {scores[f'cg_iters/{name}']:.1f}"
                for name in problem_names(data_config.problem, distinct=True)
                if f"dcdm_iters/{name}" in scores
            ]
            print(
                f"  held-out: dcdm {scores['dcdm_iters']:.1f} iterations vs cg {scores['cg_iters']:.1f} "
                f"(converged {scores['converged']:.0%})"
                + (f"; {'; '.join(parts)}" if parts else "")
            )

        _, result = train_dcdm(
            data,
            trainer_config,
            net_config=net_config,
            eval_directions=args.eval_directions,
            resume=args.resume,
            init=args.init,
            callback=report,
            deflation_block=args.deflation_block,
        )
        summary = {
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "seconds": result.seconds,
            "final_loss": result.final_loss,
            "eval": result.eval,
            "network": net_config.to_dict(),
            "data": str(data_path),
            "optimizer": args.optimizer,
            "lr": args.lr,
            "threads": torch.get_num_threads(),
        }
        write_report(
            out / "summary.json", {"meta": run_record(device=args.device), **summary}, indent=2
        )
        ev = result.eval or {}
        print(
            f"dcdm: {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.4f}; "
            f"held-out {ev.get('dcdm_iters', float('nan')):.1f} DCDM iterations vs "
            f"{ev.get('cg_iters', float('nan')):.1f} CG (rtol 1e-4); wrote {out / 'best.pt'}"
        )
        if args.export:
            command = "neuralsolve train dcdm " + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in vars(args).items()
                if k in ("problem", "n", "geometries", "first_seed", "samples", "ritz", "steps",
                         "batch_size", "optimizer", "lr", "schedule", "seed", "eval_every",
                         "eval_directions", "init", "deflation_block")
                and v is not None
            )  # fmt: skip
            for item in args.set or []:
                command += f" --set {item}"
            if args.init and Path(args.init).with_suffix(".json").exists():
                # the stage this one started from, so the record reproduces the whole chain
                summary["init_record"] = json.loads(
                    Path(args.init).with_suffix(".json").read_text()
                )
            path = export_model(
                out / "best.pt",
                args.export,
                record={"command": command, "summary": summary},
            )
            print(f"exported {path} and {path.with_suffix('.json')}")
        if result.stop_reason.startswith("non-finite"):
            print(f"neuralsolve train dcdm: error: {result.stop_reason}", file=sys.stderr)
            return 1
        return 0
