"""The networks a PINN fits: a plain MLP and an MLP on random Fourier features.

Both are *specifications* (frozen dataclasses) that :meth:`build` into a ``torch.nn.Module`` once
the problem's dimension is known, so that ``PINN(problem, net=MLP(width=32, depth=6))`` reads as
the user thinks of it. The built module maps points ``(n, d)`` to values ``(n, out)``.

* :class:`MLP`: ``depth`` hidden layers of ``width`` units, the activation between them, a
  linear output; Xavier-normal weights and zero biases (Glorot & Bengio 2010), the usual PINN
  initialisation (Raissi, Perdikaris & Karniadakis 2019).
* :class:`FourierMLP`: the same MLP on ``gamma(x) = [sin(2 pi B x), cos(2 pi B x)]`` with a fixed
  Gaussian ``B`` (``features x d``, entries ``N(0, sigma^2)``): Tancik et al., "Fourier features
  let networks learn high frequency functions in low dimensional domains", NeurIPS 2020; Wang,
  Wang & Perdikaris, "On the eigenvector bias of Fourier feature networks", CMAME 2021. ``sigma``
  sets the frequencies the network reaches easily; ``B`` is drawn from ``seed`` and saved with
  the weights (a buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neuralsolve.checks import check_choice, check_positive_float, check_positive_int

__all__ = ["ACTIVATIONS", "MLP", "FourierMLP"]

ACTIVATIONS = {
    "tanh": torch.nn.Tanh,
    "sin": None,  # sin(x): SIREN-like smooth periodic activation, built below
    "gelu": torch.nn.GELU,
    "silu": torch.nn.SiLU,
    "softplus": torch.nn.Softplus,
}


class _Sin(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def _activation(name: str) -> torch.nn.Module:
    factory = ACTIVATIONS[name]
    return _Sin() if factory is None else factory()


def _mlp(in_dim: int, out_dim: int, width: int, depth: int, activation: str) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    size = in_dim
    for _ in range(depth):
        layers += [torch.nn.Linear(size, width), _activation(activation)]
        size = width
    layers.append(torch.nn.Linear(size, out_dim))
    for layer in layers:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True)
class MLP:
    """A fully connected network: ``depth`` hidden layers of ``width`` units.

    Parameters
    ----------
    width : int
        Units per hidden layer.
    depth : int
        Hidden layers (the DAS/AAS papers' 6 x 32 tanh network is ``MLP(32, 6)``).
    activation : {"tanh", "sin", "gelu", "silu", "softplus"}
        Smooth activations only: a PINN differentiates the network twice.
    seed : int
        Seeds the initial weights (:meth:`build` draws them from its own generator state).
    """

    width: int = 32
    depth: int = 6
    activation: str = "tanh"
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("width", self.width)
        check_positive_int("depth", self.depth)
        check_choice("activation", self.activation, ACTIVATIONS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")

    def build(
        self,
        in_dim: int,
        out_dim: int = 1,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.nn.Module:
        """The module for ``in_dim``-D points and ``out_dim`` outputs (weights drawn from
        ``seed``, leaving torch's global generator as it was)."""
        check_positive_int("in_dim", in_dim)
        check_positive_int("out_dim", out_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._layers(in_dim, out_dim)
        return net.to(dtype=dtype, device=device)

    def _layers(self, in_dim: int, out_dim: int) -> torch.nn.Sequential:
        return _mlp(in_dim, out_dim, self.width, self.depth, self.activation)


class FourierFeatures(torch.nn.Module):
    """``x -> [sin(2 pi x B^T), cos(2 pi x B^T)]`` with a fixed ``B`` (a buffer)."""

    def __init__(self, B: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("B", B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * x @ self.B.T  # (n, features)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


@dataclass(frozen=True)
class FourierMLP(MLP):
    """An :class:`MLP` on random Fourier features of the input (module notes).

    Parameters
    ----------
    features : int
        Rows of ``B``; the MLP sees ``2 * features`` inputs.
    sigma : float
        Standard deviation of ``B``'s entries (frequencies, in cycles per unit length).
    width, depth, activation, seed
        As in :class:`MLP`; ``seed`` draws ``B`` too.
    """

    features: int = 64
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("features", self.features)
        check_positive_float("sigma", self.sigma)

    def _layers(self, in_dim: int, out_dim: int) -> torch.nn.Sequential:
        B = torch.randn(self.features, in_dim, dtype=torch.float64) * self.sigma
        body = _mlp(2 * self.features, out_dim, self.width, self.depth, self.activation)
        return torch.nn.Sequential(FourierFeatures(B), *body)
