"""The PINN networks: shapes, dtypes, seeded weights, the Fourier map, smooth second derivatives."""

from __future__ import annotations

import math

import pytest
import torch

from neuralsolve.solvers.pinn.networks import MLP, FourierMLP


@pytest.mark.parametrize("spec", [MLP(width=8, depth=3), FourierMLP(width=8, depth=2, features=5)])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_built_networks_map_points_to_values(spec: MLP, dim: int) -> None:
    net = spec.build(dim, dtype=torch.float64)
    x = torch.rand(11, dim, dtype=torch.float64)
    y = net(x)
    assert y.shape == (11, 1) and y.dtype == torch.float64
    again = spec.build(dim, dtype=torch.float64)  # the same seed, the same weights
    torch.testing.assert_close(again(x), y, rtol=0, atol=0)
    assert isinstance(spec.build(dim, out_dim=3)(x.float()), torch.Tensor)


def test_mlp_has_the_stated_layers_and_initialisation() -> None:
    net = MLP(width=32, depth=6).build(2)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(32, 2)] + [(32, 32)] * 5 + [(1, 32)]
    assert all(bool((m.bias == 0).all()) for m in linears)
    # Xavier-normal: std sqrt(2 / (fan_in + fan_out)); 1024 entries, 15% is > 4 standard errors
    std = float(linears[2].weight.detach().std())
    assert abs(std - math.sqrt(2 / 64)) < 0.15 * math.sqrt(2 / 64)


def test_fourier_features_are_the_stated_sines_and_cosines() -> None:
    spec = FourierMLP(width=4, depth=1, features=3, sigma=2.0, seed=7)
    net = spec.build(2, dtype=torch.float64)
    B = net[0].B
    assert B.shape == (3, 2)
    x = torch.rand(5, 2, dtype=torch.float64)
    z = 2 * math.pi * x @ B.T
    torch.testing.assert_close(net[0](x), torch.cat([torch.sin(z), torch.cos(z)], dim=1))
    assert "0.B" in net.state_dict()  # B travels with the weights


def test_second_derivatives_are_smooth_and_match_finite_differences() -> None:
    net = MLP(width=16, depth=3).build(1, dtype=torch.float64)
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None].requires_grad_(True)
    (du,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x)
    h = 1e-4
    with torch.no_grad():
        fd = (net(x + h) - 2 * net(x) + net(x - h)) / h**2
    # central differences: O(h^2) truncation plus O(eps / h^2) rounding, both below 1e-6 here
    torch.testing.assert_close(d2u, fd, rtol=0, atol=1e-5)


def test_bad_specifications_are_refused() -> None:
    with pytest.raises(ValueError, match="width"):
        MLP(width=0)
    with pytest.raises(ValueError, match="activation must be"):
        MLP(activation="relu")
    with pytest.raises(ValueError, match="sigma"):
        FourierMLP(sigma=0.0)
    with pytest.raises(ValueError, match="in_dim"):
        MLP().build(0)
