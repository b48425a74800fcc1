"""Optimizers side by side on a 2-D Poisson PINN and an MLP regression: loss against steps and
against seconds, ours next to torch's Adam / AdamW / L-BFGS / Muon and, when installed,
pytorch_optimizer's implementations of the same algorithms (``pip install pytorch_optimizer``;
a benchmark extra, never a dependency).

Every run starts from the same weights (per seed) and runs the same number of steps; a pair
(ours, theirs) shares its hyperparameters (Sophia: ours with ``lr, rho`` equals
pytorch_optimizer's SophiaH with ``lr / rho, p = rho``). Reported per run: the median over the
seeds of the final loss, and the median time per step. The targets are: ours reaches at least
their loss at equal steps, at most 1.2x their time per step.

Run: python examples/optimizers_compare.py [--out DIR] [--steps N] [--seeds K]
(NEURALSOLVE_QUICK=1 for a short smoke run). Writes optimizers.json and optimizers.png.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import neuralsolve as ns
from neuralsolve.report import run_record, write_report

try:
    import pytorch_optimizer as po
except ImportError:  # the comparison then covers torch's optimizers only
    po = None

torch.set_num_threads(2)
QUICK = bool(os.environ.get("NEURALSOLVE_QUICK"))


# ----------------------------------------------------------------------------- problems
def pinn_problem(seed: int) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    """-Laplace(u) = 2 pi^2 sin(pi x) sin(pi y) on the unit square, u = 0 on its boundary."""
    g = torch.Generator().manual_seed(100)
    interior = torch.rand(256, 2, generator=g, dtype=torch.float64)
    t = torch.rand(64, 1, generator=g, dtype=torch.float64)
    zeros, ones = torch.zeros_like(t), torch.ones_like(t)
    boundary = torch.cat(
        [
            torch.cat([t, zeros], 1),
            torch.cat([t, ones], 1),
            torch.cat([zeros, t], 1),
            torch.cat([ones, t], 1),
        ]
    )
    f = 2 * math.pi**2 * torch.sin(math.pi * interior[:, :1]) * torch.sin(math.pi * interior[:, 1:])
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    ).double()

    def loss(m: torch.nn.Module) -> torch.Tensor:
        x = interior.clone().requires_grad_(True)
        u = m(x)
        (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        lap = sum(
            torch.autograd.grad(du[:, i].sum(), x, create_graph=True)[0][:, i : i + 1]
            for i in range(2)
        )
        return ((-lap - f) ** 2).mean() + (m(boundary) ** 2).mean()

    return model, loss


def regression_problem(
    seed: int,
) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    """Fit y = sin(2 pi x1) cos(pi x2) + noise with an MLP (full batch)."""
    g = torch.Generator().manual_seed(200)
    X = torch.rand(512, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(2 * math.pi * X[:, :1]) * torch.cos(math.pi * X[:, 1:]) + 0.05 * torch.randn(
        512, 1, generator=g, dtype=torch.float64
    )
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    ).double()
    return model, lambda m: ((m(X) - y) ** 2).mean()


PROBLEMS = {"pinn-poisson2d": pinn_problem, "mlp-regression": regression_problem}


# ----------------------------------------------------------------------------- optimizers
def _split(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    mats = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return mats, rest


class _Together:
    """Two optimizers stepped as one (torch.optim.Muon takes matrices only)."""

    def __init__(self, *opts: torch.optim.Optimizer) -> None:
        self.opts = opts

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()


MUON = {"lr": 0.02, "momentum": 0.95}
ADAMW_AUX = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-10}
SOPHIA = {
    "lr": 2e-3,
    "rho": 0.05,
    "betas": (0.96, 0.99),
    "eps": 1e-12,
    "update_every": 10,
    "weight_decay": 0.0,
}
ADAHESSIAN = {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-4, "hessian_power": 1.0}


def runs() -> dict[str, dict[str, Any]]:
    """label -> how to build it, whether it needs the graph / a closure, and its pair."""
    out: dict[str, dict[str, Any]] = {
        "muon (ours)": {
            "make": lambda m: ns.optim.Muon(
                m.parameters(),
                adamw_lr=ADAMW_AUX["lr"],
                adamw_betas=ADAMW_AUX["betas"],
                adamw_eps=ADAMW_AUX["eps"],
                **MUON,
            )
        },
        "mfac (ours)": {
            "make": lambda m: ns.optim.MFAC(m.parameters(), lr=1e-3, num_grads=32, damp=1e-4)
        },
        "sophia (ours)": {
            "make": lambda m: ns.optim.Sophia(m.parameters(), **SOPHIA),
            "graph": True,
        },
        "adahessian (ours)": {
            "make": lambda m: ns.optim.AdaHessian(m.parameters(), **ADAHESSIAN),
            "graph": True,
        },
        "adamp (ours)": {"make": lambda m: ns.optim.AdamP(m.parameters(), lr=1e-3)},
        "diffgrad (ours)": {"make": lambda m: ns.optim.DiffGrad(m.parameters(), lr=1e-3)},
        "dct-lowrank (ours)": {
            "make": lambda m: ns.optim.DCTLowRank(m.parameters(), lr=1e-3, rank=8, update_gap=50)
        },
        "lbfgs (ours)": {
            "make": lambda m: ns.optim.LBFGS(m.parameters(), max_iter=5),
            "closure": True,
        },
        "adam (torch)": {"make": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)},
        "adamw (torch)": {"make": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3)},
        "lbfgs (torch)": {
            "make": lambda m: torch.optim.LBFGS(
                m.parameters(), max_iter=5, history_size=100, line_search_fn="strong_wolfe"
            ),
            "closure": True,
        },
        "muon (torch)": {
            "make": lambda m: _Together(
                torch.optim.Muon(_split(m)[0], weight_decay=0.0, adjust_lr_fn="original", **MUON),
                torch.optim.AdamW(_split(m)[1], weight_decay=0.0, **ADAMW_AUX),
            )
        },
    }
    pairs = [("lbfgs (ours)", "lbfgs (torch)"), ("muon (ours)", "muon (torch)")]
    if po is not None:
        out.update(
            {
                "muon (pytorch_optimizer)": {
                    "make": lambda m: po.Muon(
                        [
                            {"params": _split(m)[0], "use_muon": True},
                            {"params": _split(m)[1], "use_muon": False},
                        ],
                        lr=MUON["lr"],
                        momentum=MUON["momentum"],
                        weight_decay=0.0,
                        adamw_lr=ADAMW_AUX["lr"],
                        adamw_betas=ADAMW_AUX["betas"],
                        adamw_eps=ADAMW_AUX["eps"],
                        adamw_wd=0.0,
                    )
                },
                "sophia (pytorch_optimizer)": {
                    "make": lambda m: po.SophiaH(
                        m.parameters(),
                        lr=SOPHIA["lr"] / SOPHIA["rho"],
                        p=SOPHIA["rho"],
                        betas=SOPHIA["betas"],
                        eps=SOPHIA["eps"],
                        update_period=SOPHIA["update_every"],
                        hessian_distribution="rademacher",
                    ),
                    "graph": True,
                },
                "adahessian (pytorch_optimizer)": {
                    "make": lambda m: po.AdaHessian(
                        m.parameters(),
                        hessian_distribution="rademacher",
                        update_period=1,
                        **ADAHESSIAN,
                    ),
                    "graph": True,
                },
                "adamp (pytorch_optimizer)": {"make": lambda m: po.AdamP(m.parameters(), lr=1e-3)},
                "diffgrad (pytorch_optimizer)": {
                    "make": lambda m: po.DiffGrad(m.parameters(), lr=1e-3)
                },
            }
        )
        pairs += [
            (f"{k} (ours)", f"{k} (pytorch_optimizer)")
            for k in ("muon", "sophia", "adahessian", "adamp", "diffgrad")
        ]
    for ours, theirs in pairs:
        out[ours].setdefault("pairs", []).append(theirs)
    return out


# ----------------------------------------------------------------------------- running
def run_one(
    spec: dict[str, Any], problem: Callable, seed: int, steps: int
) -> tuple[list[float], list[float]]:
    model, loss_fn = problem(seed)
    torch.manual_seed(1000 + seed)  # probes of the Hessian-based optimizers
    opt = spec["make"](model)
    params = list(model.parameters())
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model)
            if spec.get("graph"):
                grads = torch.autograd.grad(loss, params, create_graph=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
            else:
                loss.backward()
            return loss

        if spec.get("closure"):
            loss = opt.step(closure)
        else:
            loss = closure()
            opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return losses, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", help="output folder (default: bench-out)")
    parser.add_argument("--steps", type=int, default=20 if QUICK else 300)
    parser.add_argument("--seeds", type=int, default=1 if QUICK else 8)
    args = parser.parse_args()
    specs = runs()
    report: dict[str, Any] = {
        "meta": {
            **run_record(),
            "steps": args.steps,
            "seeds": args.seeds,
            "pytorch_optimizer": getattr(po, "__version__", None),
        },
        "problems": {},
    }
    for pname, problem in PROBLEMS.items():
        runs_by_label: dict[str, list[tuple[list[float], list[float]]]] = {
            label: [] for label in specs
        }
        # Seeds outside, optimizers inside: machine noise then falls on both sides of a pair alike.
        for seed in range(args.seeds):
            for label, spec in specs.items():
                runs_by_label[label].append(run_one(spec, problem, seed, args.steps))
        results = {}
        for label, done in runs_by_label.items():
            finals = [losses[-1] for losses, _ in done]
            step_times = [t for _, times in done for t in times[min(5, len(times) - 1) :]]
            results[label] = {
                "final_loss": statistics.median(finals),
                "finals": finals,
                "ms_per_step": 1e3 * statistics.median(step_times),
                "initial_loss": done[0][0][0],
                "curves": [
                    {"loss": losses, "seconds": list(itertools.accumulate(times))}
                    for losses, times in done
                ],
                "pairs": specs[label].get("pairs", []),
            }
            print(
                f"{pname:16s} {label:30s} final {results[label]['final_loss']:.3e}  "
                f"{results[label]['ms_per_step']:.2f} ms/step",
                flush=True,
            )
        report["problems"][pname] = results
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "optimizers.json", report)
    plot(report, out / "optimizers.png")
    print(f"\nwrote {out / 'optimizers.json'} and {out / 'optimizers.png'}\n")
    print(table(report))
    # The example checks what must hold in any run: every one of our optimizers lowered the loss.
    for pname, results in report["problems"].items():
        for label, r in results.items():
            if "(ours)" in label:
                assert r["final_loss"] < r["initial_loss"], (
                    pname,
                    label,
                    r["final_loss"],
                    r["initial_loss"],
                )
    print("ok")


def table(report: dict[str, Any]) -> str:
    """The pairs' comparison as a markdown table.

    Final losses are medians over the seeds, with their range. "Reaches their loss" means a
    median at most 1% above theirs (same-algorithm pairs tie to rounding, which a strict
    comparison would order at random); a larger gap inside the seed ranges is not significant.
    """
    lines = [
        "| problem | ours | theirs | final loss, ours [range] | theirs [range] | ratio "
        "| ms/step ours / theirs | loss | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict[str, Any]) -> str:
        return f"{r['final_loss']:.3g} [{min(r['finals']):.3g}, {max(r['finals']):.3g}]"

    for pname, results in report["problems"].items():
        for label, r in results.items():
            for theirs in r["pairs"]:
                t = results[theirs]
                loss_ratio = r["final_loss"] / t["final_loss"]
                time_ratio = r["ms_per_step"] / t["ms_per_step"]
                lines.append(
                    f"| {pname} | {label} | {theirs} | {cell(r)} | {cell(t)} | {loss_ratio:.3f} "
                    f"| {r['ms_per_step']:.2f} / {t['ms_per_step']:.2f} ({time_ratio:.2f}x) "
                    f"| {'met' if loss_ratio <= 1.01 else 'missed'} | {'met' if time_ratio <= 1.2 else 'missed'} |"
                )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    probs = report["problems"]
    fig = Figure(figsize=(13, 4.2 * len(probs)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(probs), 2, squeeze=False)
    for row, (pname, results) in enumerate(probs.items()):
        for label, r in results.items():
            c = r["curves"][0]
            style = "-" if "(ours)" in label else "--"
            (line,) = axes[row][0].semilogy(c["loss"], style, label=label, linewidth=1.2)
            axes[row][1].semilogy(
                c["seconds"], c["loss"], style, color=line.get_color(), linewidth=1.2
            )
        axes[row][0].set(title=f"{pname}: loss vs step (seed 0)", xlabel="step", ylabel="loss")
        axes[row][1].set(title=f"{pname}: loss vs seconds", xlabel="seconds", ylabel="loss")
        axes[row][0].legend(fontsize=7, ncol=2)
        for ax in axes[row]:
            ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
