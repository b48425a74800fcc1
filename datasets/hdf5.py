"""Operator-learning data in HDF5: pairs of input and output functions on a grid, read lazily.

A sample is a pair ``(x, y)`` of arrays of shape ``(C_in, *grid)`` and ``(C_out, *grid)``
(e.g. a permeability field and the pressure it gives). This module reads, describes and writes
such files; :class:`~neuralsolve.datasets.operator_data.H5Dataset` reads their samples on
demand, so a data set larger than memory trains as well as a small one.

The operator-data layout, version 1 (written by :class:`DatasetWriter` and
:func:`write_dataset`)::

    /                attrs: neuralsolve_format = "operator-data", version = 1,
                            neuralsolve_version, pde (str), parameters (a JSON string of a
                            dict), grid_kind ("cell" or "node"), plus free attributes
    /inputs          (N, C_in, *grid)    float32 or float64   input functions
    /outputs         (N, C_out, *grid)   the same dtype       target functions
    /coordinates/x   (grid[0],)          optional: one 1-D array per grid axis
    /coordinates/y   (grid[1],)
    /coordinates/z   (grid[2],)

``inputs`` and ``outputs`` are chunked by sample (``chunks=(1, C, *grid)``), so reading one
sample reads one chunk. A file with ``inputs`` and ``outputs`` but without the root attributes
is read as this layout too.

PDEBench files are read as they are, with no conversion; :func:`describe` says which layout it
found:

``pdebench-darcy`` (``2D_DarcyFlow_beta*.hdf5``)
    ``nu`` ``(N, H, W)`` is the input (a channel axis is added), ``tensor`` ``(N, 1, H, W)`` the
    output; optional ``x-coordinate`` and ``y-coordinate``.
``pdebench-tensor`` (1-D Burgers, Advection, diffusion-reaction; 2-D single-field files)
    ``tensor`` ``(N, Nt, *grid)``, with ``x-coordinate`` (and ``y-coordinate``) naming the
    grid axes and ``t-coordinate``. The input is frame ``input_step`` (default 0), the output
    frame ``output_step`` (default -1, the last), each with one channel. A trailing channel
    axis ``(N, Nt, *grid, C)`` is recognised by the coordinate count (without coordinates, a
    5-D ``tensor`` is read as ``(N, Nt, Nx, Ny, C)``) and moved to the front.
``pdebench-groups`` (2-D diffusion-reaction, shallow water)
    one group per sample (``0000``, ``0001``, ...; taken in sorted order), each with ``data``
    ``(Nt, *grid, C)`` and ``grid/x``, ``grid/y``, ``grid/t``. Input and output are frames
    ``input_step`` and ``output_step``, channels moved to the front.

A missing key, a wrong shape, a truncated or non-HDF5 file raises
:class:`~neuralsolve.errors.DataFormatError` naming the file and the key.

The torch side (``H5Dataset``, ``split_indices``, ``Normalizer``) is in
:mod:`neuralsolve.datasets.operator_data`.
"""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import torch

from neuralsolve._version import __version__
from neuralsolve.errors import DataFormatError, NonFiniteError
from neuralsolve.fileio import atomic_path

__all__ = [
    "FORMAT",
    "LAYOUTS",
    "LAYOUT_VERSION",
    "DatasetWriter",
    "describe",
    "format_description",
    "reachable_resolutions",
    "write_dataset",
]

FORMAT = "operator-data"
LAYOUT_VERSION = 1
LAYOUTS = ("neuralsolve", "pdebench-darcy", "pdebench-tensor", "pdebench-groups")
AXES = ("x", "y", "z")
GRID_KINDS = ("cell", "node")
_RESERVED_ATTRS = ("neuralsolve_format", "version", "neuralsolve_version")
_EXPECTED_KEYS = (
    "'inputs' + 'outputs' (neuralsolve operator-data), 'nu' + 'tensor' (PDEBench Darcy), "
    "'tensor' (PDEBench time series), or groups '0000', '0001', ... each holding 'data' "
    "(PDEBench per-sample groups)"
)


