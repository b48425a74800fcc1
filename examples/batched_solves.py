"""Many right-hand sides in one call: each column converges on its own, and the answer equals
solving them one by one.

Run: python examples/batched_solves.py   (NEURALSOLVE_QUICK=1 for a small grid)
"""

import os
import time

import numpy as np
import torch

import neuralsolve as ns

n = 16 if os.environ.get("NEURALSOLVE_QUICK") else 32
prob = ns.datasets.make_problem("obstacle3d", n)
B = prob.random_rhs(8, seed=1)  # (n_unknowns, 8)

t = time.perf_counter()
block = ns.solve(prob.A, B, method="pcg-jacobi", rtol=1e-8)
t_block = time.perf_counter() - t
t = time.perf_counter()
singles = [ns.solve(prob.A, B[:, j].contiguous(), method="pcg-jacobi", rtol=1e-8) for j in range(8)]
t_single = time.perf_counter() - t

print(f"{prob.name}: 8 right-hand sides, iterations per column {block.column_iterations}")
print(
    f"one batched call {t_block:.3f} s, eight calls {t_single:.3f} s (column_block = {block.stats['column_block']})"
)
assert block.converged
for j, s in enumerate(singles):
    assert s.iterations == block.column_iterations[j]
    assert torch.allclose(block.x[:, j], s.x, rtol=1e-7, atol=1e-12)
R = B.numpy() - prob.matrix @ block.x.numpy()
assert np.all(np.linalg.norm(R, axis=0) <= 1e-8 * np.linalg.norm(B.numpy(), axis=0) * 1.0001)
print("ok")
