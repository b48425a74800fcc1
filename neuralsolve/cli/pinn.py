"""``neuralsolve train pinn``: fit a PINN to a built-in PDE problem, with adaptive sampling."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neuralsolve.report import run_record, write_report
from neuralsolve.runlock import rank_zero_lock

from ._common import (
    add_full_batch_run_args,
    add_pde_problem_args,
    add_threads_arg,
    full_batch_fit_options,
    make_pde_problem,
    parse_assignments,
    set_threads,
)

__all__ = ["add_pinn_parser"]

EPILOG = """\
examples:
  neuralsolve train pinn --problem peak2d --sampler aas --steps 10000 --out runs/peak
  neuralsolve train pinn --problem peak2d --sampler aas --steps 10000 --out runs/peak --resume
  neuralsolve train pinn --problem exp-nd --param d=10 --sampler rad --n-points 2000
  neuralsolve train pinn --problem poisson1d-hf --param case=P2 --optimizer lbfgs --lr 1 --steps 500

Writes OUT/last.pt (resumable: the network, the optimizer, the current collocation points and
the sampler, the AAS flow included), OUT/metrics.jsonl, OUT/summary.json (the relative L2 error
against the exact solution on a fixed grid, when the problem has one) and OUT/pinn.png
(1-D and 2-D problems). `neuralsolve problems --pde` lists the problems."""


def add_pinn_parser(tsub: Any) -> None:
    """Add ``pinn`` to the ``train`` sub-commands."""
    p = tsub.add_parser(
        "pinn",
        help="fit a physics-informed network to a PDE problem (uniform, RAD, RAR or AAS points)",
        description=(
            "Train a PINN on a built-in PDE problem (ns.datasets.pde) with the chosen collocation "
            "sampler, through the package's Trainer (checkpoints, exact resume)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pde_problem_args(p, example="peak2d", param_example="d=10 for exp-nd")
    p.add_argument(
        "--sampler",
        default="uniform",
        help="uniform, uniform-resample, sobol, lhs, rar-g, rar-d, rad or aas (default: uniform)",
    )
    p.add_argument(
        "--sampler-option",
        action="append",
        metavar="KEY=VALUE",
        help="a sampler option, e.g. beta=1e-3 for aas or k=2 for rad (repeatable)",
    )
    p.add_argument("--n-points", type=int, default=1000, help="collocation points (default: 1000)")
    p.add_argument(
        "--resample-every",
        type=int,
        default=1000,
        help="optimizer steps per sampling round (default: 1000)",
    )
    p.add_argument("--width", type=int, default=32, help="hidden units per layer (default: 32)")
    p.add_argument("--depth", type=int, default=6, help="hidden layers (default: 6)")
    p.add_argument("--activation", default="tanh", help="tanh, sin, gelu, silu, softplus")
    p.add_argument(
        "--hard-dirichlet", action="store_true", help="build the boundary data into the network"
    )
    p.add_argument(
        "--boundary-weight",
        type=float,
        default=1.0,
        help="weight of the boundary (and initial) term in the loss (default: 1)",
    )
    p.add_argument(
        "--loss-balance",
        choices=["fixed", "grad-norm"],
        default="fixed",
        help="keep the weights (fixed, the default) or balance them by gradient norms every "
        "100 steps (grad-norm: each term pulls the parameters as hard as the residual)",
    )
    add_full_batch_run_args(p, lr=1e-3, kind="pinn")
    p.add_argument("--grid", type=int, default=201, help="points per axis of the error grid")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    add_threads_arg(p)
    p.set_defaults(func=_cmd_train_pinn)


def _cmd_train_pinn(args: argparse.Namespace) -> int:
    from neuralsolve.solvers import MLP, PINN

    set_threads(args)
    problem = make_pde_problem(args)
    pinn = PINN(
        problem,
        net=MLP(width=args.width, depth=args.depth, activation=args.activation, seed=args.seed),
        sampler=args.sampler,
        sampler_options=parse_assignments(args.sampler_option),
        n_points=args.n_points,
        resample_every=args.resample_every,
        hard_dirichlet=args.hard_dirichlet,
        boundary_weight=args.boundary_weight,
        initial_weight=args.boundary_weight,
        loss_balance=args.loss_balance,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
    )
    out = Path(args.out or f"runs/pinn-{args.problem}")
    # one run per directory (neuralsolve.runlock): training, summary and plots
    with rank_zero_lock(out):
        result = pinn.fit(args.steps, **full_batch_fit_options(args, out))
        error = pinn.error(grid=args.grid) if problem.exact is not None else None
        summary = {
            "problem": args.problem,
            "params": problem.params,
            "sampler": args.sampler,
            "n_points": args.n_points,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "train_seconds": result.seconds,
            "final_loss": result.final_loss,
            "loss_balance": args.loss_balance,
            "boundary_weight": pinn.boundary_weight,
            "rel_l2": error,
        }
        write_report(
            out / "summary.json", {"meta": run_record(device=args.device), **summary}, indent=2
        )
        plot = None
        if problem.dim <= 2:
            plot = pinn.plot(out / "pinn.png")
        what = f"rel. L2 {error:.4g}" if error is not None else "no exact solution to compare"
        print(
            f"pinn {args.problem} ({args.sampler}): {result.steps} steps in {result.seconds:.1f} s "
            f"({result.stop_reason}), final loss {result.final_loss:.4g}, {what}; wrote "
            f"{out / 'summary.json'}" + (f", {plot}" if plot else "")
        )
        return 0 if not result.stop_reason.startswith("non-finite") else 1
