"""T1, "transform once" (Poli, Massaroli, Berto, Park, Ermon, "Transform Once: Efficient
Operator Learning in Frequency Domain", NeurIPS 2022).

An FNO transforms to the frequency domain and back in every layer. T1 does it once::

    v  = P(a, x)                            lift: pointwise linear on (a, coordinates)
    V  = T_m(v)                             ONE truncated transform: the m lowest modes per axis
    V <- V + B_l(V),  l = 1..L              learned blocks acting on modes only
    U  = Q(V)                               per-mode head: width -> 128 -> sin -> out
    u  = T_m^-1(U)                          ONE inverse (skipped when the loss is spectral)

Each block mixes channels per mode and then mixes modes along each axis::

    B(V)[o, k] = M_y( M_x( act( sum_i R[i, o, k] V[i, k] ) ) )
    M_x(Z)[c, k_x, k_y] = sum_j S_x[c, k_x, j] Z[c, j, k_y]     (and likewise along y, z)

(FNO has no mode-mixing; T1 can afford it because the blocks never leave the m^d modes).

**Transforms.** ``"dct"``: the orthonormal DCT-II per axis (:mod:`neuralsolve.spectral`),
applied as an ``(m, n)`` matrix, so ``T_m`` costs ``O(n m)`` per axis and never computes the
modes it would throw away; scaled by ``1 / sqrt(N)`` (``N`` grid points) so that a function's
coefficients do not depend on the resolution, which is what lets the model run on other grids.
``"fft"``: the real FFT with ``"forward"`` normalisation, lowest modes kept as in FNO, real and
imaginary parts handled as separate channels.

**Variance-preserving initialisation** (the paper's "vp" init): an orthonormal transform keeps
the total variance, and truncating to ``m`` of ``N`` modes with weights of variance ``s^2``
gives an output variance ``m s^2 fan_in / N`` times the input's. Channel-mixing weights are
therefore drawn with ``s = gain * sqrt(N / (m * fan_in))`` (gain 1 for the DCT, 1/2 for the FFT,
``N`` the training grid given as ``resolution``); mode-mixing weights with
``s = sqrt(1 / fan_in)``. ``init="naive"`` uses FNO's ``1 / (fan_in * fan_out)`` instead.

**Loss in the transform domain.** :meth:`T1.forward_spectral` returns ``U`` and
:meth:`T1.transform` gives a target's modes; by Parseval, the squared L2 error in the physical
domain is the error on the kept modes plus the target's energy in the dropped modes, so training
on coefficients needs no inverse transform (:func:`spectral_relative_l2`, DCT only).

**Implementation.** Three choices make a training step ~3x cheaper on a CPU than the
straightforward code (Darcy 64^2, m 24, width 48, 8 blocks, batch 20: 57 ms against 174 ms, the
same values to 1e-13 in float64): the lift is applied after the transform (both are linear and
act on different axes, so ``T_m(P v) = P T_m(v)``, and transforming the ``in_channels + dim``
raw channels is cheaper than transforming ``width`` lifted ones); the modes stay in a mode-major
``(modes, batch, channels)`` layout through the blocks and the head, so the per-mode mixing is one
batched matmul with no copies; and the batched matmuls and layout changes have backwards that
hand on contiguous gradients (a strided gradient made ``bmm`` copy every one of its ~600 small
matrices, and elementwise backwards run several times slower on strided memory).

Deviation: the paper initialises the whole head at ``1e-8 * randn``; here only its last layer
is (the output starts near zero as in the paper), since two tiny factors in a row give tiny
gradients to any optimizer that is not scale-invariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuralsolve.checks import check_positive_int
from neuralsolve.params import matrix_dims
from neuralsolve.spectral import dct_matrix

from .base import (
    OperatorConfig,
    Pointwise,
    activation,
    check_input,
    per_axis,
    register,
    with_coordinates,
)
from .fno import kept_modes

__all__ = ["T1", "T1Config", "spectral_relative_l2"]


@lru_cache(maxsize=64)
def _truncated_dct(n: int, m: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The ``(m, n)`` matrix of the ``m`` lowest orthonormal DCT-II modes, scaled by
    ``1 / sqrt(n)``; rows past ``n`` (a grid coarser than the kept modes) are zero."""
    Q = dct_matrix(n, dtype=torch.float64)  # (n, n), columns = modes
    T = torch.zeros(m, n, dtype=torch.float64)
    k = min(m, n)
    T[:k] = Q[:, :k].T / math.sqrt(n)
    return T.to(dtype=dtype, device=torch.device(device))


