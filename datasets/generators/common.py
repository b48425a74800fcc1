"""The data record every generator returns, and the argument checks they share."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from neuralsolve.checks import (
    check_choice,
    check_int,
    check_nonnegative_float,
    check_positive_float,
)

__all__ = ["OperatorData"]


# --------------------------------------------------------------------------- the data record
@dataclass
class OperatorData:
    """Input/output pairs of a solution operator on a grid, and how they were made.

    Attributes
    ----------
    inputs : numpy.ndarray
        ``(N, C_in, *grid)`` float64: the inputs of ``N`` samples (coefficient, source, initial
        condition, ...).
    outputs : numpy.ndarray
        ``(N, C_out, *grid)`` float64: the solutions.
    coordinates : dict of str to numpy.ndarray
        Axis name (``"x"``, ``"y"``) to the 1-D coordinates along that axis of the grid, in the
        order of the array axes.
    pde : str
        The generator's name (``"darcy"``, ``"burgers"``, ``"poisson"``).
    parameters : dict
        Every argument of the generator (seed, solver, tolerance, ...), derived settings (the
        time step used, ...) and statistics measured on the samples, whose keys end in
        ``_max`` or ``_mean`` (solver iterations, ...). Values are numbers, strings or lists of
        them (JSON-serialisable).
    grid_kind : {"cell", "node"}
        ``"cell"``: values at cell centres (finite volumes); ``"node"``: at grid nodes.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    coordinates: dict[str, np.ndarray]
    pde: str
    parameters: dict[str, Any] = field(default_factory=dict)
    grid_kind: str = "cell"

    def __post_init__(self) -> None:
        check_choice("grid_kind", self.grid_kind, ("cell", "node"))
        for name in ("inputs", "outputs"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim < 3:
                raise ValueError(
                    f"{name} must be a numpy array of shape (samples, channels, *grid), got "
                    f"{getattr(arr, 'shape', type(arr).__name__)}"
                )
        grid = self.inputs.shape[2:]
        if self.outputs.shape[0] != self.inputs.shape[0] or self.outputs.shape[2:] != grid:
            raise ValueError(
                f"inputs {self.inputs.shape} and outputs {self.outputs.shape} must have the same "
                "number of samples and the same grid"
            )
        sizes = tuple(len(c) for c in self.coordinates.values())
        if sizes != grid:
            raise ValueError(
                f"coordinates have lengths {sizes} but the grid is {grid}: give one 1-D array "
                "per grid axis"
            )

    @property
    def samples(self) -> int:
        """Number of samples ``N``."""
        return int(self.inputs.shape[0])

    def __len__(self) -> int:
        return self.samples


# --------------------------------------------------------------------------- argument checks
def check_method(method: Any) -> str:
    """Checked generator ``method``: a method name (``str``), else ``TypeError``."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name (str), got {type(method).__name__}")
    return method


def show_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: ``progress``, or for ``None`` whether stderr is a terminal."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    return progress


def progress_bar(total: int, desc: str, progress: bool | None, unit: str = "sample") -> Any:
    """A ``tqdm`` bar on stderr of ``total`` ``unit``s, shown as :func:`show_progress` says."""
    return tqdm(
        total=total, desc=desc, unit=unit, disable=not show_progress(progress), file=sys.stderr
    )


def cell_centres(n: int) -> np.ndarray:
    """The ``n`` cell centres ``(i + 0.5) / n`` of the unit interval."""
    return (np.arange(n) + 0.5) / n


def check_sampling(samples: Any, seed: Any, start: Any) -> tuple[int, int, int]:
    """Checked ``samples`` (>= 1), ``seed`` (>= 0) and ``start`` (>= 0)."""
    return (
        check_int("samples", samples, minimum=1),
        check_int("seed", seed, minimum=0),
        check_int("start", start, minimum=0),
    )


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index``: ``default_rng([seed, index])``, so a sample's
    data depend on its index alone, not on which other samples share the call."""
    return np.random.default_rng([seed, index])


def check_covariance(tau: Any, alpha: Any) -> tuple[float, float]:
    """Checked covariance parameters of a Gaussian random field: ``tau >= 0``, ``alpha > 0``."""
    return check_nonnegative_float("tau", tau), check_positive_float("alpha", alpha)
