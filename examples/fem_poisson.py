"""P1 finite elements on a tetrahedral mesh: solve, check second-order accuracy, write a VTU
file for ParaView.

Run: python examples/fem_poisson.py   (NEURALSOLVE_QUICK=1 for coarse meshes)
"""

import os
import tempfile
from pathlib import Path

import numpy as np

import neuralsolve as ns

PI = np.pi


def exact(x, y, z):
    return np.sin(PI * x) * np.sin(PI * y) * np.sin(PI * z)


sizes = (4, 8) if os.environ.get("NEURALSOLVE_QUICK") else (8, 16, 24)
errors = []
for n in sizes:
    mesh = ns.datasets.unit_cube_mesh(n)
    prob = ns.datasets.poisson_fem(mesh, f=lambda x, y, z: 3 * PI**2 * exact(x, y, z))
    res = ns.solve(prob.A, prob.b, method="pcg-amg", rtol=1e-10).raise_for_status()
    u = prob.full_solution(res.x)
    errors.append(np.abs(u - exact(*mesh.points.T)).max())
    print(
        f"n = {n:3d}: {prob.n:6d} unknowns, {res.iterations:2d} iterations, max nodal error {errors[-1]:.2e}"
    )

rates = [
    np.log(errors[i] / errors[i + 1]) / np.log(sizes[i + 1] / sizes[i])
    for i in range(len(sizes) - 1)
]
print("observed orders:", ", ".join(f"{r:.2f}" for r in rates))
assert min(rates) > 1.7, rates

out = Path(tempfile.gettempdir()) / "neuralsolve_fem_poisson.vtu"
ns.datasets.write_solution(out, res.x, problem=prob)
print(f"wrote {out} (open it in ParaView)")
print("ok")
