"""The latent spectral model (Wu, Hu, Luo, Wang, Long, "Solving High-Dimensional PDEs with
Latent Spectral Models", ICML 2023).

A U-Net whose skip connections and bottleneck each pass through a *neural spectral block*::

    v = P(a, x), zero-padded to a multiple of patch * 2^(levels-1)
    encoder:  e_0 = DoubleConv(v),  e_l = DoubleConv(MaxPool(e_{l-1}))     channels w, 2w, 4w, 8w, 8w
    decoder:  d_{L-1} = NSB(e_{L-1}),  d_l = DoubleConv([Up(d_{l+1}), NSB(e_l)])
    u = Q(d_0), cropped                                                   Q: w -> 128 -> out

A neural spectral block cuts its feature map into patches of ``patch`` cells (the same patch at
every level, so deep levels have few patches) and, per patch:

1. *encodes* it into ``tokens`` latent tokens by attention: learned token queries ``q``
   (``heads`` heads, initialised ``U(0,1) / w``) against keys and values from a 1x1 convolution
   of the pixels, ``z = softmax(q k^T) v + q`` (no ``1/sqrt(d)`` scaling, as in the paper);
2. solves in a spectral basis: every token entry becomes ``[sin(k pi z / K), cos(k pi z / K)]``
   for ``k < K`` (``basis``), and ``z <- sum_j W[c, j] phi_j(z_c) + z`` with ``W`` of size
   ``w x 2K``;
3. *decodes* back to pixels: 1x1-convolution pixel queries attend to the tokens (keys and
   values both the tokens), plus a residual.

DoubleConv is ``(conv3x3 without bias, norm, ReLU)`` twice; the norm is batch norm (the paper's
choice for steady problems) or instance norm. Grids of 1, 2 or 3 axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuralsolve.checks import check_bool, check_choice, check_positive_int

from .base import (
    OperatorConfig,
    Pointwise,
    activation,
    check_input,
    per_axis,
    register,
    with_coordinates,
)

__all__ = ["LSM", "LSMConfig"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_UPSAMPLE = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass
class LSMConfig(OperatorConfig):
    """Hyperparameters of :class:`LSM` (defaults: the paper's, with width 32).

    Attributes
    ----------
    width : int
        Channels of the first level (``w``; the paper uses 64 on Darcy, 32 elsewhere).
    levels : int
        U-Net levels (the paper: 5).
    patch : int or tuple of int
        Patch size, cells per axis, at every level.
    tokens : int
        Latent tokens per patch.
    heads : int
        Attention heads (must divide every level's channel count).
    basis : int
        ``K``: sin and cos modes of the spectral basis.
    projection : int
        Hidden width of the output MLP.
    norm : {"batch", "instance"}
    periodic : bool
        The grid is periodic (e.g. Burgers on the unit circle): convolutions pad circularly, so
        information crosses the boundary as it does in the PDE, and the grid must be a multiple
        of ``patch * 2**(levels - 1)`` per axis (zero-padding it would break the period).
    """

    width: int = 32
    levels: int = 5
    patch: int | tuple[int, ...] = 4
    tokens: int = 4
    heads: int = 8
    basis: int = 12
    projection: int = 128
    norm: str = "batch"
    periodic: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.patch = per_axis(self, "patch")
        for name in ("width", "levels", "tokens", "heads", "basis", "projection"):
            check_positive_int(name, getattr(self, name))
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        check_bool("periodic", self.periodic)
        check_choice("norm", self.norm, ("batch", "instance"))

    @property
    def channels(self) -> list[int]:
        """Channels per level: ``w, 2w, 4w, ...``, the last level repeating the one above."""
        chans = [self.width * 2**level for level in range(self.levels)]
        if self.levels > 1:
            chans[-1] = chans[-2]
        return chans


def _double_conv(cin: int, cout: int, dim: int, norm: str, periodic: bool) -> nn.Sequential:
    Norm = _BATCH[dim] if norm == "batch" else _INSTANCE[dim]
    mode = "circular" if periodic else "zeros"
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers += [
            _CONV[dim](c, cout, 3, padding=1, bias=False, padding_mode=mode),
            Norm(cout, affine=True) if norm == "instance" else Norm(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _patchify(x: torch.Tensor, patch: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``(b, c, *grid)`` -> ``(b * patches, c, cells per patch)`` and the patch counts."""
    b, c, *grid = x.shape
    counts = tuple(n // p for n, p in zip(grid, patch, strict=True))
    shape = [b, c] + [v for pair in zip(counts, patch, strict=True) for v in pair]
    d = len(grid)
    order = [0] + [2 + 2 * a for a in range(d)] + [1] + [3 + 2 * a for a in range(d)]
    y = x.reshape(shape).permute(order)
    return y.reshape(b * math.prod(counts), c, math.prod(patch)), counts


def _unpatchify(
    y: torch.Tensor, b: int, counts: tuple[int, ...], patch: tuple[int, ...]
) -> torch.Tensor:
    d = len(counts)
    c = y.shape[1]
    y = y.reshape(b, *counts, c, *patch)
    order = [0, d + 1] + [v for a in range(d) for v in (1 + a, d + 2 + a)]
    return y.permute(order).reshape(b, c, *(n * p for n, p in zip(counts, patch, strict=True)))


class NeuralSpectralBlock(nn.Module):
    """Patch -> latent tokens (attention) -> spectral basis update -> pixels (attention)."""

    def __init__(
        self, channels: int, *, heads: int, tokens: int, basis: int, patch: tuple[int, ...]
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads ({heads}) must divide the channels ({channels})")
        self.heads, self.patch, self.basis = heads, patch, basis
        head_dim = channels // heads
        self.latent = nn.Parameter(torch.rand(heads, tokens, head_dim) / channels)
        self.to_kv = Pointwise(channels, 2 * channels, bias=False)
        self.to_q = Pointwise(channels, channels, bias=False)
        self.weight = nn.Parameter(torch.randn(channels, 2 * basis) / (2 * basis))
        self.register_buffer(
            "frequencies", torch.arange(basis, dtype=torch.float32) * math.pi / basis
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, C, *grid)
        # The attention of a patch is over a few pixels (P) and tokens (T): products and sums
        # over broadcast axes, not batched matmuls of tiny matrices (which cost a GEMM call each
        # on a CPU). Layout (B, h, dh, P) / (B, h, dh, T), B = batch x patches.
        b, C = x.shape[:2]
        h = self.heads
        kv, counts = _patchify(self.to_kv(x), self.patch)  # (B, 2C, P)
        B, _, P = kv.shape
        k = kv[:, :C].reshape(B, h, C // h, P)
        v = kv[:, C:].reshape(B, h, C // h, P)
        q = self.latent.to(x.dtype)  # (h, T, dh)
        scores = torch.einsum("htd,bhdp->bhtp", q, k)  # one matmul per head
        attn = torch.softmax(scores, dim=-1)  # (B, h, T, P)
        z = (attn.unsqueeze(2) * v.unsqueeze(3)).sum(-1) + q.transpose(1, 2)  # (B, h, dh, T)
        T = z.shape[-1]
        z = _SpectralUpdate.apply(z.reshape(B, C, T), self.weight, self.frequencies.to(x.dtype))
        z = z.view(B, h, C // h, T)
        pq, _ = _patchify(self.to_q(x), self.patch)
        pq = pq.view(B, h, C // h, P)
        scores = (pq.unsqueeze(3) * z.unsqueeze(4)).sum(2)  # (B, h, T, P)
        attn = torch.softmax(scores, dim=2)  # each pixel over the tokens
        out = (attn.unsqueeze(2) * z.unsqueeze(4)).sum(3)  # (B, h, dh, P)
        return x + _unpatchify(out.reshape(B, C, P), b, counts, self.patch)


class _SpectralUpdate(torch.autograd.Function):
    """``z + sum_k W[c, k] sin(w_k z) + W[c, K + k] cos(w_k z)`` for ``z`` of shape
    ``(B, C, T)``, without keeping the ``(B, C, T, 2K)`` basis values for the backward pass.

    The forward accumulates one frequency at a time; the backward recomputes the sines and
    cosines from ``z``. Its products are differentiable operations on the saved inputs, so
    second derivatives (AdaHessian, Sophia-H) still work.
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, weight: torch.Tensor, freqs: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(z, weight, freqs)
        return _spectral_update(z, weight, freqs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        z, weight, freqs = ctx.saved_tensors
        K = freqs.shape[0]
        w = weight.to(z.dtype)
        grad_z = grad.clone()
        grad_w = []
        for j in range(K):
            angle = z * freqs[j]
            sin, cos = torch.sin(angle), torch.cos(angle)
            ws, wc = w[:, j, None], w[:, K + j, None]  # (C, 1)
            grad_z = grad_z + grad * (freqs[j] * (ws * cos - wc * sin))
            grad_w.append(((grad * sin).sum((0, 2)), (grad * cos).sum((0, 2))))
        gw = torch.stack([g[0] for g in grad_w] + [g[1] for g in grad_w], dim=1)
        return grad_z, gw.to(weight.dtype), None


def _spectral_update(z: torch.Tensor, weight: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    K = freqs.shape[0]
    w = weight.to(z.dtype)
    out = z
    for j in range(K):
        angle = z * freqs[j]
        out = out + w[:, j, None] * torch.sin(angle) + w[:, K + j, None] * torch.cos(angle)
    return out


@register("lsm", LSMConfig)
class LSM(nn.Module):
    """Latent spectral model (see the module docstring).

    Examples
    --------
    >>> import torch, neuralsolve as ns
    >>> model = ns.operators.create("lsm", width=16, levels=3, patch=4)
    >>> model(torch.randn(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, config: LSMConfig) -> None:
        super().__init__()
        self.config = c = config
        chans = c.channels
        self.lift = Pointwise(c.in_channels + c.dim, c.width)
        self.down = nn.ModuleList([_double_conv(c.width, chans[0], c.dim, c.norm, c.periodic)])
        for level in range(1, c.levels):
            self.down.append(
                _double_conv(chans[level - 1], chans[level], c.dim, c.norm, c.periodic)
            )
        self.pool = _POOL[c.dim](2)
        for ch in chans:
            if ch % c.heads:
                raise ValueError(f"heads ({c.heads}) must divide every level's channels {chans}")
        self.spectral = nn.ModuleList(
            NeuralSpectralBlock(ch, heads=c.heads, tokens=c.tokens, basis=c.basis, patch=c.patch)
            for ch in chans
        )
        self.up = nn.ModuleList()
        below = chans[-1]
        for level in range(c.levels - 2, -1, -1):
            out = chans[level - 1] if level > 0 else chans[0]
            self.up.append(_double_conv(below + chans[level], out, c.dim, c.norm, c.periodic))
            below = out
        self.head = nn.Sequential(
            Pointwise(chans[0], c.projection), activation("gelu"),
            Pointwise(c.projection, c.out_channels),
        )  # fmt: skip

    @property
    def multiple(self) -> tuple[int, ...]:
        """The grid is zero-padded to a multiple of this per axis."""
        return tuple(p * 2 ** (self.config.levels - 1) for p in self.config.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        c = self.config
        grid = x.shape[2:]
        v = self.lift(with_coordinates(x))
        pads = [(-n) % m for n, m in zip(grid, self.multiple, strict=True)]
        if any(pads) and c.periodic:
            raise ValueError(
                f"a periodic LSM needs a grid that is a multiple of {self.multiple} per axis "
                f"(patch * 2**(levels - 1)), got {tuple(grid)}: change patch or levels"
            )
        if any(pads):
            v = F.pad(v, [val for p in reversed(pads) for val in (0, p)])
        skips = []
        for level, conv in enumerate(self.down):
            v = conv(v if level == 0 else self.pool(v))
            skips.append(v)
        v = self.spectral[-1](skips[-1])
        for i, conv in enumerate(self.up):
            level = c.levels - 2 - i
            v = F.interpolate(v, scale_factor=2, mode=_UPSAMPLE[c.dim], align_corners=True)
            v = conv(torch.cat([self.spectral[level](skips[level]), v], dim=1))
        v = v[(slice(None), slice(None), *(slice(0, n) for n in grid))]
        return self.head(v)
