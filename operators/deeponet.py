"""DeepONet (Lu, Jin, Pang, Zhang, Karniadakis, "Learning nonlinear operators via DeepONet
based on the universal approximation theorem of operators", Nature Machine Intelligence 2021),
unstacked with bias, the form the paper's code uses by default::

    G(a)(y)_o = sum_{k<p} b_{o,k}(a) t_k(y) + beta_o

The branch net sees the input function ``a`` at fixed sensors (a grid of ``sensors`` points per
axis: an input on another grid is interpolated to it); the trunk net sees a query point ``y``,
and its output goes through the activation as in DeepXDE. Several output channels share the
trunk and split the branch (``p * out_channels`` branch outputs; Lu et al., CMAME 2022,
"split branch"). The branch is an MLP, or for 2-D inputs optionally a CNN (as Lu et al. used
for Darcy flow). Queries are a grid (``forward(a)``: the input's grid, or ``grid=``) or
scattered points (``forward(a, points=y)`` with ``y`` of shape ``(n_points, dim)`` in the unit
box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neuralsolve.checks import check_choice, check_nonnegative_int, check_positive_int

from .base import (
    OperatorConfig,
    activation,
    check_input,
    grid_coordinates,
    per_axis,
    register,
)

__all__ = ["DeepONet", "DeepONetConfig"]

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _mlp(sizes: list[int], act: str, *, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(activation(act))
    return nn.Sequential(*layers)


@dataclass
class DeepONetConfig(OperatorConfig):
    """Hyperparameters of :class:`DeepONet`.

    Attributes
    ----------
    sensors : int or tuple of int
        Sensor grid of the branch net (points per axis).
    branch : {"mlp", "cnn"}
        Branch network (``"cnn"``: 2-D inputs only; four stride-2 convolutions and a linear
        layer).
    width : int
        Hidden width of the branch and trunk MLPs.
    branch_layers, trunk_layers : int
        Hidden layers of each.
    basis : int
        ``p``, the number of basis functions (per output channel in the branch).
    trunk_features : int
        ``F``: the trunk sees ``y`` and ``sin(pi k y_a)``, ``cos(pi k y_a)`` for ``k = 1..F`` on
        every axis (a fixed feature map, as DeepXDE's ``apply_feature_transform``; Lu et al.
        used such features for Burgers). It counters the MLP's bias toward smooth functions;
        0 feeds ``y`` alone.
    activation : str
    """

    sensors: int | tuple[int, ...] = 32
    branch: str = "mlp"
    width: int = 128
    branch_layers: int = 3
    trunk_layers: int = 3
    basis: int = 128
    trunk_features: int = 4
    activation: str = "gelu"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sensors = per_axis(self, "sensors")
        for name in ("width", "branch_layers", "trunk_layers", "basis"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative_int("trunk_features", self.trunk_features)
        check_choice("branch", self.branch, ("mlp", "cnn"))
        if self.branch == "cnn" and (self.dim != 2 or min(self.sensors) < 16):
            raise ValueError(
                "branch='cnn' needs dim=2 and at least 16 sensors per axis; use branch='mlp'"
            )
        activation(self.activation)


class _CNNBranch(nn.Module):
    def __init__(self, channels: int, sensors: tuple[int, ...], width: int, out: int, act: str):
        super().__init__()
        chans = [channels, 32, 64, 64, 64]
        convs: list[nn.Module] = []
        for i in range(4):
            convs += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), activation(act)]
        self.convs = nn.Sequential(*convs)
        side = [math.ceil(s / 16) for s in sensors]
        self.fc = _mlp([64 * math.prod(side), width, out], act, last_activation=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(a).flatten(1))


@register("deeponet", DeepONetConfig)
class DeepONet(nn.Module):
    """Unstacked DeepONet with bias (see the module docstring).

    Examples
    --------
    >>> import torch, neuralsolve as ns
    >>> model = ns.operators.create("deeponet", sensors=16, width=32, basis=16)
    >>> a = torch.randn(4, 1, 16, 16)
    >>> model(a).shape, model(a, points=torch.rand(100, 2)).shape
    (torch.Size([4, 1, 16, 16]), torch.Size([4, 1, 100]))
    """

    def __init__(self, config: DeepONetConfig) -> None:
        super().__init__()
        self.config = c = config
        out = c.basis * c.out_channels
        if c.branch == "cnn":
            self.branch = _CNNBranch(c.in_channels, c.sensors, c.width, out, c.activation)
        else:
            inputs = c.in_channels * math.prod(c.sensors)
            sizes = [inputs] + [c.width] * c.branch_layers + [out]
            self.branch = _mlp(sizes, c.activation, last_activation=False)
        sizes = [c.dim * (1 + 2 * c.trunk_features)] + [c.width] * c.trunk_layers + [c.basis]
        self.trunk = _mlp(sizes, c.activation, last_activation=True)
        self.bias = nn.Parameter(torch.zeros(c.out_channels))

    def _features(self, y: torch.Tensor) -> torch.Tensor:  # (n, d) -> (n, d (1 + 2F))
        F_ = self.config.trunk_features
        if F_ == 0:
            return y
        k = torch.arange(1, F_ + 1, dtype=y.dtype, device=y.device) * math.pi
        angles = (y[:, :, None] * k).flatten(1)
        return torch.cat([y, torch.sin(angles), torch.cos(angles)], dim=1)

    def _sensor_values(self, a: torch.Tensor) -> torch.Tensor:
        if tuple(a.shape[2:]) != self.config.sensors:
            a = F.interpolate(
                a, size=self.config.sensors, mode=_MODES[self.config.dim], align_corners=False
            )
        return a if self.config.branch == "cnn" else a.flatten(1)

    def forward(
        self,
        a: torch.Tensor,
        points: torch.Tensor | None = None,
        grid: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """``G(a)`` at ``points`` (shape ``(n_points, dim)``; returns ``(b, out, n_points)``)
        or on a grid (the input's, or ``grid``; returns ``(b, out, *grid)``)."""
        check_input(self, a)
        c = self.config
        coeffs = self.branch(self._sensor_values(a)).view(a.shape[0], c.out_channels, c.basis)
        if points is not None:
            if points.ndim != 2 or points.shape[1] != c.dim:
                raise ValueError(
                    f"points must have shape (n_points, {c.dim}), got {tuple(points.shape)}"
                )
            y = points.to(dtype=a.dtype, device=a.device)
            shape: tuple[int, ...] = (points.shape[0],)
        else:
            shape = tuple(grid) if grid is not None else tuple(a.shape[2:])
            y = grid_coordinates(shape, dtype=a.dtype, device=a.device)[0].flatten(1).T
        basis = self.trunk(self._features(y))  # (n_points, p)
        out = torch.einsum("bop,np->bon", coeffs, basis) + self.bias.view(1, -1, 1)
        return out.view(a.shape[0], c.out_channels, *shape)
