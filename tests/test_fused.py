"""The fused (torch.compile) CG path gives the eager path's answers. Each new grid shape
compiles for seconds (tens of seconds on a fresh machine), so the compiling cases are marked
slow (they run in CI's second step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuralsolve as ns


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "preconditioner"),
    [
        ({"shape": (10, 9, 8)}, None),
        (
            {
                "shape": (20, 18),
                "bc": "mixed",
                "obstacle": "spheres",
                "coefficient": "darcy",
                "seed": 2,
            },
            "jacobi",
        ),
    ],
    ids=["uniform-3d", "masked-variable-2d-jacobi"],
)
def test_fused_matches_eager(kwargs: dict, preconditioner: str | None) -> None:
    prob = ns.datasets.poisson(kwargs.pop("shape"), **kwargs)
    B = prob.random_rhs(2, seed=0)
    B[:, 1] *= 1e-4
    eager = ns.solve(prob.A, B, method="cg", rtol=1e-10, preconditioner=preconditioner)
    fused = ns.solve(prob.A, B, method="cg-fused", rtol=1e-10, preconditioner=preconditioner)
    assert fused.converged and fused.stats["fused"] and fused.stats["compile_s"] >= 0
    assert fused.column_iterations == pytest.approx(eager.column_iterations, abs=1)
    np.testing.assert_allclose(fused.residual_norms[:15], eager.residual_norms[:15], rtol=1e-8)
    np.testing.assert_allclose(
        fused.x.numpy(), eager.x.numpy(), rtol=1e-7, atol=1e-9 * np.abs(eager.x.numpy()).max()
    )


@pytest.mark.slow
def test_fused_float32_and_x0() -> None:
    prob = ns.datasets.poisson((16, 16, 16)).to(dtype=torch.float32)
    res = ns.solve(prob.A, prob.b, method="cg-fused", rtol=1e-5)
    assert res.converged and res.x.dtype == torch.float32
    warm = ns.solve(prob.A, prob.b, method="cg-fused", rtol=1e-5, x0=res.x)
    assert warm.iterations == 0  # already converged from the previous answer


def test_fused_refuses_what_it_cannot_run() -> None:
    prob = ns.datasets.poisson((6, 6))
    with pytest.raises(ValueError, match="fused CG takes no M="):
        ns.solve(prob.A, prob.b, method="cg-fused", M=np.eye(36))
    with pytest.raises(ValueError, match="supports no preconditioner or 'jacobi'"):
        ns.solve(prob.A, prob.b, method="cg-fused", preconditioner="amg")
