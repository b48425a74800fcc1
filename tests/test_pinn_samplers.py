"""The PINN samplers (neuralsolve.solvers.pinn): the bounded flow's invertibility and density,
every sampler's count and containment, concentration of RAD and AAS where the residual is
large, state_dict round trips and bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from neuralsolve.domain import Box
from neuralsolve.errors import NonFiniteError
from neuralsolve.solvers.pinn import (
    AASSampler,
    BoundedFlow,
    aas_flow_loss,
    available_samplers,
    make_sampler,
)
from neuralsolve.solvers.pinn.flow import _logistic_log_prob

ALL = ["uniform", "uniform-resample", "sobol", "lhs", "rar-g", "rar-d", "rad", "aas"]
# small settings so that each test runs in about a second on 2 cores
FAST: dict[str, dict] = {
    "rar-g": {"n_candidates": 500, "m": 7},
    "rar-d": {"n_candidates": 500, "m": 7},
    "rad": {"n_candidates": 500},
    "aas": {"n_candidates": 300, "steps": 5},
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def skewed_box(d: int) -> Box:
    """A box that is not the unit cube, with different widths per axis."""
    return Box(tuple(-1.0 - 0.5 * i for i in range(d)), tuple(2.0 + i for i in range(d)))


def random_flow(box: Box, seed: int = 1, **kw) -> BoundedFlow:
    return BoundedFlow(box, identity_init=False, generator=gen(seed), **kw)


def peaked(center: torch.Tensor, width: float = 0.1):
    def residual(X: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((X - center) ** 2).sum(dim=1) / (2 * width**2))

    return residual


def test_registry_lists_every_method() -> None:
    assert available_samplers() == ALL


# -- the flow ------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 5])
def test_flow_is_invertible(d: int) -> None:
    box = skewed_box(d)
    flow = random_flow(box)
    # float64, base side: z -> x -> z. z ~ N(0, 1) keeps |z| < 6, where 1 - sigmoid(z) > 2e-3
    # and the round trip loses at most ~1e-13 (the logit's conditioning, 1 / (u (1 - u))).
    z = torch.randn(50, d, generator=gen(0), dtype=torch.float64)
    x, logdet = flow(z)
    z_back, logdet_inv = flow.inverse(x)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-10)
    torch.testing.assert_close(logdet_inv, -logdet, rtol=0, atol=1e-10)
    # float32, box side: x -> z -> x is well conditioned (u is bounded); the base side is not in
    # float32 (sigmoid(5) keeps 1 - u to ~1e-5 relative), so the 1e-6 check is made on x.
    flow32 = random_flow(box).float()
    x32 = box.uniform(50, generator=gen(2), dtype=torch.float32)
    z32, _ = flow32.inverse(x32)
    x32_back, _ = flow32(z32)
    torch.testing.assert_close(x32_back, x32, rtol=0, atol=1e-6 * 4)  # box widths up to 7


@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_prob_is_the_change_of_variables(d: int) -> None:
    box = skewed_box(d)
    flow = random_flow(box)
    for z in torch.randn(3, d, generator=gen(3), dtype=torch.float64):
        J = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z)  # (d, d)
        sign, logabsdet = torch.linalg.slogdet(J)
        assert sign != 0
        x, logdet = flow(z[None])
        torch.testing.assert_close(logdet[0], logabsdet, rtol=0, atol=1e-10)
        expected = _logistic_log_prob(z[None])[0] - logabsdet
        torch.testing.assert_close(flow.log_prob(x)[0], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("d", [2, 5])
def test_density_integrates_to_one_on_the_box(d: int) -> None:
    box = skewed_box(d)
    flow = random_flow(box, seed=4)
    n = 200_000
    with torch.no_grad():
        p = torch.exp(flow.log_prob(box.uniform(n, generator=gen(5))))  # (n,)
    vals = box.volume * p  # integral = E_U[|Ω| p]
    mean, se = float(vals.mean()), float(vals.std() / math.sqrt(n))
    assert float(vals.std()) > 0.2, "the random flow should be far from uniform"
    assert abs(mean - 1.0) < 3 * se, (mean, se)


def test_identity_flow_is_uniform_on_the_box() -> None:
    box = skewed_box(3)
    flow = BoundedFlow(box)
    x = box.uniform(100, generator=gen(0))
    torch.testing.assert_close(
        flow.log_prob(x).detach(),
        torch.full((100,), -math.log(box.volume), dtype=torch.float64),
        rtol=0,
        atol=1e-12,
    )


def test_flow_samples_follow_its_density() -> None:
    # A 1-D random flow: the samples' histogram matches the density's bin masses (chi-square
    # bound: 20 bins, 40 000 samples; the 0.999 quantile of chi2(19) is 43.8).
    box = Box((-1.0,), (2.0,))
    flow = random_flow(box, seed=7)
    n, bins = 40_000, 20
    x = flow.sample(n, generator=gen(8))
    counts = torch.histc(x[:, 0], bins=bins, min=-1.0, max=2.0)
    fine = torch.linspace(-1.0, 2.0, 20 * bins + 1, dtype=torch.float64)
    mid = (fine[:-1] + fine[1:]) / 2
    with torch.no_grad():
        mass = (torch.exp(flow.log_prob(mid[:, None])) * (3.0 / (20 * bins))).reshape(bins, 20)
    expected = n * mass.sum(dim=1) / mass.sum()
    chi2 = float(((counts.double() - expected) ** 2 / expected).sum())
    assert chi2 < 43.8, chi2


# -- every sampler --------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("name", ALL)
def test_every_sampler_returns_its_points_inside_the_box(name: str, d: int) -> None:
    box = skewed_box(d)
    n, rounds = 40, 2
    sampler = make_sampler(name, box, n, **FAST.get(name, {}))
    g = gen(0)
    X = sampler.initial(generator=g)
    assert X.shape == (n, d) and X.dtype == torch.float64
    box.check_points(X)
    residual = peaked(torch.zeros(d, dtype=torch.float64))
    for k in range(1, rounds + 1):
        X = sampler.update(X, residual, generator=g)
        grows = FAST[name]["m"] if name in ("rar-g", "rar-d") else 0
        assert X.shape == (n + k * grows, d)
        box.check_points(X)
    assert sampler.rounds == rounds


@pytest.mark.parametrize("name", ["uniform", "sobol", "lhs"])
def test_fixed_samplers_keep_their_points(name: str) -> None:
    sampler = make_sampler(name, skewed_box(2), 16)
    X = sampler.initial(generator=gen(0))
    assert torch.equal(sampler.update(X, lambda P: P[:, 0], generator=gen(1)), X)


@pytest.mark.parametrize("name", ["uniform-resample", "sobol", "lhs"])
def test_resampling_samplers_draw_new_points(name: str) -> None:
    options = {} if name == "uniform-resample" else {"resample": True}
    sampler = make_sampler(name, skewed_box(2), 16, **options)
    X = sampler.initial(generator=gen(0))
    assert not torch.equal(sampler.update(X, lambda P: P[:, 0], generator=gen(1)), X)


def test_lhs_puts_one_point_in_each_stratum() -> None:
    box, n = skewed_box(3), 50
    U = box.to_unit(make_sampler("lhs", box, n).initial(generator=gen(0)))
    for axis in range(3):
        strata = torch.floor(U[:, axis] * n).long()
        assert sorted(strata.tolist()) == list(range(n))


def test_sobol_is_seeded_by_the_generator() -> None:
    box = skewed_box(2)
    a = make_sampler("sobol", box, 32).initial(generator=gen(3))
    b = make_sampler("sobol", box, 32).initial(generator=gen(3))
    c = make_sampler("sobol", box, 32).initial(generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a scrambled Sobol set of 32 points puts exactly 8 in each quarter of axis 0
    U = box.to_unit(a)
    assert torch.bincount(torch.floor(U[:, 0] * 4).long(), minlength=4).tolist() == [8] * 4


def test_rar_g_adds_the_points_of_largest_residual() -> None:
    box = Box.cube(2, -1.0, 1.0)
    residual = lambda X: X[:, 0] + X[:, 1]  # signed: |r| is largest at (1, 1), (-1, -1)  # noqa: E731
    sampler = make_sampler("rar-g", box, 10, n_candidates=1000, m=5)
    X = sampler.initial(generator=gen(0))
    Y = sampler.update(X, residual, generator=gen(1))
    assert torch.equal(Y[:10], X)
    # the 5 added points are the top 5 of the 1000 candidates the same generator draws
    candidates = box.uniform(1000, generator=gen(1))
    top = torch.topk(residual(candidates).abs(), 5).indices
    assert torch.equal(Y[10:], candidates[top])


# -- concentration where the residual is large ----------------------------------------------
def _mean_distance(X: torch.Tensor, center: torch.Tensor) -> float:
    return float((X - center).norm(dim=1).mean())


def test_rad_and_rar_d_concentrate_at_the_residual_peak() -> None:
    box = Box.cube(2, -1.0, 1.0)
    center = torch.tensor([0.5, 0.5], dtype=torch.float64)
    residual = peaked(center)
    uniform = _mean_distance(box.uniform(2000, generator=gen(0)), center)  # about 1.0
    rad = make_sampler("rad", box, 500, n_candidates=20_000)
    X = rad.update(rad.initial(generator=gen(1)), residual, generator=gen(2))
    assert _mean_distance(X, center) < 0.6 * uniform
    rard = make_sampler("rar-d", box, 100, n_candidates=20_000, m=100)
    Y = rard.update(rard.initial(generator=gen(1)), residual, generator=gen(2))
    assert _mean_distance(Y[100:], center) < 0.4 * uniform  # k=2, c=0: only near the peak


def test_aas_concentrates_at_the_residual_peak_after_a_few_rounds() -> None:
    box = Box.cube(2, -1.0, 1.0)
    center = torch.tensor([0.5, 0.5], dtype=torch.float64)
    residual = peaked(center, width=0.2)
    # r^2 here is a Gaussian of std 0.14 about the peak: the density AAS is after (β -> 0) has
    # mean distance 0.14 sqrt(π/2) = 0.18 to it; 3 rounds of 30 steps get to about 0.2.
    sampler = make_sampler("aas", box, 400, n_candidates=1000, steps=30, lr=1e-2, uniform_share=0.0)
    g = gen(0)
    X = sampler.initial(generator=g)
    uniform = _mean_distance(X, center)  # round 0 is a uniform sample, about 1.0
    assert uniform > 0.9
    for _ in range(3):
        X = sampler.update(X, residual, generator=g)
    assert _mean_distance(X, center) < 0.5 * uniform
    # and the density is higher at the peak than in the far corner
    logp = sampler.log_prob(torch.tensor([[0.5, 0.5], [-0.9, -0.9]], dtype=torch.float64))
    assert float(logp[0] - logp[1]) > 1.0


def test_aas_keeps_a_uniform_share_of_each_round() -> None:
    box = Box.cube(2, -1.0, 1.0)
    center = torch.tensor([0.5, 0.5], dtype=torch.float64)
    sampler = make_sampler(
        "aas", box, 400, n_candidates=1000, steps=30, lr=1e-2, uniform_share=0.25
    )
    g = gen(0)
    X = sampler.initial(generator=g)
    for _ in range(3):
        X = sampler.update(X, peaked(center, width=0.2), generator=g)
    assert X.shape == (400, 2) and bool(box.contains(X).all())
    flow_part, uniform_part = X[:300], X[300:]
    assert _mean_distance(flow_part, center) < 0.6
    assert _mean_distance(uniform_part, center) > 0.9  # about 1.0 for a uniform sample


def test_aas_penalty_is_the_squared_density_gradient() -> None:
    # With ρ = 0 and a one-hot weight, loss = β |∇_u q(u_j)|^2 (the penalty is subtracted from J): compare with central
    # differences in float64 (step 1e-5: truncation ~1e-10, rounding ~1e-11, relative).
    box = skewed_box(2)
    flow = random_flow(box, seed=2)
    U = torch.rand(4, 2, generator=gen(0), dtype=torch.float64) * 0.8 + 0.1

    def q(u: torch.Tensor) -> torch.Tensor:
        return torch.exp(flow.log_prob(box.from_unit(u))) * box.volume

    h = 1e-5
    with torch.no_grad():
        for j in range(4):
            grad = torch.stack(
                [
                    (q(U[j : j + 1] + h * e) - q(U[j : j + 1] - h * e))[0] / (2 * h)
                    for e in torch.eye(2, dtype=torch.float64)
                ]
            )
            with torch.enable_grad():
                w = torch.zeros(4, dtype=torch.float64)
                w[j] = 1.0
                loss = aas_flow_loss(flow, U, torch.zeros(4, dtype=torch.float64), w, beta=2.0)
            torch.testing.assert_close(loss, 2.0 * grad.square().sum(), rtol=1e-6, atol=0)


def test_aas_gain_estimates_the_expected_residual() -> None:
    # β = 0, uniform proposal with weights 1/M: -loss estimates E_q[ρ]; with ρ = 1 that is the
    # flow's total mass, 1 (within 3 standard errors).
    box = skewed_box(2)
    flow = random_flow(box, seed=3)
    M = 100_000
    U = torch.rand(M, 2, generator=gen(0), dtype=torch.float64)
    ones = torch.ones(M, dtype=torch.float64)
    with torch.no_grad():
        q = torch.exp(flow.log_prob(box.from_unit(U))) * box.volume
    est = -float(aas_flow_loss(flow, U, ones, ones / M, beta=0.0).detach())
    assert abs(est - 1.0) < 3 * float(q.std()) / math.sqrt(M)
    assert est == pytest.approx(float(q.mean()), rel=1e-12)


# -- state_dict ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_gives_the_same_next_round(name: str) -> None:
    box = skewed_box(2)
    residual = peaked(torch.zeros(2, dtype=torch.float64))
    original = make_sampler(name, box, 30, **FAST.get(name, {}))
    X = original.initial(generator=gen(0))
    X = original.update(X, residual, generator=gen(1))  # AAS: Adam has state now
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # a checkpoint loads without pickled code
    extra = {"seed": 9} if name == "aas" else {}  # a different flow before loading
    restored = make_sampler(name, box, 30, **FAST.get(name, {}), **extra)
    restored.load_state_dict(state)
    assert restored.rounds == original.rounds == 1
    a = original.update(X, residual, generator=gen(2))
    b = restored.update(X, residual, generator=gen(2))
    assert torch.equal(a, b)


def test_aas_state_dict_is_a_copy() -> None:
    sampler = make_sampler("aas", skewed_box(2), 30, **FAST["aas"])
    residual = peaked(torch.zeros(2, dtype=torch.float64))
    X = sampler.update(sampler.initial(generator=gen(0)), residual, generator=gen(1))
    state = sampler.state_dict()
    before = {k: v.clone() for k, v in state["flow"].items()}
    sampler.update(X, residual, generator=gen(2))
    assert all(torch.equal(before[k], state["flow"][k]) for k in before)


def test_load_state_dict_refuses_another_samplers_state() -> None:
    box = skewed_box(2)
    state = make_sampler("rad", box, 30).state_dict()
    with pytest.raises(ValueError, match="name='rad'.*name='rar-d'"):
        make_sampler("rar-d", box, 30).load_state_dict(state)
    with pytest.raises(ValueError, match="n_points=30.*n_points=31"):
        make_sampler("rad", box, 31).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks the key 'flow'"):
        AASSampler(box, 30).load_state_dict(
            make_sampler("uniform", box, 30).state_dict() | {"name": "aas"}
        )


# -- bad input -------------------------------------------------------------------------------
def test_unknown_sampler_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'rar'; available: uniform, .*rad, aas"):
        make_sampler("rar", Box.cube(2), 10)


@pytest.mark.parametrize("n", [0, -3])
@pytest.mark.parametrize("name", ALL)
def test_n_points_below_one_is_refused(name: str, n: int) -> None:
    with pytest.raises(ValueError, match="n_points must be a positive integer"):
        make_sampler(name, Box.cube(2), n)


def test_bad_options_and_domain() -> None:
    with pytest.raises(TypeError, match="takes no option 'k'; its options: .*resample"):
        make_sampler("sobol", Box.cube(2), 8, k=2)
    with pytest.raises(TypeError, match="takes no option 'resample'"):
        make_sampler("uniform", Box.cube(2), 8, resample=True)  # that is uniform-resample
    with pytest.raises(TypeError, match="domain must be a neuralsolve.domain.Box"):
        make_sampler("uniform", [(0.0, 1.0)], 8)
    with pytest.raises(ValueError, match="without replacement: raise n_candidates"):
        make_sampler("rad", Box.cube(2), 100, n_candidates=50)
    with pytest.raises(ValueError, match="mix"):
        make_sampler("aas", Box.cube(2), 8, mix=1.0)
    with pytest.raises(ValueError, match="uniform_share"):
        make_sampler("aas", Box.cube(2), 8, uniform_share=1.5)


@pytest.mark.parametrize("name", ["rar-g", "rar-d", "rad", "aas"])
def test_bad_residuals_are_refused_clearly(name: str) -> None:
    box = Box.cube(2, -1.0, 1.0)
    sampler = make_sampler(name, box, 20, **FAST[name])
    X = sampler.initial(generator=gen(0))
    with pytest.raises(ValueError, match=r"shape \(\d+, 1\) for \d+ points.*reshape\(-1\)"):
        sampler.update(X, lambda P: P[:, :1], generator=gen(1))
    with pytest.raises(NonFiniteError, match="non-finite"):
        sampler.update(X, lambda P: torch.where(P[:, 0] > 0, torch.nan, 1.0), generator=gen(1))
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        sampler.update(X, lambda P: P[:, 0].tolist(), generator=gen(1))
    with pytest.raises(TypeError, match="residual_fn must be a callable"):
        sampler.update(X, None, generator=gen(1))  # type: ignore[arg-type]
    assert sampler.rounds == 0  # a refused round does not count


def test_points_outside_the_box_are_refused() -> None:
    box = Box.cube(2)
    sampler = make_sampler("uniform", box, 4)
    with pytest.raises(ValueError, match="outside the box"):
        sampler.update(torch.full((4, 2), 2.0, dtype=torch.float64), lambda P: P[:, 0])


def test_rad_with_c_zero_and_too_few_nonzero_residuals_says_what_to_do() -> None:
    box = Box.cube(1)
    sampler = make_sampler("rad", box, 50, n_candidates=100, c=0.0)
    X = sampler.initial(generator=gen(0))
    with pytest.raises(ValueError, match="nonzero probability.*pass c > 0"):
        sampler.update(X, lambda P: (P[:, 0] > 0.9).double(), generator=gen(1))
    # with c = 1 (the default) every candidate stays possible
    assert make_sampler("rad", box, 50, n_candidates=100).update(
        X, lambda P: (P[:, 0] > 0.9).double(), generator=gen(1)
    ).shape == (50, 1)
