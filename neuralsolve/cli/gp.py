"""``neuralsolve train gp``: GP-HM (a Gaussian process with spectral-mixture kernels on a grid)
on a built-in PDE problem, beside the Chebyshev reference."""

from __future__ import annotations

import argparse
import math
import time
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
    set_threads,
)

__all__ = ["add_gp_parser"]

EPILOG = """\
examples:
  neuralsolve train gp --problem poisson1d-hf --param case=P1 --n 400 --steps 20000 --out runs/p1
  neuralsolve train gp --problem poisson1d-hf --param case=P1 --n 400 --steps 20000 --out runs/p1 --resume
  neuralsolve train gp --problem poisson2d-hf --param case=Q2 --n 200 --kernel sm --steps 5000
  neuralsolve train gp --problem poisson1d-hf --param case=P4 --n 900 --closed-form 10
  neuralsolve train gp --problem poisson1d-hf --param case=P1 --kernel sm --jitter 1e-8 \
      --steps 1 --closed-form 1 --precision 4.85e8      # the closed form at low noise
  neuralsolve train gp --problem poisson2d-hf --kernel sm --jitter 1e-8 --steps 1 \
      --closed-form 1 --precision inf                   # 2-D: noise-free collocation

Writes OUT/last.pt (resumable: grid values, kernel parameters, precisions, optimizer state),
OUT/metrics.jsonl, OUT/summary.json (the relative L2 error on a fine grid with at least 10
points per wavelength, the final state only, and the Chebyshev reference's error and time when
the problem is 1-D or 2-D) and OUT/gp.png. `neuralsolve problems --pde` lists the problems.

Speed: the command lets glibc keep freed memory (neuralsolve.allocator.keep_freed_memory), which
takes about a quarter off a step on a 400 x 400 grid; the process may then hold up to 1 GB of
freed memory."""


