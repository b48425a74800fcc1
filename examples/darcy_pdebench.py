"""Darcy flow data in PDEBench's layout, at two grids with the same samples: what a user's
small public set looks like (``nu`` / ``tensor`` / ``x-coordinate`` / ``y-coordinate``).

The samples are solved by our generator at ``--n`` (default 32, pcg-amg to rtol 1e-10) and
written at that grid and sub-sampled by stride 2 (what ``--resolution`` does in training), so
``darcy_pdebench_16.h5`` and ``darcy_pdebench_32.h5`` hold the same samples in the same order.
With ``--n 16`` the 16 x 16 file is solved at 16 x 16, not sub-sampled (its input determines
its solution; write it to another ``--out`` folder than the sub-sampled one).

Run: python examples/darcy_pdebench.py --out runs/data [--samples 1200] [--n 32]
(NEURALSOLVE_QUICK=1: 24 samples at 16 and 8). Then, for example::

    neuralsolve train operator --data runs/data/darcy_pdebench_16.h5 --train 1000 --val 0 \\
        --test 200 --test-data runs/data/darcy_pdebench_32.h5 --model fno --seeds 3
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import h5py
import numpy as np

from neuralsolve.datasets import H5Dataset, write_pdebench_darcy
from neuralsolve.datasets.generators import generate


def main() -> None:
    quick = bool(os.environ.get("NEURALSOLVE_QUICK"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-out/data", help="output folder")
    parser.add_argument("--samples", type=int, default=24 if quick else 1200)
    parser.add_argument("--n", type=int, default=16 if quick else 32, help="solve grid (even)")
    args = parser.parse_args()
    out = Path(args.out)
    raw = out / f"darcy{args.n}_{args.samples}.h5"
    if not raw.exists():
        generate("darcy", n=args.n, samples=args.samples, seed=0, out=raw, progress=False)
    written = []
    for n in (args.n // 2, args.n):
        data = H5Dataset(raw, resolution=n)
        pairs = [data[i] for i in range(len(data))]
        a = np.stack([p[0].numpy() for p in pairs])
        u = np.stack([p[1].numpy() for p in pairs])
        centres = (np.arange(0, args.n, args.n // n) + 0.5) / args.n  # the points kept
        path = write_pdebench_darcy(
            out / f"darcy_pdebench_{n}.h5", a, u, coordinates=(centres, centres), beta=1.0
        )
        written.append(path)
        print(f"wrote {path}: {len(a)} samples at {n} x {n}")
    # the check: both files read back as PDEBench Darcy, the coarse one sub-samples the fine one
    with h5py.File(written[0]) as f, h5py.File(written[1]) as g:
        assert f["nu"].shape == (args.samples, args.n // 2, args.n // 2)
        assert np.array_equal(f["nu"][:], g["nu"][:, ::2, ::2])
    print("ok")


if __name__ == "__main__":
    main()