# --------------------------------------------------------------------------- layout detection


@dataclass(frozen=True)
class _Layout:
    """What :func:`_detect` found in a file: how samples map to ``(input, output)`` pairs."""

    kind: str
    samples: int
    input_shape: tuple[int, ...]  # (C_in, *grid)
    output_shape: tuple[int, ...]  # (C_out, *grid)
    dtype: str
    attrs: dict[str, Any]
    coordinates: dict[str, np.ndarray] | None
    input_key: str
    output_key: str
    time_steps: int | None = None  # frames per sample, for the PDEBench time-series layouts
    channels_last: bool = False  # pdebench-tensor: (N, Nt, *grid, C)
    groups: tuple[str, ...] = ()  # pdebench-groups: the sample groups in sorted order

    @property
    def grid(self) -> tuple[int, ...]:
        return self.input_shape[1:]


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {str(p)!r} does not exist: check the path")
    if p.is_dir():
        raise DataFormatError(f"{str(p)!r} is a directory, expected an HDF5 file")
    return p


def _open(p: Path) -> h5py.File:
    """Open ``p`` read-only, turning HDF5's errors into a :class:`DataFormatError`."""
    try:
        return h5py.File(p, "r")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataFormatError(
            f"{str(p)!r} is not a readable HDF5 file ({exc}): expected HDF5 in the neuralsolve "
            "operator-data layout or a PDEBench layout; a file that was cut short while copying "
            "or downloading reads like this, so fetch it again"
        ) from exc


def _plain(v: Any) -> Any:
    """An HDF5 attribute value as plain Python (str, int, float, bool, lists of them)."""
    if isinstance(v, h5py.Empty):
        return None
    if isinstance(v, np.ndarray):
        return [_plain(e) for e in v.tolist()] if v.dtype.kind in "OSU" else v.tolist()
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, list):
        return [_plain(e) for e in v]
    return v


def _dataset(f: h5py.File | h5py.Group, key: str, p: Path, expected: str) -> h5py.Dataset:
    obj = f.get(key)
    if obj is None:
        found = ", ".join(repr(k) for k in list(f.keys())[:20]) or "nothing"
        raise DataFormatError(
            f"{str(p)!r} has no dataset {key!r} (found {found}): expected {expected}"
        )
    if not isinstance(obj, h5py.Dataset):
        raise DataFormatError(f"{str(p)!r}: {key!r} is a group, expected a dataset {expected}")
    if obj.dtype.kind != "f":
        raise DataFormatError(
            f"{str(p)!r}: dataset {key!r} has dtype {obj.dtype}, expected floating point "
            "(float32 or float64)"
        )
    return obj


def _coordinates(
    f: h5py.File | h5py.Group, keys: Mapping[str, str], grid: tuple[int, ...], p: Path
) -> dict[str, np.ndarray] | None:
    """Read the 1-D coordinate arrays named in ``keys`` (axis -> key) that exist in ``f``."""
    out: dict[str, np.ndarray] = {}
    for axis, key in keys.items():
        if key not in f:
            continue
        i = AXES.index(axis)
        obj = f[key]
        if i >= len(grid):
            raise DataFormatError(
                f"{str(p)!r} has coordinate {key!r} for axis {axis!r}, but the data have "
                f"{len(grid)} grid axis(es) {grid}: remove it or fix the data's shape"
            )
        if not isinstance(obj, h5py.Dataset) or obj.shape != (grid[i],):
            shape = obj.shape if isinstance(obj, h5py.Dataset) else "a group"
            raise DataFormatError(
                f"{str(p)!r}: coordinate {key!r} has shape {shape}, expected ({grid[i]},), "
                f"one value per point of grid axis {i} of the data's grid {grid}"
            )
        out[axis] = np.asarray(obj[()])
    return out or None


