"""Curvature operators and estimators against exact float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

import neuralsolve as ns
from neuralsolve.optim import curvature as cv

from .conftest import random_spd_dense


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()


def _data(n: int = 20, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(
        n, 2, generator=g, dtype=torch.float64
    )


def _flat_params(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Size]]:
    names = {k: v.shape for k, v in model.named_parameters()}
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), names


def _unflatten(theta: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, s in shapes.items():
        n = int(np.prod(s))
        out[k] = theta[i : i + n].reshape(s)
        i += n
    return out


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def test_hessian_vector_products_match_autograd_hessian() -> None:
    model = _mlp()
    X, y = _data()
    theta, shapes = _flat_params(model)
    d = theta.numel()
    H = torch.autograd.functional.hessian(
        lambda t: mse(functional_call(model, _unflatten(t, shapes), (X,)), y), theta
    )
    op = cv.hessian_operator(model, mse, X, y)
    assert op.shape == (d, d) and op.symmetric
    V = torch.randn(d, 4, dtype=torch.float64)
    np.testing.assert_allclose((op @ V).numpy(), (H @ V).numpy(), rtol=1e-10, atol=1e-12)
    u, v = V[:, 0], V[:, 1]
    assert float(u @ (op @ v)) == pytest.approx(float(v @ (op @ u)), rel=1e-12)


def test_ggn_matches_jacobian_form() -> None:
    model = _mlp(2)
    X, y = _data(seed=3)
    theta, shapes = _flat_params(model)
    f = lambda t: functional_call(model, _unflatten(t, shapes), (X,)).reshape(-1)  # noqa: E731
    J = torch.autograd.functional.jacobian(f, theta)  # (N*2, d)
    out = f(theta).detach()
    H_L = torch.autograd.functional.hessian(lambda o: mse(o.reshape(-1, 2), y), out)  # (N*2, N*2)
    G = J.T @ H_L @ J
    op = cv.ggn_operator(model, mse, X, y)
    V = torch.randn(theta.numel(), 3, dtype=torch.float64)
    np.testing.assert_allclose((op @ V).numpy(), (G @ V).numpy(), rtol=1e-10, atol=1e-12)
    assert op.is_spd  # MSE is convex in the outputs
    assert torch.linalg.eigvalsh(G).min() > -1e-12


def test_empirical_fisher_matches_per_sample_gradients() -> None:
    model = _mlp(4)
    X, y = _data(n=7, seed=5)
    theta, shapes = _flat_params(model)
    rows = [
        torch.func.grad(
            lambda t, i=i: mse(
                functional_call(model, _unflatten(t, shapes), (X[i : i + 1],)), y[i : i + 1]
            )
        )(theta)
        for i in range(7)
    ]
    Gs = torch.stack(rows)
    F = Gs.T @ Gs / 7
    op = cv.fisher_operator(model, mse, X, y)
    V = torch.randn(theta.numel(), 2, dtype=torch.float64)
    np.testing.assert_allclose((op @ V).numpy(), (F @ V).numpy(), rtol=1e-10, atol=1e-14)


def test_rademacher_probes_have_both_signs() -> None:
    Z = cv.rademacher(
        4000,
        3,
        dtype=torch.float64,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    assert set(torch.unique(Z).tolist()) == {-1.0, 1.0}
    assert abs(float(Z.mean())) < 4 / np.sqrt(Z.numel())  # mean 0 within 4 standard errors


def test_hutchinson_trace_and_diagonal_within_four_standard_errors() -> None:
    A = random_spd_dense(30, 50.0, seed=6)
    num_probes = 400
    tr = cv.hutchinson_trace(A, num_probes, generator=torch.Generator().manual_seed(1))
    # The exact standard error of the mean for Rademacher probes: sqrt(2 (||A||_F^2 - ||diag||^2) / N).
    exact_se = np.sqrt(2 * (np.sum(A**2) - np.sum(np.diag(A) ** 2)) / num_probes)
    assert abs(float(tr.value) - np.trace(A)) <= 4 * exact_se
    assert float(tr.std_error) == pytest.approx(exact_se, rel=0.3)
    diag = cv.hutchinson_diagonal(A, num_probes, generator=torch.Generator().manual_seed(2))
    exact_se_diag = np.sqrt((np.sum(A**2, axis=1) - np.diag(A) ** 2) / num_probes)
    z = np.abs(diag.value.numpy() - np.diag(A)) / exact_se_diag
    assert z.max() <= 4.5  # 30 entries: the largest of 30 |N(0,1)| stays below 4.5 with p > 0.9998
    assert np.mean(z <= 2) > 0.8


def test_top_eigenvalues_match_eigvalsh() -> None:
    A = random_spd_dense(60, 1e3, seed=7)
    exact = np.linalg.eigvalsh(A)
    top = cv.top_eigenvalues(A, 5, num_steps=60, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(top.numpy(), exact[::-1][:5], rtol=1e-8)
    low = cv.top_eigenvalues(A, 2, which="smallest", num_steps=60)
    np.testing.assert_allclose(low.numpy(), exact[:2], rtol=1e-8)


def test_slq_quadrature_is_exact_and_density_integrates_to_one() -> None:
    A = random_spd_dense(40, 20.0, seed=8)
    m = 6
    sd = cv.spectral_density(
        A, num_probes=3, lanczos_steps=m, generator=torch.Generator().manual_seed(3)
    )
    assert sd.nodes.shape == (3, m)
    np.testing.assert_allclose(sd.weights.sum(dim=1).numpy(), 1.0, rtol=1e-12)
    # Gauss quadrature: sum w theta^k = z^T A^k z / z^T z for k <= 2m - 1, for each probe.
    gen = torch.Generator().manual_seed(3)
    for p in range(3):
        z = cv.rademacher(40, 1, dtype=torch.float64, device=torch.device("cpu"), generator=gen)[
            :, 0
        ].numpy()
        for k in range(2 * m):
            exact = z @ np.linalg.matrix_power(A, k) @ z / (z @ z)
            got = float((sd.weights[p] * sd.nodes[p] ** k).sum())
            assert got == pytest.approx(exact, rel=1e-8)
    dx = float(sd.grid[1] - sd.grid[0])
    assert float(sd.density.sum()) * dx == pytest.approx(1.0, abs=1e-3)


def test_slq_with_full_steps_recovers_the_spectrum_moments() -> None:
    A = random_spd_dense(25, 10.0, seed=9)
    eig = np.linalg.eigvalsh(A)
    sd = cv.spectral_density(
        A, num_probes=200, lanczos_steps=25, generator=torch.Generator().manual_seed(4)
    )
    np.testing.assert_allclose(np.sort(sd.nodes[0].numpy()), eig, rtol=1e-8)
    for k in (1, 2, 3):
        exact = np.mean(eig**k)
        # tr(A^k)/d estimated from 200 probes: within 4 standard errors of the sample.
        per_probe = (sd.weights * sd.nodes**k).sum(dim=1).numpy()
        se = per_probe.std(ddof=1) / np.sqrt(200)
        assert abs(float(sd.moment(k)) - exact) <= 4 * se + 1e-12


def test_curvature_operators_work_with_cg_and_refuse_bad_models() -> None:
    model = _mlp(5)
    X, y = _data(seed=6)
    G = cv.ggn_operator(model, mse, X, y)
    d = G.shape[0]
    damped = G + ns.IdentityOperator(d, dtype=torch.float64) * 1e-2
    b = torch.randn(d, dtype=torch.float64)
    assert ns.solve(damped, b, rtol=1e-8).converged
    with pytest.raises(ValueError, match="no trainable parameters"):
        cv.hessian_operator(torch.nn.Identity(), mse, X, y)
    with pytest.raises(ValueError, match="num_probes"):
        cv.hutchinson_trace(np.eye(3), 0)
    with pytest.raises(ValueError, match="which"):
        cv.top_eigenvalues(np.eye(3), 1, which="middle")


def test_curvature_in_float32_matches_float64() -> None:
    model = _mlp(7)
    X, y = _data(seed=8)
    op64 = cv.hessian_operator(model, mse, X, y)
    model32 = _mlp(7).float()
    op32 = cv.hessian_operator(model32, mse, X.float(), y.float())
    assert op32.dtype == torch.float32
    v = torch.randn(op64.shape[0], dtype=torch.float64)
    ref = op64 @ v
    got = (op32 @ v.float()).double()
    assert float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref)) < 1e-5
    est = cv.hutchinson_trace(op32, 8, generator=torch.Generator().manual_seed(0))
    assert est.value.dtype == torch.float32 and torch.isfinite(est.value)
