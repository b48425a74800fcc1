"""The ``neuralsolve`` command: ``solve``, ``bench``, ``methods``, ``problems``, ``info``, and
the operator-learning ``data``, ``train operator``, ``eval`` (in :mod:`.operators`) and
``train dcdm`` (in :mod:`.dcdm`).

Exit codes: 0 success, 1 a solve (or training run) that did not converge, 2 bad input or
usage (a missing, unreadable or malformed input file, a bad option, a device this machine
lacks), 3 an I/O failure (an output that cannot be written: read-only directory, a directory in
the way, a full disk; the system out of memory), 4 an internal error (a bug: the traceback is
printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from ._common import add_threads_arg, parse_assignments, set_threads, usage

__all__ = ["build_parser", "main"]

EPILOG_SOLVE = """\
examples:
  neuralsolve solve system.mtx --method pcg-amg --rtol 1e-8 --out x.npy
  neuralsolve solve mesh.msh --method pcg-ic --out u.vtu        # P1 Poisson on the mesh, f = 1, u = 0 on the boundary
  neuralsolve solve --problem obstacle3d --n 64 --method pcg-amg --json

A system file is Matrix Market (.mtx, with an optional sibling <name>_b.mtx), scipy .npz or the
project's HDF5 layout (.h5); a mesh (.msh, .vtu, .xdmf, ...) is read with meshio. Without a
right-hand side, b = A @ ones (so the exact solution is all ones and the error is reported).
"""

EPILOG_BENCH = """\
examples:
  neuralsolve bench                                   # the default set: poisson3d 32^3 and 64^3, neumann3d 64^3
  neuralsolve bench --problem obstacle3d --n 32 --n 64 --methods cg,pcg-ic,pcg-amg,pyamg-sa
  neuralsolve bench --problem poisson3d:128 --threads 2 --repeat 3
  neuralsolve bench --problem system.mtx --rtol 1e-8

