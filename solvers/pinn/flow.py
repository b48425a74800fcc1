"""BoundedFlow: a normalizing flow whose support is a box (the AAS sampler's density model).

The flow is KRnet-like (Tang, Wan, Liao, "Deep density estimation via invertible block-triangular
mapping", 2020; the sampler of DAS and AAS): affine coupling layers on ``R^d`` followed by a final
bounded elementwise map onto the open unit cube, which the :class:`~neuralsolve.domain.Box` maps
affinely onto the box. Every density it represents is supported on the box and the
log-determinant is exact.

The map, from the base variable ``z`` to a point ``x`` of the box::

    z  ~  Logistic(0, 1)^d                     base density  p_Z(z) = prod_i s(z_i) (1 - s(z_i))
    y  =  C_L o ... o C_1 (z)                  affine couplings on R^d
    u  =  s(y)            (elementwise)         s = sigmoid: R^d -> (0, 1)^d
    x  =  lower + u * (upper - lower)           Box.from_unit

Coupling layer ``k`` splits the coordinates by a fixed mask (alternating between the
coordinates with even and odd index) into a conditioning part ``a`` and a transformed part
``b``::

    y_a = z_a,    y_b = z_b * exp(s_k(z_a)) + t_k(z_a),    s_k = S * tanh(raw_k)

with ``raw_k, t_k`` one small tanh MLP of ``z_a`` and ``S`` (``max_log_scale``) bounding each
log-scale, so that every layer is bi-Lipschitz. In one dimension there is no conditioning part:
the network gets a constant input and the layer is a learned affine map.

Choices that are ours (documented because AAS's code is not public):

- **Logistic base, sigmoid last map.** The logistic is the law of ``logit(U)`` for uniform ``U``,
  so with identity couplings the flow is *exactly* uniform on the box. With
  ``identity_init=True`` (the default) each coupling's last linear layer starts at zero, so
  the first AAS round is a uniform sample. (KRnet uses a Gaussian base and a nonlinear CDF
  layer; we keep only the affine couplings and a bounded last map.)
- ``log_prob`` of a point on the box's surface is evaluated at the point moved inwards by a
  few machine epsilons in the unit cube (the density's limit there); the flow's samples lie in
  the closed box (``sigmoid`` can round to 0 or 1).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from neuralsolve.checks import check_bool, check_positive_float, check_positive_int
from neuralsolve.domain import Box

__all__ = ["AffineCoupling", "BoundedFlow"]


def _logistic_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log p_Z(z)`` of the standard logistic, summed over the last axis: ``(n, d) -> (n,)``."""
    # log s(z) + log(1 - s(z)) = -softplus(-z) - softplus(z)
    return -(nn.functional.softplus(-z) + nn.functional.softplus(z)).sum(dim=-1)


def _init_linear(layer: nn.Linear, generator: torch.Generator | None, zero: bool) -> None:
    """torch's default uniform init, drawn from ``generator`` (seeded, reproducible); biases 0."""
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
        else:
            bound = 1.0 / math.sqrt(layer.in_features)
            w = torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64)
            layer.weight.copy_((2.0 * w - 1.0) * bound)
        layer.bias.zero_()


