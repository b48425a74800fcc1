"""Kronecker algebra against dense float64 computations on small grids."""

from __future__ import annotations

import pytest
import torch

from neuralsolve.errors import NotSPDError
from neuralsolve.solvers.gp import SpectralMixture
from neuralsolve.solvers.gp.kron import KroneckerCholesky, KroneckerEigh, kron_apply, kron_dense

F64 = torch.float64


def _factors(sizes):
    g = torch.Generator().manual_seed(3)
    mats = []
    for n in sizes:
        k = SpectralMixture(4, freq_scale=2.0)
        x = torch.sort(torch.rand(n, generator=g, dtype=F64))[0] * 3
        with torch.no_grad():
            mats.append(k.matrix(x) + 1e-3 * torch.eye(n, dtype=F64))
    return mats


@pytest.mark.parametrize("sizes", [(7,), (6, 5), (4, 3, 5)])
@pytest.mark.parametrize("cls", [KroneckerCholesky, KroneckerEigh])
def test_matvec_solve_logdet_quad_equal_dense(sizes, cls):
    mats = _factors(sizes)
    K = kron_dense(mats)
    U = torch.randn(sizes, generator=torch.Generator().manual_seed(1), dtype=F64)
    u = U.reshape(-1)
    fac = cls(mats)
    assert torch.allclose(fac.matvec(U).reshape(-1), K @ u, rtol=1e-12, atol=1e-12)
    assert torch.allclose(kron_apply(mats, U).reshape(-1), K @ u, rtol=1e-12, atol=1e-12)
    x = torch.linalg.solve(K, u)
    # K's condition number here is up to ~1e6: 1e-8 relative leaves room for it
    assert torch.allclose(fac.solve(U).reshape(-1), x, rtol=1e-8, atol=1e-8 * float(x.abs().max()))
    sign, logdet = torch.linalg.slogdet(K)
    assert sign > 0 and abs(float(fac.logdet() - logdet)) < 1e-9 * abs(float(logdet)) + 1e-9
    assert abs(float(fac.quad(U) - u @ x)) < 1e-8 * abs(float(u @ x))


def test_shifted_eigh_solve_and_jitter():
    mats = _factors((5, 4))
    K = kron_dense(mats)
    U = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    fac = KroneckerEigh(mats)
    ref = torch.linalg.solve(K + 0.5 * torch.eye(20, dtype=F64), U.reshape(-1))
    assert torch.allclose(fac.solve(U, shift=0.5).reshape(-1), ref, rtol=1e-11, atol=1e-12)
    assert (
        abs(
            float(fac.logdet(0.5))
            - float(torch.linalg.slogdet(K + 0.5 * torch.eye(20, dtype=F64))[1])
        )
        < 1e-10
    )
    # the jitter is added to each factor, not to the product
    jit = KroneckerCholesky(mats, jitter=1e-2)
    Kj = kron_dense([M + 1e-2 * torch.eye(M.shape[0], dtype=F64) for M in mats])
    assert torch.allclose(jit.matvec(U).reshape(-1), Kj @ U.reshape(-1), rtol=1e-12)


def test_gradients_flow_through_the_factorisation():
    # d/dM of log|K| through the Kronecker form equals the dense one (float64 autograd)
    mats = [m.clone().requires_grad_(True) for m in _factors((4, 3))]
    KroneckerCholesky(mats).logdet().backward()
    g_kron = [m.grad.clone() for m in mats]
    for m in mats:
        m.grad = None
    torch.linalg.slogdet(kron_dense(mats))[1].backward()
    for a, m in zip(g_kron, mats, strict=True):
        assert torch.allclose(a, m.grad, rtol=1e-8, atol=1e-8)


def test_spd_inverse_logdet_backward_gradcheck():
    from neuralsolve.solvers.gp.kron import spd_inverse_logdet

    g = torch.Generator().manual_seed(5)
    B = torch.randn(5, 5, generator=g, dtype=F64)
    K = (B @ B.T + 5 * torch.eye(5, dtype=F64)).requires_grad_(True)
    # the function of a symmetric K: feed (K + K^T)/2 so perturbations stay symmetric
    assert torch.autograd.gradcheck(lambda M: spd_inverse_logdet(0.5 * (M + M.T)), (K,))


def test_not_spd_is_refused():
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)
    with pytest.raises(NotSPDError, match="factor 0 .* not positive definite.*jitter"):
        KroneckerCholesky([bad])
    with pytest.raises(ValueError, match="must be square"):
        KroneckerCholesky([torch.zeros(2, 3, dtype=F64)])
    with pytest.raises(NotSPDError, match="not positive definite"):
        KroneckerEigh([bad]).solve(torch.ones(2, dtype=F64))
