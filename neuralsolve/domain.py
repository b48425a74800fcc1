"""Axis-aligned boxes: the domains of the mesh-free solvers (PINN problems, their samplers).

A :class:`Box` is ``[lower_1, upper_1] x ... x [lower_d, upper_d]``. Points are rows of an
``(n, d)`` tensor. The box draws uniform interior and boundary points, checks that points lie in
it, and maps to and from the unit cube, which is where samplers and flows do their work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .checks import check_positive_int

__all__ = ["Box"]


@dataclass(frozen=True)
class Box:
    """The box ``prod_i [lower_i, upper_i]`` in ``d = len(lower)`` dimensions.

    Parameters
    ----------
    lower, upper : sequence of float
        Corners; ``lower_i < upper_i``, all finite.

    Examples
    --------
    >>> box = Box.cube(2, -1.0, 1.0)
    >>> box.dim, box.volume
    (2, 4.0)
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        lower = tuple(float(v) for v in self.lower)
        upper = tuple(float(v) for v in self.upper)
        if len(lower) == 0 or len(lower) != len(upper):
            raise ValueError(
                f"a box needs as many lower as upper bounds, at least one each; got "
                f"{len(lower)} and {len(upper)}"
            )
        bad = [
            i
            for i, (a, b) in enumerate(zip(lower, upper, strict=True))
            if not (math.isfinite(a) and math.isfinite(b) and a < b)
        ]
        if bad:
            raise ValueError(
                f"each box axis needs finite lower < upper; axis {bad[0]} is "
                f"[{lower[bad[0]]}, {upper[bad[0]]}]"
            )
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @classmethod
    def cube(cls, dim: int, low: float = 0.0, high: float = 1.0) -> Box:
        """``[low, high]^dim``."""
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        return cls((low,) * dim, (high,) * dim)

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def volume(self) -> float:
        return math.prod(b - a for a, b in zip(self.lower, self.upper, strict=True))

    def bounds(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` as ``(d,)`` tensors."""
        return (
            torch.tensor(self.lower, dtype=dtype, device=device),
            torch.tensor(self.upper, dtype=dtype, device=device),
        )

    def from_unit(self, U: torch.Tensor) -> torch.Tensor:
        """Map points of the unit cube ``[0, 1]^d`` into the box (affinely)."""
        lo, hi = self.bounds(U.dtype, U.device)
        return lo + U * (hi - lo)

    def to_unit(self, X: torch.Tensor) -> torch.Tensor:
        """Map points of the box into the unit cube (the inverse of :meth:`from_unit`)."""
        lo, hi = self.bounds(X.dtype, X.device)
        return (X - lo) / (hi - lo)

    def contains(self, X: torch.Tensor, *, tol: float = 0.0) -> torch.Tensor:
        """``(n,)`` bool: which rows of ``X`` lie in the box (closed, widened by ``tol``)."""
        self.check_points(X, check_inside=False)
        lo, hi = self.bounds(X.dtype, X.device)
        return ((X >= lo - tol) & (X <= hi + tol)).all(dim=1)

    def check_points(self, X: object, *, name: str = "points", check_inside: bool = True) -> None:
        """Raise a clear error unless ``X`` is a finite ``(n, d)`` floating tensor in the box."""
        if not isinstance(X, torch.Tensor) or not X.is_floating_point():
            raise TypeError(
                f"{name} must be a floating torch.Tensor of shape (n, {self.dim}), got "
                f"{type(X).__name__}"
            )
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(
                f"{name} must have shape (n, {self.dim}) for a {self.dim}-D box, got "
                f"{tuple(X.shape)}"
            )
        if not bool(torch.isfinite(X).all()):
            raise ValueError(f"{name} hold NaN or infinite values")
        if check_inside:
            lo, hi = self.bounds(X.dtype, X.device)
            outside = ~((X >= lo) & (X <= hi)).all(dim=1)
            if bool(outside.any()):
                first = int(torch.nonzero(outside)[0])
                raise ValueError(
                    f"{int(outside.sum())} of {X.shape[0]} {name} lie outside the box "
                    f"{list(zip(self.lower, self.upper, strict=True))}, e.g. row {first}: "
                    f"{X[first].tolist()}"
                )

    def uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """``n`` points drawn uniformly in the box, ``(n, d)``."""
        check_positive_int("n", n)
        U = torch.rand(n, self.dim, generator=generator, dtype=dtype, device="cpu")
        return self.from_unit(U.to(device))

    def boundary_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """``n`` points drawn uniformly on the box's surface, ``(n, d)``.

        A face is chosen with probability proportional to its area (its ``d - 1``-volume; in
        1-D the two end points are equally likely), then a uniform point on it.
        """
        check_positive_int("n", n)
        d = self.dim
        widths = [b - a for a, b in zip(self.lower, self.upper, strict=True)]
        areas = torch.tensor(
            [math.prod(widths[:i] + widths[i + 1 :]) for i in range(d)], dtype=torch.float64
        )
        axis = torch.multinomial(areas / areas.sum(), n, replacement=True, generator=generator)
        side = torch.randint(0, 2, (n,), generator=generator)
        U = torch.rand(n, d, generator=generator, dtype=torch.float64)
        U[torch.arange(n), axis] = side.to(torch.float64)
        return self.from_unit(U).to(dtype=dtype, device=device)

    def boundary_lift(
        self, g: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor
    ) -> torch.Tensor:
        r"""Extend boundary data ``g`` into the box using only its values on the faces.

        With ``s_f(x)`` the scaled distance from ``x`` to face ``f`` (``(x_i - a_i) / (b_i -
        a_i)`` or ``(b_i - x_i) / (b_i - a_i)``) and ``π_f(x)`` the projection of ``x`` onto
        that face, the lift is the inverse-distance blend

        .. math::

            G(x) = \frac{\sum_f w_f(x)\, g(π_f(x))}{\sum_f w_f(x)},
            \qquad w_f(x) = \prod_{f' \ne f} s_{f'}(x)^2,

        a smooth (rational) function inside the box with ``G = g`` on every face: where
        ``s_f = 0`` every weight but ``w_f`` vanishes. ``g`` is called only at points on the
        boundary, so the lift carries none of a problem's interior solution. On an edge or
        corner (two or more ``s_f = 0``, all weights zero) ``G(x) = g(x)``, which is on the
        boundary too.

        Parameters
        ----------
        g : callable
            ``(m, d) -> (m,)``, the boundary data.
        X : torch.Tensor
            ``(n, d)`` points of the box (differentiable: the lift is built from torch ops).

        Returns
        -------
        torch.Tensor
            ``(n,)``.
        """
        lo, hi = self.bounds(X.dtype, X.device)
        width = hi - lo
        scaled, values = [], []
        for i in range(self.dim):
            for face, s in (
                (lo[i], (X[:, i] - lo[i]) / width[i]),
                (hi[i], (hi[i] - X[:, i]) / width[i]),
            ):
                P = X.clone()
                P[:, i] = face
                scaled.append(s.square())
                values.append(g(P).reshape(-1))
        S = torch.stack(scaled, dim=1)  # (n, F)
        ones = torch.ones_like(S[:, :1])
        before = torch.cumprod(torch.cat([ones, S[:, :-1]], dim=1), dim=1)
        after = torch.cumprod(torch.cat([ones, S.flip(1)[:, :-1]], dim=1), dim=1).flip(1)
        W = before * after  # w_f = prod over the other faces
        total = W.sum(dim=1)
        on_edge = total == 0
        blend = (W * torch.stack(values, dim=1)).sum(dim=1) / torch.where(on_edge, 1.0, total)
        if bool(on_edge.any()):
            blend = blend.clone()
            blend[on_edge] = g(X[on_edge]).reshape(-1).to(blend.dtype)
        return blend

    @classmethod
    def from_bounds(cls, bounds: Sequence[tuple[float, float]]) -> Box:
        """``Box.from_bounds([(-1, 1), (0, 2)])``: one ``(lower, upper)`` pair per axis."""
        pairs = list(bounds)
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
