"""Which optimizer, and which network, trains DCDM best? The same data, steps and seed for every
(optimizer, network) pair; reported: the final one-step loss (mean of the last 10% of steps),
the held-out DCDM iterations to rtol 1e-4 (two unseen geometries, --eval-directions kept),
seconds per training step, and the network's cost per call (multiply-adds per cell, and
milliseconds on the held-out grid), so that iterations x cost per iteration decides between
networks.

Run: python examples/dcdm_optimizers.py [--optimizers adam,muon] [--networks unet,paper]
[--steps N] [--eval-directions K] [--out DIR] (NEURALSOLVE_QUICK=1 for a short smoke run).
Writes dcdm_optimizers.json.
The problem is the 2-D obstacle problem at 64^2 (the paper's networks are 3-D at 64^3; their 2-D
variant here has the same 16 channels and 4-6-4 blocks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from neuralsolve.operators.dcdm_train import DCDMDataConfig, generate_rhs, load_rhs, train_dcdm
from neuralsolve.optim import TrainerConfig
from neuralsolve.solvers.dcdm import DEFAULT_DIRECTIONS
from neuralsolve.solvers.dcdm_net import DCDMNetConfig

QUICK = bool(os.environ.get("NEURALSOLVE_QUICK"))
# Learning rates: Adam's the notes' 1e-3; Muon's orthogonalised update takes a larger one.
LR = {"adam": 1e-3, "adamw": 1e-3, "muon": 2e-2, "sgd": 1e-2}


NETWORKS = {"unet": DCDMNetConfig(dim=2), "paper": DCDMNetConfig.paper(dim=2, size=64)}


def _seconds_per_call(net: torch.nn.Module, n: int, repeats: int = 20) -> float:
    """Median time of one network call on an ``n x n`` grid (one right-hand side)."""
    x = torch.randn(1, 3, n, n)
    times = []
    with torch.no_grad():
        net(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="adam,muon")
    parser.add_argument("--networks", default="unet,paper", help="unet and/or paper")
    parser.add_argument("--steps", type=int, default=20 if QUICK else 3000)
    parser.add_argument("--n", type=int, default=16 if QUICK else 64)
    parser.add_argument(
        "--eval-directions",
        type=int,
        default=DEFAULT_DIRECTIONS,
        help="directions DCDM keeps in the held-out evaluation (default: the solver's, "
        f"{DEFAULT_DIRECTIONS}; the benchmark table in docs/benchmarks/dcdm.md was measured with 16)",
    )
    parser.add_argument("--out", default="bench-out/dcdm")
    args = parser.parse_args()
    unknown = sorted(set(args.networks.split(",")) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown network(s) {unknown}; available: {', '.join(NETWORKS)}")
    torch.set_num_threads(2)
    out = Path(args.out)
    data_config = DCDMDataConfig(
        problem="obstacle2d",
        n=args.n,
        geometries=2 if QUICK else 8,
        samples=32 if QUICK else 2000,
        ritz=30 if QUICK else 400,
    )
    path = out / f"rhs-{args.n}.h5"
    if not path.exists():
        generate_rhs(data_config, path, progress=False)
    data = load_rhs(path)
    rows = []
    for network in args.networks.split(","):
        net_config = NETWORKS[network]
        for name in args.optimizers.split(","):
            config = TrainerConfig(
                optimizer=name,
                lr=LR.get(name, 1e-3),
                schedule="cosine",
                steps=args.steps,
                batch_size=8,
                eval_every=0,
                log_every=1,
                progress=False,
                out_dir=str(out / (name if network == "unet" else f"{name}-{network}")),
            )
            net, result = train_dcdm(
                data, config, net_config=net_config, eval_directions=args.eval_directions
            )
            tail = result.losses[-max(1, len(result.losses) // 10) :]
            rows.append(
                {
                    "optimizer": name,
                    "network": network,
                    "lr": config.lr,
                    "final_loss": statistics.fmean(tail),
                    "heldout_dcdm_iters": result.eval["dcdm_iters"],
                    "heldout_cg_iters": result.eval["cg_iters"],
                    "seconds_per_step": result.seconds / max(1, result.steps),
                    "parameters": sum(p.numel() for p in net.parameters()),
                    "macs_per_cell": net.flops_per_cell(),
                    "ms_per_call": 1e3 * _seconds_per_call(net, args.n),
                }
            )
            row = rows[-1]
            print(
                f"{network:5s} {name:8s} lr {config.lr:g}: loss {row['final_loss']:.4f}, held-out "
                f"DCDM {row['heldout_dcdm_iters']:.1f} it (CG {row['heldout_cg_iters']:.1f}), "
                f"{row['seconds_per_step'] * 1e3:.1f} ms/step, {row['macs_per_cell']:.0f} MAC/cell, "
                f"{row['ms_per_call']:.2f} ms/call"
            )
    best = min(rows, key=lambda r: (r["heldout_dcdm_iters"], r["final_loss"]))
    print(
        f"fewest held-out iterations: {best['network']} + {best['optimizer']}; "
        "the iterations x ms/call product decides the network"
    )
    report = {"steps": args.steps, "n": args.n, "threads": torch.get_num_threads(), "runs": rows}
    (out / "dcdm_optimizers.json").write_text(json.dumps(report, indent=2) + "\n")
    # Checks: every run trained (a finite loss below the start's ~0.5) and solved held-out systems.
    assert all(math.isfinite(r["final_loss"]) and r["final_loss"] < 1.0 for r in rows), rows
    assert all(r["heldout_dcdm_iters"] > 0 for r in rows), rows
    print("ok")


if __name__ == "__main__":
    main()
