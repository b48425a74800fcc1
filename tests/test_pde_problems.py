"""The PDE problems of neuralsolve.datasets.pde: the derivative helper against exact derivatives,
every built-in's exact solution against its residual (so the hand-derived forcing terms are
checked), the boundary and initial data, the registry, and the errors that name the problem."""

from __future__ import annotations

import math

import pytest
import torch

import neuralsolve as ns
from neuralsolve.datasets import pde
from neuralsolve.datasets.pde import PDEProblem, derivatives
from neuralsolve.domain import Box
from neuralsolve.errors import NonFiniteError

F64 = torch.float64

# (registry name, params) of every built-in with an exact solution, every case.
EXACT_CASES = [
    ("peak2d", {}),
    ("two-peak2d", {}),
    ("exp-nd", {"d": 2}),
    ("exp-nd", {}),
    ("exp10d", {}),
    *[("poisson1d-hf", {"case": c}) for c in ("P1", "P2", "P3", "P4", "P5")],
    *[("poisson2d-hf", {"case": c}) for c in ("Q1", "Q2")],
    *[("allen-cahn", {"case": c}) for c in ("A1", "A2", "AC2")],
]


def _ids(case: tuple[str, dict]) -> str:
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def _test_points(prob: PDEProblem, g: torch.Generator) -> torch.Tensor:
    """300 uniform points, plus 100 around each peak for the problems whose solution is
    negligible on most of the box (else the forcing would be ~0 at every test point and the
    test would check nothing)."""
    X = [prob.domain.uniform(300, generator=g)]
    if prob.name in ("peak2d", "two-peak2d"):
        centers, width = prob.params.get("centers", (prob.params.get("center"),)), 0.03
    elif prob.name.startswith("exp"):
        centers, width = ((0.0,) * prob.dim,), 0.2
    else:
        centers = ()
    for c in centers:
        Z = torch.tensor(c, dtype=F64) + width * torch.randn(100, prob.dim, generator=g, dtype=F64)
        X.append(Z.clamp(-1.0, 1.0))
    return torch.cat(X)


@pytest.mark.parametrize("case", EXACT_CASES, ids=_ids)
def test_the_exact_solution_has_zero_residual(case: tuple[str, dict]) -> None:
    name, params = case
    prob = pde.make(name, **params)
    x = _test_points(prob, torch.Generator().manual_seed(0))
    r = prob.residual(x, prob.exact)  # autograd derivatives of the exact solution
    assert r.shape == (x.shape[0],) and r.dtype == F64
    # Scale: the largest |f| over the points (>= 1 here, so the points see the forcing). The
    # residual is a sum of O(|f|) terms each rounded to ~1e-16 relative; 1e-8 leaves a wide margin
    # yet catches any wrong coefficient in a hand-derived f.
    scale = float(prob.forcing(x).abs().max())
    assert scale > 1.0
    assert float(r.detach().abs().max()) <= 1e-8 * scale
    # ... and the check can fail: 1% off the solution leaves a residual of order 1% of f
    r_off = prob.residual(x, lambda z: 1.01 * prob.exact(z))
    assert float(r_off.detach().abs().max()) > 1e-4 * scale


@pytest.mark.parametrize("case", EXACT_CASES, ids=_ids)
def test_boundary_data_are_the_exact_solution_on_the_boundary(case: tuple[str, dict]) -> None:
    name, params = case
    prob = pde.make(name, **params)
    xb, gb = prob.boundary_data(200, generator=torch.Generator().manual_seed(1))
    assert xb.shape == (200, prob.dim) and gb.shape == (200,)
    lo, hi = prob.domain.bounds()
    on_face = ((xb - lo).abs() < 1e-14) | ((xb - hi).abs() < 1e-14)
    assert bool(on_face.any(dim=1).all()) and bool(prob.domain.contains(xb).all())
    torch.testing.assert_close(gb, prob.solution(xb), rtol=0, atol=1e-15)
    assert float(prob.boundary_loss(xb, prob.exact)) == 0.0
    assert float(prob.boundary_loss(xb, lambda z: prob.exact(z) + 0.5)) == pytest.approx(0.25)


def test_exp_nd_forcing_is_the_closed_form_of_the_notes() -> None:
    # f = (20 d - 400 |x|^2) exp(-10 |x|^2), written out independently of the module
    for d in (2, 7, 10):
        prob = pde.make("exp-nd", d=d)
        x = prob.domain.uniform(50, generator=torch.Generator().manual_seed(d))
        r2 = (x**2).sum(1)
        torch.testing.assert_close(prob.forcing(x), (20 * d - 400 * r2) * torch.exp(-10 * r2))
        assert prob.dim == d and prob.domain == Box.cube(d, -1.0, 1.0)
    assert pde.make("exp5d").dim == 5 and pde.make("exp10d").name == "exp10d"


