"""Writing operator-data HDF5 files (the layout is in :mod:`neuralsolve.datasets.hdf5`):
:class:`DatasetWriter` block by block and atomically, :func:`write_dataset` in one call."""

from __future__ import annotations

import contextlib
import json
import operator
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import torch

from neuralsolve._version import __version__
from neuralsolve.checks import check_choice, check_int
from neuralsolve.errors import NonFiniteError
from neuralsolve.fileio import atomic_path, h5_writer

from .hdf5 import AXES, FORMAT, GRID_KINDS, LAYOUT_VERSION, RESERVED_ATTRS

__all__ = ["DatasetWriter", "write_dataset", "write_pdebench_darcy"]


def _as_array(v: Any, name: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(v).__name__}")
    if v.dtype.kind not in "fiu":
        raise TypeError(f"{name} has dtype {v.dtype}, expected real numbers (float or int)")
    return v


def _check_same_count(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"inputs hold {x.shape[0]} samples but outputs {y.shape[0]}: pass the same count"
        )


def _shape_arg(shape: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints (C, *grid), got {shape!r}") from None
    if len(out) < 2 or min(out) < 1:
        raise ValueError(
            f"{name} is {out}, expected (C, *grid) of positive sizes with at least one grid "
            "axis, e.g. (1, 64, 64)"
        )
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray | torch.Tensor):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _parameters_json(parameters: Mapping[str, Any] | None) -> str:
    if parameters is None:
        return "{}"
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
    try:
        return json.dumps(dict(parameters), default=_json_default, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"parameters cannot be stored as JSON ({exc}): pass numbers, strings, lists and "
            "dicts of them (finite numbers only)"
        ) from exc


def _missing_text(rows: np.ndarray, most: int = 8) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    runs = np.split(rows, breaks)
    parts = [f"{r[0]}" if r.size == 1 else f"{r[0]}-{r[-1]}" for r in runs[:most]]
    return ", ".join(parts) + (", ..." if len(runs) > most else "")