def add_gp_parser(tsub: Any) -> None:
    """Add ``gp`` to the ``train`` sub-commands."""
    p = tsub.add_parser(
        "gp",
        help="solve a PDE problem with GP-HM (spectral-mixture Gaussian process on a grid)",
        description=(
            "Fit GP-HM (Fang et al., ICLR 2024) to a built-in steady PDE problem "
            "(ns.datasets.pde) on a uniform tensor grid, through the package's Trainer "
            "(checkpoints, exact resume)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pde_problem_args(p, example="poisson1d-hf", param_example="case=P4")
    p.add_argument("--n", type=int, default=400, help="grid points per axis (default: 400)")
    p.add_argument(
        "--kernel", default="stm", help="stm (Matern x cos, default), sm (SE x cos), se, matern"
    )
    p.add_argument("--Q", type=int, default=30, help="mixture components per axis (default: 30)")
    p.add_argument(
        "--freq-scale",
        type=float,
        default=None,
        help="initial frequencies linspace(0,1,Q)*this (default: from the problem's frequency)",
    )
    p.add_argument(
        "--log-ls",
        type=float,
        default=0.0,
        help="initial inverse length scale of every component, log domain (default: 0, the "
        "paper's); larger = narrower kernels, e.g. 10 for the multiscale P4 at n = 900",
    )
    p.add_argument("--jitter", type=float, default=1e-6, help="(default: 1e-6)")
    p.add_argument("--boundary-weight", type=float, default=200.0, help="lambda (default: 200)")
    add_full_batch_run_args(p, lr=1e-2, kind="gp")
    p.add_argument(
        "--closed-form",
        type=int,
        default=0,
        metavar="SWEEPS",
        help="after training, this many closed-form sweeps (u, then the precisions; linear PDEs)",
    )
    p.add_argument(
        "--precision",
        type=float,
        default=None,
        help="with --closed-form: fix tau = v to this value instead (the low-noise MAP, e.g. "
        "4.85e8); 'inf' takes the noise-free interior collocation (fast diagonalisation in 2-D)",
    )
    p.add_argument("--grid", type=int, default=None, help="points per axis of the error grid")
    p.add_argument("--no-reference", action="store_true", help="skip the Chebyshev reference")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    add_threads_arg(p)
    p.set_defaults(func=_cmd_train_gp)


def reference_degree(problem: Any, n: int) -> int:
    """The Chebyshev degree of the reference: at least ``n``, 64, and 2.5 nodes per wavelength
    of the problem's stated frequency along its longest axis (``1.25 frequency L``; pi per
    wavelength is the bare minimum)."""
    degree = max(64, n)
    frequency = problem.params.get("frequency")
    if frequency:
        length = max(b - a for a, b in zip(problem.domain.lower, problem.domain.upper, strict=True))
        degree = max(degree, math.ceil(1.25 * frequency * length))
    return degree


def _cmd_train_gp(args: argparse.Namespace) -> int:
    from neuralsolve.allocator import keep_freed_memory
    from neuralsolve.solvers import GPSolver

    set_threads(args)
    # freed step temporaries stay in the process: ~25% off a 400 x 400 step (allocator.py)
    keep_freed_memory()
    problem = make_pde_problem(args)
    gp = GPSolver(
        problem,
        args.n,
        kernel=args.kernel,
        Q=args.Q,
        freq_scale=args.freq_scale,
        log_ls=args.log_ls,
        boundary_weight=args.boundary_weight,
        jitter=args.jitter,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
    )
    out = Path(args.out or f"runs/gp-{args.problem}")
    # one run per directory (neuralsolve.runlock): training, closed form, summary and plot
    with rank_zero_lock(out):
        return _fit_and_report(gp, problem, args, out)


def _fit_and_report(gp: Any, problem: Any, args: argparse.Namespace, out: Path) -> int:
    """Train, then the optional closed form, the Chebyshev reference, ``summary.json`` and the
    plot; the exit code (1 when the loss went non-finite)."""
    from neuralsolve.solvers import ChebyshevSolver

    result = gp.fit(args.steps, **full_batch_fit_options(args, out))
    has_exact = getattr(problem, "exact", None) is not None
    error = gp.error(grid=args.grid) if has_exact else None
    closed = None
    if args.closed_form > 0:
        if args.precision is not None and math.isinf(args.precision):
            closed = gp.solve_collocation()
        elif args.precision is not None:
            closed = gp.solve_map(precision=args.precision)
        else:
            closed = gp.solve_map(sweeps=args.closed_form)
        closed["rel_l2"] = gp.error(grid=args.grid) if has_exact else None
    reference = None
    if has_exact and not args.no_reference:
        t0 = time.perf_counter()
        degree = reference_degree(problem, args.n)
        cheb = ChebyshevSolver(problem, degree)
        cheb.solve()
        reference = {
            "method": "chebyshev",
            "n": degree,
            "rel_l2": cheb.error(grid=args.grid),
            "seconds": time.perf_counter() - t0,
        }
    summary = {
        "problem": args.problem,
        "params": problem.params,
        "kernel": args.kernel,
        "Q": args.Q,
        "n": args.n,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "train_seconds": result.seconds,
        "seconds_per_step": result.seconds / max(1, len(result.losses)),
        "final_loss": result.final_loss,
        "rel_l2": error,
        "closed_form": closed,
        "reference": reference,
    }
    write_report(
        out / "summary.json", {"meta": run_record(device=args.device), **summary}, indent=2
    )
    plot = gp.plot(out / "gp.png", grid=args.grid) if has_exact else None
    what = f"rel. L2 {error:.4g}" if error is not None else "no exact solution to compare"
    if reference is not None:
        what += f" (Chebyshev N={reference['n']}: {reference['rel_l2']:.3g})"
    print(
        f"gp {args.problem} ({args.kernel}, n={args.n}): {result.steps} steps in "
        f"{result.seconds:.1f} s ({result.stop_reason}), final loss {result.final_loss:.4g}, "
        f"{what}; wrote {out / 'summary.json'}" + (f", {plot}" if plot else "")
    )
    return 0 if not result.stop_reason.startswith("non-finite") else 1
