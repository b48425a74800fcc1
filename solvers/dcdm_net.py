"""The networks DCDM uses to turn a residual into a search direction.

Both take ``(k, 1 + F, *grid)``: the unit-normalised residual and ``F = 2`` geometry flags
(fluid cell, cell grounded by a Dirichlet wall; see :func:`geometry_flags`), and return
``(k, 1, *grid)``, zeroed outside the fluid by the solver. They are fully convolutional, so one
set of weights serves every grid size; 2-D and 3-D are the same classes with ``dim``.

``"paper"``
    The CNN of Kaneda et al. (ICML 2023, ``src/train.py`` of the official code): 16 channels,
    a linear first convolution, residual blocks ``h = relu(conv(h)) + h``, one 2x average-pool
    level with nearest-neighbour upsampling added back to the fine features, and a 1x1 head.
    The 64^3 variant has 4 fine, 6 coarse and 4 fine blocks (~16 GMAC per call at 64^3, the cost
    of ~9,000 sparse products) and a receptive field of ~44 cells.
``"unet"``
    A multilevel U-Net in the spirit of a multigrid V-cycle: a few channels at the fine level,
    then one *shared* coarse block applied recursively down to a grid of about ``coarsest``
    cells. Because the coarse weights are shared, the number of levels follows the grid (4 at
    32^3, 6 at 128^3), the receptive field always covers the domain, and a model trained on a
    small grid applies unchanged to a large one. Its cost is about ``8/7`` of the fine level's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from neuralsolve.checks import check_bool, check_choice, check_positive_float, check_positive_int

__all__ = ["FLAG_CHANNELS", "DCDMNet", "DCDMNetConfig", "geometry_flags"]

FLAG_CHANNELS = 2
KINDS = ("unet", "paper")
ACTIVATIONS = ("relu", "gelu", "none")


@dataclass(frozen=True)
class DCDMNetConfig:
    """Architecture of a :class:`DCDMNet`.

    Attributes
    ----------
    dim : int
        2 or 3.
    kind : {"unet", "paper"}
        See the module notes.
    channels : int
        Fine-level channels (``"paper"``: every level; the paper uses 16).
    coarse_channels : int
        ``"unet"``: channels of the shared coarse block.
    fine_blocks : int
        Convolutions on the fine level before (and, for ``"paper"``, after) the coarse part.
    coarse_blocks : int
        Convolutions per coarse level (``"paper"``: on its single coarse level).
    coarsest : int
        ``"unet"``: recursion stops when the smallest side would drop below this many cells.
    activation : {"relu", "gelu", "none"}
        ``"none"`` makes the network a linear map (then DCDM is a flexible PCG with a learned
        linear preconditioner).
    skip : bool
        Add the input residual to the output, ``f(r) = r + g(r)``: training then starts from
        CG's direction instead of a random one. Without it the one-step loss sits at 1 (a
        direction orthogonal to ``r``, with vanishing gradient) for the first ~10^3 steps.
    coarse_gain : float
        ``"unet"``: factor on each coarser level's correction inside the shared recursion,
        ``h = post(pre(h) + gain * up(V(pool(pre(h)))))``. The unscaled stencil of a coarser
        grid is 4x stronger on a smooth field (``h^2`` scaling of the Laplacian in any
        dimension), so a multigrid coarse-grid correction is 4x larger per level; with shared
        weights the network cannot tell the levels apart and must otherwise learn that gain at
        the depths it was trained on (3-4 levels at 32^3-64^3, 5 at 128^3). With 4, the shipped
        model's recipe gives iterations that stay flat from 32^3 to 128^3 but start higher (the
        figures are in docs/benchmarks/dcdm.md). 1 (no gain) is the shipped model's, and that of
        models written before this option existed.
    learn_gain : bool
        ``"unet"``: make the gain a trained scalar (one for all levels, so it still extrapolates
        to deeper grids), stored as its logarithm and started at ``coarse_gain``. The learned
        value is in the weights (``gain`` property), not in this config.
    """

    dim: int = 3
    kind: str = "unet"
    channels: int = 8
    coarse_channels: int = 16
    fine_blocks: int = 1
    coarse_blocks: int = 2
    coarsest: int = 4
    activation: str = "relu"
    skip: bool = True
    coarse_gain: float = 1.0
    learn_gain: bool = False

    def __post_init__(self) -> None:
        check_choice("dim", self.dim, (2, 3))
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown DCDM network kind {self.kind!r}; available: {', '.join(KINDS)}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; available: {', '.join(ACTIVATIONS)}"
            )
        for name in ("channels", "coarse_channels", "fine_blocks", "coarse_blocks", "coarsest"):
            check_positive_int(name, getattr(self, name))
        gain = self.coarse_gain
        check_positive_float("coarse_gain", gain)
        check_bool("learn_gain", self.learn_gain)
        if self.learn_gain and self.kind != "unet":
            raise ValueError('learn_gain needs kind="unet" (the "paper" network has no recursion)')
        if gain != 1 and self.kind != "unet":
            raise ValueError(
                f'coarse_gain={gain!r} needs kind="unet": the "paper" network has one coarse '
                "level and no recursion to scale (leave coarse_gain at 1)"
            )
        if self.coarsest < 2:
            raise ValueError(f"coarsest must be at least 2 cells, got {self.coarsest}")

    @classmethod
    def paper(cls, dim: int = 3, size: int = 64) -> DCDMNetConfig:
        """The official code's network for its training size 64 (4-6-4 blocks) or 128 (6-10-6)."""
        if size not in (64, 128):
            raise ValueError(f"the paper's networks are for size 64 or 128, got {size}")
        fine, coarse = (4, 6) if size == 64 else (6, 10)
        return cls(dim=dim, kind="paper", channels=16, fine_blocks=fine, coarse_blocks=coarse)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DCDMNetConfig:
        """A config from :meth:`to_dict` output; unknown keys raise, naming the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(
                f"unknown DCDM network option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onednn_inference(x: torch.Tensor) -> bool:
    """Whether a convolution on ``x`` may go straight to oneDNN (see :class:`_OneDNNConv3d`):
    a CPU float32/bfloat16 tensor with oneDNN available and enabled."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