def test_burgers_residual_initial_and_boundary_data() -> None:
    prob = pde.make("burgers")
    assert prob.exact is None and prob.time_dependent and prob.spatial_axes == (0,)
    assert prob.domain == Box((-1.0, 0.0), (1.0, 1.0))
    nu = 0.01 / math.pi
    assert prob.params["nu"] == pytest.approx(nu, rel=1e-15)
    g = torch.Generator().manual_seed(2)
    x = prob.domain.uniform(300, generator=g)
    # u = exp(-t) sin(pi x): u_t = -u, u_x = pi exp(-t) cos(pi x), u_xx = -pi^2 u
    u = lambda z: torch.exp(-z[:, 1]) * torch.sin(math.pi * z[:, 0])  # noqa: E731
    U = u(x)
    expected = (
        -U
        + U * math.pi * torch.exp(-x[:, 1]) * torch.cos(math.pi * x[:, 0])
        + (nu * math.pi**2 * U)
    )
    torch.testing.assert_close(prob.residual(x, u), expected, rtol=0, atol=1e-12)

    x0, u0 = prob.initial_data(100, generator=g)
    assert bool((x0[:, 1] == 0).all())
    torch.testing.assert_close(u0, -torch.sin(math.pi * x0[:, 0]), rtol=0, atol=0)
    assert float(prob.initial_loss(x0, lambda z: -torch.sin(math.pi * z[:, 0]))) == 0.0

    xb, gb = prob.boundary_data(200, generator=g)
    assert bool((xb[:, 0].abs() == 1).all()) and bool((gb == 0).all())
    assert 0 < float(xb[:, 1].min()) < 0.1 and 0.9 < float(xb[:, 1].max()) < 1
    with pytest.raises(ValueError, match=r"no exact solution"):
        prob.solution(x)
    with pytest.raises(ValueError, match=r"'burgers' are not on the boundary"):
        prob.boundary_residual(x0[:3] * 0.5, u)  # interior points
    with pytest.raises(ValueError, match=r"'burgers' are not on the initial"):
        prob.initial_residual(xb[:3], u)


