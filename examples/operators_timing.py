"""Seconds per training step of each neural operator with its grid-derived defaults, at several
grids: what a user's `neuralsolve train operator --model NAME` pays per step on their data.

Each step is a forward and backward pass on a batch of random inputs plus an AdamW update, with
the model config that `train operator` derives from the grid (printed). The models are timed in
turns (round-robin, ``--rounds`` rounds of ``--steps`` steps each, after one warm-up step), and
the median over rounds is reported, so that load from other processes on the machine falls on
every model alike. The ratio to FNO's time at the same grid is the number to read. The problem
is taken to have walls, as Darcy's (FNO then pads each axis by 0.125, which is what
`train operator` derives on Darcy data); ``--periodic`` times a periodic one (no padding).

Run: python examples/operators_timing.py [--grids 16,32,64] [--models fno,lsm] [--threads 1]
(NEURALSOLVE_QUICK=1: grids 8,16, one round). Writes operators_timing.json to --out
(``--set`` adds the settings to the name).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import torch

from neuralsolve.operators import create
from neuralsolve.operators.defaults import resolve_options
from neuralsolve.report import run_record, write_report


def main() -> None:
    quick = bool(os.environ.get("NEURALSOLVE_QUICK"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", default="8,16" if quick else "16,32,64")
    parser.add_argument("--models", default="fno,lsm")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2 if quick else 5, help="steps per round")
    parser.add_argument("--rounds", type=int, default=1 if quick else 3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--periodic", action="store_true", help="a periodic problem (default: walls, as Darcy)"
    )
    parser.add_argument("--out", default="bench-out/operators")
    parser.add_argument(
        "--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
        help="a config field of one model instead of its default, e.g. lsm.width=32",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grids = [int(g) for g in args.grids.split(",")]
    names = args.models.split(",")
    given: dict[str, dict] = {name: {} for name in names}
    for item in args.set:
        key, _, value = item.partition("=")
        name, _, field = key.partition(".")
        if name not in given or not field or not value:
            raise SystemExit(f"--set {item!r}: expected MODEL.KEY=VALUE with MODEL in {names}")
        given[name][field] = int(value) if value.lstrip("-").isdigit() else value
    results = []
    for n in grids:
        runs = {}
        for name in names:
            options, _ = resolve_options(name, (n, n), given[name], periodic=args.periodic)
            torch.manual_seed(0)
            model = create(name, **options)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            x = torch.randn(args.batch_size, 1, n, n)
            y = torch.randn(args.batch_size, 1, n, n)
            runs[name] = (model, opt, x, y, options)
            print(f"{n} x {n} {name}: {options}", flush=True)

        def step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y) -> float:
            opt.zero_grad()
            loss = (model(x) - y).square().mean()
            loss.backward()
            opt.step()
            return float(loss.detach())

        times: dict[str, list[float]] = {name: [] for name in names}
        for model, opt, x, y, _ in runs.values():
            step(model, opt, x, y)  # warm-up
        for _ in range(args.rounds):
            for name, (model, opt, x, y, _) in runs.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    loss = step(model, opt, x, y)
                times[name].append((time.perf_counter() - t0) / args.steps)
                if not math.isfinite(loss):
                    raise SystemExit(f"{name} at {n} x {n} gave a non-finite loss: {loss}")
        base = statistics.median(times[names[0]])
        for name in names:
            median = statistics.median(times[name])
            model, *_, options = runs[name]
            results.append({
                "grid": n, "model": name, "s_per_step": median, "rounds": times[name],
                f"ratio_to_{names[0]}": median / base, "options": options,
                "parameters": sum(p.numel() for p in model.parameters()),
            })  # fmt: skip
    lines = [f"| grid | model | s / step | / {names[0]} | parameters |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['grid']} | {r['model']} | {r['s_per_step']:.3f} | "
            f"{r[f'ratio_to_{names[0]}']:.2f} | {r['parameters']:,} |"
        )
    print("\n".join(lines))
    meta = {**run_record(device="cpu"), "threads": args.threads, "batch_size": args.batch_size,
            "steps": args.steps, "rounds": args.rounds, "set": args.set,
            "periodic": args.periodic}  # fmt: skip
    stem = "operators_timing" + "".join(
        "_" + item.replace("=", "").replace(".", "_") for item in args.set
    )
    path = write_report(Path(args.out) / f"{stem}.json", {"meta": meta, "results": results})
    print(f"wrote {path}")
    print("ok")


if __name__ == "__main__":
    main()
