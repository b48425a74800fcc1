"""Optimizers: one step on a quadratic equals the hand-computed update, state_dict round trips
continue identically, every optimizer decreases a convex problem, and the special pieces
(Newton-Schulz, the M-FAC inverse, the DCT basis) are exact where the math is."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import neuralsolve as ns
from neuralsolve.optim import (
    MFAC,
    AdaHessian,
    AdamP,
    DCTLowRank,
    DiffGrad,
    Muon,
    Sophia,
    dct_matrix,
    matrix_dims,
    newton_schulz,
)
from neuralsolve.optim.mfac import woodbury_inverse_fisher


@pytest.fixture(autouse=True)
def _float64_by_default():
    """These tests compute in float64; the default dtype is restored for the other modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def quadratic(seed: int = 0, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """f(theta) = 0.5 theta^T Q theta - b^T theta with Q SPD (Hessian Q, gradient Q theta - b)."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g)
    return M @ M.T + n * torch.eye(n), torch.randn(n, generator=g)


def f(theta: torch.Tensor, Q: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * theta @ Q @ theta - b @ theta


def one_step(
    opt_cls, theta0: torch.Tensor, Q, b, create_graph: bool = False, **kw
) -> tuple[torch.Tensor, torch.optim.Optimizer]:
    theta = torch.nn.Parameter(theta0.clone())
    opt = opt_cls([theta], **kw)
    loss = f(theta, Q, b)
    if create_graph:
        (g,) = torch.autograd.grad(loss, [theta], create_graph=True)
        theta.grad = g
    else:
        loss.backward()
    opt.step()
    return theta.detach(), opt


# ----------------------------------------------------------------------------- one step by hand
def test_mfac_first_step_is_sherman_morrison() -> None:
    Q, b = quadratic()
    theta0 = torch.ones(6)
    g = Q @ theta0 - b
    lr, damp, m = 0.1, 1e-2, 4
    new, _ = one_step(MFAC, theta0, Q, b, lr=lr, damp=damp, num_grads=m)
    # With one gradient in the window: (damp I + g g^T / m)^{-1} g = g / (damp + g.g / m)
    np.testing.assert_allclose(
        new.numpy(), (theta0 - lr * g / (damp + g @ g / m)).numpy(), rtol=1e-12
    )


def test_adahessian_first_step() -> None:
    Q, b = quadratic(1)
    theta0 = torch.zeros(6)
    g = Q @ theta0 - b
    z = (
        torch.randint(
            0, 2, (6,), generator=torch.Generator().manual_seed(7), dtype=torch.int8
        ).double()
        * 2
        - 1
    )
    D = (z * (Q @ z)).abs()
    lr, eps, k = 0.15, 1e-4, 0.5
    new, _ = one_step(
        AdaHessian, theta0, Q, b, create_graph=True, lr=lr, eps=eps, hessian_power=k, seed=7
    )
    # bias-corrected first step: m_hat = g, v_hat = D^2
    np.testing.assert_allclose(new.numpy(), (theta0 - lr * g / (D**k + eps)).numpy(), rtol=1e-12)


def test_sophia_first_step_with_clipping() -> None:
    Q, b = quadratic(2)
    theta0 = torch.full((6,), 0.5)
    g = Q @ theta0 - b
    z = (
        torch.randint(
            0, 2, (6,), generator=torch.Generator().manual_seed(3), dtype=torch.int8
        ).double()
        * 2
        - 1
    )
    lr, b1, b2, rho, wd, eps = 0.05, 0.9, 0.99, 0.5, 0.1, 1e-12
    h = (1 - b2) * z * (Q @ z)
    m = (1 - b1) * g
    expected = theta0 * (1 - lr * wd) - lr * torch.clamp(m / torch.clamp(rho * h, min=eps), -1, 1)
    new, opt = one_step(
        Sophia,
        theta0,
        Q,
        b,
        create_graph=True,
        lr=lr,
        betas=(b1, b2),
        rho=rho,
        weight_decay=wd,
        eps=eps,
        seed=3,
    )
    np.testing.assert_allclose(new.numpy(), expected.numpy(), rtol=1e-12)
    assert 0.0 <= opt.stats["win_rate"] <= 1.0


def test_diffgrad_first_step() -> None:
    Q, b = quadratic(3)
    theta0 = torch.ones(6)
    g = Q @ theta0 - b
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    xi = torch.sigmoid(g.abs())  # previous gradient is 0
    m, v = (1 - b1) * g, (1 - b2) * g * g
    expected = theta0 - lr * math.sqrt(1 - b2) / (1 - b1) * xi * m / (v.sqrt() + eps)
    new, _ = one_step(DiffGrad, theta0, Q, b, lr=lr, betas=(b1, b2), eps=eps)
    np.testing.assert_allclose(new.numpy(), expected.numpy(), rtol=1e-12)


def test_adamp_first_step_on_a_vector_is_adam() -> None:
    Q, b = quadratic(4)
    theta0 = torch.ones(6)
    g = Q @ theta0 - b
    lr, eps = 0.01, 1e-8
    new, _ = one_step(AdamP, theta0, Q, b, lr=lr, eps=eps)
    np.testing.assert_allclose(new.numpy(), (theta0 - lr * g / (g.abs() + eps)).numpy(), rtol=1e-12)


def test_adamp_removes_the_radial_component_of_scale_invariant_weights() -> None:
    w = torch.nn.Parameter(torch.randn(4, 5))
    # A gradient orthogonal to every row of w: the weight is scale invariant for this loss.
    g = torch.randn(4, 5)
    g = (
        g
        - (g * w.detach()).sum(1, keepdim=True)
        / (w.detach() ** 2).sum(1, keepdim=True)
        * w.detach()
    )
    w.grad = g
    before = w.detach().clone()
    opt = AdamP([w], lr=0.1, weight_decay=0.0)
    opt.step()
    update = w.detach() - before
    np.testing.assert_allclose((update * before).sum(dim=1).numpy(), 0.0, atol=1e-12)


def test_muon_first_step() -> None:
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(4, 3))
    T = torch.randn(4, 3)
    loss = 0.5 * ((W - T) ** 2).sum()
    loss.backward()
    g = (W - T).detach()
    before = W.detach().clone()
    lr = 0.02
    Muon([W], lr=lr).step()
    # Nesterov with EMA momentum from m = 0: m = (1 - beta) g, u = (1 - beta) g + beta m.
    beta = 0.95
    u = (1 - beta) * g + beta * (1 - beta) * g
    expected = before - lr * newton_schulz(u) * math.sqrt(4 / 3)
    np.testing.assert_allclose(W.detach().numpy(), expected.numpy(), rtol=1e-12)


def test_newton_schulz_on_a_stack_equals_it_on_each_matrix() -> None:
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(5, 7, 4, generator=gen) * torch.logspace(-2, 2, 5).view(5, 1, 1)
    stacked = newton_schulz(G)
    for k in range(5):
        np.testing.assert_allclose(stacked[k].numpy(), newton_schulz(G[k]).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="needs a matrix or a stack of matrices, got shape"):
        newton_schulz(torch.randn(4))


def test_muon_orthogonalises_a_marked_stack_matrix_by_matrix() -> None:
    """A parameter marked as a stack (here (in, out) per mode, on axes (0, 2) of a
    (in, modes, out) tensor) gets one Newton-Schulz direction per matrix, each scaled by its
    own sqrt(rows / cols); an unmarked one is read as (shape[0], rest)."""
    torch.manual_seed(4)
    beta, lr = 0.95, 0.02
    g = torch.randn(6, 3, 4)
    u = (1 - beta) * g + beta * (1 - beta) * g  # first Nesterov step from m = 0

    W = matrix_dims(torch.nn.Parameter(torch.zeros(6, 3, 4)), (0, 2))
    W.grad = g.clone()
    Muon([W], lr=lr).step()
    for k in range(3):
        expected = -lr * newton_schulz(u[:, k, :]) * math.sqrt(6 / 4)
        np.testing.assert_allclose(W.detach()[:, k, :].numpy(), expected.numpy(), rtol=1e-12)

    flat = torch.nn.Parameter(torch.zeros(6, 3, 4))
    flat.grad = g.clone()
    Muon([flat], lr=lr).step()
    expected = -lr * newton_schulz(u.reshape(6, 12)).reshape(6, 3, 4)
    np.testing.assert_allclose(flat.detach().numpy(), expected.numpy(), rtol=1e-12)


def test_muon_gives_a_parameter_marked_not_a_matrix_adamw() -> None:
    torch.manual_seed(5)
    g = torch.randn(3, 4, 4)
    b = matrix_dims(torch.nn.Parameter(torch.randn(3, 4, 4)), None)
    start = b.detach().clone()
    b.grad = g.clone()
    Muon([b], lr=0.02, adamw_lr=1e-3, weight_decay=0.1).step()
    ref = torch.nn.Parameter(start.clone())
    ref.grad = g.clone()
    torch.optim.AdamW([ref], lr=1e-3, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.1).step()
    np.testing.assert_allclose(b.detach().numpy(), ref.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("dims", [(0,), (1, 1), (0, 3), (-4, 0), (0.0, 1)])
def test_matrix_dims_refuses_axes_that_are_not_two_different_axes(dims) -> None:
    with pytest.raises(ValueError, match="dims"):
        matrix_dims(torch.nn.Parameter(torch.zeros(2, 3, 4)), dims)


def test_t1_and_fno_mark_their_per_mode_weights_as_stacks_of_matrices() -> None:
    model = ns.operators.create("t1", modes=4, width=3, layers=1, resolution=8)
    block = model.blocks[0]
    assert block.channel.matrix_dims == (1, 2)
    assert all(S.matrix_dims == (1, 2) for S in block.axis)
    assert block.bias.matrix_dims == (1, 2)  # one (k_x, k_y) matrix per channel
    assert not hasattr(model.lift.weight, "matrix_dims")  # a plain matrix: Muon's default
    fno = ns.operators.create("fno", modes=3, width=4, layers=1)
    assert fno.spectral[0].weight.matrix_dims == (0, 1)  # (in, out) per mode and part


def test_dct_lowrank_with_full_rank_is_adam_and_low_rank_projects() -> None:
    torch.manual_seed(1)
    W0 = torch.randn(3, 8)
    G = torch.randn(3, 8)
    lr, eps = 0.01, 1e-8

    def run(rank: int) -> torch.Tensor:
        W = torch.nn.Parameter(W0.clone())
        W.grad = G.clone()
        DCTLowRank([W], lr=lr, rank=rank, eps=eps).step()
        return W.detach()

    adam = W0 - lr * G / (G.abs() + eps)
    np.testing.assert_allclose(run(8).numpy(), adam.numpy(), rtol=1e-12)
    Q = dct_matrix(8)
    S = G @ Q
    idx = torch.topk(S.abs().sum(0), 3).indices.sort().values
    P = Q[:, idx]
    R = G @ P
    expected = W0 - lr * (R / (R.abs() + eps)) @ P.T
    np.testing.assert_allclose(run(3).numpy(), expected.numpy(), rtol=1e-12)


def test_lbfgs_solves_a_quadratic_and_says_why_it_stopped() -> None:
    Q, b = quadratic(5)
    theta = torch.nn.Parameter(torch.zeros(6))
    opt = ns.optim.LBFGS([theta], max_iter=100, tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = f(theta, Q, b)
        loss.backward()
        return loss

    opt.step(closure)
    # It stops on a loss change below 1e-14, which bounds the error by about sqrt(2e-14 / lambda_min).
    np.testing.assert_allclose(theta.detach().numpy(), torch.linalg.solve(Q, b).numpy(), rtol=1e-6)
    assert opt.converged and opt.stop_reason in ns.optim.LBFGS.CONVERGED
    few = ns.optim.LBFGS([torch.nn.Parameter(torch.zeros(6))], max_iter=2)
    p = few.param_groups[0]["params"][0]

    def closure2() -> torch.Tensor:
        few.zero_grad()
        loss = f(p, Q, b)
        loss.backward()
        return loss

    few.step(closure2)
    # max_eval defaults to 1.25 max_iter, and the line search evaluates more than once.
    assert few.stop_reason in ("max_iter reached", "max_eval reached") and not few.converged
    with pytest.raises(ValueError, match="closure"):
        few.step(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the special pieces
def test_newton_schulz_singular_values_lie_in_the_band() -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in [(16, 16), (8, 32), (40, 10), (64, 64)]:
        for _ in range(5):
            U, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=gen))
            V, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=gen))
            k = min(shape)
            s = torch.logspace(0, -1.3, k)  # sigma_min / ||G||_F well above 2e-3
            G = U[:, :k] @ torch.diag(s) @ V[:, :k].T
            assert float(s.min() / torch.linalg.matrix_norm(G)) >= 2e-3
            sv = torch.linalg.svdvals(newton_schulz(G))
            assert 0.6 <= float(sv.min()) and float(sv.max()) <= 1.2, (shape, sv)


def test_newton_schulz_handles_complex_and_conv_shapes() -> None:
    gen = torch.Generator().manual_seed(1)
    C = torch.randn(6, 9, dtype=torch.complex128, generator=gen)
    sv = torch.linalg.svdvals(newton_schulz(C))
    assert 0.5 <= float(sv.min()) and float(sv.max()) <= 1.2
    conv = torch.nn.Conv2d(3, 4, 3).double()
    conv.weight.grad = torch.randn_like(conv.weight)
    conv.bias.grad = torch.randn_like(conv.bias)
    Muon(conv.parameters()).step()
    assert conv.weight.shape == (4, 3, 3, 3)
    cw = torch.nn.Parameter(torch.randn(4, 6, dtype=torch.complex128))
    cw.grad = torch.randn_like(cw)
    Muon([cw]).step()  # complex spectral weights (FNO) go through Muon too


def test_mfac_inverse_matches_a_dense_solve_after_the_window_wraps() -> None:
    torch.manual_seed(2)
    d, m, damp = 200, 32, 1e-3
    theta = torch.nn.Parameter(torch.zeros(d))
    opt = MFAC([theta], lr=0.0, num_grads=m, damp=damp)
    grads = [torch.randn(d) for _ in range(m + 7)]  # more than m: the ring buffer wraps
    for g in grads:
        theta.grad = g.clone()
        opt.step()
    G = torch.stack(grads[-m:])
    x = torch.randn(d)
    dense = torch.linalg.solve(damp * torch.eye(d) + G.T @ G / m, x)
    got = opt.preconditioned_gradient(opt.param_groups[0], x)
    # Norm-wise, as for any linear solve (the matrix's condition number here is about 1e4).
    assert float(torch.linalg.norm(got - dense) / torch.linalg.norm(dense)) <= 1e-10
    np.testing.assert_allclose(woodbury_inverse_fisher(G[:0], x, 1e9, m).numpy(), (x / 1e9).numpy())


def test_dct_basis_is_orthonormal() -> None:
    for n in (1, 5, 16, 33):
        Q = dct_matrix(n)
        np.testing.assert_allclose((Q.T @ Q).numpy(), np.eye(n), atol=1e-12)
    # Compare with scipy's orthonormal DCT-II: y = Q^T x.
    import scipy.fft

    x = np.random.default_rng(0).standard_normal(12)
    np.testing.assert_allclose(
        dct_matrix(12).numpy().T @ x, scipy.fft.dct(x, type=2, norm="ortho"), atol=1e-12
    )
    opt = DCTLowRank([torch.nn.Parameter(torch.randn(8, 64))], rank=4)
    opt.param_groups[0]["params"][0].grad = torch.randn(8, 64)
    opt.step()
    report = opt.memory_report()
    assert report["state_bytes"] < report["adam_state_bytes"] / 4


# ----------------------------------------------------------------------------- every optimizer
CONFIGS = {
    "muon": {"lr": 0.02},
    "mfac": {"lr": 0.05, "damp": 1e-1},
    "sophia": {"lr": 0.05, "rho": 0.1, "update_every": 2},
    "adahessian": {"lr": 0.1},
    "adamp": {"lr": 0.05},
    "diffgrad": {"lr": 0.05},
    "dct-lowrank": {"lr": 0.05, "rank": 2, "update_gap": 5},
    "lbfgs": {"lr": 1.0, "max_iter": 5},
}


def _problem(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Least squares with a matrix parameter (so Muon and the low-rank method are exercised)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 4)
    X = torch.randn(40, 6)
    Y = X @ torch.randn(6, 4) + 0.1 * torch.randn(40, 4)
    return model, X, Y


def _train(
    name: str, model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, opt=None
) -> tuple[list[float], torch.optim.Optimizer]:
    opt = opt or ns.optim.create(name, model.parameters(), **CONFIGS[name])
    losses = []
    for _ in range(steps):
        graph = bool(getattr(opt, "requires_create_graph", False))

        def closure(graph: bool = graph) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = ((model(X) - Y) ** 2).mean()
            if graph:
                gs = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
                for p, g in zip(model.parameters(), gs, strict=True):
                    p.grad = g
            else:
                loss.backward()
            return loss

        if getattr(opt, "requires_closure", False):
            loss = opt.step(closure)
        else:
            loss = closure()
            opt.step()
        losses.append(float(loss.detach()))
    return losses, opt


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_optimizer_decreases_a_convex_problem(name: str) -> None:
    model, X, Y = _problem()
    losses, _ = _train(name, model, X, Y, 60)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    model, X, Y = _problem(1)
    _, opt = _train(name, model, X, Y, 4)
    twin = copy.deepcopy(model)
    twin_opt = ns.optim.create(name, twin.parameters(), **CONFIGS[name])
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    a, _ = _train(name, model, X, Y, 4, opt)
    b, _ = _train(name, twin, X, Y, 4, twin_opt)
    assert a == b
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_hessian_optimizers_demand_the_graph() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    (p**2).sum().backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        AdaHessian([p]).step()


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("muon", {"lr": -1.0}, "invalid lr"),
        ("muon", {"momentum": 1.0}, "invalid momentum"),
        ("muon", {"variant": "polar"}, "invalid variant"),
        ("mfac", {"num_grads": 0}, "invalid num_grads"),
        ("mfac", {"damp": 0.0}, "invalid damp"),
        ("sophia", {"estimator": "exact"}, "invalid estimator"),
        ("sophia", {"rho": float("nan")}, "invalid rho"),
        ("adahessian", {"hessian_power": 2.0}, "invalid hessian_power"),
        ("adahessian", {"betas": (0.9,)}, "invalid betas"),
        ("adamp", {"eps": 0.0}, "invalid eps"),
        ("diffgrad", {"weight_decay": -0.1}, "invalid weight_decay"),
        ("dct-lowrank", {"rank": 0}, "invalid rank"),
    ],
)
def test_invalid_hyperparameters_name_the_value(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ns.optim.create(name, [torch.nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_registry_lists_valid_names_and_arguments() -> None:
    with pytest.raises(ValueError, match="available: muon, mfac"):
        ns.optim.create("adamm", [torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(TypeError, match="valid: lr"):
        ns.optim.create("adamp", [torch.nn.Parameter(torch.ones(2))], learning_rate=0.1)
    with pytest.raises(TypeError, match="complex"):
        MFAC([torch.nn.Parameter(torch.ones(2, dtype=torch.complex128))])


def test_newton_schulz_in_bfloat16_returns_the_input_dtype_and_stays_in_band() -> None:
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(12, 20, generator=gen)
    out = newton_schulz(G, dtype=torch.bfloat16)
    assert out.dtype == torch.float64
    sv = torch.linalg.svdvals(out)
    assert 0.5 <= float(sv.min()) and float(sv.max()) <= 1.25  # bfloat16 keeps about 3 digits
    W = torch.nn.Parameter(torch.randn(6, 4))
    W.grad = torch.randn(6, 4)
    Muon([W], ns_dtype=torch.bfloat16).step()
    assert W.dtype == torch.float64


def test_auon_variant_first_step() -> None:
    torch.manual_seed(4)
    W = torch.nn.Parameter(torch.randn(5, 3))
    g = torch.randn(5, 3)
    W.grad = g.clone()
    before = W.detach().clone()
    lr, beta = 0.1, 0.95
    Muon([W], lr=lr, momentum=beta, variant="auon").step()
    u = (1 - beta) * g + beta * (1 - beta) * g
    N = u / torch.linalg.matrix_norm(u)
    expected = before - lr * N / torch.sqrt(torch.mean(torch.cosh(N) ** 2))
    # The implementation guards the norm with +1e-12 (here ||u|| is about 0.1): 1e-11 relative.
    np.testing.assert_allclose(W.detach().numpy(), expected.numpy(), rtol=1e-10)


def test_sophia_gnb_estimate_has_the_gauss_newton_diagonal_as_expectation() -> None:
    """For 0.5 * mean ||f - y||^2, batch * g^2 of the loss on targets sampled from the model
    (f + unit Gaussian noise) has expectation diag(J^T J) / batch = diag of the GGN."""
    from neuralsolve.optim import curvature as cv
    from neuralsolve.optim import gnb_loss

    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    X = torch.randn(6, 3)
    ggn = cv.ggn_operator(
        model, lambda out, y: 0.5 * ((out - y) ** 2).sum() / out.shape[0], X, torch.zeros(6, 2)
    )
    exact = torch.diagonal(ggn.to_dense())
    opt = Sophia(
        model.parameters(), estimator="gnb", betas=(0.9, 0.0)
    )  # beta2 = 0: h is the last sample
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(4000):
        model.zero_grad()
        gnb_loss(model(X), kind="mse", generator=gen).backward()
        opt.update_hessian(batch_size=6)
        samples.append(torch.cat([opt.state[p]["hessian"].reshape(-1) for p in model.parameters()]))
    S = torch.stack(samples)
    z = (S.mean(0) - exact).abs() / (S.std(0) / math.sqrt(len(samples)) + 1e-30)
    assert float(z.max()) < 4.5, z.max()  # every coordinate within 4.5 standard errors


def test_adahessian_averages_conv_kernels_over_space() -> None:
    torch.manual_seed(6)
    conv = torch.nn.Conv2d(2, 3, 3)
    x = torch.randn(4, 2, 6, 6)
    opt = AdaHessian(conv.parameters(), lr=0.1)
    loss = (conv(x) ** 2).mean()
    grads = torch.autograd.grad(loss, list(conv.parameters()), create_graph=True)
    for p, g in zip(conv.parameters(), grads, strict=True):
        p.grad = g
    opt.step()
    v = opt.state[conv.weight]["exp_hessian_diag_sq"]
    # One value per (out, in) kernel, broadcast over its 3 x 3 positions.
    assert torch.allclose(v, v[:, :, :1, :1].expand_as(v))
    assert not torch.allclose(v[:, :, 0, 0], v[0, 0, 0, 0].expand(3, 2))