def _detect(f: h5py.File, p: Path) -> _Layout:
    """Find the layout of an open file and check its keys and shapes."""
    fmt = _plain(f.attrs.get("neuralsolve_format"))
    if fmt is not None and fmt != FORMAT:
        hint = "; read it with neuralsolve.datasets.read_system" if fmt == "linear-system" else ""
        raise DataFormatError(
            f"{str(p)!r} is a neuralsolve {fmt!r} file, expected {FORMAT!r} data "
            f"(pairs of input and output functions){hint}"
        )
    if fmt == FORMAT or "inputs" in f or "outputs" in f:
        return _detect_own(f, p)
    if "nu" in f:
        return _detect_darcy(f, p)
    if "tensor" in f:
        return _detect_tensor(f, p)
    groups = sorted(k for k, v in f.items() if isinstance(v, h5py.Group))
    if groups and "data" in f[groups[0]]:
        return _detect_groups(f, p, groups)
    found = sorted(f.keys())
    shown = ", ".join(repr(k) for k in found[:20]) + (" ..." if len(found) > 20 else "")
    raise DataFormatError(
        f"{str(p)!r} is in no layout neuralsolve reads: found {shown or 'no keys'} at the top "
        f"level; expected {_EXPECTED_KEYS}. Convert other data with "
        "neuralsolve.datasets.write_dataset"
    )


def _detect_own(f: h5py.File, p: Path) -> _Layout:
    version = _plain(f.attrs.get("version", LAYOUT_VERSION))
    if not isinstance(version, int) or version > LAYOUT_VERSION:
        raise DataFormatError(
            f"{str(p)!r} has operator-data layout version {version!r}; neuralsolve "
            f"{__version__} reads version {LAYOUT_VERSION}: upgrade neuralsolve"
        )
    x = _dataset(f, "inputs", p, "'inputs' of shape (N, C_in, *grid) in the operator-data layout")
    y = _dataset(
        f, "outputs", p, "'outputs' of shape (N, C_out, *grid) in the operator-data layout"
    )
    for key, d in (("inputs", x), ("outputs", y)):
        if d.ndim < 3:
            raise DataFormatError(
                f"{str(p)!r}: dataset {key!r} has shape {d.shape} ({d.ndim} dims), expected "
                "(N, C, *grid) with at least one grid axis: store a channel axis even for one "
                "channel"
            )
    if y.shape[0] != x.shape[0]:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'outputs' holds {y.shape[0]} samples but 'inputs' holds "
            f"{x.shape[0]}: every sample needs both an input and an output"
        )
    if y.shape[2:] != x.shape[2:]:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'outputs' is on the grid {y.shape[2:]} but 'inputs' on "
            f"{x.shape[2:]}: both must be on the same grid"
        )
    attrs = {k: _plain(v) for k, v in f.attrs.items()}
    if isinstance(attrs.get("parameters"), str):
        try:
            attrs["parameters"] = json.loads(attrs["parameters"])
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{str(p)!r}: attribute 'parameters' is not valid JSON ({exc}), expected a JSON "
                "object such as '{\"alpha\": 1.0}'"
            ) from exc
    grid = tuple(x.shape[2:])
    coords = _coordinates(f, {a: f"coordinates/{a}" for a in AXES}, grid, p)
    return _Layout(
        kind="neuralsolve",
        samples=x.shape[0],
        input_shape=tuple(x.shape[1:]),
        output_shape=tuple(y.shape[1:]),
        dtype=str(x.dtype),
        attrs=attrs,
        coordinates=coords,
        input_key="inputs",
        output_key="outputs",
    )


