"""What every neural operator shares: the config base class, the registry, grid coordinates,
and a pointwise (1x1) linear layer that works on 1-, 2- and 3-D grids.

Tensor convention for every model: inputs ``(batch, in_channels, *grid)``, outputs
``(batch, out_channels, *grid)``, channels first as in ``torch.nn.Conv2d``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from neuralsolve.checks import check_choice, check_positive_int

__all__ = [
    "MODELS",
    "OperatorConfig",
    "Pointwise",
    "activation",
    "available",
    "config_dict",
    "create",
    "grid_coordinates",
    "per_axis",
    "register",
]


@dataclass
class OperatorConfig:
    """Fields every model has.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the input function ``a`` and of the output ``u``.
    dim : int
        Spatial dimensions of the grid (1, 2 or 3; the models say which they support).
    """

    in_channels: int = 1
    out_channels: int = 1
    dim: int = 2

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels"):
            check_positive_int(name, getattr(self, name))
        check_choice("dim", self.dim, (1, 2, 3))


def per_axis(cfg: Any, name: str) -> tuple[int, ...]:
    """Normalise an ``int | sequence`` field to one positive int per grid axis."""
    value = getattr(cfg, name)
    values = (value,) * cfg.dim if isinstance(value, int) else tuple(value)
    if len(values) != cfg.dim or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"{name} must be a positive integer or {cfg.dim} of them (one per axis), got {value!r}"
        )
    return values


# --------------------------------------------------------------------------- registry
M = TypeVar("M", bound=type[nn.Module])
MODELS: dict[str, tuple[type[nn.Module], type[OperatorConfig]]] = {}


def register(name: str, config: type[OperatorConfig]) -> Callable[[M], M]:
    """Class decorator: make the model available as ``create(name, **config_fields)``."""

    def wrap(cls: M) -> M:
        MODELS[name] = (cls, config)
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def available() -> list[str]:
    """The registered model names."""
    return sorted(MODELS)


def make_config(name: str, **fields: Any) -> OperatorConfig:
    """The config of model ``name``; unknown fields raise a ``TypeError`` listing the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    config_cls = MODELS[name][1]
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown config field(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid: {', '.join(valid)}"
        )
    return config_cls(**fields)


def create(name: str, **config: Any) -> nn.Module:
    """A model by name: ``create("fno", in_channels=1, modes=12, width=32)``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones) or a bad config value.
    TypeError
        An unknown config field (the message lists the valid ones).
    """
    cfg = make_config(name, **config)
    return MODELS[name][0](cfg)


def config_dict(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}`` of a registered model (stored in checkpoints)."""
    cfg = getattr(model, "config", None)
    if not dataclasses.is_dataclass(cfg) or getattr(model, "name", None) not in MODELS:
        # a model from elsewhere: recorded, but load_operator cannot rebuild it
        return {"name": None, "class": f"{type(model).__module__}.{type(model).__qualname__}"}
    return {"name": model.name, "config": dataclasses.asdict(cfg)}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- building blocks
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (``gelu``, ``relu``, ``tanh``, ``silu``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; available: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def grid_coordinates(
    shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """Cell-centre coordinates ``(i + 1/2) / n`` of a grid on the unit box, shape
    ``(1, len(shape), *shape)``: the same physical points at every resolution, which is what
    lets a resolution-invariant model be evaluated on another grid."""
    axes = [(torch.arange(n, dtype=dtype, device=device) + 0.5) / n for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh)[None]


def with_coordinates(x: torch.Tensor) -> torch.Tensor:
    """``x`` of shape ``(b, c, *grid)`` with the grid coordinates appended as channels."""
    coords = grid_coordinates(x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([x, coords.expand(x.shape[0], *coords.shape[1:])], dim=1)


class Pointwise(nn.Module):
    """A linear map applied at every grid point: ``y[b, o, ...] = W[o, i] x[b, i, ...] + c[o]``
    (a 1x1 convolution on any number of spatial axes), initialised like ``nn.Linear``."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("oi,bi...->bo...", self.weight, x)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return y


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """Shape check shared by the models: ``(batch, in_channels, *grid)`` with ``dim`` axes."""
    cfg = model.config  # type: ignore[attr-defined]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != cfg.dim + 2 or x.shape[1] != cfg.in_channels:
        grid = ", ".join(["n"] * cfg.dim)
        raise ValueError(
            f"{model.name} expects input of shape (batch, {cfg.in_channels}, {grid}), got "  # type: ignore[attr-defined]
            f"{tuple(x.shape)}: add the batch/channel axes (x[None, None]) or set "
            f"in_channels/dim in the config"
        )