@dataclass
class T1Config(OperatorConfig):
    """Hyperparameters of :class:`T1` (defaults: the paper's Navier-Stokes model, m 24,
    width 48, 8 blocks).

    Attributes
    ----------
    modes : int or tuple of int
        Modes kept per axis (the lowest ``modes`` DCT modes; for ``"fft"``, ``modes`` of each
        sign on all but the last axis).
    width : int
        Channels.
    layers : int
        Number of blocks.
    projection : int
        Hidden width of the per-mode head.
    transform : {"dct", "fft"}
    init : {"vp", "naive"}
    resolution : int or tuple of int
        Training grid, used only by the ``"vp"`` initialisation (``N`` above).
    activation : str
    """

    modes: int | tuple[int, ...] = 24
    width: int = 48
    layers: int = 8
    projection: int = 128
    transform: str = "dct"
    init: str = "vp"
    resolution: int | tuple[int, ...] = 64
    activation: str = "gelu"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.modes = per_axis(self, "modes")
        self.resolution = per_axis(self, "resolution")
        for name in ("width", "layers", "projection"):
            check_positive_int(name, getattr(self, name))
        if self.transform not in ("dct", "fft"):
            raise ValueError(f"transform must be 'dct' or 'fft', got {self.transform!r}")
        if self.init not in ("vp", "naive"):
            raise ValueError(f"init must be 'vp' or 'naive', got {self.init!r}")
        activation(self.activation)


class _BatchedMatmul(torch.autograd.Function):
    """``torch.bmm(a, b)`` whose backward makes the incoming gradient contiguous once.

    On a CPU, ``bmm`` over many small matrices (here one per kept mode) runs one GEMM per batch
    item; handed a strided gradient (what a permuted view passes back) it copies every item
    first, which made T1's backward 3-5x slower than its forward. The backward is written with
    differentiable operations, so second derivatives (AdaHessian, Sophia-H) still work. Under
    autocast the forward product runs in the lower precision; the backward products then run in
    the gradient's dtype as well, and return gradients in the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, b = ctx.saved_tensors
        grad = grad.contiguous()
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.bmm(grad, b.mT.to(grad.dtype)).to(a.dtype)
        if ctx.needs_input_grad[1]:
            grad_b = torch.bmm(a.mT.to(grad.dtype), grad).to(b.dtype)
        return grad_a, grad_b


class _Relayout(torch.autograd.Function):
    """``x.permute(order).contiguous()`` whose gradient is permuted back *and* made
    contiguous, so that the elementwise operations before it get a dense gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
        ctx.inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
        return x.permute(order).contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _Relayout.apply(grad, ctx.inverse), None


class _Block(nn.Module):
    """Per-mode channel mixing, activation, then mode mixing along each axis; residual.

    Works on the mode-major layout ``(modes, batch, channels)`` (modes in C order over the
    kept axes): the per-mode mixing is then one batched matmul, and the head a plain linear
    map on the last axis. Mode mixing along axis ``a`` is a batched matmul over channels on
    the layout ``(channels, k_a, other modes, batch)``.
    """

    def __init__(self, channels: int, kept: tuple[int, ...], channel_std: float, act: str) -> None:

        super().__init__()
        self.kept = kept
        modes = math.prod(kept)
        # Stacks of small matrices, one per mode (per channel for the axis mixings), which
        # Muon orthogonalises one by one. The bias (channels, *kept) is read as a stack over
        # its leading axes: in 2-D one (k_x, k_y) matrix per channel, which trained best of the
        # readings tried (docs/benchmarks/operators.md, Darcy with Muon).
        self.channel = matrix_dims(
            nn.Parameter(torch.randn(modes, channels, channels) * channel_std), (1, 2)
        )
        self.axis = nn.ParameterList(
            matrix_dims(nn.Parameter(torch.randn(channels, k, k) / math.sqrt(k)), (1, 2))
            for k in kept
        )
        self.bias = matrix_dims(nn.Parameter(torch.zeros(channels, *kept)), (-2, -1))
        self.act = activation(act)

    def forward(self, V: torch.Tensor) -> torch.Tensor:  # (modes, b, c)
        modes, b, c = V.shape
        d = len(self.kept)
        Z = _BatchedMatmul.apply(V, self.channel)  # Z[k, b, o] = sum_i V[k, b, i] R[k, i, o]
        Z = self.act(Z + self.bias.reshape(c, modes).T.unsqueeze(1))
        # (k_0, .., k_{d-1}, b, c) -> (c, k_0, .., k_{d-1}, b): axis 0 in place for its matmul
        order = (d + 1, *range(d), d)  # current layout, as positions of (k.., b, c)
        Z = _Relayout.apply(Z.view(*self.kept, b, c), order)
        for a, S in enumerate(self.axis):  # Z[c, .., k, ..] <- sum_j S[c, k, j] Z[c, .., j, ..]
            if order[1] != a:  # bring k_a next to the channels
                rest = [i for i in order[1:] if i != a]
                to = (0, order.index(a), *[order.index(i) for i in rest])
                Z = _Relayout.apply(Z, to)
                order = (order[0], a, *rest)
            Z = _BatchedMatmul.apply(S, Z.reshape(c, self.kept[a], -1)).view(Z.shape)
        back = tuple(order.index(i) for i in range(d + 2))  # -> (k_0, .., k_{d-1}, b, c)
        return V + _Relayout.apply(Z, back).view(modes, b, c)


