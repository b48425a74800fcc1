"""The Fourier neural operator (Li et al., "Fourier Neural Operator for Parametric Partial
Differential Equations", ICLR 2021), the baseline the other models are compared with.

::

    v0 = P(a, x)                                     lift: pointwise linear on (a, coordinates)
    v_{l+1} = act( F^-1[ R_l . F[v_l] ]  +  W_l v_l )  L Fourier layers (no act after the last)
    u = Q(v_L)                                       projection: pointwise MLP width -> 128 -> out

With ``channel_mlp=True`` each layer is followed, as in the ``neuraloperator`` package's FNO, by a
two-layer pointwise MLP ``M_l`` (hidden width ``width // 2``) with a learned per-channel gate
``g_l`` on the layer's input as its skip::

    w = act( F^-1[ R_l . F[v_l] ]  +  W_l v_l ),   v_{l+1} = act( M_l(w) + g_l * v_l )

(no act after the last layer). It lowers the error on Navier-Stokes vorticity at some cost in
time per epoch (docs/benchmarks/operators.md).

``F`` is the real FFT over the grid axes with the ``"forward"`` normalisation (coefficients are
averages, so they do not grow with the resolution), ``R_l`` a complex channel-mixing matrix per
kept Fourier mode (the lowest ``modes`` frequencies per axis, both signs on all but the last
axis), ``W_l`` a pointwise linear map. The weights act on modes, not grid points, so one model
runs on any grid with at least ``2 * modes`` points per axis (fewer: the missing modes are
dropped). Optional zero padding (``padding``) removes the periodicity the FFT assumes, for
problems with walls such as Darcy flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neuralsolve.checks import check_positive_int
from neuralsolve.params import matrix_dims

from .base import (
    OperatorConfig,
    Pointwise,
    activation,
    check_input,
    per_axis,
    register,
    with_coordinates,
)

__all__ = ["FNO", "FNOConfig", "SpectralConv", "kept_modes"]

_LETTERS = "xyz"


def kept_modes(
    sizes: tuple[int, ...], modes: tuple[int, ...], device: torch.device
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Which modes of an rFFT of shape ``sizes`` are kept, and where they sit in the block of
    ``2 m`` (``m`` on the last axis) kept modes: frequencies ``0..m-1`` and ``-m..-1`` on every
    axis but the last, ``0..m-1`` on the last (whose length is ``n_grid // 2 + 1``). A grid
    too coarse for ``m`` keeps what it has. Both are ``meshgrid`` index tuples."""
    spectrum, block = [], []
    for a, (n, m) in enumerate(zip(sizes, modes, strict=True)):
        if a == len(sizes) - 1:
            pos = torch.arange(min(m, n), device=device)
            spectrum.append(pos)
            block.append(pos)
        else:
            k = min(m, n // 2)
            pos = torch.arange(k, device=device)
            spectrum.append(torch.cat([pos, n - k + pos]))
            block.append(torch.cat([pos, 2 * m - k + pos]))
    return (
        tuple(torch.meshgrid(*spectrum, indexing="ij")),
        tuple(torch.meshgrid(*block, indexing="ij")),
    )


class SpectralConv(nn.Module):
    """``y = F^-1[ R . F[x] ]`` on the lowest ``modes`` Fourier modes of each grid axis.

    The complex weights are stored as real tensors with a trailing axis of 2 (real, imaginary)
    so that data-parallel wrappers and optimizers see only real parameters; they are marked
    (:func:`neuralsolve.params.matrix_dims`) as a stack of ``(in, out)`` matrices, one per mode
    and part, which is how :class:`~neuralsolve.optim.Muon` orthogonalises them.

    Parameters
    ----------
    in_channels, out_channels : int
    modes : tuple of int
        Kept frequencies per axis: ``0..m-1`` and ``-m..-1`` on every axis but the last (real
        FFT), ``0..m-1`` on the last.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, ...]) -> None:

        super().__init__()
        self.modes = tuple(modes)
        kept = [2 * m for m in modes[:-1]] + [modes[-1]]
        std = math.sqrt(2.0 / (in_channels + out_channels)) / math.sqrt(2.0)
        # one (in, out) matrix per mode and per real/imaginary part: Muon orthogonalises each
        self.weight = matrix_dims(
            nn.Parameter(torch.randn(in_channels, out_channels, *kept, 2) * std), (0, 1)
        )
        d = len(modes)
        letters = _LETTERS[:d]
        self._equation = f"bi{letters},io{letters}->bo{letters}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, in, *grid) -> (b, out, *grid)
        d = len(self.modes)
        dims = tuple(range(-d, 0))
        x_ft = torch.fft.rfftn(x, dim=dims, norm="forward")
        mesh, wmesh = kept_modes(tuple(x_ft.shape[2:]), self.modes, x.device)
        weight = torch.view_as_complex(self.weight.to(x.dtype).contiguous())
        w = weight[(slice(None), slice(None), *wmesh)]
        y = torch.einsum(self._equation, x_ft[(slice(None), slice(None), *mesh)], w)
        out_ft = x_ft.new_zeros((x.shape[0], w.shape[1], *x_ft.shape[2:]))
        out_ft[(slice(None), slice(None), *mesh)] = y
        return torch.fft.irfftn(out_ft, s=x.shape[2:], dim=dims, norm="forward")


@dataclass
class FNOConfig(OperatorConfig):
    """Hyperparameters of :class:`FNO` (defaults: the FNO paper's 2-D Darcy model).

    Attributes
    ----------
    modes : int or tuple of int
        Fourier modes kept per axis.
    width : int
        Channels of the Fourier layers.
    layers : int
        Number of Fourier layers.
    projection : int
        Hidden width of the output MLP.
    padding : float
        Zero padding appended at the upper end of every axis before the Fourier layers and cut
        off after them, as a fraction of the axis (``round(padding * n)`` cells, so the padded
        physical length is the same at every resolution); 0 for periodic problems.
    activation : str
    channel_mlp : bool
        Follow each Fourier layer with a gated channel MLP (see the module docstring); off in
        the paper's model.
    """

    modes: int | tuple[int, ...] = 12
    width: int = 32
    layers: int = 4
    projection: int = 128
    padding: float = 0.0
    activation: str = "gelu"
    channel_mlp: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.channel_mlp, bool):
            raise TypeError(f"channel_mlp must be True or False, got {self.channel_mlp!r}")
        self.modes = per_axis(self, "modes")
        for name in ("width", "layers", "projection"):
            check_positive_int(name, getattr(self, name))
        if not isinstance(self.padding, int | float) or not 0 <= self.padding < 1:
            raise ValueError(f"padding is a fraction of each axis in [0, 1), got {self.padding!r}")
        activation(self.activation)


@register("fno", FNOConfig)
class FNO(nn.Module):
    """Fourier neural operator on 1-, 2- or 3-D grids (see the module docstring).

    Examples
    --------
    >>> import torch, neuralsolve as ns
    >>> model = ns.operators.create("fno", modes=8, width=16)
    >>> model(torch.randn(4, 1, 32, 32)).shape
    torch.Size([4, 1, 32, 32])
    """

    def __init__(self, config: FNOConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.lift = Pointwise(c.in_channels + c.dim, c.width)
        self.spectral = nn.ModuleList(
            SpectralConv(c.width, c.width, c.modes) for _ in range(c.layers)
        )
        self.pointwise = nn.ModuleList(Pointwise(c.width, c.width) for _ in range(c.layers))
        self.act = activation(c.activation)
        if c.channel_mlp:
            hidden = max(1, c.width // 2)
            self.mlps = nn.ModuleList(
                nn.Sequential(
                    Pointwise(c.width, hidden), activation(c.activation), Pointwise(hidden, c.width)
                )
                for _ in range(c.layers)
            )

            # per-channel scales, not a (layers, width) matrix: Muon leaves them to AdamW
            self.gates = matrix_dims(nn.Parameter(torch.ones(c.layers, c.width)), None)
        self.head = nn.Sequential(
            Pointwise(c.width, c.projection), activation(c.activation),
            Pointwise(c.projection, c.out_channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        grid = x.shape[2:]
        v = self.lift(with_coordinates(x))
        pads = [round(self.config.padding * n) for n in grid]
        if any(pads):
            v = F.pad(v, [val for p in reversed(pads) for val in (0, p)])
        last = len(self.spectral) - 1
        for i, (spec, point) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            w = spec(v) + point(v)
            if i < last:
                w = self.act(w)
            if self.config.channel_mlp:
                gate = self.gates[i].view(1, -1, *(1,) * len(grid))
                w = self.mlps[i](w) + gate * v
                if i < last:
                    w = self.act(w)
            v = w
        if any(pads):
            v = v[(slice(None), slice(None), *(slice(0, n) for n in grid))]
        return self.head(v)
