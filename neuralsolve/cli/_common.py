"""What the sub-commands of ``neuralsolve`` share: ``--threads``, ``--set key=value``, the
``--problem``/``--param`` pair of the PDE commands, usage."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = [
    "add_full_batch_run_args",
    "add_pde_problem_args",
    "add_threads_arg",
    "full_batch_fit_options",
    "make_pde_problem",
    "parse_assignments",
    "set_threads",
    "usage",
]


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """The ``--threads`` option, the same for every sub-command."""
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )


def add_pde_problem_args(p: argparse.ArgumentParser, *, example: str, param_example: str) -> None:
    """``--problem NAME`` (a ``neuralsolve.datasets.pde`` problem) and the repeatable
    ``--param KEY=VALUE`` of the PDE commands (``train pinn``, ``train gp``)."""
    p.add_argument("--problem", required=True, help=f"a ns.datasets.pde problem, e.g. {example}")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help=f"a problem parameter, e.g. {param_example} (repeatable)",
    )


def add_full_batch_run_args(p: argparse.ArgumentParser, *, lr: float, kind: str) -> None:
    """The options of a full-batch training run through the Trainer (``train pinn``, ``train
    gp``): ``--steps``, ``--optimizer``, ``--lr`` (default ``lr``), ``--schedule``, ``--out``
    (default ``runs/KIND-PROBLEM``), ``--resume``, ``--checkpoint-every``, ``--log-every``,
    ``--no-progress``; :func:`full_batch_fit_options` turns them into ``fit`` arguments."""
    p.add_argument("--steps", type=int, default=10_000, help="optimizer steps (default: 10000)")
    p.add_argument("--optimizer", default="adam", help="a neuralsolve.optim name (default: adam)")
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
    p.add_argument("--schedule", default="constant", help="constant, cosine, linear or wsd")
    p.add_argument("--out", default=None, help=f"run directory (default: runs/{kind}-PROBLEM)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints (default: 500)"
    )
    p.add_argument(
        "--log-every", type=int, default=100, help="steps between metrics lines (default: 100)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def full_batch_fit_options(args: argparse.Namespace, out: Any) -> dict[str, Any]:
    """The keyword arguments of ``PINN.fit`` / ``GPSolver.fit`` (after ``steps``) from
    :func:`add_full_batch_run_args`'s options, writing to ``out``."""
    return {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "schedule": args.schedule,
        "out_dir": out,
        "resume": args.resume,
        "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every,
        "progress": False if args.no_progress else None,
    }


def make_pde_problem(args: argparse.Namespace) -> Any:
    """The problem of :func:`add_pde_problem_args`'s options:
    ``pde.make(args.problem, **params)``."""
    from neuralsolve.datasets import pde

    return pde.make(args.problem, **parse_assignments(args.param))


def set_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)`` when ``--threads`` was given.

    Raises
    ------
    ValueError
        If it is below 1 (the benchmark's own check, :class:`~neuralsolve.bench.BenchConfig`,
        says the same).
    """
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["modes=16", "padding=8", "name=x"]`` -> ``{"modes": 16, "padding": 8, "name": "x"}``;
    values are read as JSON where they parse (numbers, lists, true/false/null)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def usage(parser: argparse.ArgumentParser) -> int:
    """Print ``parser``'s help; the exit code of a command group called without a command."""
    parser.print_help()
    return 2