def _detect_darcy(f: h5py.File, p: Path) -> _Layout:
    nu = _dataset(f, "nu", p, "'nu' of shape (N, H, W) in PDEBench's Darcy layout")
    t = _dataset(f, "tensor", p, "'tensor' of shape (N, 1, H, W) in PDEBench's Darcy layout")
    if nu.ndim < 2:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'nu' has shape {nu.shape}, expected (N, *grid), e.g. (N, H, W)"
        )
    if t.ndim != nu.ndim + 1 or t.shape[2:] != nu.shape[1:]:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'tensor' has shape {t.shape}, expected (N, C, "
            f"{', '.join(map(str, nu.shape[1:]))}) to match 'nu' {nu.shape}"
        )
    if t.shape[0] != nu.shape[0]:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'tensor' holds {t.shape[0]} samples but 'nu' holds "
            f"{nu.shape[0]}: every sample needs both"
        )
    grid = tuple(nu.shape[1:])
    return _Layout(
        kind="pdebench-darcy",
        samples=nu.shape[0],
        input_shape=(1, *grid),
        output_shape=tuple(t.shape[1:]),
        dtype=str(t.dtype),
        attrs={k: _plain(v) for k, v in f.attrs.items()},
        coordinates=_coordinates(f, {a: f"{a}-coordinate" for a in AXES}, grid, p),
        input_key="nu",
        output_key="tensor",
    )


def _detect_tensor(f: h5py.File, p: Path) -> _Layout:
    t = _dataset(f, "tensor", p, "'tensor' of shape (N, Nt, *grid) in PDEBench's layout")
    named = [a for a in AXES if f"{a}-coordinate" in f]
    spatial = AXES.index(named[-1]) + 1 if named else (2 if t.ndim == 5 else t.ndim - 2)
    if t.ndim - 2 == spatial:
        channels_last = False
    elif t.ndim - 2 == spatial + 1:
        channels_last = True
    else:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'tensor' has shape {t.shape}, expected (N, Nt, *grid) or "
            f"(N, Nt, *grid, C) with {spatial} grid axis(es) (one per x/y/z-coordinate)"
        )
    if spatial < 1:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'tensor' has shape {t.shape}, expected (N, Nt, *grid) "
            "with at least one grid axis"
        )
    if t.shape[1] < 2:
        raise DataFormatError(
            f"{str(p)!r}: dataset 'tensor' has shape {t.shape}: {t.shape[1]} time step, so no "
            "(input, output) pair of frames; expected (N, Nt, *grid) with Nt >= 2"
        )
    grid = tuple(t.shape[2 : 2 + spatial])
    channels = t.shape[-1] if channels_last else 1
    return _Layout(
        kind="pdebench-tensor",
        samples=t.shape[0],
        input_shape=(channels, *grid),
        output_shape=(channels, *grid),
        dtype=str(t.dtype),
        attrs={k: _plain(v) for k, v in f.attrs.items()},
        coordinates=_coordinates(f, {a: f"{a}-coordinate" for a in AXES}, grid, p),
        input_key="tensor",
        output_key="tensor",
        time_steps=t.shape[1],
        channels_last=channels_last,
    )


def _detect_groups(f: h5py.File, p: Path, groups: list[str]) -> _Layout:
    first = _dataset(f, f"{groups[0]}/data", p, "'data' of shape (Nt, *grid, C) in each group")
    shape = first.shape
    if first.ndim < 3:
        raise DataFormatError(
            f"{str(p)!r}: dataset {groups[0] + '/data'!r} has shape {shape}, expected "
            "(Nt, *grid, C) with at least one grid axis"
        )
    for g in groups[1:]:
        key = f"{g}/data"
        d = f[g].get("data")
        if not isinstance(d, h5py.Dataset) or d.shape != shape:
            found = d.shape if isinstance(d, h5py.Dataset) else "nothing"
            raise DataFormatError(
                f"{str(p)!r}: {key!r} has shape {found}, expected {shape} like "
                f"{groups[0] + '/data'!r}: every sample group needs 'data' of the same shape"
            )
    if shape[0] < 2:
        raise DataFormatError(
            f"{str(p)!r}: dataset {groups[0] + '/data'!r} has shape {shape}: {shape[0]} time "
            "step, so no (input, output) pair of frames; expected (Nt, *grid, C) with Nt >= 2"
        )
    grid = tuple(shape[1:-1])
    coords = _coordinates(f[groups[0]], {a: f"grid/{a}" for a in AXES}, grid, p)
    return _Layout(
        kind="pdebench-groups",
        samples=len(groups),
        input_shape=(shape[-1], *grid),
        output_shape=(shape[-1], *grid),
        dtype=str(first.dtype),
        attrs={k: _plain(v) for k, v in f.attrs.items()},
        coordinates=coords,
        input_key="data",
        output_key="data",
        time_steps=shape[0],
        groups=tuple(groups),
    )