class _OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that, in CPU inference, always calls oneDNN's convolution.

    PyTorch sends a batch-1 convolution to its im2col fallback (``slow_conv3d``) when
    ``channels * depth * height <= 20480``: the coarse levels of the U-Net and the first layer
    (3 input channels) below 128^3. oneDNN runs those 1.6x (64^3) to 3x (32^3) faster per
    network call on the shipped 3-D model (one thread, same output to float32 rounding).
    Training, other devices and dtypes take the ordinary path; the weights are the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if not training and x.dtype == self.weight.dtype and _onednn_inference(x):
            return torch.ops.aten.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


def _conv(dim: int, cin: int, cout: int, kernel: int = 3) -> nn.Module:
    cls = _OneDNNConv3d if dim == 3 else nn.Conv2d
    return cls(cin, cout, kernel, padding=kernel // 2)


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "gelu": nn.GELU(), "none": nn.Identity()}[name]


class _Blocks(nn.Module):
    """``count`` residual blocks ``h = act(conv(h)) + h`` (the paper's form)."""

    def __init__(self, dim: int, channels: int, count: int, activation: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(dim, channels, channels) for _ in range(count))
        self.act = _activation(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            h = self.act(conv(h)) + h
        return h


class DCDMNet(nn.Module):
    """The residual -> search-direction network (see the module notes).

    Parameters
    ----------
    config : DCDMNetConfig, optional
    **options
        Fields of :class:`DCDMNetConfig` (instead of ``config``).

    Examples
    --------
    >>> import torch
    >>> net = DCDMNet(dim=2, channels=4)
    >>> net(torch.randn(3, 3, 16, 16)).shape
    torch.Size([3, 1, 16, 16])
    """

    def __init__(self, config: DCDMNetConfig | None = None, **options: Any) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        self.config = config if config is not None else DCDMNetConfig(**options)
        c = self.config
        self.lift = _conv(c.dim, 1 + FLAG_CHANNELS, c.channels)
        if c.kind == "paper":
            self.fine_in = _Blocks(c.dim, c.channels, c.fine_blocks, c.activation)
            self.coarse = _Blocks(c.dim, c.channels, c.coarse_blocks, c.activation)
            self.fine_out = _Blocks(c.dim, c.channels, c.fine_blocks, c.activation)
            self.head = _conv(c.dim, c.channels, 1, kernel=1)
        else:
            self.fine_in = _Blocks(c.dim, c.channels, c.fine_blocks, c.activation)
            self.restrict = _conv(c.dim, c.channels, c.coarse_channels)
            self.pre = _Blocks(c.dim, c.coarse_channels, c.coarse_blocks, c.activation)
            self.post = _Blocks(c.dim, c.coarse_channels, c.coarse_blocks, c.activation)
            self.prolong = _conv(c.dim, c.coarse_channels, c.channels)
            self.fine_out = _Blocks(c.dim, c.channels, c.fine_blocks, c.activation)
            self.head = _conv(c.dim, c.channels, 1, kernel=1)
            if c.learn_gain:
                self.log_gain = nn.Parameter(torch.tensor(math.log(c.coarse_gain)))
        if c.skip:  # start exactly at f(r) = r (CG); the learned part grows from zero
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # ------------------------------------------------------------------ structure
    def levels(self, grid: tuple[int, ...]) -> int:
        """Coarse levels used on ``grid`` (``"paper"``: always 1)."""
        if self.config.kind == "paper":
            return 1
        return max(1, math.floor(math.log2(max(min(grid), 2) / self.config.coarsest)))

    @property
    def gain(self) -> torch.Tensor | float:
        """Factor on each coarser level's correction (learned when ``learn_gain``)."""
        return self.log_gain.exp() if self.config.learn_gain else self.config.coarse_gain

    def _multiple(self, grid: tuple[int, ...]) -> int:
        return 2 ** self.levels(grid)

    def flops_per_cell(self) -> float:
        """Multiply-adds per fine-grid cell of one call (convolutions only)."""
        c = self.config
        k = 3**c.dim
        fine = k * (1 + FLAG_CHANNELS) * c.channels + 2 * c.fine_blocks * k * c.channels**2
        fine += c.channels
        if c.kind == "paper":
            return fine + c.coarse_blocks * k * c.channels**2 / 2**c.dim
        per_level = (
            2 * c.coarse_blocks * k * c.coarse_channels**2 + 2 * k * c.channels * c.coarse_channels
        )
        ratio = 1.0 / 2**c.dim
        return fine + per_level * ratio / (1 - ratio)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(k, 3, *grid) -> (k, 1, *grid)``."""
        c = self.config
        if x.ndim != c.dim + 2 or x.shape[1] != 1 + FLAG_CHANNELS:
            raise ValueError(
                f"DCDMNet ({c.dim}-D) takes (k, {1 + FLAG_CHANNELS}, *grid) with {c.dim} grid axes, "
                f"got shape {tuple(x.shape)}"
            )
        grid = tuple(x.shape[2:])
        m = self._multiple(grid)
        pad = [(-s) % m for s in grid]
        if any(pad):
            spec: list[int] = []
            for p in reversed(pad):
                spec += [0, p]
            x = F.pad(x, spec)
        h = self.lift(x)
        h = self.fine_in(h)
        if c.kind == "paper":
            coarse = self.coarse(_pool(h, c.dim))
            h = h + _upsample(coarse, c.dim)
        else:
            coarse = self._vcycle(self.restrict(_pool(h, c.dim)), self.levels(tuple(h.shape[2:])))
            h = h + self.prolong(_upsample(coarse, c.dim))
        h = self.fine_out(h)
        out = self.head(h)
        if c.skip:
            out = out + x[:, :1]
        if any(pad):
            out = out[(slice(None), slice(None), *(slice(0, s) for s in grid))]
        return out

    def _vcycle(self, h: torch.Tensor, depth: int) -> torch.Tensor:
        h = self.pre(h)
        if depth > 1:
            coarse = self._vcycle(_pool(h, self.config.dim), depth - 1)
            h = h + _upsample(self.gain * coarse, self.config.dim)  # 8x fewer cells
        return self.post(h)


def _pool(h: torch.Tensor, dim: int) -> torch.Tensor:
    return F.avg_pool3d(h, 2) if dim == 3 else F.avg_pool2d(h, 2)


def _upsample(h: torch.Tensor, dim: int) -> torch.Tensor:
    return F.interpolate(h, scale_factor=2, mode="nearest")


def geometry_flags(op: Any) -> torch.Tensor:
    """The network's geometry channels for a stencil operator: ``(2, *grid)`` float.

    Channel 0 is 1 in fluid cells (the unknowns), 0 in solids. Channel 1 is 1 in fluid cells
    that are grounded (their diagonal exceeds the sum of their face weights: a Dirichlet wall,
    an open face, or a pinned gauge cell). Both come from ``A`` itself, so any gallery problem
    (Dirichlet, Neumann, mixed, obstacles, variable coefficients) gets them without extra input.
    """
    from neuralsolve.stencil import StencilOperator

    if not isinstance(op, StencilOperator):
        raise TypeError(
            f"DCDM needs a structured-grid operator (a StencilOperator, e.g. a gallery problem's "
            f"prob.A), got {type(op).__name__}: an assembled matrix carries no grid for the "
            "network to run on. Build the problem with neuralsolve.datasets.poisson or "
            "make_problem, or use a method without a grid (cg, pcg-ic, pcg-amg)"
        )
    grid = op.grid_shape
    diag = op.diagonal_grid()
    offdiag = torch.zeros_like(diag)
    for a, w in enumerate(op.face_weights()):
        if grid[a] == 1:
            continue
        lower = [slice(None)] * len(grid)
        upper = [slice(None)] * len(grid)
        lower[a] = slice(0, -1)
        upper[a] = slice(1, None)
        offdiag[tuple(lower)] += w
        offdiag[tuple(upper)] += w
    fluid = (
        torch.ones(grid, dtype=torch.bool, device=op.device)
        if op.mask is None
        else op.mask.to(torch.bool)
    )
    grounded = fluid & (diag - offdiag > 1e-8 * diag.abs().amax())
    return torch.stack([fluid, grounded]).to(torch.float32)
