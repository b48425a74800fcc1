"""`PDEProblem`: a declarative PDE on a box, the form the mesh-free solvers (PINNs) consume.

A problem is the equation written as a residual

    r(x) = R(x, u(x), grad u(x), d^2u/dx_i^2(x)),        x in the box,

which vanishes at every point for the solution, plus Dirichlet data ``u = g`` on the boundary
and, for a time-dependent problem, the initial data ``u(x, t0) = u0(x)``. Time is then the last
coordinate of the box: the Dirichlet boundary is made of the faces of the spatial axes (for
every ``t``), the initial face is ``t = t0``, and the final face ``t = t1`` carries no data.

:meth:`PDEProblem.residual` evaluates ``r`` for any callable ``u_fn`` (a network, an exact
solution) at a batch of points through :func:`~neuralsolve.datasets.pde.derivatives.derivatives`
(autograd, ``create_graph=True``, so a PINN backpropagates through it), after checking the
points and the callable's output, and refuses a non-finite residual: every such error names the
problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neuralsolve.domain import Box
from neuralsolve.errors import NonFiniteError

from .derivatives import Derivatives, derivatives, evaluate

__all__ = ["Field", "PDEProblem", "Residual"]

Field = Callable[[torch.Tensor], torch.Tensor]
"""A function of the points: ``(n, d) -> (n,)`` (an exact solution, boundary data, a forcing)."""

Residual = Callable[[torch.Tensor, Derivatives], torch.Tensor]
"""The equation: ``(x (n, d), Derivatives) -> r (n,)``, zero for the solution."""


def _boundary_tol(width: float, dtype: torch.dtype) -> float:
    """How far from a face a point may lie and still count as on it: ``sqrt(eps) * width``
    (1.5e-8 of the width in float64, 3.5e-4 in float32)."""
    return math.sqrt(torch.finfo(dtype).eps) * width


@dataclass(frozen=True)
class PDEProblem:
    """A PDE on a box: its residual, boundary (and initial) data and, when known, its solution.

    Parameters
    ----------
    name : str
        Names the problem in every error message.
    domain : Box
        The box; for a time-dependent problem time is its last coordinate.
    equation : callable
        ``equation(x, D) -> (n,)``: the residual from the points ``x`` ``(n, d)`` and
        ``D`` (:class:`~neuralsolve.datasets.pde.derivatives.Derivatives`: ``D.u``, ``D.grad``,
        ``D.hess_diag``, ``D.laplacian``). Zero for the solution.
    exact : callable, optional
        The exact solution ``(n, d) -> (n,)`` (``None`` when not known in closed form).
    dirichlet : callable, optional
        The boundary values ``g``; default ``exact``. One of the two is required.
    initial : callable, optional
        ``u(x, t0)`` as a function of the ``(n, d)`` points (their last column is ``t0``);
        required when ``time_dependent``.
    forcing : callable, optional
        The right-hand side ``f`` the equation subtracts, when it has one (its size is the scale
        the tests measure the residual of the exact solution against).
    time_dependent : bool
        Time is the last coordinate of the box.
    order : {1, 2}
        The highest derivative the equation uses.
    params : dict
        The parameters the problem was made with (by :func:`~neuralsolve.datasets.pde.make`).
    focus : (centre, scale), optional
        Where the exact solution concentrates: a point of the box and a length. In more than 3
        dimensions errors are measured by Monte Carlo, and uniform points miss such a solution
        (for exp10d, 2 of 1e5 uniform points hold half of ``||u*||^2``); with a focus, half the
        test points are drawn from ``N(centre, scale^2 I)`` in the box and importance-weighted
        (``PINN.test_set``).
    doc : str
        One line: the equation, the solution, the domain.

    Examples
    --------
    >>> from neuralsolve.datasets import pde
    >>> prob = pde.make("peak2d")
    >>> x = prob.domain.uniform(100, dtype=torch.float64)
    >>> r = prob.residual(x, prob.exact)  # (100,), ~1e-12 for the exact solution
    >>> xb, g = prob.boundary_data(50)  # points on the boundary and u = g there
    """

    name: str
    domain: Box
    equation: Residual
    exact: Field | None = None
    dirichlet: Field | None = None
    initial: Field | None = None
    forcing: Field | None = None
    time_dependent: bool = False
    order: int = 2
    params: dict[str, Any] = field(default_factory=dict)
    focus: tuple[tuple[float, ...], float] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a PDE problem needs a non-empty str name, got {self.name!r}")
        who = f"problem {self.name!r}"
        if not isinstance(self.domain, Box):
            raise TypeError(
                f"{who}: domain must be a neuralsolve.domain.Box, got {type(self.domain).__name__}"
            )
        if not callable(self.equation):
            raise TypeError(f"{who}: equation must be callable (x, derivatives) -> (n,)")
        for key in ("exact", "dirichlet", "initial", "forcing"):
            value = getattr(self, key)
            if value is not None and not callable(value):
                raise TypeError(
                    f"{who}: {key} must be a callable (n, d) -> (n,) or None, got "
                    f"{type(value).__name__}"
                )
        if not isinstance(self.time_dependent, bool):
            raise TypeError(f"{who}: time_dependent must be True or False")
        if self.order not in (1, 2) or isinstance(self.order, bool):
            raise ValueError(f"{who}: order must be 1 or 2, got {self.order!r}")
        if self.exact is None and self.dirichlet is None:
            raise ValueError(f"{who}: give the boundary values (dirichlet) or the exact solution")
        if self.time_dependent:
            if self.domain.dim < 2:
                raise ValueError(
                    f"{who}: a time-dependent problem needs a box of at least 2 axes "
                    f"(space, then time), got {self.domain.dim}"
                )
            if self.initial is None and self.exact is None:
                raise ValueError(f"{who}: a time-dependent problem needs its initial condition")
        if not isinstance(self.params, dict):
            raise TypeError(f"{who}: params must be a dict, got {type(self.params).__name__}")
        if self.focus is not None:
            self._check_focus(who)
        if not isinstance(self.doc, str):
            raise TypeError(f"{who}: doc must be a str")
        object.__setattr__(self, "params", dict(self.params))

    def _check_focus(self, who: str) -> None:
        try:
            centre, scale = self.focus  # type: ignore[misc]
            centre = tuple(float(c) for c in centre)
            scale = float(scale)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{who}: focus must be (centre, scale), a point of the box and a length, got "
                f"{self.focus!r}"
            ) from exc
        lo, hi = self.domain.lower, self.domain.upper
        inside = all(a <= c <= b for a, c, b in zip(lo, centre, hi, strict=False))
        if len(centre) != self.domain.dim or not inside:
            raise ValueError(
                f"{who}: focus centre must be a point of the {self.domain.dim}-D box, got {centre}"
            )
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{who}: focus scale must be a positive length, got {scale}")
        object.__setattr__(self, "focus", (centre, scale))

    # -- shape of the problem ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of coordinates of a point (time included)."""
        return self.domain.dim

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """The spatial axes: all of them, or all but the last (time) one."""
        d = self.domain.dim
        return tuple(range(d - 1 if self.time_dependent else d))

    @property
    def boundary_values(self) -> Field:
        """``g``: ``dirichlet``, or ``exact`` when no separate boundary data was given."""
        g = self.dirichlet if self.dirichlet is not None else self.exact
        assert g is not None  # __post_init__ requires one of the two
        return g

    @property
    def initial_values(self) -> Field:
        """``u0`` of a time-dependent problem: ``initial``, or ``exact`` at ``t = t0``."""
        if not self.time_dependent:
            raise ValueError(f"problem {self.name!r} is steady: it has no initial condition")
        u0 = self.initial if self.initial is not None else self.exact
        assert u0 is not None  # __post_init__ requires one of the two
        return u0

    def solution(self, x: torch.Tensor) -> torch.Tensor:
        """The exact solution at the points ``x`` ``(n, d)`` -> ``(n,)``.

        Raises
        ------
        ValueError
            The problem has no exact solution in closed form, or ``x`` is outside the box.
        """
        if self.exact is None:
            raise ValueError(
                f"problem {self.name!r} has no exact solution in closed form (exact=None): "
                "compare against a reference solver instead"
            )
        self.check_points(x)
        return evaluate(self.exact, x, f"problem {self.name!r}")

    # -- checks ---------------------------------------------------------------------------------
    def check_points(self, x: object, *, name: str = "points") -> None:
        """Raise unless ``x`` is a finite floating ``(n, d)`` tensor inside the box; the message
        names the problem (``Box.check_points`` with the problem's name)."""
        self.domain.check_points(x, name=f"{name} of problem {self.name!r}")

    def _on_faces(self, x: torch.Tensor, axes: tuple[int, ...], side: str) -> torch.Tensor:
        """``(n,)`` bool: the rows that lie on a face of one of ``axes`` (``side``: 'both' or
        'lower')."""
        hits = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for a in axes:
            lo, hi = self.domain.lower[a], self.domain.upper[a]
            tol = _boundary_tol(hi - lo, x.dtype)
            on = (x[:, a] - lo).abs() <= tol
            if side == "both":
                on = on | ((x[:, a] - hi).abs() <= tol)
            hits = hits | on
        return hits

    def _check_on(self, x: torch.Tensor, axes: tuple[int, ...], side: str, where: str) -> None:
        self.check_points(x, name=f"{where} points")
        off = ~self._on_faces(x, axes, side)
        if bool(off.any()):
            first = int(torch.nonzero(off)[0])
            raise ValueError(
                f"{int(off.sum())} of {x.shape[0]} {where} points of problem {self.name!r} are "
                f"not on the {where} ({self._describe(where)}), e.g. row {first}: "
                f"{x[first].tolist()}; draw them with {where}_data()"
            )

    def _describe(self, where: str) -> str:
        if where == "initial":
            return f"face t = {self.domain.lower[-1]}"
        axes = self.spatial_axes
        return "faces of the box" if len(axes) == self.dim else f"faces of the spatial axes {axes}"

    # -- the equation ---------------------------------------------------------------------------
    def derivatives(self, x: torch.Tensor, u_fn: Field) -> Derivatives:
        """``u_fn``'s value and derivatives at ``x`` (checked to lie in the box): the gradient
        and the second derivatives along the spatial axes (see
        :func:`~neuralsolve.datasets.pde.derivatives.derivatives`)."""
        self.check_points(x)
        return derivatives(
            u_fn, x, self.order, second_axes=self.spatial_axes, name=f"problem {self.name!r}"
        )

    def residual(self, x: torch.Tensor, u_fn: Field) -> torch.Tensor:
        """The PDE residual ``r(x) = R(x, u, grad u, d^2u/dx_i^2)`` of ``u_fn`` at the points.

        Parameters
        ----------
        x : Tensor, (n, d)
            Points in the box (interior or boundary). When ``x`` requires grad the residual is
            differentiable in ``x`` too.
        u_fn : callable
            ``(n, d) -> (n,)`` or ``(n, 1)``, row by row: a network or an exact solution.

        Returns
        -------
        Tensor, (n,)
            Differentiable in ``u_fn``'s parameters (``create_graph=True``).

        Raises
        ------
        TypeError, ValueError
            ``x`` is not a finite floating ``(n, d)`` tensor in the box; ``u_fn`` returned
            another shape than ``(n,)`` or ``(n, 1)``; the equation returned another shape
            than ``(n,)``. Each message names the problem.
        NonFiniteError
            ``u_fn`` returned, or the residual holds, NaN or infinite values (the message
            names the problem, the count and the first such point).
        """
        D = self.derivatives(x, u_fn)
        r = self.equation(D.x, D)
        n = x.shape[0]
        if not isinstance(r, torch.Tensor) or tuple(r.shape) != (n,):
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(
                f"problem {self.name!r}: its equation returned {got} for {n} points; it must "
                f"return one residual per point, shape ({n},)"
            )
        bad_u = ~torch.isfinite(D.u.detach())
        if bool(bad_u.any()):
            first = int(torch.nonzero(bad_u)[0])
            raise NonFiniteError(
                f"problem {self.name!r}: u_fn returned NaN or infinite values at "
                f"{int(bad_u.sum())} of {n} points, e.g. row {first}: x = {x[first].tolist()}; "
                "check the network's weights and inputs"
            )
        bad = ~torch.isfinite(r.detach())
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0])
            raise NonFiniteError(
                f"problem {self.name!r}: the residual is NaN or infinite at {int(bad.sum())} of "
                f"{n} points, e.g. row {first}: x = {x[first].tolist()}, u = "
                f"{float(D.u.detach()[first])}; check u_fn's output (and the network's weights) there"
            )
        return r

    # -- boundary and initial data --------------------------------------------------------------
    def boundary_points(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """``n`` points uniform on the Dirichlet boundary, ``(n, d)``: the box's surface (faces
        weighted by area), or for a time-dependent problem the spatial faces times ``[t0, t1]``."""
        if not self.time_dependent:
            return self.domain.boundary_uniform(n, generator=generator, dtype=dtype, device=device)
        space = Box(self.domain.lower[:-1], self.domain.upper[:-1])
        xs = space.boundary_uniform(n, generator=generator, dtype=torch.float64)
        t = Box(self.domain.lower[-1:], self.domain.upper[-1:]).uniform(n, generator=generator)
        return torch.cat([xs, t], dim=1).to(dtype=dtype, device=device)

    def initial_points(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """``n`` points uniform on the initial face ``t = t0``, ``(n, d)`` (time-dependent only)."""
        self.initial_values  # noqa: B018 (raises for a steady problem)
        X = self.domain.uniform(n, generator=generator, dtype=torch.float64)
        X[:, -1] = self.domain.lower[-1]
        return X.to(dtype=dtype, device=device)

    def boundary_data(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_b, g(x_b))``: ``n`` boundary points ``(n, d)`` and the Dirichlet values ``(n,)``."""
        xb = self.boundary_points(n, generator=generator, dtype=dtype, device=device)
        with torch.no_grad():
            g = evaluate(self.boundary_values, xb, f"problem {self.name!r} boundary values")
        return xb, g

    def initial_data(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_0, u0(x_0))``: ``n`` points on ``t = t0`` ``(n, d)`` and the initial values
        ``(n,)`` (time-dependent only)."""
        x0 = self.initial_points(n, generator=generator, dtype=dtype, device=device)
        with torch.no_grad():
            u0 = evaluate(self.initial_values, x0, f"problem {self.name!r} initial values")
        return x0, u0

    def boundary_residual(self, x: torch.Tensor, u_fn: Field) -> torch.Tensor:
        """``u_fn(x) - g(x)`` ``(n,)`` at Dirichlet boundary points (checked to lie on it)."""
        self._check_on(x, self.spatial_axes, "both", "boundary")
        who = f"problem {self.name!r}"
        with torch.no_grad():
            g = evaluate(self.boundary_values, x, f"{who} boundary values")
        return evaluate(u_fn, x, who) - g

    def initial_residual(self, x: torch.Tensor, u_fn: Field) -> torch.Tensor:
        """``u_fn(x) - u0(x)`` ``(n,)`` at points on ``t = t0`` (time-dependent only)."""
        u0_fn = self.initial_values
        self._check_on(x, (self.dim - 1,), "lower", "initial")
        who = f"problem {self.name!r}"
        with torch.no_grad():
            u0 = evaluate(u0_fn, x, f"{who} initial values")
        return evaluate(u_fn, x, who) - u0

    def boundary_loss(self, x: torch.Tensor, u_fn: Field) -> torch.Tensor:
        """``mean((u_fn(x) - g(x))^2)`` over boundary points: the PINN's boundary term."""
        return self.boundary_residual(x, u_fn).square().mean()

    def initial_loss(self, x: torch.Tensor, u_fn: Field) -> torch.Tensor:
        """``mean((u_fn(x) - u0(x))^2)`` over initial points (time-dependent only)."""
        return self.initial_residual(x, u_fn).square().mean()
