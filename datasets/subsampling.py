"""Spatial sub-sampling of grid data by strides: train at 32, test at 64 from one file."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

__all__ = ["reachable_resolutions"]


def _divisors(m: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(m) + 1) if m % d == 0]
    return sorted({*small, *(m // d for d in small)})


def reachable_resolutions(n: int) -> list[int]:
    """The sizes a grid axis of ``n`` points can be sub-sampled to by a stride, largest first.

    ``r`` is reachable when ``n`` is a multiple of ``r`` (stride ``n / r``, e.g. 64 -> 32) or
    ``n - 1`` is a multiple of ``r - 1`` (stride ``(n - 1) / (r - 1)``, keeping both ends of a
    node grid, e.g. 421 -> 85 or 65 -> 33).

    Examples
    --------
    >>> reachable_resolutions(64)
    [64, 32, 22, 16, 10, 8, 4, 2, 1]
    """
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"a grid axis has at least 1 point, got {n}")
    sizes = {n // d for d in _divisors(n)}
    if n > 1:
        sizes |= {(n - 1) // d + 1 for d in _divisors(n - 1)}
    return sorted(sizes, reverse=True)


def _stride(n: int, r: int, axis: int) -> int:
    if r == n:
        return 1
    if 1 <= r < n:
        if n % r == 0:
            return n // r
        if r > 1 and (n - 1) % (r - 1) == 0:
            return (n - 1) // (r - 1)
    options = ", ".join(str(s) for s in reachable_resolutions(n))
    raise ValueError(
        f"resolution {r} is not reachable on grid axis {axis} of {n} points by a stride; "
        f"reachable: {options} (r divides {n}, or r - 1 divides {n - 1})"
    )


def resolution_strides(
    grid: tuple[int, ...], resolution: int | Sequence[int] | None
) -> tuple[int, ...]:
    """The stride per axis of ``grid`` that reaches ``resolution`` (``None``: strides of 1)."""
    if resolution is None:
        return (1,) * len(grid)
    if isinstance(resolution, bool) or not isinstance(resolution, int | Sequence | np.integer):
        raise TypeError(
            f"resolution must be an int or a tuple of ints (one per grid axis), "
            f"got {type(resolution).__name__}"
        )
    target = (
        (int(resolution),) * len(grid)
        if isinstance(resolution, int | np.integer)
        else tuple(operator.index(r) for r in resolution)
    )
    if len(target) != len(grid):
        raise ValueError(
            f"resolution {tuple(target)} has {len(target)} entries but the grid {grid} has "
            f"{len(grid)} axes: pass one size per axis, or one int for all"
        )
    return tuple(_stride(n, r, i) for i, (n, r) in enumerate(zip(grid, target, strict=True)))


def subsample(a: np.ndarray, strides: tuple[int, ...]) -> np.ndarray:
    """``a[:, :, ::s0, ::s1, ...]`` for an array ``(k, C, *grid)``."""
    if all(s == 1 for s in strides):
        return a
    return a[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
