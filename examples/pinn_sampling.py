"""Collocation samplers for PINNs side by side: uniform, RAD, RAR-D and AAS (adversarial
adaptive sampling), with the same network, the same number of collocation points, the same
optimizer steps and the same seeds, on the DAS/AAS problems (peak2d, two-peak2d, exp5d, exp10d;
``neuralsolve.datasets.pde``).

Budget per run: a tanh MLP (``--width`` 32 x ``--depth`` 6 hidden layers), ``--n-points`` 1000
collocation points (RAR-D starts there and adds 10 per round), ``--steps`` 10000 Adam steps at
lr 1e-3 (``--schedule`` constant or cosine), new points every ``--resample-every`` 1000 steps,
float32, the boundary term weighted by ``--boundary-weight`` (1), fixed or, with
``--loss-balance grad-norm``, balanced by gradient norms (``PINN``'s module notes). Reported
per (problem, sampler): the relative L2 error on fixed test points (PINN.error: a 201^2 grid in
2-D, 1e5 fixed random points for d > 3, half of them about the solution's focus,
importance-weighted), mean and min / max over the seeds, and the wall time per run. For peak2d
(``-lap u = f`` in 2-D) each run's error is also split into the part its residual causes and
the part its boundary misfit causes (``neuralsolve.solvers.pinn.error_sources``, on a 401^2
grid): which of the two loss terms limits the run. AAS trains its flow for ``--flow-steps``
Adam steps per round.

For the first problem (and first seed) it also estimates the Hessian spectral density of the
final PINN loss in the network's parameters, uniform against AAS, by stochastic Lanczos
quadrature (``neuralsolve.optim.curvature.spectral_density``, ``--probes`` Rademacher probes of
``--lanczos-steps`` steps each: a coarse picture of the spectrum's edges and bulk, not its
fine structure). Each loss is on its own run's last collocation points.

Run: python examples/pinn_sampling.py [--problems peak2d,two-peak2d,exp5d,exp10d]
[--samplers uniform,rad,rar-d,aas] [--seeds 3] [--steps 10000] [--threads 1]
(NEURALSOLVE_QUICK=1 for a smoke run of a few seconds: peak2d, 1 seed, 30 steps, 64 points,
a 2 x 16 network). Writes pinn_sampling.json / .png / .md and pinn_sampling_spectrum.png to
``--out``, and prints the table.

``--deepxde`` adds DeepXDE's uniform and RAD (its PyTorch backend; ``pip install deepxde``, the
``bench`` extra, never a dependency) with the same network shape, points, boundary points,
steps, learning rate and test points, for the problems of the form ``-lap u = f``
(peak2d, exp-nd); without the package it says so and runs the rest.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

import neuralsolve as ns
from neuralsolve.fileio import atomic_path
from neuralsolve.optim.curvature import hessian_operator, spectral_density
from neuralsolve.report import run_record, write_report
from neuralsolve.solvers import MLP, PINN
from neuralsolve.solvers.pinn import error_sources
from neuralsolve.solvers.pinn.samplers import available_samplers

QUICK = bool(os.environ.get("NEURALSOLVE_QUICK"))
PROBLEMS = "peak2d,two-peak2d,exp5d,exp10d"
SAMPLERS = "uniform,rad,rar-d,aas"
POISSON_2D = ("peak2d",)  # -lap u = f in 2-D: the runs whose error is split (error_sources)


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0, else a usage error that quotes the text."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1, else a usage error that quotes the text."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0, else a usage error that quotes the text."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def names(valid: list[str], what: str):  # type: ignore[no-untyped-def]
    """An argparse ``type``: a comma-separated subset of ``valid``."""

    def parse(text: str) -> list[str]:
        wanted = [w.strip() for w in text.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in valid]
        if unknown or not wanted:
            raise argparse.ArgumentTypeError(
                f"unknown {what}(s) {unknown}; available: {', '.join(valid)}"
            )
        return wanted

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    problems = list(ns.datasets.pde.available())
    p.add_argument(
        "--problems", type=names(problems, "problem"), default="peak2d" if QUICK else PROBLEMS,
        help=f"comma-separated PDE problems (default {PROBLEMS})",
    )  # fmt: skip
    p.add_argument(
        "--samplers", type=names(available_samplers(), "sampler"), default=SAMPLERS,
        help=f"comma-separated samplers (default {SAMPLERS})",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=positive_int, default=1 if QUICK else 3,
        help="number of seeds: --first-seed .. --first-seed + N - 1",
    )  # fmt: skip
    p.add_argument(
        "--first-seed", type=non_negative_int, default=0,
        help="first seed (to add seeds to an earlier run's, e.g. --first-seed 1 --seeds 2)",
    )  # fmt: skip
    p.add_argument("--width", type=positive_int, default=16 if QUICK else 32, help="MLP width")
    p.add_argument(
        "--depth", type=positive_int, default=2 if QUICK else 6, help="MLP hidden layers"
    )
    p.add_argument(
        "--n-points", type=positive_int, default=64 if QUICK else 1000,
        help="collocation points per round (RAR-D adds 10 per round to them)",
    )  # fmt: skip
    p.add_argument("--steps", type=positive_int, default=30 if QUICK else 10_000, help="Adam steps")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--schedule", choices=["constant", "cosine"], default="constant",
        help="learning-rate schedule over the --steps (cosine: down to 0 at the last step)",
    )  # fmt: skip
    p.add_argument(
        "--boundary-weight", type=positive_float, default=1.0,
        help="w_b, the weight of the Dirichlet term in the loss (DeepXDE's loss_weights[1]); "
        "with --loss-balance grad-norm, its start",
    )  # fmt: skip
    p.add_argument(
        "--loss-balance", choices=["fixed", "grad-norm"], default="fixed",
        help="fixed weights, or balanced by gradient norms every 100 steps (ours only; "
        "DeepXDE keeps --boundary-weight)",
    )  # fmt: skip
    p.add_argument(
        "--resample-every", type=positive_int, default=10 if QUICK else 1000,
        help="optimizer steps per round of collocation points",
    )  # fmt: skip
    p.add_argument(
        "--flow-steps", type=positive_int, default=100,
        help="AAS: Adam steps on its flow per round (keep --flow-steps x rounds fixed to give "
        "the flow the same training at another --resample-every)",
    )  # fmt: skip
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads")
    p.add_argument(
        "--lanczos-steps", type=int, default=5 if QUICK else 40,
        help="Lanczos steps per probe of the Hessian spectrum (0: no spectrum)",
    )  # fmt: skip
    p.add_argument(
        "--probes", type=positive_int, default=1 if QUICK else 3,
        help="Rademacher probes of the Hessian spectrum",
    )  # fmt: skip
    p.add_argument("--out", default="bench-out/pinn", help="output folder")
    p.add_argument(
        "--deepxde", action="store_true",
        help="also run DeepXDE's uniform and RAD (needs deepxde; skipped with a message if it "
        "is missing)",
    )  # fmt: skip
    p.add_argument(
        "--deepxde-only", action="store_true",
        help="run DeepXDE's uniform and RAD only (to add its seeds to an earlier run's)",
    )  # fmt: skip
    return p


def run_one(problem_name: str, sampler: str, seed: int, args: argparse.Namespace) -> tuple:
    """Train one PINN; return its row and the PINN."""
    problem = ns.datasets.pde.make(problem_name)
    pinn = PINN(
        problem,
        net=MLP(width=args.width, depth=args.depth, seed=seed),
        sampler=sampler,
        n_points=args.n_points,
        resample_every=args.resample_every,
        sampler_options={"steps": args.flow_steps} if sampler == "aas" else None,
        boundary_weight=args.boundary_weight,
        loss_balance=args.loss_balance,
        dtype=args.dtype,
        seed=seed,
    )
    start = time.perf_counter()
    result = pinn.fit(
        args.steps, optimizer="adam", lr=args.lr, schedule=args.schedule, progress=False
    )
    seconds = time.perf_counter() - start
    error = pinn.error()
    row = {
        "problem": problem_name,
        "sampler": sampler,
        "seed": seed,
        "rel_l2": error,
        "seconds": seconds,
        "final_loss": result.final_loss,
        "final_points": int(pinn.rounds.points.shape[0]),
        "final_boundary_weight": pinn.boundary_weight,
    }
    sources = ""
    if problem.domain.dim == 2 and problem_name in POISSON_2D:
        split = error_sources(pinn, grid=101 if QUICK else 401)
        row["error_from_residual"] = split["from_residual"]
        row["error_from_boundary"] = split["from_boundary"]
        sources = (
            f" (from the residual {split['from_residual']:.3g}, "
            f"from the boundary {split['from_boundary']:.3g})"
        )
    print(
        f"  {problem_name} {sampler} seed {seed}: rel. L2 {error:.4g}{sources}, loss "
        f"{result.final_loss:.3g}, {seconds:.1f} s",
        flush=True,
    )
    return row, pinn


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (problem, sampler): rel. L2 mean / min / max over the seeds, mean seconds per run."""
    out = []
    keys = list(dict.fromkeys((r["problem"], r["sampler"]) for r in runs))
    for problem, sampler in keys:
        sel = [r for r in runs if r["problem"] == problem and r["sampler"] == sampler]
        errors = [r["rel_l2"] for r in sel]
        out.append(
            {
                "problem": problem,
                "sampler": sampler,
                "seeds": len(sel),
                "rel_l2_mean": sum(errors) / len(errors),
                "rel_l2_min": min(errors),
                "rel_l2_max": max(errors),
                "seconds_mean": sum(r["seconds"] for r in sel) / len(sel),
            }
        )
        for part in ("error_from_residual", "error_from_boundary"):
            if all(part in r for r in sel):
                out[-1][f"{part}_mean"] = sum(r[part] for r in sel) / len(sel)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["problem", "sampler", "seeds", "rel. L2 mean", "min", "max", "from residual",
            "from boundary", "s / run"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        parts = [f"{r[k]:.3g}" if k in r else "-"
                 for k in ("error_from_residual_mean", "error_from_boundary_mean")]  # fmt: skip
        cells = [r["problem"], r["sampler"], str(r["seeds"]), f"{r['rel_l2_mean']:.4g}",
                 f"{r['rel_l2_min']:.4g}", f"{r['rel_l2_max']:.4g}", *parts,
                 f"{r['seconds_mean']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_errors(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """Bars of the mean rel. L2 per sampler, one panel per problem, min-max whiskers, log y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(
        1, len(problems), figsize=(max(5.0, 3.6 * len(problems)), 3.6), squeeze=False
    )
    for ax, problem in zip(axes[0], problems, strict=True):
        sel = [r for r in rows if r["problem"] == problem]
        mean = [r["rel_l2_mean"] for r in sel]
        lo = [r["rel_l2_mean"] - r["rel_l2_min"] for r in sel]
        hi = [r["rel_l2_max"] - r["rel_l2_mean"] for r in sel]
        ax.bar(range(len(sel)), mean, yerr=[lo, hi], capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(sel)), [r["sampler"] for r in sel], rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_title(problem)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].set_ylabel("test rel. L2 (mean, min-max)")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


class _LossOfPINN(torch.nn.Module):
    """The PINN's loss as a module (its parameters are the network's), so that
    :func:`hessian_operator` differentiates it: ``forward`` ignores its input."""

    def __init__(self, pinn: PINN) -> None:
        super().__init__()
        self.pinn = pinn
        self.model = pinn.model

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.pinn.loss(self.model)


def hessian_spectrum(pinn: PINN, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """SLQ of the Hessian of ``pinn``'s final loss (on its last round's points)."""
    wrapper = _LossOfPINN(pinn)
    dummy = torch.zeros(1, dtype=pinn.dtype)
    start = time.perf_counter()
    H = hessian_operator(wrapper, lambda out, _t: out, dummy, dummy)
    steps = min(args.lanczos_steps, H.shape[0])
    sd = spectral_density(
        H, args.probes, steps, generator=torch.Generator().manual_seed(seed)
    )  # fmt: skip
    nodes = sd.nodes
    return {
        "sampler": pinn.sampler_name,
        "parameters": H.shape[0],
        "lanczos_steps": steps,
        "probes": args.probes,
        "seconds": time.perf_counter() - start,
        "largest": float(nodes.max()),
        "smallest": float(nodes.min()),
        "trace_per_parameter": float(sd.moment(1)),
        "grid": sd.grid.tolist(),
        "density": sd.density.tolist(),
        "nodes": sd.nodes.tolist(),  # (probes, steps) Ritz values
        "weights": sd.weights.tolist(),  # (probes, steps) their quadrature weights
        "mass": float(torch.trapezoid(sd.density, sd.grid)),
    }


def plot_spectra(path: Path, spectra: list[dict[str, Any]], title: str) -> None:
    """Left: the smoothed SLQ densities (linear eigenvalue axis, so the kernel width of 1% of
    each span hides the bulk near 0 when the top eigenvalue is large). Right: the quadrature
    nodes and weights themselves on a symmetric-log eigenvalue axis, which shows both ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    peak = max(max(s["density"]) for s in spectra)
    for s in spectra:
        density = torch.tensor(s["density"]).clamp_min(1e-7 * peak)  # a floor for the log axis
        (line,) = ax.plot(s["grid"], density, label=f"{s['sampler']} (max {s['largest']:.3g})")
        nodes = torch.tensor(s["nodes"]).reshape(-1)
        weights = torch.tensor(s["weights"]).reshape(-1) / len(s["nodes"])
        keep = weights > 1e-12
        ax2.scatter(nodes[keep], weights[keep], s=10, color=line.get_color(), label=s["sampler"])
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-7 * peak)
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("density (SLQ, smoothed)")
    ax.legend()
    ax2.set_xscale("symlog", linthresh=1.0)
    ax2.set_yscale("log")
    ax2.set_xlabel("Ritz value (symlog)")
    ax2.set_ylabel("quadrature weight / probes")
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def load_deepxde():  # type: ignore[no-untyped-def]
    """DeepXDE on its PyTorch backend, or None (with a message) when it is not installed."""
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    try:
        import deepxde
    except ImportError:
        print("deepxde is not installed (pip install deepxde, the bench extra): no DeepXDE runs")
        return None
    return deepxde


def run_deepxde(dde, problem_name: str, sampler: str, seed: int, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """DeepXDE's PINN with uniform points (kept) or RAD (k=1, c=1 over 1e5 uniform candidates,
    all points replaced every round: Wu et al.'s DeepXDE example), as in :func:`run_one`;
    None (with a message) for a problem not of the form ``-lap u = f``."""
    import numpy as np

    problem = ns.datasets.pde.make(problem_name)
    if problem_name != "peak2d" and not problem_name.startswith("exp"):
        print(f"  DeepXDE: {problem_name} is not -lap u = f here: skipped")
        return None
    dim = problem.domain.dim
    dde.config.set_default_float(args.dtype)
    dde.config.set_random_seed(seed)
    lower, upper = list(problem.domain.lower), list(problem.domain.upper)
    geom = dde.geometry.Hypercube(lower, upper) if dim > 2 else dde.geometry.Rectangle(lower, upper)

    def pde(x, y):  # type: ignore[no-untyped-def]
        lap = sum(dde.grad.hessian(y, x, i=i, j=i) for i in range(dim))
        return -lap - problem.forcing(x).reshape(-1, 1)

    def exact(x):  # type: ignore[no-untyped-def]
        return problem.solution(torch.as_tensor(x, dtype=torch.float64)).numpy()[:, None]

    bc = dde.icbc.DirichletBC(geom, exact, lambda _x, on_boundary: on_boundary)
    data = dde.data.PDE(
        geom, pde, bc, num_domain=args.n_points, num_boundary=max(100, args.n_points // 4),
        train_distribution="pseudo",  # random uniform, as ours ("uniform" is a grid there)
    )  # fmt: skip
    net = dde.nn.FNN([dim] + [args.width] * args.depth + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    decay = ("cosine", args.steps, 0.0) if args.schedule == "cosine" else None
    model.compile("adam", lr=args.lr, loss_weights=[1.0, args.boundary_weight], decay=decay)
    rounds = args.steps // args.resample_every if sampler == "rad" else 1
    per_round = args.resample_every if sampler == "rad" else args.steps
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for k in range(rounds):
        steps = per_round if k < rounds - 1 else args.steps - per_round * (rounds - 1)
        model.train(iterations=steps, display_every=max(steps, 1), verbose=0)
        if sampler == "rad" and k < rounds - 1:
            X = geom.random_points(100_000)
            r = np.abs(model.predict(X, operator=pde)).reshape(-1).astype(np.float64)
            p = r / r.mean() + 1.0
            idx = rng.choice(len(X), args.n_points, replace=False, p=p / p.sum())
            data.replace_with_anchors(X[idx])
    seconds = time.perf_counter() - start
    ours = PINN(problem, net=MLP(width=2, depth=1), n_points=1)
    x, w = ours.test_set()  # the same points and weights as PINN.error
    approx = np.concatenate([model.predict(c.numpy()) for c in torch.split(x, 65536)])
    u = problem.solution(x).numpy()
    w = np.ones_like(u) if w is None else w.numpy()
    error = float(np.sqrt((w * (approx.reshape(-1) - u) ** 2).sum() / (w * u**2).sum()))
    label = f"deepxde-{sampler}"
    print(f"  {problem_name} {label} seed {seed}: rel. L2 {error:.4g}, {seconds:.1f} s", flush=True)
    return {"problem": problem_name, "sampler": label, "seed": seed, "rel_l2": error,
            "seconds": seconds, "final_loss": None, "final_points": args.n_points}  # fmt: skip


def main() -> None:
    args = parser().parse_args()
    if args.deepxde_only:
        args.deepxde, args.samplers = True, []
    dde = load_deepxde() if args.deepxde else None
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, spectra = [], []
    first = args.problems[0]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for problem in args.problems:
        print(f"{problem}:", flush=True)
        for sampler in args.samplers:
            for seed in seeds:
                row, pinn = run_one(problem, sampler, seed, args)
                runs.append(row)
                wanted = problem == first and seed == seeds[0] and sampler in ("uniform", "aas")
                if wanted and args.lanczos_steps > 0:
                    spectra.append(hessian_spectrum(pinn, args, seed))
                    s = spectra[-1]  # fmt: skip
                    print(
                        f"    Hessian ({s['parameters']} parameters): eigenvalues in "
                        f"[{s['smallest']:.3g}, {s['largest']:.3g}], {s['seconds']:.1f} s",
                        flush=True,
                    )
        if dde is not None:
            for sampler in ("uniform", "rad"):
                for seed in seeds:
                    row = run_deepxde(dde, problem, sampler, seed, args)
                    if row is not None:
                        runs.append(row)
    rows = summarise(runs)
    budget = (
        f"{args.depth}x{args.width} tanh, {args.n_points} points, {args.steps} Adam steps "
        f"(lr {args.lr:g}, {args.schedule}), w_b {args.boundary_weight:g} "
        f"({args.loss_balance}), resample every "
        f"{args.resample_every} (AAS: {args.flow_steps} flow steps), {args.dtype}"
    )
    meta = {
        **run_record(),
        "problems": args.problems,
        "samplers": args.samplers,
        "seeds": seeds,
        "width": args.width,
        "depth": args.depth,
        "n_points": args.n_points,
        "steps": args.steps,
        "lr": args.lr,
        "schedule": args.schedule,
        "boundary_weight": args.boundary_weight,
        "loss_balance": args.loss_balance,
        "resample_every": args.resample_every,
        "flow_steps": args.flow_steps,
        "dtype": args.dtype,
        "lanczos_steps": args.lanczos_steps,
        "probes": args.probes,
        "quick": QUICK,
    }
    write_report(
        out / "pinn_sampling.json",
        {"meta": meta, "results": rows, "runs": runs, "spectra": spectra},
    )
    plot_errors(out / "pinn_sampling.png", rows, budget)
    if spectra:
        plot_spectra(
            out / "pinn_sampling_spectrum.png",
            spectra,
            f"{first}: Hessian of the final PINN loss, SLQ ({args.probes} probes x "
            f"{spectra[0]['lanczos_steps']} Lanczos steps)",
        )
    table = format_table(rows)
    with atomic_path(out / "pinn_sampling.md") as tmp:
        tmp.write_text(f"{budget}\n\n{table}\n")
    print(table)
    # the checks: every error is finite, and every spectral density is a density
    bad = {
        (r["problem"], r["sampler"]): r["rel_l2_mean"]
        for r in rows
        if not math.isfinite(r["rel_l2_mean"])
    }
    if bad:
        raise SystemExit(f"non-finite test errors: {bad}")
    for s in spectra:
        if not abs(s["mass"] - 1.0) < 1e-2:
            raise SystemExit(f"the {s['sampler']} spectral density integrates to {s['mass']}")
    print("ok")


if __name__ == "__main__":
    main()
