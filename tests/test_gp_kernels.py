"""GP-HM kernels: analytic derivatives against autograd, matrices symmetric PSD, dense match."""

from __future__ import annotations

import math

import pytest
import torch

from neuralsolve.solvers.gp import (
    KERNELS,
    Matern52,
    SpectralMixture,
    SquaredExponential,
    StudentTMixture,
    make_kernel,
)

F64 = torch.float64


def _kernel(name: str, Q: int = 5) -> torch.nn.Module:
    k = make_kernel(name, Q, freq_scale=3.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # spread the parameters away from the symmetric initialisation
        k.log_w.add_(0.3 * torch.randn(Q, generator=g, dtype=F64))
        k.log_ls.add_(0.5 * torch.randn(Q, generator=g, dtype=F64))
    return k


def _plain(k, d: torch.Tensor) -> torch.Tensor:
    """The kernel written straight from its definition (no derivative formulas)."""
    w = torch.exp(k.log_w)[:, None]
    if isinstance(k, SpectralMixture):
        psi = torch.exp(-torch.exp(k.log_ls)[:, None] * d[None] ** 2)
    else:
        s = math.sqrt(5) * torch.exp(k.log_ls)[:, None]
        r = torch.sqrt(d[None] ** 2)
        psi = (1 + s * r + s**2 * r**2 / 3) * torch.exp(-s * r)
    if k.has_cos:
        psi = psi * torch.cos(2 * math.pi * k.mu[:, None] * d[None])
    return (w * psi).sum(0)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_derivatives_match_autograd(name):
    k = _kernel(name)
    # points away from d = 0, where |d| is smooth (autograd through |d| is not defined there)
    d = torch.cat([torch.linspace(-2.0, -0.05, 40, dtype=F64), torch.linspace(0.05, 2, 40)])
    d = d.to(F64).requires_grad_(True)
    vals = [_plain(k, d)]
    for _ in range(k.max_order):
        (g,) = torch.autograd.grad(vals[-1].sum(), d, create_graph=True)
        vals.append(g)
    for order in range(k.max_order + 1):
        ref = vals[order].detach()
        got = k(d.detach(), order).detach()
        scale = float(ref.abs().max())
        assert float((got - ref).abs().max()) <= 1e-12 * scale, order


@pytest.mark.parametrize("cls", [StudentTMixture, Matern52])
def test_matern_second_derivative_at_zero(cls):
    # psi''(0) = -s^2/3 (continuous through 0); compare with a central difference of psi'
    k = cls(3, freq_scale=2.0)
    h = 1e-5
    d = torch.tensor([-h, 0.0, h], dtype=F64)
    d1 = k(d, 1).detach()
    fd = (d1[2] - d1[0]) / (2 * h)
    assert abs(float(k(torch.zeros(1, dtype=F64), 2).detach()) - float(fd)) < 1e-5 * abs(float(fd))
    with pytest.raises(ValueError, match="order must be"):
        k(d, 3)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_matrix_symmetric_psd_and_matches_dense(name):
    k = _kernel(name, Q=4)
    x = torch.sort(torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=F64))[0]
    with torch.no_grad():
        K = k.matrix(x)
        dense = torch.stack([torch.stack([_plain(k, (a - b).reshape(1))[0] for b in x]) for a in x])
    assert torch.allclose(K, dense, rtol=1e-13, atol=1e-14)
    assert torch.equal(K, K.T)
    ev = torch.linalg.eigvalsh(K)
    assert float(ev.min()) > -1e-12 * float(ev.max())  # PSD to rounding
    torch.linalg.cholesky(K + 1e-6 * torch.eye(40, dtype=F64))  # SPD with the jitter


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_derivative_matrices_signs_and_toeplitz(name):
    k = _kernel(name, Q=3)
    n, h = 17, 0.13
    x = torch.arange(n, dtype=F64) * h
    with torch.no_grad():
        for order in range(3):
            T = k.toeplitz(n, h, order)
            assert torch.allclose(T, k.matrix(x, order=(order, 0)), rtol=1e-12, atol=1e-13)
        # d/dx' k = -k'(d); d^2/dx dx' k = -k''(d)
        assert torch.allclose(k.matrix(x, order=(0, 1)), -k.matrix(x, order=(1, 0)))
        assert torch.allclose(k.matrix(x, order=(1, 1)), -k.matrix(x, order=(2, 0)))
        # K'' = d^2/dx^2 k is symmetric (k'' is even)
        K2 = k.matrix(x, order=(2, 0))
        assert torch.allclose(K2, K2.T)


def test_initialisation_follows_the_paper():
    k = SpectralMixture(30, freq_scale=20.0)
    assert torch.allclose(k.log_w, torch.full((30,), math.log(1 / 30), dtype=F64))
    assert torch.equal(k.log_ls, torch.zeros(30, dtype=F64))
    assert torch.allclose(k.mu, torch.linspace(0, 20, 30, dtype=F64))
    assert not hasattr(SquaredExponential(4), "mu")


@pytest.mark.parametrize("Q", [0, -1, 2.5, True])
def test_q_below_one_is_refused(Q):
    with pytest.raises(ValueError, match="Q .* must be an integer >= 1"):
        SpectralMixture(Q)
    with pytest.raises(ValueError, match="unknown kernel 'rbf'; available: sm, stm, se, matern"):
        make_kernel("rbf")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_toeplitz_pair_matches_autograd_values_and_gradients(name):
    # the closed-form backward of the fused kernel values against autograd through forward()
    k = _kernel(name, Q=4)
    with torch.no_grad():
        k.log_ls.add_(2.0)  # narrow components, so that the tails matter
    n, h = 23, 0.07
    g = torch.Generator().manual_seed(3)
    g0, g2 = (torch.randn(2 * n - 1, generator=g, dtype=F64) for _ in range(2))
    params = list(k.parameters())
    ref = (k.toeplitz_values(n, h, 0), k.toeplitz_values(n, h, 2))
    ref_grads = torch.autograd.grad((ref[0] * g0).sum() + (ref[1] * g2).sum(), params)
    got = k.toeplitz_pair(n, h)
    got_grads = torch.autograd.grad((got[0] * g0).sum() + (got[1] * g2).sum(), params)
    for a, b in zip(got, ref, strict=True):
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= 1e-13 * float(b.abs().max())
    for p, a, b in zip(params, got_grads, ref_grads, strict=True):
        assert a.shape == p.shape
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max()), name