class DatasetWriter(AbstractContextManager["DatasetWriter"]):
    """Write an operator-data file (layout in the module docstring) block by block, atomically.

    The file is written under a temporary name in the same directory and renamed into place
    when the ``with`` block ends normally and every row was written; otherwise no file is left
    (and an existing file at ``path`` is untouched).

    Parameters
    ----------
    path
        The file to write (``.h5``).
    samples
        The number of samples ``N``.
    input_shape, output_shape
        ``(C_in, *grid)`` and ``(C_out, *grid)``: one sample's shapes, on the same grid.
    pde
        What the data solve (``"darcy"``, ``"poisson"``, ...).
    parameters
        The generator's parameters, stored as a JSON string; numpy scalars and arrays become
        numbers and lists.
    coordinates
        Optional 1-D coordinates per grid axis, keys ``"x"``, ``"y"``, ``"z"``.
    grid_kind
        ``"cell"`` (values at cell centres) or ``"node"`` (values at grid nodes, both ends).
    dtype
        ``"float32"`` or ``"float64"``.
    **attrs
        Free root attributes (strings, numbers, arrays of numbers).

    Raises
    ------
    ValueError
        Bad shapes, sizes, grid kind or coordinates; at the end of the ``with`` block, rows
        that were never written (named).
    NonFiniteError
        A written block holds NaN or infinite values.

    Examples
    --------
    >>> with DatasetWriter("d.h5", 100, (1, 64, 64), (1, 64, 64), pde="darcy") as w:  # doctest: +SKIP
    ...     for start in range(0, 100, 10):
    ...         x, y = generate(10)
    ...         w.write(start, x, y)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        samples: int,
        input_shape: tuple[int, ...],
        output_shape: tuple[int, ...],
        *,
        pde: str,
        parameters: Mapping[str, Any] | None = None,
        coordinates: Mapping[str, Any] | None = None,
        grid_kind: str = "cell",
        dtype: str | np.dtype[Any] | type = "float32",
        **attrs: Any,
    ) -> None:
        self.path = Path(path)
        self.samples = check_int("samples", samples, minimum=1)
        self.input_shape = _shape_arg(input_shape, "input_shape")
        self.output_shape = _shape_arg(output_shape, "output_shape")
        if self.output_shape[1:] != self.input_shape[1:]:
            raise ValueError(
                f"output_shape {self.output_shape} has grid {self.output_shape[1:]} but "
                f"input_shape {self.input_shape} has grid {self.input_shape[1:]}: inputs and "
                "outputs must be on the same grid"
            )
        if not isinstance(pde, str) or not pde:
            raise ValueError(f"pde must name the equation (e.g. 'darcy'), got {pde!r}")
        self.pde = pde
        self._parameters = _parameters_json(parameters)
        check_choice("grid_kind", grid_kind, GRID_KINDS)
        self.grid_kind = grid_kind
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self._coordinates = self._check_coordinates(coordinates)
        reserved = sorted(set(attrs) & set(RESERVED_ATTRS))
        if reserved:
            raise ValueError(f"attributes {reserved} are set by the writer itself: rename yours")
        self._attrs = dict(attrs)
        self._written = np.zeros(self.samples, dtype=bool)
        self._file: h5py.File | None = None
        self._atomic: AbstractContextManager[Path] | None = None
        self._h5: AbstractContextManager[h5py.File] | None = None
        self._used = False

    @property
    def grid(self) -> tuple[int, ...]:
        return self.input_shape[1:]

    def _check_coordinates(self, coordinates: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
        if coordinates is None:
            return {}
        grid = self.grid
        allowed = AXES[: len(grid)]
        out: dict[str, np.ndarray] = {}
        for axis, values in coordinates.items():
            if axis not in allowed:
                raise ValueError(
                    f"coordinates key {axis!r} is not a grid axis: a grid of {len(grid)} axes "
                    f"takes {list(allowed)}"
                )
            c = _as_array(values, f"coordinates[{axis!r}]")
            n = grid[AXES.index(axis)]
            if c.shape != (n,):
                raise ValueError(
                    f"coordinates[{axis!r}] has shape {c.shape}, expected ({n},): one value per "
                    f"point of grid axis {AXES.index(axis)} of the grid {grid}"
                )
            if not np.isfinite(c).all():
                raise NonFiniteError(f"coordinates[{axis!r}] holds NaN or infinite values")
            out[axis] = c
        return out

    def __enter__(self) -> DatasetWriter:
        if self._used:
            raise RuntimeError("a DatasetWriter writes one file once: make a new one")
        self._used = True
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        f: h5py.File | None = None
        try:
            self._h5 = h5_writer(tmp)
            f = self._h5.__enter__()
            f.attrs["neuralsolve_format"] = FORMAT
            f.attrs["version"] = LAYOUT_VERSION
            f.attrs["neuralsolve_version"] = __version__
            f.attrs["pde"] = self.pde
            f.attrs["parameters"] = self._parameters
            f.attrs["grid_kind"] = self.grid_kind
            for k, v in self._attrs.items():
                try:
                    f.attrs[k] = v
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"attribute {k}={v!r} cannot be stored in HDF5 ({exc}): pass a string, "
                        "a number or an array of numbers (or put it in parameters)"
                    ) from exc
            for key, shape in (("inputs", self.input_shape), ("outputs", self.output_shape)):
                f.create_dataset(
                    key, shape=(self.samples, *shape), dtype=self.dtype, chunks=(1, *shape)
                )
            for axis, c in self._coordinates.items():
                f.create_dataset(f"coordinates/{axis}", data=c)
        except BaseException as exc:
            if self._h5 is not None:
                with contextlib.suppress(OSError):
                    self._h5.__exit__(None, None, None)
                self._h5 = None
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            self._atomic = None
            raise
        self._file = f
        return self

    def write(self, start: int, inputs: Any, outputs: Any) -> None:
        """Write ``k`` samples at rows ``start`` to ``start + k - 1``.

        Parameters
        ----------
        start
            The first row.
        inputs, outputs
            ``(k, *input_shape)`` and ``(k, *output_shape)`` arrays or tensors.

        Raises
        ------
        ValueError
            Wrong shapes, or rows outside ``0 .. samples - 1``.
        NonFiniteError
            NaN or infinite values (also values too large for float32), naming the sample.
        """
        if self._file is None:
            raise RuntimeError(
                "DatasetWriter.write() needs an open writer: "
                "`with DatasetWriter(...) as w: w.write(start, inputs, outputs)`"
            )
        x = _as_array(inputs, "inputs")
        y = _as_array(outputs, "outputs")
        for name, a, shape in (("inputs", x, self.input_shape), ("outputs", y, self.output_shape)):
            if a.shape[1:] != shape:
                raise ValueError(
                    f"{name} has shape {a.shape}, expected (k, {', '.join(map(str, shape))}): a "
                    f"block of k samples of shape {shape}; for one sample pass {name}[None]"
                )
        _check_same_count(x, y)
        k = x.shape[0]
        try:
            start = operator.index(start)
        except TypeError:
            raise TypeError(f"start must be an int row, got {type(start).__name__}") from None
        if start < 0 or start + k > self.samples:
            raise ValueError(
                f"rows {start} to {start + k - 1} are outside the file's rows 0 to "
                f"{self.samples - 1}: check start ({start}) and the block size ({k})"
            )
        if k == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            x = x.astype(self.dtype, copy=False)
            y = y.astype(self.dtype, copy=False)
        for name, a in (("inputs", x), ("outputs", y)):
            finite = np.isfinite(a.reshape(k, -1)).all(axis=1)
            if not finite.all():
                first = int(np.flatnonzero(~finite)[0])
                raise NonFiniteError(
                    f"{name} holds NaN or infinite values (or values beyond {self.dtype}'s "
                    f"range) in sample {start + first} (row {first} of this block): fix the "
                    "generator or drop the sample"
                )
        self._file["inputs"][start : start + k] = x
        self._file["outputs"][start : start + k] = y
        self._file.guard.check()  # a full disk: stop now, not after generating every sample
        self._written[start : start + k] = True

    @property
    def missing(self) -> np.ndarray:
        """Rows not written yet."""
        return np.flatnonzero(~self._written)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file = None
        h5, self._h5 = self._h5, None
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return None
        try:
            if h5 is not None:
                h5.__exit__(None, None, None)  # closes; raises a recorded write error
        except BaseException as close_exc:
            atomic.__exit__(type(close_exc), close_exc, close_exc.__traceback__)
            raise
        if exc_type is not None:
            atomic.__exit__(exc_type, exc, tb)  # removes the temporary file
            return None
        missing = self.missing
        if missing.size:
            err = ValueError(
                f"{str(self.path)!r} was not written: rows {_missing_text(missing)} of "
                f"0 to {self.samples - 1} have no data ({missing.size} missing); write every "
                "row with w.write(start, inputs, outputs) before the with-block ends"
            )
            atomic.__exit__(ValueError, err, None)
            raise err
        atomic.__exit__(None, None, None)  # renames into place
        return None


def write_dataset(
    path: str | os.PathLike[str],
    inputs: Any,
    outputs: Any,
    *,
    pde: str,
    parameters: Mapping[str, Any] | None = None,
    coordinates: Mapping[str, Any] | None = None,
    grid_kind: str = "cell",
    dtype: str | np.dtype[Any] | type | None = None,
    **attrs: Any,
) -> Path:
    """Write all samples at once in the operator-data layout (atomically); return the path.

    Parameters
    ----------
    path
        The file to write.
    inputs, outputs
        ``(N, C_in, *grid)`` and ``(N, C_out, *grid)`` arrays or tensors.
    pde, parameters, coordinates, grid_kind, **attrs
        As for :class:`DatasetWriter`.
    dtype
        The stored dtype; by default float64 when ``inputs`` or ``outputs`` is float64, else
        float32.
    """
    x = _as_array(inputs, "inputs")
    y = _as_array(outputs, "outputs")
    for name, a in (("inputs", x), ("outputs", y)):
        if a.ndim < 3:
            raise ValueError(
                f"{name} has shape {a.shape}, expected (N, C, *grid) with at least one grid "
                f"axis: for one channel add the axis with {name}[:, None]"
            )
    _check_same_count(x, y)
    if dtype is None:
        dtype = np.float64 if np.float64 in (x.dtype, y.dtype) else np.float32
    with DatasetWriter(
        path,
        x.shape[0],
        x.shape[1:],
        y.shape[1:],
        pde=pde,
        parameters=parameters,
        coordinates=coordinates,
        grid_kind=grid_kind,
        dtype=dtype,
        **attrs,
    ) as w:
        w.write(0, x, y)
    return Path(path)


def write_pdebench_darcy(
    path: str | os.PathLike[str],
    inputs: Any,
    outputs: Any,
    *,
    coordinates: Sequence[Any] | None = None,
    **attrs: Any,
) -> Path:
    """Write 2-D steady samples in PDEBench's Darcy layout (``2D_DarcyFlow_beta*.hdf5``),
    atomically; return the path.

    The file holds ``nu`` ``(N, H, W)`` (the input, one channel), ``tensor`` ``(N, 1, H, W)``
    (the output), and ``x-coordinate`` / ``y-coordinate`` (cell centres on the unit square
    unless given), float32 as PDEBench stores them. It is read back by
    :class:`~neuralsolve.datasets.H5Dataset` as the ``pdebench-darcy`` layout.

    Parameters
    ----------
    path
        The file to write.
    inputs, outputs
        ``(N, 1, H, W)`` arrays or tensors (``(N, H, W)`` is accepted for ``inputs``).
    coordinates : (x, y), optional
        The grid's coordinates, of lengths ``H`` and ``W``.
    **attrs
        Root attributes (numbers or strings), e.g. ``beta``.

    Raises
    ------
    ValueError
        Shapes that are not one input and one output channel on the same 2-D grid.
    """
    x = _as_array(inputs, "inputs")
    y = _as_array(outputs, "outputs")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or y.ndim != 4 or y.shape[1] != 1 or y.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"PDEBench's Darcy layout holds one input and one output channel on a 2-D grid: "
            f"expected inputs (N, 1, H, W) and outputs (N, 1, H, W), got {x.shape} and {y.shape}"
        )
    _check_same_count(x, y)
    h, w = x.shape[1:]
    if coordinates is None:
        coordinates = ((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w)
    cx, cy = (np.asarray(c, dtype=np.float32) for c in coordinates)
    if cx.shape != (h,) or cy.shape != (w,):
        raise ValueError(
            f"coordinates must have lengths {h} and {w} (the grid), got {cx.shape} and {cy.shape}"
        )
    path = Path(path)
    with atomic_path(path) as tmp, h5_writer(tmp) as f:
        f.create_dataset("nu", data=x.astype(np.float32))
        f.create_dataset("tensor", data=y.astype(np.float32))
        f.create_dataset("x-coordinate", data=cx)
        f.create_dataset("y-coordinate", data=cy)
        for key, value in attrs.items():
            f.attrs[key] = value
    return path
