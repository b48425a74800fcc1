r"""Model settings derived from the data's grid, and checks that explicit settings fit it.

A config field that the user does not give is derived from the training grid (see
:func:`resolve_options`); a field that is given but cannot work on the grid is refused with a
message that says what would. The defaults come from runs on Darcy flow at 16 x 16, 32 x 32 and
64 x 64 (``docs/benchmarks/operators.md``, "Settings from the grid"):

========== =============================================================================
model      derived from the grid ``n`` (per axis)
========== =============================================================================
fno        ``modes = min(12, max(1, n // 4))``; an explicit ``modes`` above ``n // 2`` is
           refused (the grid holds no higher frequency). ``padding`` from the input fields
           (below): 0 when they wrap around (a periodic problem), 0.125 of each axis when
           they do not (walls, as Darcy's; neuraloperator's Darcy setting).
lsm        ``patch`` and ``levels`` such that ``patch * 2**(levels - 1)`` divides the grid
           (or pads it by at most 15%), at most 5 levels, at least 2 cells per axis on the
           coarsest level, patch 4 where the grid allows it; ``width`` 16 (the config's 32
           costs 4x FNO's time per step at 64 x 64). An explicit pair that pads the grid by
           more than 1/4 per axis is refused. ``periodic`` (circular convolutions) from the
           same test as FNO's padding, when the layout does not pad the grid.
t1         ``modes = min(24, n // 2)`` (DCT) or ``min(12, n // 4)`` (FFT, of each sign);
           ``resolution`` the grid. An explicit ``modes`` above ``n // 2`` is refused.
deeponet   ``sensors`` the grid.
========== =============================================================================

The learning rate is not a model field; :func:`default_lr` gives each model's.

Periodic or not, from the file. The FFT of a Fourier layer treats the grid as periodic; on a
problem with walls the zero padding of FNO removes that assumption. Whether the problem is
periodic is read from the training inputs ``x`` (samples ``s``, channels ``c``) by
:func:`wraparound`: per axis, with ``x_i`` the slice at index ``i`` along it (``n`` slices),

.. math::

    r = \max_c \frac{\operatorname{mean}_s |x_{n-1} - x_0|}
                      {\operatorname{mean}_{s,\, i < n-1} |x_{i+1} - x_i|}

the step across the edge over the typical step between neighbours inside (``0 / 0 = 0``: a
channel constant along the axis does not count). A periodic field sampled without its end
point steps across the edge as it steps anywhere, ``r ~ 1`` (``r = 0`` when the end point
repeats the first); the two edges of a field with walls are a whole domain apart, and ``r``
grows with the grid. The inputs wrap around when ``r <= 2`` (:data:`WRAP_THRESHOLD`) on every
axis. On the first 64 samples of the generators' data: Darcy's coefficient 5.6-6.2 at
16 x 16 and 19 at 64 x 64 (walls: padding 0.125); Burgers' initial condition (n = 256) 1.2
and Navier-Stokes' initial vorticity (64 x 64) 0.88-0.96 (periodic: no padding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_LR",
    "GRID_BOUND_TRANSFER",
    "WALL_PADDING",
    "WRAP_THRESHOLD",
    "Wraparound",
    "default_lr",
    "lsm_layout",
    "resolve_options",
    "wraparound",
]

# Default AdamW learning rates per model, from the sweep in docs/benchmarks/operators.md.
DEFAULT_LR: dict[str, float] = {"fno": 3e-3, "lsm": 3e-3, "t1": 3e-3, "deeponet": 1e-3}

# Models tied to their training grid, with the measured error of evaluating at half the
# training grid (Darcy 64 x 64 -> 32 x 32, 20 epochs, docs/benchmarks/operators.md).
GRID_BOUND_TRANSFER: dict[str, str] = {
    "lsm": "on Darcy, LSM trained at 64 x 64 gave a test error of 0.48 at 32 x 32 against 0.011 "
    "at 64 x 64, and trained at 16 x 16 0.47 at 32 x 32 against 0.025 at 16 x 16 "
    "(docs/benchmarks/operators.md)",
}

# Inputs wrap around (periodic problem) when the edge-to-edge step is at most this many times
# the typical neighbour step, on every axis (see the module docstring).
WRAP_THRESHOLD = 2.0
# FNO's zero padding, as a fraction of each axis, on inputs that do not wrap around.
WALL_PADDING = 0.125

_LSM_MAX_PAD = 0.25  # an explicit LSM layout may pad each axis by at most this fraction
_LSM_AUTO_PAD = 0.15  # a derived layout pads each axis by at most this fraction


def default_lr(model: str) -> float:
    """The default learning rate (AdamW) of ``model``: 1e-3 for a model not in the table."""
    return DEFAULT_LR.get(model, 1e-3)


@dataclass(frozen=True)
class Wraparound:
    """Whether the input fields wrap around: the periodicity test of the module docstring.

    Attributes
    ----------
    ratios : tuple of float
        Per grid axis, ``r``: the step across the edge over the typical neighbour step (the
        largest over the channels).
    threshold : float
        The inputs wrap around when every ratio is at most this.
    """

    ratios: tuple[float, ...]
    threshold: float = WRAP_THRESHOLD

    @property
    def periodic(self) -> bool:
        """Every axis wraps around."""
        return all(r <= self.threshold for r in self.ratios)

    def __str__(self) -> str:
        ratios = ", ".join(f"{r:.2g}" for r in self.ratios)
        if self.periodic:
            return f"inputs wrap around: edge step / neighbour step {ratios} <= {self.threshold:g}"
        return f"inputs do not wrap around: edge step / neighbour step {ratios}, not all <= " + (
            f"{self.threshold:g}"
        )


def wraparound(inputs: torch.Tensor | np.ndarray, threshold: float = WRAP_THRESHOLD) -> Wraparound:
    """Test whether input fields wrap around each grid axis (see the module docstring).

    Parameters
    ----------
    inputs : tensor or array, shape ``(samples, channels, *grid)``
        Some training inputs (a few dozen samples are plenty).
    threshold : float
        The largest ratio of the edge step to the neighbour step that counts as wrapping.

    Returns
    -------
    Wraparound

    Raises
    ------
    ValueError
        ``inputs`` with fewer than 3 axes or fewer than 2 points on a grid axis.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 32, endpoint=False)
    >>> wraparound(np.sin(2 * np.pi * x)[None, None]).periodic  # one period: wraps around
    True
    >>> wraparound(x[None, None]).periodic  # a ramp: the edges are a domain apart
    False
    """
    x = torch.as_tensor(inputs).detach().to("cpu", torch.float64)
    if x.ndim < 3 or min(x.shape[2:]) < 2:
        raise ValueError(
            f"inputs of shape {tuple(x.shape)}: expected (samples, channels, *grid) with at "
            "least 2 points per grid axis"
        )
    ratios = []
    for axis in range(2, x.ndim):
        rest = [d for d in range(x.ndim) if d != 1]  # average over everything but channels
        inner = x.diff(dim=axis).abs().mean(dim=rest)  # (channels,)
        edge = (x.select(axis, -1) - x.select(axis, 0)).abs()
        edge = edge.mean(dim=[d for d in range(edge.ndim) if d != 1])  # (channels,)
        ratio = torch.where(inner > 0, edge / inner.clamp_min(1e-300), torch.zeros_like(edge))
        ratios.append(float(ratio.max()))
    return Wraparound(tuple(ratios), threshold)


def _grid_text(grid: Sequence[int]) -> str:
    return " x ".join(map(str, grid))


def _per_axis(value: Any, dim: int) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * dim
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == dim:
        if all(isinstance(v, int) for v in value):
            return tuple(value)
    return None  # left to the config's own validation


def _padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _lsm_padding(
    grid: Sequence[int], levels: int, patch: Sequence[int]
) -> tuple[list[int], tuple[int, ...]]:
    """``(multiple, padded grid)`` of an LSM with ``levels`` and per-axis ``patch`` on ``grid``:
    the grid is zero-padded to a multiple of ``patch * 2**(levels - 1)`` per axis."""
    multiple = [p * 2 ** (levels - 1) for p in patch]
    return multiple, tuple(_padded(n, m) for n, m in zip(grid, multiple, strict=True))


def lsm_layout(grid: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """``(levels, patch)`` for an LSM on ``grid``: little or no zero padding, the U-Net as deep
    as the grid allows (at most 5 levels, at least 2 cells per axis on the coarsest level).

    Per axis, the patch is the first of 4, 2, 1 that fits at all, with as many levels as fit:
    ``patch * 2**(levels - 1)`` divides the axis or pads it by at most 15% (85 -> 96, as the
    LSM paper pads its Darcy grid), and the coarsest level holds at least one patch and two
    cells. The levels are then the fewest over the axes.

    Examples
    --------
    >>> lsm_layout((16, 16)), lsm_layout((64, 64)), lsm_layout((85, 85))
    ((3, (4, 4)), (5, (4, 4)), (4, (4, 4)))
    """
    best_levels, patches = 5, []
    for n in grid:
        levels, patch = 1, 1
        for p in (4, 2, 1):
            fits = [
                lv
                for lv in range(5, 0, -1)
                if _padded(n, p * 2 ** (lv - 1)) - n <= _LSM_AUTO_PAD * n
                and _padded(n, p * 2 ** (lv - 1)) // 2 ** (lv - 1) >= max(2, p)
            ]
            if fits:
                levels, patch = fits[0], p
                break
        best_levels = min(best_levels, levels)
        patches.append(patch)
    return best_levels, tuple(patches)


def resolve_options(
    model: str,
    grid: Sequence[int],
    given: Mapping[str, Any],
    *,
    periodic: Wraparound | bool | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config fields of ``model`` on ``grid``: ``given`` plus those derived from the grid.

    Parameters
    ----------
    model : str
        A registered name (``fno``, ``lsm``, ``t1``, ``deeponet``; others pass through).
    grid : sequence of int
        The training grid, points per axis.
    given : mapping
        Fields set by the user; they are kept as they are, after the checks below.
    periodic : Wraparound or bool, optional
        Whether the problem is periodic: the :func:`wraparound` test of the training inputs,
        or the caller's word. FNO's ``padding``, when not given, is 0 on a periodic problem and
        :data:`WALL_PADDING` otherwise; LSM's ``periodic`` (circular convolutions), when not
        given, follows the same test, and stays False where the LSM layout zero-pads the grid.
        Both are left to the config's defaults (0, False) when None.

    Returns
    -------
    (options, derived)
        ``options``: every field to pass to :func:`~neuralsolve.operators.create` that was given
        or derived; ``derived``: field -> why it has its value.

    Raises
    ------
    ValueError
        A given field that cannot work on ``grid`` (FNO or T1 modes beyond what the grid holds,
        an LSM layout that pads the grid by more than 1/4 per axis); the message says what
        would work.
    """
    grid = tuple(int(n) for n in grid)
    dim = len(grid)
    text = _grid_text(grid)
    options = dict(given)
    derived: dict[str, str] = {}
    if model == "fno":
        if "modes" in given:
            modes = _per_axis(given["modes"], dim)
            limit = tuple(max(1, n // 2) for n in grid)
            if modes is not None and any(m > cap for m, cap in zip(modes, limit, strict=True)):
                raise ValueError(
                    f"fno: modes={given['modes']!r} is more than a {text} grid holds (at most "
                    f"n // 2 = {_grid_text(limit)} per axis): use modes <= {min(limit)}, or "
                    f"leave modes out to get {min(12, max(1, min(grid) // 4))} on this grid"
                )
        else:
            modes = tuple(min(12, max(1, n // 4)) for n in grid)
            options["modes"] = modes[0] if len(set(modes)) == 1 else modes
            derived["modes"] = f"min(12, n // 4) on a {text} grid"
        if "padding" not in given and periodic is not None:
            wraps = periodic.periodic if isinstance(periodic, Wraparound) else bool(periodic)
            why = str(periodic) if isinstance(periodic, Wraparound) else "told so"
            options["padding"] = 0.0 if wraps else WALL_PADDING
            derived["padding"] = (
                f"0 (periodic: {why})" if wraps else f"{WALL_PADDING:g} (walls: {why})"
            )
    elif model == "t1":
        fft = given.get("transform", "dct") == "fft"
        limit = tuple(max(1, n // 2) for n in grid)
        if "modes" in given:
            modes = _per_axis(given["modes"], dim)
            if modes is not None and any(m > cap for m, cap in zip(modes, limit, strict=True)):
                kind = "FFT modes of each sign" if fft else "DCT modes"
                raise ValueError(
                    f"t1: modes={given['modes']!r} is more {kind} than a {text} grid holds "
                    f"(at most n // 2 = {_grid_text(limit)} per axis): use modes <= "
                    f"{min(limit)}, or leave modes out to have them derived from the grid"
                )
        else:
            cap, div = (12, 4) if fft else (24, 2)
            modes = tuple(min(cap, max(1, n // div)) for n in grid)
            options["modes"] = modes[0] if len(set(modes)) == 1 else modes
            derived["modes"] = f"min({cap}, n // {div}) on a {text} grid"
        if "resolution" not in given:
            options["resolution"] = grid
            derived["resolution"] = "the training grid (the variance-preserving init)"
    elif model == "deeponet":
        if "sensors" not in given:
            options["sensors"] = grid
            derived["sensors"] = "the training grid"
    elif model == "lsm":
        levels_auto, patch_auto = lsm_layout(grid)
        if "levels" in given or "patch" in given:
            levels = given.get("levels", levels_auto)
            patch = _per_axis(given.get("patch", patch_auto), dim)
            if isinstance(levels, int) and patch is not None:
                multiple, padded = _lsm_padding(grid, levels, patch)
                too_much = any(
                    pn - n > _LSM_MAX_PAD * n for pn, n in zip(padded, grid, strict=True)
                )
                if too_much:
                    cells = math.prod(padded) / math.prod(grid)
                    raise ValueError(
                        f"lsm: levels={levels} with patch={given.get('patch', patch)!r} needs a "
                        f"multiple of {_grid_text(multiple)} per axis, so a {text} grid would be "
                        f"zero-padded to {_grid_text(padded)} ({cells:.1f}x the cells, all paid "
                        f"for in every step): use levels={levels_auto} with "
                        f"patch={patch_auto[0] if len(set(patch_auto)) == 1 else patch_auto}, "
                        "or leave levels and patch out to have them chosen from the grid"
                    )
            for key, value in (("levels", levels_auto), ("patch", patch_auto)):
                if key not in given:
                    options[key] = (
                        value[0] if isinstance(value, tuple) and len(set(value)) == 1 else value
                    )
                    derived[key] = (
                        f"from the grid {text}, with the given {'patch' if key == 'levels' else 'levels'}"
                    )
        else:
            options["levels"] = levels_auto
            options["patch"] = patch_auto[0] if len(set(patch_auto)) == 1 else patch_auto
            padded = _lsm_padding(grid, levels_auto, patch_auto)[1]
            why = "no padding" if padded == grid else f"padded to {_grid_text(padded)}"
            derived["levels"] = derived["patch"] = f"fit a {text} grid ({why})"
        if "width" not in given:
            options["width"] = 16
            derived["width"] = "16: a training step within 2x FNO's (32 costs 4x at 64 x 64)"
        if "periodic" not in given and periodic is not None:
            options["periodic"], derived["periodic"] = _lsm_periodic(grid, options, periodic)
    return options, derived


def _lsm_periodic(
    grid: tuple[int, ...], options: Mapping[str, Any], periodic: Wraparound | bool
) -> tuple[bool, str]:
    """LSM's ``periodic`` from the wrap-around test (the one that sets FNO's padding), and why.

    Inputs that wrap around make the convolutions pad circularly, unless the layout in
    ``options`` zero-pads the grid: a periodic LSM takes no padding, so it stays False then.
    """
    wraps = periodic.periodic if isinstance(periodic, Wraparound) else bool(periodic)
    why = str(periodic) if isinstance(periodic, Wraparound) else "told so"
    if not wraps:
        return False, f"False (walls: {why})"
    levels = options.get("levels", 5)
    patch = _per_axis(options.get("patch", 4), len(grid))
    if isinstance(levels, int) and patch is not None:
        padded = _lsm_padding(grid, levels, patch)[1]
        if padded != grid:
            return False, (
                f"False ({why}, but levels={levels} with patch={options.get('patch', 4)!r} "
                f"zero-pad the grid to {_grid_text(padded)}, which a periodic LSM cannot do)"
            )
    return True, f"True (circular convolutions; {why})"