@register("t1", T1Config)
class T1(nn.Module):
    """Transform-once operator (see the module docstring).

    Examples
    --------
    >>> import torch, neuralsolve as ns
    >>> model = ns.operators.create("t1", modes=8, width=16, layers=2, resolution=32)
    >>> model(torch.randn(4, 1, 32, 32)).shape
    torch.Size([4, 1, 32, 32])
    """

    def __init__(self, config: T1Config) -> None:
        super().__init__()
        self.config = c = config
        fft = c.transform == "fft"
        # FFT modes: both signs on all but the last axis; real and imaginary parts as channels
        self.kept = (*tuple(2 * m for m in c.modes[:-1]), c.modes[-1]) if fft else c.modes
        channels = 2 * c.width if fft else c.width
        self.lift = Pointwise(c.in_channels + c.dim, c.width)
        m = math.prod(self.kept)
        N = math.prod(c.resolution)
        if c.init == "vp":
            gain = 0.5 if fft else 1.0
            std = gain * math.sqrt(N / (m * channels))
        else:
            std = 1.0 / (channels * channels)
        self.blocks = nn.ModuleList(
            _Block(channels, self.kept, std, c.activation) for _ in range(c.layers)
        )
        self.head_in = Pointwise(channels, c.projection)
        self.head_out = Pointwise(c.projection, 2 * c.out_channels if fft else c.out_channels)
        with torch.no_grad():
            self.head_out.weight.normal_(0.0, 1e-8)
            self.head_out.bias.zero_()

    # ------------------------------------------------------------------ transforms
    def transform(self, v: torch.Tensor) -> torch.Tensor:
        """The kept modes ``T_m(v)`` of ``v`` of shape ``(b, c, *grid)``: ``(b, c, *kept)``
        (for the FFT, real and imaginary parts stacked along the channels)."""
        d = self.config.dim
        if self.config.transform == "dct":
            for a in range(d):
                T = _truncated_dct(v.shape[2 + a], self.kept[a], v.dtype, str(v.device))
                v = torch.movedim(torch.movedim(v, 2 + a, -1) @ T.T, -1, 2 + a)
            return v
        V = torch.fft.rfftn(v, dim=tuple(range(-d, 0)), norm="forward")
        index, _ = kept_modes(tuple(V.shape[2:]), self.config.modes, v.device)
        V = V[(slice(None), slice(None), *index)]
        return torch.cat([V.real, V.imag], dim=1)

    def inverse(self, U: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """``T_m^-1``: a function on ``grid`` from its kept modes (the others zero)."""
        d = self.config.dim
        if self.config.transform == "dct":
            for a in range(d):
                n = grid[a]
                T = _truncated_dct(n, self.kept[a], U.dtype, str(U.device))
                U = torch.movedim(torch.movedim(U, 2 + a, -1) @ (T * n), -1, 2 + a)
            return U
        c = U.shape[1] // 2
        if U.dtype not in (torch.float32, torch.float64):  # autocast: no bf16/half complex FFT
            U = U.float()
        spectrum = torch.complex(U[:, :c], U[:, c:])
        full = [*list(grid[:-1]), grid[-1] // 2 + 1]
        out = spectrum.new_zeros((U.shape[0], c, *full))
        index, block = kept_modes(tuple(full), self.config.modes, U.device)
        out[(slice(None), slice(None), *index)] = spectrum[(slice(None), slice(None), *block)]
        return torch.fft.irfftn(out, s=grid, dim=tuple(range(-d, 0)), norm="forward")

    # ------------------------------------------------------------------ model
    def lifted_modes(self, x: torch.Tensor) -> torch.Tensor:
        """``T_m(P(a, x))``, the kept modes of the lifted input, ``(b, channels, *kept)``.

        Computed as ``P`` applied to ``T_m(a, x)``: the lift acts on channels and the transform
        on grid axes, so they commute (the lift's bias lands on ``T_m(1)``), and transforming
        the ``in_channels + dim`` raw channels costs ``width / (in_channels + dim)`` times less
        than transforming the lifted ones.
        """
        d = self.config.dim
        X = self.transform(with_coordinates(x))  # (b, parts * (c_in + d), *modes)
        ones = self.transform(x.new_ones((1, 1, *x.shape[2:])))  # (1, parts, *modes): T_m(1)
        parts = ones.shape[1]  # 2 for the FFT (real, imaginary), else 1
        X = X.unflatten(1, (parts, -1))
        V = torch.einsum("oi,bpi...->bpo...", self.lift.weight, X)
        V = V + self.lift.bias.view(1, 1, -1, *([1] * d)) * ones.unsqueeze(2)
        V = V.flatten(1, 2)
        if V.shape[2:] != self.kept:  # FFT on a grid coarser than the modes: zero-pad
            padded = V.new_zeros((*V.shape[:2], *self.kept))
            _, index = kept_modes(
                (*x.shape[2:-1], x.shape[-1] // 2 + 1), self.config.modes, x.device
            )
            padded[(slice(None), slice(None), *index)] = V
            V = padded
        return V

    def forward_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """The output's kept modes ``U``, shape ``(b, out_channels, *kept)`` (FFT: real and
        imaginary parts stacked, ``2 * out_channels``)."""
        check_input(self, x)
        V = self.lifted_modes(x)
        b = V.shape[0]
        V = _Relayout.apply(V.flatten(2), (2, 0, 1))  # mode-major (modes, b, channels)
        for block in self.blocks:
            V = block(V)
        hidden = torch.sin(F.linear(V, self.head_in.weight, self.head_in.bias))
        U = F.linear(hidden, self.head_out.weight, self.head_out.bias)  # (modes, b, out)
        return _Relayout.apply(U, (1, 2, 0)).view(b, -1, *self.kept)

    def forward(self, x: torch.Tensor, grid: tuple[int, ...] | None = None) -> torch.Tensor:
        """The output on ``grid`` (default: the input's grid)."""
        U = self.forward_spectral(x)
        return self.inverse(U, tuple(grid) if grid is not None else tuple(x.shape[2:]))


def spectral_relative_l2(
    model: T1, x: torch.Tensor, y: torch.Tensor, *, scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Mean relative L2 error ``||u - y|| / ||y||`` per sample, computed on DCT coefficients.

    By Parseval (orthonormal DCT, coefficients scaled by ``1/sqrt(N)``)::

        ||u - y||^2 / N = ||U - T_m y||^2 + (||y||^2 / N - ||T_m y||^2)

    since ``u`` has no energy outside the kept modes. ``scale`` and ``shift`` (per output
    channel) map the model's normalised output to physical units, ``u = scale * u_n + shift``;
    a constant ``shift`` lives in the first mode alone (its coefficient is ``shift``).
    """
    if model.config.transform != "dct":
        raise ValueError("the spectral loss is implemented for transform='dct' only")
    U = model.forward_spectral(x)
    if scale is not None:
        U = U * scale.view(1, -1, *([1] * model.config.dim))
    if shift is not None:
        first = (slice(None), slice(None), *([0] * model.config.dim))
        U = U.clone()
        U[first] = U[first] + shift.view(1, -1)
    Y = model.transform(y)
    N = math.prod(y.shape[2:])
    dims = tuple(range(1, y.ndim))
    total = (y * y).sum(dims) / N
    err = ((U - Y) ** 2).sum(dims) + (total - (Y * Y).sum(dims)).clamp_min(0)
    return (err / total).sqrt().mean()