# -- the derivative helper --------------------------------------------------------------------
def _analytic(d: int) -> tuple:
    """u = prod_i sin(a_i x_i) + sum_i c_i x_i^3 with exact gradient and second derivatives."""
    a = 1.0 + 0.5 * torch.arange(d, dtype=F64)
    c = 0.3 - 0.1 * torch.arange(d, dtype=F64)

    def u(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(a * x).prod(1) + (c * x**3).sum(1)

    def grad(x: torch.Tensor) -> torch.Tensor:
        S, C = torch.sin(a * x), torch.cos(a * x)  # (n, d)
        others = torch.stack([S[:, [j for j in range(d) if j != i]].prod(1) for i in range(d)], 1)
        return a * C * others + 3 * c * x**2

    def hess_diag(x: torch.Tensor) -> torch.Tensor:
        return -(a**2) * torch.sin(a * x).prod(1, keepdim=True) + 6 * c * x

    return u, grad, hess_diag


@pytest.mark.parametrize("d", [1, 2, 5])
def test_derivatives_match_exact_derivatives_in_float64(d: int) -> None:
    u, grad, hess_diag = _analytic(d)
    x = 2 * torch.rand(400, d, generator=torch.Generator().manual_seed(d), dtype=F64) - 1
    D = derivatives(u, x)
    # float64 rounding of O(1) quantities: 1e-12 is ~1e4 ulps
    torch.testing.assert_close(D.u, u(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.grad, grad(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.hess_diag, hess_diag(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(D.laplacian, hess_diag(x).sum(1), rtol=0, atol=1e-12)
    # an (n, 1) output is the same function
    D1 = derivatives(lambda z: u(z)[:, None], x, order=1)
    assert D1.hess_diag is None
    torch.testing.assert_close(D1.grad, grad(x), rtol=0, atol=1e-12)
    assert derivatives(u, x, order=0).grad is None


def test_second_axes_subset_linear_and_constant_functions() -> None:
    u, _, hess_diag = _analytic(3)
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    D = derivatives(u, x, second_axes=(0, 2))
    H = hess_diag(x)
    torch.testing.assert_close(D.hess_diag[:, [0, 2]], H[:, [0, 2]], rtol=0, atol=1e-12)
    assert bool((D.hess_diag[:, 1] == 0).all())
    torch.testing.assert_close(D.laplacian, H[:, 0] + H[:, 2], rtol=0, atol=1e-12)
    a = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    L = derivatives(lambda z: z @ a, x)  # linear: zero second derivatives, no autograd error
    torch.testing.assert_close(L.grad, a.expand(50, 3))
    assert bool((L.hess_diag == 0).all())
    C = derivatives(lambda z: torch.ones(z.shape[0], dtype=F64), x)  # independent of x
    assert bool((C.grad == 0).all()) and bool((C.hess_diag == 0).all())


def test_derivatives_keep_the_graph_for_parameters_and_points() -> None:
    d, n = 4, 30
    w = torch.tensor(1.5, dtype=F64, requires_grad=True)
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(4), dtype=F64)
    # u = w sum x_i^2: lap u = 2 d w, so d(sum_j lap u(x_j))/dw = 2 d n
    D = derivatives(lambda z: w * (z**2).sum(1), x)
    (dw,) = torch.autograd.grad(D.laplacian.sum(), w)
    assert float(dw) == pytest.approx(2 * d * n, rel=1e-14)
    # u = sum x_i^4: lap u = 12 sum x_i^2, whose gradient in x is 24 x (x given requiring grad)
    xr = x.clone().requires_grad_(True)
    D = derivatives(lambda z: (z**4).sum(1), xr)
    (dx,) = torch.autograd.grad(D.laplacian.sum(), xr)
    torch.testing.assert_close(dx, 24 * x, rtol=1e-14, atol=0)


def test_residual_is_differentiable_in_the_network_weights() -> None:
    prob = pde.make("poisson1d-hf", case="P4")
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    net = net.to(F64)
    x = prob.domain.uniform(64, generator=torch.Generator().manual_seed(5))
    loss = prob.residual(x, net).square().mean()  # (n, 1) output accepted
    loss.backward()
    # u'' does not see the output bias (it is not in the residual's graph); every other weight
    # moves the residual
    *inner, out_bias = list(net.parameters())
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in inner)
    assert out_bias.grad is None
    # under torch.no_grad() (an evaluation loop) the residual is the same, not u'' = 0
    with torch.no_grad():
        r_eval = prob.residual(x, net)
    torch.testing.assert_close(r_eval, prob.residual(x, net).detach(), rtol=0, atol=0)
    # float32 points give a float32 residual, and float32 boundary points count as on the
    # boundary (2pi rounds differently in float32)
    net = net.float()
    assert prob.residual(x.float(), net).dtype == torch.float32
    xb, _ = prob.boundary_data(4, dtype=torch.float32)
    assert prob.boundary_residual(xb, net).dtype == torch.float32
    xb, _ = pde.make("poisson1d-hf").boundary_data(4, dtype=torch.float32)  # [0, 2pi]
    assert pde.make("poisson1d-hf").boundary_residual(xb, prob.exact).shape == (4,)


# -- errors that name the problem -------------------------------------------------------------
def test_bad_inputs_are_clear_errors_naming_the_problem() -> None:
    prob = pde.make("peak2d")
    x = prob.domain.uniform(10, generator=torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match=r"'peak2d'.*shape \(10, 2\).*\(10,\) or \(10, 1\)"):
        prob.residual(x, lambda z: z)  # (n, 2): one value per point expected
    with pytest.raises(TypeError, match=r"'peak2d'.*must return a torch.Tensor"):
        prob.residual(x, lambda z: z.tolist())
    with pytest.raises(NonFiniteError, match=r"'peak2d': u_fn returned NaN .* at 10 of 10"):
        prob.residual(x, lambda z: z[:, 0] * float("nan"))
    with pytest.raises(NonFiniteError, match=r"'peak2d': u_fn returned NaN .* 1 of 10 .* row 3"):
        prob.residual(x, lambda z: z[:, 0] / (torch.arange(10) != 3))  # inf at row 3 only
    # a finite u whose derivatives are not: sqrt|x - x_3| has an infinite slope at row 3
    with pytest.raises(NonFiniteError, match=r"'peak2d': the residual is NaN .* 1 of 10 .* row 3"):
        prob.residual(x, lambda z: (z[:, 0] - x[3, 0]).abs().sqrt())
    outside = x.clone()
    outside[4, 1] = 1.5
    with pytest.raises(ValueError, match=r"1 of 10 points of problem 'peak2d' lie outside"):
        prob.residual(outside, prob.exact)
    with pytest.raises(ValueError, match=r"'peak2d'.*shape \(n, 2\)"):
        prob.residual(torch.zeros(5, 3, dtype=F64), prob.exact)
    with pytest.raises(TypeError, match=r"'peak2d'"):
        prob.residual([[0.0, 0.0]], prob.exact)
    with pytest.raises(ValueError, match=r"'peak2d' are not on the boundary"):
        prob.boundary_loss(x, prob.exact)
    with pytest.raises(ValueError, match=r"'peak2d' is steady"):
        prob.initial_data(5)


def test_bad_definitions_are_clear_errors_naming_the_problem() -> None:
    box = Box.cube(2)
    eq = lambda x, D: D.laplacian  # noqa: E731
    with pytest.raises(TypeError, match=r"'mine': domain must be a neuralsolve.domain.Box"):
        PDEProblem("mine", ((0, 1), (0, 1)), eq, exact=lambda x: x[:, 0])
    with pytest.raises(ValueError, match=r"'mine': give the boundary values"):
        PDEProblem("mine", box, eq)
    with pytest.raises(TypeError, match=r"'mine': exact must be a callable"):
        PDEProblem("mine", box, eq, exact=1.0)
    with pytest.raises(ValueError, match=r"'mine': a time-dependent problem needs its initial"):
        PDEProblem("mine", box, eq, dirichlet=lambda x: x[:, 0], time_dependent=True)
    bad = PDEProblem("mine", box, lambda x, D: D.grad, exact=lambda x: x[:, 0])
    x = box.uniform(7)
    with pytest.raises(ValueError, match=r"'mine': its equation returned \(7, 2\)"):
        bad.residual(x, bad.exact)


# -- the registry -----------------------------------------------------------------------------
def test_the_registry_lists_every_builtin_and_makes_fresh_problems() -> None:
    names = {
        "peak2d",
        "two-peak2d",
        "exp-nd",
        "exp5d",
        "exp10d",
        "poisson1d-hf",
        "poisson2d-hf",
        "burgers",
        "allen-cahn",
    }
    docs = pde.available()
    assert set(docs) == names and all(isinstance(s, str) and s for s in docs.values())
    for name in names:
        a, b = pde.make(name), pde.make(name)
        assert isinstance(a, PDEProblem) and a.name == name and a.doc
        assert a is not b and a.params == b.params and a.params is not b.params
    a = pde.make("exp-nd", d=3)
    a.params["d"] = 99
    assert pde.make("exp-nd", d=3).params["d"] == 3
    # the facade's path
    assert ns.datasets.pde.make("peak2d").domain == Box.cube(2, -1.0, 1.0)


def test_unknown_names_and_parameters_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown PDE problem 'peak3d'; available: peak2d, "):
        pde.make("peak3d")
    with pytest.raises(
        TypeError, match=r"'peak2d' got unknown parameter\(s\) kk; valid: k, center"
    ):
        pde.make("peak2d", kk=3)
    with pytest.raises(TypeError, match=r"'exp5d' got unknown parameter\(s\) d; valid: k"):
        pde.make("exp5d", d=3)
    with pytest.raises(ValueError, match=r"\bd\b"):
        pde.make("exp-nd", d=11)
    with pytest.raises(ValueError, match=r"case must be .*'P5'"):
        pde.make("poisson1d-hf", case="P9")
    with pytest.raises(ValueError, match=r"nu must be a finite positive number"):
        pde.make("burgers", nu=0.0)


@pytest.mark.parametrize("name", sorted(pde.available()))
def test_every_problem_takes_a_network_end_to_end(name: str) -> None:
    # what a PINN step does with any registered problem: interior residual, boundary (and
    # initial) loss, one backward pass reaching the first layer
    prob = pde.make(name)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(prob.dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).to(F64)
    g = torch.Generator().manual_seed(7)
    x = prob.domain.uniform(32, generator=g)
    xb, _ = prob.boundary_data(16, generator=g)
    loss = prob.residual(x, net).square().mean() + prob.boundary_loss(xb, net)
    if prob.time_dependent:
        x0, _ = prob.initial_data(16, generator=g)
        loss = loss + prob.initial_loss(x0, net)
    loss.backward()
    assert bool(torch.isfinite(loss)) and float(loss.detach()) > 0
    assert net[0].weight.grad is not None and bool(net[0].weight.grad.abs().sum() > 0)
