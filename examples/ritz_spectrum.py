"""Lanczos: the extreme eigenvalues of a Poisson operator (matrix-free), checked against
scipy's eigsh on the assembled matrix, and the condition number they imply for CG.

Run: python examples/ritz_spectrum.py   (NEURALSOLVE_QUICK=1 for a small grid)
"""

import os

import numpy as np
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns

n = 12 if os.environ.get("NEURALSOLVE_QUICK") else 32
prob = ns.datasets.make_problem("obstacle3d", n)
gen = torch.Generator().manual_seed(0)
low, _, res_low = ns.solvers.ritz_pairs(
    prob.A, 4, which="smallest", num_steps=min(prob.n, 400), generator=gen
)
high, _, res_high = ns.solvers.ritz_pairs(prob.A, 1, which="largest", num_steps=60, generator=gen)
ref_low = np.sort(spla.eigsh(prob.matrix, k=4, sigma=0, which="LM")[0])
print("smallest Ritz values:", np.array2string(low.numpy(), precision=6))
print("eigsh (shift-invert):", np.array2string(ref_low, precision=6))
print(f"largest: {high.item():.6g}; condition number ~ {high.item() / low[0].item():.3g}")
np.testing.assert_allclose(low.numpy(), ref_low, rtol=1e-6)
assert res_low.max() <= 1e-6 * high.item()
print("ok")