def _read_rows(
    layout: _Layout, f: h5py.File, p: Path, rows: np.ndarray, steps: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read sorted, unique file ``rows``: arrays ``(k, C_in, *grid)`` and ``(k, C_out, *grid)``."""
    sel: slice | np.ndarray = rows
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:  # contiguous: one hyperslab
        sel = slice(int(rows[0]), int(rows[-1]) + 1)
    key = layout.input_key
    try:
        if layout.kind == "neuralsolve":
            x = f["inputs"][sel]
            key = "outputs"
            y = f["outputs"][sel]
        elif layout.kind == "pdebench-darcy":
            x = f["nu"][sel][:, None]
            key = "tensor"
            y = f["tensor"][sel]
        elif layout.kind == "pdebench-tensor":
            x, y = (f["tensor"][sel, s] for s in steps)
            if layout.channels_last:
                x, y = np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1)
            else:
                x, y = x[:, None], y[:, None]
        else:  # pdebench-groups: (Nt, *grid, C) per sample
            xs, ys = [], []
            for r in rows:
                key = f"{layout.groups[r]}/data"
                d = f[key]
                xs.append(np.moveaxis(d[steps[0]], -1, 0))
                ys.append(np.moveaxis(d[steps[1]], -1, 0))
            x = np.stack(xs) if xs else np.empty((0, *layout.input_shape), layout.dtype)
            y = np.stack(ys) if ys else np.empty((0, *layout.output_shape), layout.dtype)
    except (OSError, KeyError) as exc:
        raise DataFormatError(
            f"{str(p)!r}: reading {key!r} failed ({exc}); the file may be truncated or damaged, "
            "or was changed since it was opened"
        ) from exc
    return x, y


# --------------------------------------------------------------------------------- describe


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The layout of a data file, as ``H5Dataset`` would read it.

    Parameters
    ----------
    path
        An HDF5 file in the operator-data layout or one of the PDEBench layouts.

    Returns
    -------
    dict
        ``path`` (str), ``layout`` (one of :data:`LAYOUTS`), ``samples``, ``input_shape``
        ``(C_in, *grid)``, ``output_shape`` ``(C_out, *grid)``, ``grid``, ``dtype`` (str),
        ``time_steps`` (frames per sample for the PDEBench time series, else None),
        ``attrs`` (the root attributes as plain Python; ``parameters`` decoded from JSON) and
        ``datasets``: ``{name: {"shape": tuple, "dtype": str}}`` for every dataset in the file.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        The file is not HDF5, is truncated, or is in no known layout; a key is missing or has
        the wrong shape (the message names the file and the key).
    """
    p = _existing(path)
    with _open(p) as f:
        layout = _detect(f, p)
        datasets: dict[str, dict[str, Any]] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                datasets[name] = {"shape": tuple(obj.shape), "dtype": str(obj.dtype)}

        f.visititems(visit)
    return {
        "path": str(p),
        "layout": layout.kind,
        "samples": layout.samples,
        "input_shape": layout.input_shape,
        "output_shape": layout.output_shape,
        "grid": layout.grid,
        "dtype": layout.dtype,
        "time_steps": layout.time_steps,
        "attrs": layout.attrs,
        "datasets": datasets,
    }


def _shape_text(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def format_description(info: Mapping[str, Any], *, max_datasets: int = 20) -> str:
    """Readable multi-line text of a :func:`describe` result (``neuralsolve data info``).

    Parameters
    ----------
    info
        What :func:`describe` returned.
    max_datasets
        List at most this many datasets (files of per-sample groups hold thousands).
    """
    grid = tuple(info["grid"])
    lines = [
        str(info["path"]),
        f"  layout        {info['layout']}",
        f"  samples       {info['samples']}",
        f"  input         {_shape_text(info['input_shape'])}  (channels, *grid)",
        f"  output        {_shape_text(info['output_shape'])}",
        f"  grid          {' x '.join(str(n) for n in grid)}",
        f"  dtype         {info['dtype']}",
    ]
    if info.get("time_steps") is not None:
        lines.append(
            f"  time steps    {info['time_steps']} per sample; input = frame input_step "
            "(default 0), output = frame output_step (default -1)"
        )
    for i, n in enumerate(grid):
        options = ", ".join(str(r) for r in reachable_resolutions(n))
        lines.append(f"  resolution {AXES[i] if i < 3 else i}  {options}")
    attrs = info.get("attrs") or {}
    if attrs:
        lines.append("  attributes")
        for k, v in attrs.items():
            text = json.dumps(v) if isinstance(v, dict | list) else str(v)
            lines.append(f"    {k} = {text if len(text) <= 90 else text[:87] + '...'}")
    datasets = info.get("datasets") or {}
    lines.append(f"  datasets      {len(datasets)}")
    width = min(max((len(k) for k in datasets), default=0), 40)
    for name, d in list(datasets.items())[:max_datasets]:
        lines.append(f"    {name:<{width}}  {_shape_text(d['shape'])}  {d['dtype']}")
    if len(datasets) > max_datasets:
        lines.append(f"    ... and {len(datasets) - max_datasets} more")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- sub-sampling


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


def _strides(grid: tuple[int, ...], resolution: int | Sequence[int] | None) -> tuple[int, ...]:
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


def _subsample(a: np.ndarray, strides: tuple[int, ...]) -> np.ndarray:
    """``a[:, :, ::s0, ::s1, ...]`` for an array ``(k, C, *grid)``."""
    if all(s == 1 for s in strides):
        return a
    return a[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]


# ---------------------------------------------------------------------------------- writing


def _as_array(v: Any, name: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(v).__name__}")
    if v.dtype.kind not in "fiu":
        raise TypeError(f"{name} has dtype {v.dtype}, expected real numbers (float or int)")
    return v


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
        try:
            self.samples = operator.index(samples)
        except TypeError:
            raise TypeError(f"samples must be an int, got {type(samples).__name__}") from None
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
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
        if grid_kind not in GRID_KINDS:
            raise ValueError(f"grid_kind must be 'cell' or 'node', got {grid_kind!r}")
        self.grid_kind = grid_kind
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self._coordinates = self._check_coordinates(coordinates)
        reserved = sorted(set(attrs) & set(_RESERVED_ATTRS))
        if reserved:
            raise ValueError(f"attributes {reserved} are set by the writer itself: rename yours")
        self._attrs = dict(attrs)
        self._written = np.zeros(self.samples, dtype=bool)
        self._file: h5py.File | None = None
        self._atomic: AbstractContextManager[Path] | None = None
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
            f = h5py.File(tmp, "w")
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
            if f is not None:
                f.close()
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
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs hold {x.shape[0]} samples but outputs {y.shape[0]}: pass the same count"
            )
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
        f, self._file = self._file, None
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return None
        try:
            if f is not None:
                f.close()
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
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"inputs hold {x.shape[0]} samples but outputs {y.shape[0]}: pass the same count"
        )
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
