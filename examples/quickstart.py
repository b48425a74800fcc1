"""Quick start: a pressure-projection-like Poisson problem with obstacles, solved three ways.

Run: python examples/quickstart.py   (NEURALSOLVE_QUICK=1 for a small grid)
"""

import os

import numpy as np

import neuralsolve as ns

n = 24 if os.environ.get("NEURALSOLVE_QUICK") else 64
prob = ns.datasets.poisson((n, n, n), bc="neumann", obstacle="spheres", seed=0)
print(f"{prob.name}: {prob.n:,} unknowns, null space pinned at {len(prob.pinned)} cell(s)")

for method in ("cg", "pcg-ic", "pcg-amg"):
    res = ns.solve(prob.A, prob.b, method=method, rtol=1e-6)
    print(
        f"{method:8s} {res.status.value:8s} {res.iterations:4d} it  setup {res.stats['setup_s']:.3f} s"
        f"  solve {res.stats['solve_s']:.3f} s  ||b - Ax||/||b|| = {res.stats['rel_residual']:.2e}"
    )
    # Check the answer independently, in float64, with the assembled matrix.
    r = prob.b.numpy() - prob.matrix @ res.x.numpy()
    assert res.converged and np.linalg.norm(r) <= 1e-6 * np.linalg.norm(prob.b.numpy()) * 1.0001

print("ok")
