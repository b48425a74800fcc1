"""Where DCDM's error sits while it is slow: the share of the error's energy in the lowest
eigenmodes of A, iteration by iteration, with and without subdomain deflation.

The exact solution comes from a sparse direct solve and the modes from scipy's eigsh
(shift-invert), both in float64. ``share(m) = sum_{i<=m} lambda_i (v_i.e)^2 / (e.A e)``.

Run: python examples/dcdm_slow_modes.py [--n 32] [--seed 0] [--block 3]
(NEURALSOLVE_QUICK=1 for a 16^3 grid)
"""

import argparse
import os

import numpy as np
import scipy.sparse.linalg as spla

import neuralsolve as ns

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, default=16 if os.environ.get("NEURALSOLVE_QUICK") else 32)
parser.add_argument("--seed", type=int, default=0, help="obstacle geometry (training used >= 100)")
parser.add_argument(
    "--block", type=int, default=3, help="deflation box side in cells (dcdm-deflated's default)"
)
args = parser.parse_args()

prob = ns.datasets.make_problem("obstacle3d", args.n, seed=args.seed)
A, b = prob.matrix.tocsc(), prob.b.numpy()
x_star = spla.spsolve(A, b)
values, vectors = spla.eigsh(A, k=10, sigma=0, which="LM")
print(f"obstacle3d {args.n}^3, seed {args.seed}; lowest eigenvalues of A:",
      np.array2string(values[:4], precision=3))  # fmt: skip

for method in ("dcdm", "dcdm-deflated"):
    shares: list[tuple[int, float, np.ndarray]] = []

    def watch(info: ns.solvers.IterationInfo, shares: list = shares) -> None:
        e = x_star - info.x.numpy().reshape(-1)
        energy = e @ (A @ e)
        share = np.cumsum(values * (vectors.T @ e) ** 2) / energy
        relres = np.linalg.norm(b - A @ (x_star - e)) / np.linalg.norm(b)
        shares.append((info.iteration, relres, share[[0, 2, 9]]))

    options = {"deflation_block": args.block} if method == "dcdm-deflated" else {}
    res = ns.solve(prob.A, prob.b, method=method, rtol=1e-6, callback=watch, **options)
    print(f"\n{method}: {res.iterations} iterations to rtol 1e-6")
    print("  iter  rel. residual  energy share in modes 1 / 1-3 / 1-10")
    for it, relres, share in shares[::2]:
        print(f"  {it:4d}  {relres:13.1e}  {share[0]:.3f} / {share[1]:.3f} / {share[2]:.3f}")
    assert res.converged
    assert all(0 <= s[2][0] <= s[2][2] <= 1 + 1e-9 for s in shares)
print("ok")
