"""Neural operators side by side on Darcy flow: FNO, DeepONet, LSM and T1 (ours), and
neuraloperator's FNO when that package is installed (``pip install neuraloperator``; a
benchmark extra, never a dependency), all trained on the same generated data with the same
budget (AdamW, lr 1e-3, weight decay 1e-4, cosine schedule, batch 20, same epochs, same seed).

Data: ``-div(a grad u) = 1`` on the unit square, ``a`` in {12, 3} from a thresholded Gaussian
random field as in the FNO paper, solved with our pcg-amg to rtol 1e-10 (cached in the output
folder). Reported per model: test relative L2 (mean, median, max), parameters, seconds per
epoch, inference ms per sample, and the error on the test set sub-sampled to half the grid
(models that are not resolution-invariant still run there; their number says how badly).

Run: python examples/operators_darcy.py [--n 64] [--train 1000] [--test 200] [--epochs 25]
(NEURALSOLVE_QUICK=1 for a small smoke run). Writes operators_darcy.json / .png / .md.
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
        "fno": ("fno", {"modes": 12, "width": 32, "layers": 4, "padding": 0.125}),
        "deeponet": ("deeponet", {"branch": "cnn", "width": 128, "basis": 128}),
        "lsm": ("lsm", {"width": 32, "patch": max(1, n // 16)}),
        "t1": ("t1", {"modes": min(24, n // 2), "width": 48, "layers": 8}),
    }
    try:
        from neuralop.models import FNO as NeuralopFNO
    except ImportError:
        print("neuraloperator not installed: its FNO is left out")
    else:
        # neuraloperator counts n_modes over both signs: 24 keeps frequencies -12..11 per axis
        specs["neuralop-fno"] = lambda: NeuralopFNO(
            n_modes=(24, 24), in_channels=1, out_channels=1, hidden_channels=32, n_layers=4,
            domain_padding=0.125,
        )  # fmt: skip
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16 if QUICK else 64)
    parser.add_argument("--train", type=int, default=40 if QUICK else 1000)
    parser.add_argument("--test", type=int, default=10 if QUICK else 200)
    parser.add_argument("--epochs", type=int, default=2 if QUICK else 25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench-out/operators")
    parser.add_argument("--models", help="comma-separated subset (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    samples = args.train + args.test
    data = out / f"darcy{args.n}_{samples}.h5"
    if not data.exists():
        generate("darcy", n=args.n, samples=samples, seed=0, out=data)
    train = H5Dataset(data, range(args.train))
    test = H5Dataset(data, range(args.train, samples))
    coarse = H5Dataset(data, range(args.train, samples), resolution=args.n // 2)
    config = TrainerConfig(
        optimizer="adamw", optimizer_options={"weight_decay": 1e-4}, lr=1e-3,
        schedule="cosine", epochs=args.epochs, batch_size=20 if not QUICK else 10, seed=0,
        progress=None, log_every=10,
    )  # fmt: skip
    specs = models(args.n)
    if args.models:
        specs = {k: v for k, v in specs.items() if k in args.models.split(",")}
    rows = compare_operators(specs, train, test, config, eval_data={"half_grid": coarse})
    meta = {"problem": f"darcy {args.n}x{args.n}", "train": args.train, "test": args.test,
            "epochs": args.epochs, "trainer": {k: v for k, v in vars(config).items()}}  # fmt: skip
    stem = "operators_darcy" + (f"_{args.models.replace(',', '_')}" if args.models else "")
    write_report(out / f"{stem}.json", rows, meta)
    plot_comparison(out / f"{stem}.png", rows, f"Darcy {args.n}x{args.n}")
    table = format_table(rows, extra=["rel_l2_half_grid"])
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    by = {r["label"]: r for r in rows}
    if {"fno", "neuralop-fno"} <= by.keys():
        print(
            f"our FNO / neuraloperator FNO error: {by['fno']['test_rel_l2'] / by['neuralop-fno']['test_rel_l2']:.3f}"
        )
    if {"fno", "lsm"} <= by.keys():
        print(f"LSM / FNO error: {by['lsm']['test_rel_l2'] / by['fno']['test_rel_l2']:.3f}")
    if {"fno", "t1"} <= by.keys():
        print(
            f"T1 / FNO error: {by['t1']['test_rel_l2'] / by['fno']['test_rel_l2']:.3f}, "
            f"FNO / T1 time per epoch: {by['fno']['s_per_epoch'] / by['t1']['s_per_epoch']:.2f}"
        )
    # the check: every model learned something (all errors finite and below predicting 0)
    assert all(r["test_rel_l2"] < 1.0 for r in rows), [r["test_rel_l2"] for r in rows]
    print("ok")


if __name__ == "__main__":
    main()