class AffineCoupling(nn.Module):
    """One affine coupling layer ``y_b = z_b * exp(S tanh(raw(z_a))) + t(z_a)``, ``y_a = z_a``.

    Parameters
    ----------
    mask : torch.Tensor
        ``(d,)`` bool: True marks the conditioning coordinates ``a`` (may be all False in 1-D).
    width, hidden_layers : int
        The conditioner MLP (tanh activations).
    max_log_scale : float
        ``S``, the bound of every log-scale.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        *,
        width: int,
        hidden_layers: int,
        max_log_scale: float,
        identity_init: bool,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__()
        self.register_buffer("mask", mask.clone().to(torch.bool))
        self.max_log_scale = float(max_log_scale)
        n_in = max(int(mask.sum()), 1)  # 1-D: a constant input
        n_out = int((~mask).sum())
        layers: list[nn.Module] = []
        sizes = [n_in] + [width] * hidden_layers
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(sizes[-1], 2 * n_out)
        for m in self.net:
            if isinstance(m, nn.Linear):
                _init_linear(m, generator, zero=False)
        _init_linear(self.out, generator, zero=identity_init)

    def _scale_shift(self, z_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z_a.shape[1] == 0:
            z_a = torch.zeros(z_a.shape[0], 1, dtype=z_a.dtype, device=z_a.device)
        raw, t = self.out(self.net(z_a)).chunk(2, dim=1)
        return self.max_log_scale * torch.tanh(raw), t  # (n, n_out) each

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det dy/dz|)``: ``(n, d)`` and ``(n,)``."""
        s, t = self._scale_shift(z[:, self.mask])
        y = z.clone()
        y[:, ~self.mask] = z[:, ~self.mask] * torch.exp(s) + t
        return y, s.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log|det dz/dy|)``: the inverse map and its log-determinant."""
        s, t = self._scale_shift(y[:, self.mask])
        z = y.clone()
        z[:, ~self.mask] = (y[:, ~self.mask] - t) * torch.exp(-s)
        return z, -s.sum(dim=1)


class BoundedFlow(nn.Module):
    """A normalizing flow with support on a box: affine couplings, then a sigmoid (see module).

    Parameters
    ----------
    domain : Box
        The support.
    n_layers : int
        Affine coupling layers (default 6, the DAS code's KRnet default).
    width : int
        Hidden width of each conditioner (default 24, DAS's).
    hidden_layers : int
        Hidden layers of each conditioner (default 2).
    max_log_scale : float
        Bound ``S`` of each coupling's log-scale (default 2.0).
    identity_init : bool
        Start every coupling at the identity, so the flow starts uniform on the box (default
        True). False gives a random, non-trivial flow (tests).
    generator : torch.Generator, optional
        Draws the initial weights (pass a seeded one for reproducible weights).

    Examples
    --------
    >>> flow = BoundedFlow(Box.cube(2, -1.0, 1.0))
    >>> x = flow.sample(5, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(flow.log_prob(x), torch.full((5,), -math.log(4.0), dtype=x.dtype))
    True
    """

    def __init__(
        self,
        domain: Box,
        *,
        n_layers: int = 6,
        width: int = 24,
        hidden_layers: int = 2,
        max_log_scale: float = 2.0,
        identity_init: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(domain, Box):
            raise TypeError(f"domain must be a neuralsolve.domain.Box, got {type(domain).__name__}")
        self.domain = domain
        n_layers = check_positive_int("n_layers", n_layers)
        width = check_positive_int("width", width)
        hidden_layers = check_positive_int("hidden_layers", hidden_layers)
        max_log_scale = check_positive_float("max_log_scale", max_log_scale)
        identity_init = check_bool("identity_init", identity_init)
        d = domain.dim
        idx = torch.arange(d)
        self.layers = nn.ModuleList(
            AffineCoupling(
                (idx % 2 == k % 2) if d > 1 else torch.zeros(1, dtype=torch.bool),
                width=width,
                hidden_layers=hidden_layers,
                max_log_scale=max_log_scale,
                identity_init=identity_init,
                generator=generator,
            )
            for k in range(n_layers)
        )
        self.to(torch.float64)

    @property
    def dim(self) -> int:
        return self.domain.dim

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base ``z`` ``(n, d)`` -> ``(x, log|det dx/dz|)``, ``x`` in the box."""
        logdet = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        y = z
        for layer in self.layers:
            y, ld = layer(y)
            logdet = logdet + ld
        u = torch.sigmoid(y)
        # d sigmoid(y) / dy = s(y)(1 - s(y)); its log = -softplus(-y) - softplus(y)
        logdet = logdet + _logistic_log_prob(y)
        lo, hi = self.domain.bounds(z.dtype, z.device)
        x = torch.minimum(torch.maximum(lo + u * (hi - lo), lo), hi)
        return x, logdet + math.log(self.domain.volume)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Point ``x`` ``(n, d)`` of the box -> ``(z, log|det dz/dx|)``."""
        u = self._unit(x)
        y = torch.logit(u)
        # dy/du = 1 / (u (1 - u))
        logdet = -(torch.log(u) + torch.log1p(-u)).sum(dim=1) - math.log(self.domain.volume)
        z = y
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            logdet = logdet + ld
        return z, logdet

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        """The unit-cube coordinates of ``x``, moved off the cube's surface by 4 epsilons."""
        eps = 4.0 * torch.finfo(x.dtype).eps
        return self.domain.to_unit(x).clamp(eps, 1.0 - eps)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)``, ``(n,)``, of points ``(n, d)`` of the box (density w.r.t. ``dx``)."""
        self.domain.check_points(x, name="x", check_inside=False)
        z, logdet = self.inverse(x)
        return _logistic_log_prob(z) + logdet

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` points ``(n, d)`` drawn from the flow, in the closed box (no gradient)."""
        n = check_positive_int("n", n)
        dtype, device = self._dtype(), self._device()
        tiny = torch.finfo(dtype).tiny
        u0 = torch.rand(n, self.dim, generator=generator, dtype=dtype).to(device)
        z = torch.logit(u0.clamp(tiny, 1.0 - torch.finfo(dtype).eps))  # logistic base
        with torch.no_grad():
            x, _ = self(z)
        return x
