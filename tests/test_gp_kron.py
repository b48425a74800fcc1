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


def _toeplitz_dense(c: torch.Tensor, n: int) -> torch.Tensor:
    """``T_ij = c[i - j + n - 1]`` written out entry by entry."""
    return torch.stack([torch.stack([c[i - j + n - 1] for j in range(n)]) for i in range(n)])


def _even_values(n: int, g: torch.Generator) -> torch.Tensor:
    """``2n - 1`` values of a positive definite stationary kernel (a Gaussian) at unit-free
    lags, times a random positive scale."""
    m = torch.arange(-(n - 1), n, dtype=F64)
    return (0.5 + torch.rand(1, generator=g, dtype=F64)) * torch.exp(-0.3 * m**2)


def test_fused_2d_core_equals_dense_autograd_with_unsymmetric_second_derivatives():
    # the hand-written forward and backward of kron_core against autograd through dense
    # inverses, with lag values for K'' that are not even, so that every lag's gradient
    # (and its sign convention) is checked on its own, not only the folded sums
    from neuralsolve.solvers.gp.fused import kron_core

    n1, n2, jitter = 7, 5, 1e-2
    g = torch.Generator().manual_seed(11)
    k1, k2 = _even_values(n1, g), _even_values(n2, g)
    k1dd = torch.randn(2 * n1 - 1, generator=g, dtype=F64)
    k2dd = torch.randn(2 * n2 - 1, generator=g, dtype=F64)
    U = torch.randn(n1, n2, generator=g, dtype=F64)
    weights = [torch.randn((), generator=g, dtype=F64) for _ in range(2)]
    Gx, Gy = (torch.randn(n1, n2, generator=g, dtype=F64) for _ in range(2))
    inputs = [t.clone().requires_grad_(True) for t in (k1, k1dd, k2, k2dd, U)]

    def scalar(logdet, quad, Hx, Hy):
        return weights[0] * logdet + weights[1] * quad + (Gx * Hx).sum() + (Gy * Hy).sum()

    got = kron_core(*inputs, jitter)
    got_grads = torch.autograd.grad(scalar(*got), inputs)
    a, add, b, bdd, V = (t.clone().requires_grad_(True) for t in (k1, k1dd, k2, k2dd, U))
    K1 = _toeplitz_dense(a, n1) + jitter * torch.eye(n1, dtype=F64)
    K2 = _toeplitz_dense(b, n2) + jitter * torch.eye(n2, dtype=F64)
    A1, A2 = torch.linalg.inv(K1), torch.linalg.inv(K2)
    ref = (
        n2 * torch.linalg.slogdet(K1)[1] + n1 * torch.linalg.slogdet(K2)[1],
        torch.trace(V.T @ A1 @ V @ A2),
        _toeplitz_dense(add, n1) @ A1 @ V,
        V @ A2 @ _toeplitz_dense(bdd, n2).T,
    )
    ref_grads = torch.autograd.grad(scalar(*ref), [a, add, b, bdd, V])
    for x, y in zip(got, ref, strict=True):
        x, y = x.detach(), y.detach()
        assert float((x - y).abs().max()) <= 1e-11 * float(y.abs().max())
    for x, y in zip(got_grads, ref_grads, strict=True):
        assert float((x - y).abs().max()) <= 1e-10 * float(y.abs().max())


def test_fused_1d_core_equals_dense_autograd():
    from neuralsolve.solvers.gp.fused import kron_core_1d

    n, jitter = 9, 1e-2
    g = torch.Generator().manual_seed(12)
    k = _even_values(n, g)
    kdd = torch.randn(2 * n - 1, generator=g, dtype=F64)
    u = torch.randn(n, generator=g, dtype=F64)
    w = [torch.randn((), generator=g, dtype=F64) for _ in range(2)]
    gH = torch.randn(n, generator=g, dtype=F64)
    inputs = [t.clone().requires_grad_(True) for t in (k, kdd, u)]

    def scalar(logdet, quad, H):
        return w[0] * logdet + w[1] * quad + (gH * H).sum()

    got = kron_core_1d(*inputs, jitter)
    got_grads = torch.autograd.grad(scalar(*got), inputs)
    a, add, v = (t.clone().requires_grad_(True) for t in (k, kdd, u))
    K = _toeplitz_dense(a, n) + jitter * torch.eye(n, dtype=F64)
    A = torch.linalg.inv(K)
    ref = (torch.linalg.slogdet(K)[1], v @ A @ v, _toeplitz_dense(add, n) @ A @ v)
    ref_grads = torch.autograd.grad(scalar(*ref), [a, add, v])
    for x, y in zip(got, ref, strict=True):
        x, y = x.detach(), y.detach()
        assert float((x - y).abs().max()) <= 1e-11 * float(y.abs().max())
    for x, y in zip(got_grads, ref_grads, strict=True):
        assert float((x - y).abs().max()) <= 1e-10 * float(y.abs().max())
