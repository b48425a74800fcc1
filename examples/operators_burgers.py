"""Neural operators side by side on 1-D viscous Burgers (the FNO paper's setting): the map
``u(x, 0) -> u(x, 1)`` for ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit interval,
``nu = 0.1``, initial conditions ``N(0, 625 (-Delta + 25 I)^-2)``; data from our
pseudo-spectral ETDRK4 generator (cached). FNO, DeepONet, LSM and T1 (the FFT variant: the
problem is periodic) with the same budget; neuraloperator's FNO too when installed.

Run: python examples/operators_burgers.py [--n 256] [--train 1000] [--test 200] [--epochs 20]
(NEURALSOLVE_QUICK=1 for a small smoke run). Writes operators_burgers.json / .png / .md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from neuralsolve.datasets import H5Dataset
from neuralsolve.datasets.generators import generate
from neuralsolve.operators.comparison import (
    compare_operators,
    format_table,
    plot_comparison,
    write_report,
)
from neuralsolve.optim import TrainerConfig

QUICK = bool(os.environ.get("NEURALSOLVE_QUICK"))


def models(n: int) -> dict:
    specs = {
        "fno": ("fno", {"modes": 16, "width": 64, "layers": 4}),
        "deeponet": ("deeponet", {"width": 128, "basis": 128, "trunk_features": 4}),
        "lsm": ("lsm", {"width": 32, "patch": max(1, n // 64)}),
        "t1": ("t1", {"transform": "fft", "modes": min(16, n // 2), "width": 64, "layers": 4}),
    }
    try:
        from neuralop.models import FNO as NeuralopFNO
    except ImportError:
        print("neuraloperator not installed: its FNO is left out")
    else:
        specs["neuralop-fno"] = lambda: NeuralopFNO(
            n_modes=(32,), in_channels=1, out_channels=1, hidden_channels=64, n_layers=4
        )
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64 if QUICK else 256)
    parser.add_argument("--train", type=int, default=40 if QUICK else 1000)
    parser.add_argument("--test", type=int, default=10 if QUICK else 200)
    parser.add_argument("--epochs", type=int, default=2 if QUICK else 20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench-out/operators")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    samples = args.train + args.test
    data = out / f"burgers{args.n}_{samples}.h5"
    if not data.exists():
        generate("burgers", n=args.n, samples=samples, seed=0, out=data)
    train = H5Dataset(data, range(args.train))
    test = H5Dataset(data, range(args.train, samples))
    config = TrainerConfig(
        optimizer="adamw", optimizer_options={"weight_decay": 1e-4}, lr=1e-3,
        schedule="cosine", epochs=args.epochs, batch_size=20 if not QUICK else 10, seed=0,
        log_every=10,
    )  # fmt: skip
    rows = compare_operators(models(args.n), train, test, config)
    meta = {"problem": f"burgers n={args.n}, nu=0.1", "train": args.train, "test": args.test,
            "epochs": args.epochs, "trainer": dict(vars(config))}  # fmt: skip
    write_report(out / "operators_burgers.json", rows, meta)
    plot_comparison(out / "operators_burgers.png", rows, f"Burgers n={args.n}")
    table = format_table(rows)
    (out / "operators_burgers.md").write_text(table + "\n")
    print(table)
    assert all(r["test_rel_l2"] < 1.0 for r in rows), [r["test_rel_l2"] for r in rows]
    print("ok")


if __name__ == "__main__":
    main()
