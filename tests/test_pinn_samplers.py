"""The PINN samplers (neuralsolve.solvers.pinn): the bounded flow's invertibility and density."""

from __future__ import annotations

import math

import pytest
import torch

from neuralsolve.domain import Box
from neuralsolve.solvers.pinn import BoundedFlow
from neuralsolve.solvers.pinn.flow import _logistic_log_prob


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def skewed_box(d: int) -> Box:
    """A box that is not the unit cube, with different widths per axis."""
    return Box(tuple(-1.0 - 0.5 * i for i in range(d)), tuple(2.0 + i for i in range(d)))


def random_flow(box: Box, seed: int = 1, **kw) -> BoundedFlow:
    return BoundedFlow(box, identity_init=False, generator=gen(seed), **kw)


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
