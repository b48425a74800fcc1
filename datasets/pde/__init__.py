"""PDE problems for the mesh-free solvers (PINNs): declarative definitions and a registry.

    >>> from neuralsolve.datasets import pde
    >>> prob = pde.make("peak2d")
    >>> x = prob.domain.uniform(256)                 # (256, 2) interior points, float64
    >>> r = prob.residual(x, prob.exact)             # (256,), zero up to rounding
    >>> xb, g = prob.boundary_data(64)               # boundary points and u = g there
    >>> sorted(pde.available())[:3]
    ['allen-cahn', 'burgers', 'exp-nd']

Modules: :mod:`.problem` (:class:`PDEProblem`), :mod:`.derivatives` (:func:`derivatives`,
autograd, batched over points), :mod:`.builtin` (the problems and their hand-derived forcing
terms). :func:`make` builds a problem by name with keyword parameters, each call a fresh
object; :func:`available` maps every name to its one-line description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import builtin
from .builtin import (
    allen_cahn,
    burgers,
    exp_nd,
    peak2d,
    poisson1d_hf,
    poisson2d_hf,
    two_peak2d,
)
from .derivatives import Derivatives, derivatives
from .problem import Field, PDEProblem, Residual

__all__ = [
    "PROBLEMS",
    "Derivatives",
    "Field",
    "PDEProblem",
    "Residual",
    "allen_cahn",
    "available",
    "builtin",
    "burgers",
    "derivatives",
    "exp_nd",
    "make",
    "peak2d",
    "poisson1d_hf",
    "poisson2d_hf",
    "two_peak2d",
]


@dataclass(frozen=True)
class _Entry:
    """A registered problem: its factory, the parameters the name fixes, its description."""

    factory: Callable[..., PDEProblem]
    doc: str
    fixed: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> list[str]:
        names = inspect.signature(self.factory).parameters
        return [p for p in names if p not in self.fixed]


PROBLEMS: dict[str, _Entry] = {
    "peak2d": _Entry(peak2d, "-lap u = f on [-1,1]^2, u = exp(-1000|x-(1/2,1/2)|^2) (DAS/AAS)"),
    "two-peak2d": _Entry(
        two_peak2d,
        "lap u - div(u grad(x^2+y^2)) = f on [-1,1]^2, two peaks at ±(1/2,1/2) (DAS/AAS)",
    ),
    "exp-nd": _Entry(exp_nd, "-lap u = f on [-1,1]^d, u = exp(-10|x|^2), d = 2..10 (default 5)"),
    "exp5d": _Entry(exp_nd, "exp-nd with d = 5", {"d": 5}),
    "exp10d": _Entry(exp_nd, "exp-nd with d = 10", {"d": 10}),
    "poisson1d-hf": _Entry(
        poisson1d_hf, "u'' = f, GP-HM high-frequency solutions, case P1-P5 (default sin(100x))"
    ),
    "poisson2d-hf": _Entry(poisson2d_hf, "lap u = f on [0,2pi]^2, GP-HM cases Q1 (default) and Q2"),
    "burgers": _Entry(
        burgers, "u_t + u u_x = (0.01/pi) u_xx, u(x,0) = -sin(pi x), u(±1,t) = 0; no exact"
    ),
    "allen-cahn": _Entry(
        allen_cahn, "steady lap u + u(u^2-1) = f, GP-HM cases A1, A2 (1-D), AC2 (2-D, default)"
    ),
}
"""Every built-in problem by name (:func:`make` builds one, :func:`available` describes them)."""


def available() -> dict[str, str]:
    """``{name: one-line description}`` of every problem :func:`make` knows."""
    return {name: entry.doc for name, entry in PROBLEMS.items()}


def make(name: str, **params: Any) -> PDEProblem:
    """A fresh :class:`PDEProblem` by name, with the factory's keyword parameters.

    Parameters
    ----------
    name : str
        One of :func:`available` (``"peak2d"``, ``"exp-nd"``, ``"burgers"``, ...).
    **params
        The problem's parameters, e.g. ``make("exp-nd", d=8)``,
        ``make("poisson1d-hf", case="P4")``, ``make("burgers", nu=0.005)``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones), or a parameter out of range.
    TypeError
        A parameter the problem does not take (the message lists the valid ones).
    """
    if not isinstance(name, str) or name not in PROBLEMS:
        raise ValueError(f"unknown PDE problem {name!r}; available: {', '.join(PROBLEMS)}")
    entry = PROBLEMS[name]
    valid = entry.parameters()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(
            f"PDE problem {name!r} got unknown parameter(s) {', '.join(unknown)}; valid: "
            f"{', '.join(valid) if valid else '(none)'}"
        )
    problem = entry.factory(**entry.fixed, **params)
    return problem if problem.name == name else replace(problem, name=name)