Writes a table to stdout, the JSON report and a PNG convergence plot (residual vs iteration and
vs seconds) to --out-dir. Times on a shared machine are noisy: compare the ratios of one run.
"""


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="cpu", help="torch device for the torch methods (default: cpu)"
    )
    p.add_argument(
        "--dtype",
        default="float64",
        choices=["float32", "float64"],
        help="working precision (default: float64)",
    )
    add_threads_arg(p)


def build_parser() -> argparse.ArgumentParser:
    from neuralsolve._version import __version__

    from . import dcdm, gp, operators, pinn

    parser = argparse.ArgumentParser(
        prog="neuralsolve",
        description="Solve PDEs and their linear systems with classical and learned methods, and benchmark them.",
    )
    parser.add_argument("--version", action="version", version=f"neuralsolve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "solve",
        help="solve a linear system from a file, a mesh or the gallery",
        description="Solve A x = b and report status, iterations, times and the true residual.",
        epilog=EPILOG_SOLVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "system", nargs="?", help="system file (.mtx, .npz, .h5) or mesh (.msh, .vtu, ...)"
    )
    s.add_argument(
        "--problem", help="a gallery problem instead of a file (see `neuralsolve problems`)"
    )
    s.add_argument(
        "--n", type=int, default=32, help="cells per axis of a gallery problem (default: 32)"
    )
    s.add_argument("--rhs", help="right-hand side file (.npy, .mtx, .h5 with dataset b)")
    s.add_argument(
        "--method", default="cg", help="method name (see `neuralsolve methods`; default: cg)"
    )
    s.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default: 1e-6)")
    s.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default: 0)")
    s.add_argument("--max-iters", type=int, default=None, help="iteration limit (default: 10 n)")
    s.add_argument(
        "--out",
        help="write the solution: .npy, .h5 (with the solve's status as attributes), or "
        ".vtu/.xdmf for meshes and gallery grids; written only when the solve converged",
    )
    s.add_argument(
        "--write-unconverged",
        action="store_true",
        help="write --out even when the solve did not converge (the last iterate; .h5 "
        "records converged=False and the status)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_runtime_args(s)
    s.set_defaults(func=_cmd_solve)

    b = sub.add_parser(
        "bench",
        help="convergence benchmark of every method on the same problems",
        description="Run methods on gallery problems or system files: table, JSON and convergence plot.",
        epilog=EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--problem",
        action="append",
        help=(
            "gallery name, name:N, or a system/mesh file (repeatable; "
            "default: poisson3d:32, poisson3d:64, neumann3d:64)"
        ),
    )
    b.add_argument(
        "--n", type=int, action="append", help="cells per axis for the named problems (repeatable)"
    )
    b.add_argument(
        "--methods",
        help="comma-separated method names (default: cg, cg-fused, pcg-jacobi, pcg-ic, pcg-amg, "
        "cg-deflated, dcdm-deflated, scipy-cg, pyamg-sa, pyamg-rs, direct)",
    )
    b.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default: 1e-6)")
    b.add_argument(
        "--rhs",
        type=int,
        default=1,
        help="right-hand sides per problem, solved as a batch (default: 1)",
    )
    b.add_argument(
        "--sequential",
        action="store_true",
        help="with --rhs K > 1: also solve the K columns one by one and report the batch speedup",
    )
    b.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="solves per method; the median time is reported (default: 1)",
    )
    b.add_argument(
        "--seed", type=int, default=0, help="seed of geometry and right-hand sides (default: 0)"
    )
    b.add_argument("--max-iters", type=int, default=None, help="iteration limit per solve")
    b.add_argument(
        "--set",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. dcdm.directions=8 or dcdm.model=runs/dcdm/best.pt; "
        "METHOD.max_iters and METHOD.rtol override the run's values for that method",
    )
    b.add_argument(
        "--out-dir",
        default="bench-out",
        help="where bench.json and bench.png go (default: bench-out)",
    )
    b.add_argument("--json", help="path of the JSON report (default: OUT_DIR/bench.json)")
    b.add_argument("--plot", help="path of the PNG plot (default: OUT_DIR/bench.png)")
    b.add_argument("--no-plot", action="store_true", help="skip the plot")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_runtime_args(b)
    b.set_defaults(func=_cmd_bench)

    m = sub.add_parser("methods", help="list the solver methods")
    m.set_defaults(func=_cmd_methods)
    p = sub.add_parser("problems", help="list the gallery problems (--pde: the PINN problems)")
    p.add_argument("--pde", action="store_true", help="list the PDE problems of `train pinn`")
    p.set_defaults(func=_cmd_problems)
    i = sub.add_parser("info", help="versions, threads and devices")
    i.set_defaults(func=_cmd_info)
    operators.add_data_parser(sub)
    t = sub.add_parser(
        "train", help="train a model (neural operators, DCDM networks, PINNs, GP-HM)"
    )
    tsub = t.add_subparsers(dest="train_command", metavar="WHAT")
    t.set_defaults(func=lambda args: usage(t))
    dcdm.add_dcdm_parser(tsub)
    operators.add_train_operator_parser(tsub)
    pinn.add_pinn_parser(tsub)
    gp.add_gp_parser(tsub)
    operators.add_eval_parser(sub)
    return parser


# ----------------------------------------------------------------------------- solve
def _cmd_solve(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import neuralsolve as ns

    set_threads(args)
    if args.out:
        from neuralsolve.fileio import check_writable

        check_writable(args.out)  # before the solve, not after it
    dtype = getattr(torch, args.dtype)
    problem = None
    if args.problem:
        if args.system:
            raise ValueError("give either a system file or --problem, not both")
        problem = ns.datasets.make_problem(args.problem, args.n).to(device=args.device, dtype=dtype)
        A, b, source = problem.A, problem.b, f"{problem.name} (gallery)"
    elif args.system:
        A_raw, b_raw, problem = ns.datasets.load_problem(args.system)
        _check_system_shape(args.system, A_raw.shape)
        A = ns.as_operator(A_raw, dtype=dtype, device=args.device)
        b = (
            None
            if b_raw is None
            else torch.as_tensor(np.asarray(b_raw), dtype=dtype, device=args.device)
        )
        source = args.system
    else:
        raise ValueError(
            "nothing to solve: give a system file or --problem NAME (see `neuralsolve solve --help`)"
        )
    exact = None
    if args.rhs:
        b_file = ns.datasets.read_rhs(args.rhs)
        if b_file.shape[0] != A.shape[0]:
            raise ns.DataFormatError(
                f"--rhs {args.rhs!r} has shape {b_file.shape}, but {source!r} is "
                f"{A.shape[0]} x {A.shape[1]}: expected ({A.shape[0]},) or ({A.shape[0]}, k)"
            )
        b = torch.as_tensor(b_file, dtype=dtype, device=args.device)
    if b is None:
        exact = torch.ones(A.shape[0], dtype=dtype, device=args.device)
        b = A @ exact
        if not args.json:
            print(
                "no right-hand side given: using b = A @ ones (exact solution: ones)",
                file=sys.stderr,
            )
    res = ns.solve(
        A, b, method=args.method, rtol=args.rtol, atol=args.atol, max_iters=args.max_iters
    )
    x = res.x
    report: dict[str, Any] = {
        "system": source,
        "unknowns": A.shape[0],
        "method": args.method,
        "status": res.status.value,
        "converged": res.converged,
        "iterations": res.iterations,
        "setup_s": res.stats["setup_s"],
        "solve_s": res.stats["solve_s"],
        "rel_residual": res.stats["rel_residual"],
        "dtype": args.dtype,
        "device": args.device,
    }
    if exact is not None:
        report["rel_error"] = float(
            torch.linalg.vector_norm(x - exact) / torch.linalg.vector_norm(exact)
        )
    wrote = bool(args.out) and (res.converged or args.write_unconverged)
    if wrote:
        status = {
            "status": res.status.value,
            "converged": bool(res.converged),
            "iterations": int(res.iterations),
            "rel_residual": float(res.stats["rel_residual"]),
            "method": args.method,
            "system": source,
        }
        ns.datasets.write_solution(args.out, x, problem=problem, attrs=status)
        report["out"] = args.out
        if not res.converged and Path(args.out).suffix.lower() not in (".h5", ".hdf5"):
            print(
                f"warning: {args.out} holds an iterate that did not converge; this format "
                "carries no status (.h5 records it)",
                file=sys.stderr,
            )
    elif args.out:
        report["out"] = None
        print(
            f"not written: {args.out} (the solve did not converge; an earlier file there is "
            "kept); pass --write-unconverged to write the last iterate",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"system      {source}: {A.shape[0]:,} unknowns ({args.dtype}, {args.device})")
        print(f"method      {args.method}")
        print(f"status      {res.status}")
        print(f"iterations  {res.iterations}")
        print(f"setup       {res.stats['setup_s']:.4g} s")
        print(f"solve       {res.stats['solve_s']:.4g} s")
        print(f"residual    ||b - A x|| / ||b|| = {res.stats['rel_residual']:.3e} (true residual)")
        if "rel_error" in report:
            print(f"error       ||x - 1|| / ||1|| = {report['rel_error']:.3e}")
        if wrote:
            print(f"wrote       {args.out}")
    return 0 if res.converged else 1


def _check_system_shape(path: str, shape: tuple[int, ...]) -> None:
    """A system file must hold a square, non-empty matrix: say so naming the file."""
    from neuralsolve.errors import DataFormatError

    m, n = shape
    if m != n:
        raise DataFormatError(
            f"{path!r} holds a {m} x {n} matrix, which is not square: a linear solve needs as "
            "many equations as unknowns"
        )
    if n == 0:
        raise DataFormatError(f"{path!r} holds a 0 x 0 matrix: there is nothing to solve")


# ----------------------------------------------------------------------------- bench
def _problem_specs(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    from neuralsolve.bench import DEFAULT_PROBLEMS
    from neuralsolve.datasets import PROBLEMS

    if not args.problem and not args.n:
        return list(DEFAULT_PROBLEMS)
    names = args.problem or ["poisson3d", "neumann3d"]
    specs: list[tuple[str, int | None]] = []
    for name in names:
        if ":" in name and name.split(":", 1)[0] in PROBLEMS:
            base, n = name.split(":", 1)
            if not n.isdigit():
                raise ValueError(f"bad problem spec {name!r}: use NAME:N, e.g. poisson3d:64")
            specs.append((base, int(n)))
        elif name in PROBLEMS:
            sizes = args.n or ([32, 64] if PROBLEMS[name]["dim"] == 3 else [128, 256])
            specs += [(name, n) for n in sizes]
        elif Path(name).exists():
            specs.append((name, None))
        else:
            raise ValueError(
                f"unknown problem {name!r}: not a gallery name ({', '.join(PROBLEMS)}) and no such file"
            )
    return specs


def _method_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["dcdm.directions=8"]`` -> ``{"dcdm": {"directions": 8}}`` (values parsed as JSON
    where they parse)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(items).items():
        method, dot, option = key.partition(".")
        if not dot or not method or not option:
            raise ValueError(
                f"--set expects METHOD.KEY=VALUE (e.g. dcdm.directions=8), got {key!r}"
            )
        out.setdefault(method, {})[option] = value
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    from neuralsolve.bench import (
        DEFAULT_METHODS,
        BenchConfig,
        format_table,
        plot_report,
        run_benchmark,
    )
    from neuralsolve.report import write_report

    methods = (
        tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if args.methods
        else DEFAULT_METHODS
    )
    config = BenchConfig(
        problems=tuple(_problem_specs(args)),
        methods=methods,
        rtol=args.rtol,
        rhs=args.rhs,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        repeat=args.repeat,
        seed=args.seed,
        max_iters=args.max_iters,
        sequential=args.sequential,
        options=_method_options(args.set),
    )
    interactive = sys.stderr.isatty() and not args.no_progress

    def announce(r: dict[str, Any]) -> None:
        if interactive or args.no_progress:
            return
        what = (
            r.get("skipped")
            or r.get("error")
            or f"{r['status']}, {r['iterations']} it, solve {r['solve_s']:.3f} s"
        )
        print(f"  {r['problem']}-{r['n']} {r['method']}: {what}", file=sys.stderr, flush=True)

    report = run_benchmark(config, progress=interactive, on_result=announce)
    print(format_table(report))
    out_dir = Path(args.out_dir)
    json_path = Path(args.json) if args.json else out_dir / "bench.json"
    write_report(json_path, report)
    print(f"\nwrote {json_path}")
    if not args.no_plot:
        plot_path = plot_report(report, Path(args.plot) if args.plot else out_dir / "bench.png")
        print(f"wrote {plot_path}")
    return 0


# ----------------------------------------------------------------------------- listings
def _cmd_methods(args: argparse.Namespace) -> int:
    from neuralsolve.solvers import METHODS

    width = max(map(len, METHODS))
    for name, spec in METHODS.items():
        print(f"{name.ljust(width)}  [{spec.backend}]  {spec.summary}")
    return 0


def _cmd_problems(args: argparse.Namespace) -> int:
    from neuralsolve.datasets import available_problems, pde

    problems = pde.available() if args.pde else available_problems()
    width = max(map(len, problems))
    for name, doc in problems.items():
        print(f"{name.ljust(width)}  {doc}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from neuralsolve._version import __version__
    from neuralsolve.report import cpu_name
    from neuralsolve.solvers.precond.ichol import native_trisolve_available

    print(f"neuralsolve {__version__}, torch {torch.__version__}")
    print(f"cpu         {cpu_name()}, torch threads {torch.get_num_threads()}")
    print(
        f"cuda        {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    print(
        f"sparse triangular solve on cpu: {'native' if native_trisolve_available(torch.device('cpu')) else 'levels'}"
    )
    return 0


EXIT_NOT_CONVERGED = 1
EXIT_USAGE = 2
EXIT_IO = 3
EXIT_INTERNAL = 4


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neuralsolve`` console script.

    Returns the exit code: 0 success, 1 not converged, 2 bad input or usage, 3 I/O failure,
    4 internal error (see the module docstring). A traceback is printed only for 4.
    """
    from neuralsolve.checks import check_device

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    what = f"neuralsolve {args.command}"
    try:
        if getattr(args, "device", None) is not None:
            check_device("--device", args.device)
        return int(args.func(args))
    except FileNotFoundError as exc:  # an input that is not there (outputs: FileWriteError)
        print(f"{what}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, MemoryError) as exc:  # FileWriteError, unreadable inputs, out of memory
        reason = str(exc) or "out of memory"
        print(f"{what}: I/O error: {reason}", file=sys.stderr)
        return EXIT_IO
    except (ValueError, TypeError) as exc:  # DataFormatError, DeviceError, NotSPDError, ...
        print(f"{what}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            f"{what}: internal error (exit {EXIT_INTERNAL}): this is a bug in neuralsolve; "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
