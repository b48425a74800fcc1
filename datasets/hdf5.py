"""Operator-learning data in HDF5: pairs of input and output functions on a grid, read lazily.

A sample is a pair ``(x, y)`` of arrays of shape ``(C_in, *grid)`` and ``(C_out, *grid)``
(e.g. a permeability field and the pressure it gives). :class:`H5Dataset` reads the samples
of a file on demand, so a data set larger than memory trains as well as a small one.

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

Training pieces:

* :func:`split_indices`: a contiguous train / validation / test split by sample index;
* ``H5Dataset(path, indices, resolution=32)``: spatial sub-sampling by a stride (train at 32,
  test at 64 on the same file);
* :class:`Normalizer`: per-channel mean and standard deviation, kept in buffers so that they
  ride in ``state_dict()`` and hence in checkpoints.

Examples
--------
>>> import numpy as np
>>> from torch.utils.data import DataLoader
>>> x = np.random.default_rng(0).random((10, 1, 16, 16))
>>> path = write_dataset("toy.h5", x, 2 * x, pde="toy")  # doctest: +SKIP
>>> split = split_indices(10, test=0.2)
>>> split["train"].tolist(), split["test"].tolist()
([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
>>> train = H5Dataset("toy.h5", split["train"], resolution=8)  # doctest: +SKIP
>>> loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from neuralsolve._version import __version__
from neuralsolve.errors import DataFormatError, NonFiniteError
from neuralsolve.fileio import atomic_path

__all__ = [
    "FORMAT",
    "LAYOUTS",
    "LAYOUT_VERSION",
    "DatasetWriter",
    "H5Dataset",
    "Normalizer",
    "describe",
    "format_description",
    "reachable_resolutions",
    "split_indices",
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
    """The layout of a data file, as :class:`H5Dataset` would read it.

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


# ------------------------------------------------------------------------------ the dataset


def _step(step: int, nt: int, name: str, p: Path) -> int:
    s = operator.index(step)
    if not -nt <= s < nt:
        raise ValueError(
            f"{name}={s} is out of range for {str(p)!r}, whose samples have {nt} time steps: "
            f"pass 0 to {nt - 1} (or -{nt} to -1 from the end)"
        )
    return s % nt


class H5Dataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Samples ``(x, y)`` of an HDF5 file, read on demand.

    Lazy: the constructor reads the layout with a short-lived handle and keeps none; the file
    is opened on the first read in each process (``os.getpid()`` is remembered, and a process
    forked by a ``DataLoader`` worker opens its own handle), so data larger than memory work
    and the dataset pickles (for ``spawn`` workers) without a handle.

    Parameters
    ----------
    path
        A file in the operator-data layout or a PDEBench layout (see the module docstring).
    indices
        File rows that make up this dataset (e.g. ``split_indices(n)["train"]``); all rows
        when None. Item ``i`` is file row ``indices[i]``.
    resolution
        Spatial sub-sampling by a stride, applied to inputs, outputs and coordinates: one size
        for every grid axis, or one per axis. Size ``r`` on an axis of ``n`` points takes every
        ``n / r``-th point when ``r`` divides ``n`` (64 -> 32), else every
        ``(n - 1) / (r - 1)``-th point when that divides (node grids with both ends kept:
        65 -> 33, 421 -> 85). None keeps the full grid.
    input_step, output_step
        The frames taken as input and output in the PDEBench time-series layouts (negative
        counts from the end). Layouts without time accept only the defaults.
    dtype
        The floating dtype of the returned tensors.

    Attributes
    ----------
    path : Path
    layout : str
        One of :data:`LAYOUTS`.
    indices : np.ndarray
        ``(len(self),)`` int64 file rows.
    full_grid, grid : tuple of int
        The file's grid, and the grid after sub-sampling.
    strides : tuple of int
        The sub-sampling stride per grid axis.
    input_channels, output_channels : int
    coordinates : dict of str to np.ndarray, or None
        1-D coordinates per axis (``"x"``, ``"y"``, ``"z"``) after sub-sampling.
    attrs : dict
        The file's root attributes as plain Python.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        The file is not HDF5, is truncated, or lacks a key or has a wrong shape (named).
    ValueError
        An index is out of range, a resolution is not reachable, a step is out of range.

    Examples
    --------
    >>> ds = H5Dataset("darcy.h5", split_indices(1000)["train"], resolution=32)  # doctest: +SKIP
    >>> x, y = ds[0]  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    torch.Size([1, 32, 32])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        resolution: int | tuple[int, ...] | None = None,
        input_step: int = 0,
        output_step: int = -1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        p = _existing(path)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(
                f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}"
            )
        with _open(p) as f:
            layout = _detect(f, p)
        self.path = p
        self.dtype = dtype
        self._layout = layout
        self.indices = self._check_indices(indices, layout.samples)
        if layout.time_steps is None:
            if (input_step, output_step) != (0, -1):
                raise ValueError(
                    f"{str(p)!r} ({layout.kind}) has no time axis; input_step and output_step "
                    "pick frames of PDEBench time series: leave them at their defaults"
                )
            self._steps = (0, -1)
        else:
            self._steps = (
                _step(input_step, layout.time_steps, "input_step", p),
                _step(output_step, layout.time_steps, "output_step", p),
            )
        self.strides = _strides(layout.grid, resolution)
        self.full_grid: tuple[int, ...] = layout.grid
        self.grid: tuple[int, ...] = tuple(
            len(range(0, n, s)) for n, s in zip(layout.grid, self.strides, strict=True)
        )
        self.coordinates: dict[str, np.ndarray] | None = (
            None
            if layout.coordinates is None
            else {a: c[:: self.strides[AXES.index(a)]] for a, c in layout.coordinates.items()}
        )
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @staticmethod
    def _check_indices(indices: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
        if indices is None:
            return np.arange(n, dtype=np.int64)
        idx = np.asarray(indices)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.dtype.kind not in "iu":
            raise TypeError(
                f"indices must be integers (file rows), got dtype {idx.dtype}; for a boolean "
                "mask pass np.flatnonzero(mask)"
            )
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise ValueError(
                f"indices {bad[:5].tolist()} are out of range: the file holds {n} samples, "
                f"rows 0 to {n - 1}"
            )
        return idx.astype(np.int64)

    # -- properties
    @property
    def layout(self) -> str:
        return self._layout.kind

    @property
    def attrs(self) -> dict[str, Any]:
        return self._layout.attrs

    @property
    def input_channels(self) -> int:
        return self._layout.input_shape[0]

    @property
    def output_channels(self) -> int:
        return self._layout.output_shape[0]

    @property
    def input_step(self) -> int | None:
        """The input frame (non-negative) in a time-series layout, else None."""
        return self._steps[0] if self._layout.time_steps is not None else None

    @property
    def output_step(self) -> int | None:
        """The output frame (non-negative) in a time-series layout, else None."""
        return self._steps[1] if self._layout.time_steps is not None else None

    # -- file handle
    def _handle(self) -> h5py.File:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # a handle inherited through fork belongs to the parent: open our own
            self._file = _open(self.path)
            self._pid = pid
        return self._file

    def close(self) -> None:
        """Close this process's handle (the next read opens the file again)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    # -- reading
    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def _position(self, i: Any) -> int:
        try:
            k = operator.index(i)
        except TypeError:
            raise TypeError(
                f"H5Dataset index must be an integer, got {type(i).__name__}; read several "
                "samples with a DataLoader or H5Dataset.__getitems__"
            ) from None
        n = len(self)
        if not -n <= k < n:
            raise IndexError(
                f"index {k} is out of range for a dataset of {n} samples: use 0 to {n - 1} "
                f"(or -{n} to -1)"
            )
        return k % n

    def _read_positions(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Items at ``positions`` (already checked), in their order: ``(k, C, *grid)`` each."""
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py wants increasing rows
        x, y = _read_rows(self._layout, self._handle(), self.path, unique, self._steps)
        if unique.size != rows.size or np.any(np.diff(rows) < 0):
            x, y = x[inverse], y[inverse]
        x = _subsample(x, self.strides)
        y = _subsample(y, self.strides)
        return (
            torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype),
            torch.from_numpy(np.ascontiguousarray(y)).to(self.dtype),
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``indices[i]``: ``x`` of shape ``(C_in, *grid)``, ``y`` ``(C_out, *grid)``."""
        x, y = self._read_positions([self._position(i)])
        return x[0], y[0]

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Several samples in one read (``DataLoader`` calls this for a batch)."""
        positions = [self._position(i) for i in items]
        if not positions:
            return []
        x, y = self._read_positions(positions)
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def load(self, *, block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples in memory: ``(len, C_in, *grid)`` and ``(len, C_out, *grid)`` tensors.

        Read ``block`` samples at a time; for data that fit in memory.
        """
        n = len(self)
        x = torch.empty((n, self.input_channels, *self.grid), dtype=self.dtype)
        y = torch.empty((n, self.output_channels, *self.grid), dtype=self.dtype)
        for start in range(0, n, block):
            stop = min(start + block, n)
            x[start:stop], y[start:stop] = self._read_positions(range(start, stop))
        return x, y

    def __repr__(self) -> str:
        res = "" if self.grid == self.full_grid else f" (from {self.full_grid})"
        return (
            f"H5Dataset({str(self.path)!r}, layout={self.layout!r}, samples={len(self)}, "
            f"grid={self.grid}{res}, channels={self.input_channels}->{self.output_channels})"
        )


# ---------------------------------------------------------------------------------- splits


def _split_count(v: int | float, n: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(
            f"{name} must be a count (int) or a fraction (float in [0, 1]), got {type(v).__name__}"
        )
    if isinstance(v, int | np.integer):
        if v < 0:
            raise ValueError(f"{name}={v} is negative: pass a count >= 0")
        return int(v)
    if not 0.0 <= v <= 1.0:
        raise ValueError(
            f"{name}={v} is a float outside [0, 1]: floats are fractions of the {n} samples; "
            "pass an int for a count"
        )
    return math.floor(v * n + 0.5)


def split_indices(
    n: int,
    *,
    test: int | float = 0.2,
    val: int | float = 0,
    train: int | float | None = None,
) -> dict[str, np.ndarray]:
    """Contiguous train / validation / test split of ``n`` samples by index.

    ``test`` takes the last samples, ``val`` the ones just before them, and ``train`` the
    first ones; so the test and validation sets stay the same when only ``train`` changes (for
    studies of accuracy against training-set size). No shuffling: generated data sets are
    i.i.d. in index order, and a contiguous split keeps reads sequential.

    Parameters
    ----------
    n
        The number of samples.
    test, val, train
        An int is a count, a float in ``[0, 1]`` a fraction of ``n`` (rounded half up).
        ``train=None`` takes every sample not in ``val`` or ``test``.

    Returns
    -------
    dict
        ``{"train": ..., "val": ..., "test": ...}``: sorted int64 arrays (``val`` is empty when
        ``val=0``, ``test`` when ``test=0``).

    Raises
    ------
    ValueError
        The counts exceed ``n``, or a requested (non-zero) split rounds to no samples.

    Examples
    --------
    >>> {k: v.tolist() for k, v in split_indices(10, test=0.2, val=1).items()}
    {'train': [0, 1, 2, 3, 4, 5, 6], 'val': [7], 'test': [8, 9]}
    """
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    counts: dict[str, int] = {}
    for name, v in (("test", test), ("val", val)):
        counts[name] = _split_count(v, n, name)
        if counts[name] == 0 and v != 0:
            raise ValueError(
                f"{name}={v} of {n} samples rounds to 0 samples: ask for at least one (e.g. "
                f"{name}=1) or pass {name}=0 for no {name} set"
            )
    rest = n - counts["test"] - counts["val"]
    if rest < 0:
        raise ValueError(
            f"test ({counts['test']}) and val ({counts['val']}) samples exceed the {n} "
            "available: ask for fewer"
        )
    if train is None:
        counts["train"] = rest
    else:
        counts["train"] = _split_count(train, n, "train")
        if counts["train"] > rest:
            raise ValueError(
                f"train ({counts['train']}) + val ({counts['val']}) + test ({counts['test']}) "
                f"samples exceed the {n} available: ask for fewer"
            )
    if counts["train"] == 0:
        raise ValueError(
            f"the training split of {n} samples is empty (val {counts['val']}, test "
            f"{counts['test']}): leave samples for training"
        )
    start_val = n - counts["test"] - counts["val"]
    return {
        "train": np.arange(counts["train"], dtype=np.int64),
        "val": np.arange(start_val, n - counts["test"], dtype=np.int64),
        "test": np.arange(n - counts["test"], n, dtype=np.int64),
    }


# ------------------------------------------------------------------------------ normaliser


def _batches(data: Any, which: str, batch: int) -> Iterator[torch.Tensor]:
    """Blocks ``(b, C, *grid)`` of the chosen component of a tensor, an array or a dataset."""
    if isinstance(data, torch.Tensor | np.ndarray):
        t = torch.as_tensor(data)
        if t.ndim < 2:
            raise ValueError(
                f"data has shape {tuple(t.shape)}, expected (N, C, *grid): add a channel axis"
            )
        for start in range(0, t.shape[0], batch):
            yield t[start : start + batch]
        return
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(
            "Normalizer.fit needs a tensor or array (N, C, *grid) or a dataset of (x, y) pairs "
            f"such as H5Dataset, got {type(data).__name__}"
        )
    part = 0 if which == "input" else 1
    n = len(data)
    for start in range(0, n, batch):
        positions = list(range(start, min(start + batch, n)))
        if isinstance(data, H5Dataset):
            yield data._read_positions(positions)[part]
            continue
        samples = (
            data.__getitems__(positions)
            if hasattr(data, "__getitems__")
            else [data[i] for i in positions]
        )
        yield torch.stack([torch.as_tensor(s[part]) for s in samples])


class Normalizer(torch.nn.Module):
    r"""Per-channel affine normaliser: ``encode(t) = (t - mean) / std``, ``decode`` inverts it.

    One mean and one standard deviation per channel, pooled over samples and grid points. This
    differs from neuraloperator's ``UnitGaussianNormalizer``, which keeps a mean and a standard
    deviation per grid point: per-point statistics tie a model to the resolution it was
    trained at, while per-channel ones let a model trained at 32 x 32 be evaluated at 64 x 64.

    ``mean`` and ``std`` are float64 buffers of shape ``(C,)``, so they are saved in
    ``state_dict()`` (and so in the trainer's checkpoints) and follow ``.to(device)``.

    Parameters
    ----------
    mean, std
        ``(C,)`` per-channel statistics.
    eps
        Floor for ``std`` (a constant channel has std 0).

    Examples
    --------
    >>> x = torch.randn(8, 2, 16, 16, dtype=torch.float64) * 3 + 1
    >>> norm = Normalizer.fit(x)
    >>> torch.allclose(norm.decode(norm.encode(x)), x)
    True
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Any, std: Any, *, eps: float = 1e-12) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float64)
        s = torch.as_tensor(std, dtype=torch.float64, device=m.device)
        if m.ndim != 1 or s.shape != m.shape:
            raise ValueError(
                f"mean and std must be 1-D of one length (one value per channel), got shapes "
                f"{tuple(m.shape)} and {tuple(s.shape)}"
            )
        if not (torch.isfinite(m).all() and torch.isfinite(s).all()):
            raise NonFiniteError(
                "mean or std holds NaN or inf: the data they were computed from hold NaN or "
                "infinite values; clean the data first"
            )
        if (s < 0).any():
            raise ValueError(f"std must be >= 0, got {s.tolist()}")
        self.register_buffer("mean", m.clone())
        self.register_buffer("std", s.clamp_min(eps))

    @classmethod
    def identity(cls, channels: int) -> Normalizer:
        """Mean 0, std 1 for ``channels`` channels (also the shell to ``load_state_dict`` into)."""
        c = operator.index(channels)
        if c < 1:
            raise ValueError(f"channels must be >= 1, got {c}")
        return cls(torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> Normalizer:
        """Rebuild a normaliser from its ``state_dict()`` (e.g. read from a checkpoint)."""
        if "mean" not in state or "std" not in state:
            raise ValueError(f"a Normalizer state needs 'mean' and 'std', got keys {sorted(state)}")
        return cls(state["mean"], state["std"])

    @classmethod
    def fit(
        cls, data: Any, which: str = "input", *, batch: int = 64, eps: float = 1e-12
    ) -> Normalizer:
        """Per-channel mean and (population) standard deviation of ``data``, in float64.

        Parameters
        ----------
        data
            A tensor or array ``(N, C, *grid)``, or a dataset of ``(x, y)`` pairs such as
            :class:`H5Dataset` (read ``batch`` samples at a time, so it may exceed memory).
        which
            ``"input"`` or ``"output"``: which part of a dataset's pairs (ignored for a tensor).
        batch
            Samples per block.
        eps
            Floor for ``std``.

        Notes
        -----
        Blocks are merged with Chan, Golub and LeVeque's pairwise update of the mean and the sum
        of squared deviations, which loses no accuracy to cancellation.

        Raises
        ------
        NonFiniteError
            The data hold NaN or infinite values.
        """
        if which not in ("input", "output"):
            raise ValueError(f"which must be 'input' or 'output', got {which!r}")
        if isinstance(batch, bool) or operator.index(batch) < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        count = 0
        mean = m2 = torch.zeros(0, dtype=torch.float64)
        for block in _batches(data, which, int(batch)):
            x = block.detach().to(torch.float64)  # (b, C, *grid)
            if x.shape[0] == 0:
                continue
            flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, b * points)
            k = flat.shape[1]
            bmean = flat.mean(dim=1)
            bm2 = ((flat - bmean[:, None]) ** 2).sum(dim=1)
            if count == 0:
                mean, m2 = bmean, bm2
            else:
                if bmean.shape != mean.shape:
                    raise ValueError(
                        f"samples have {bmean.shape[0]} channels after {mean.shape[0]}: all "
                        "samples need the same channel count"
                    )
                delta = bmean - mean.to(bmean.device)
                total = count + k
                mean = mean + delta * (k / total)
                m2 = m2 + bm2 + delta**2 * (count * k / total)
            count += k
        if count == 0:
            raise ValueError("cannot fit a Normalizer on no data: the data set is empty")
        std = torch.sqrt(m2 / count)
        bad = ~(torch.isfinite(mean) & torch.isfinite(std))
        if bad.any():
            raise NonFiniteError(
                f"the {which} data hold NaN or infinite values in channel(s) "
                f"{torch.nonzero(bad).flatten().tolist()}: clean the data before fitting"
            )
        return cls(mean.cpu(), std.cpu(), eps=eps)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    def _affine(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(
                f"expected a floating torch.Tensor (B, C, *grid), got "
                f"{getattr(t, 'dtype', type(t).__name__)}"
            )
        if t.ndim < 2 or t.shape[1] != self.channels:
            raise ValueError(
                f"tensor has shape {tuple(t.shape)}, expected (B, {self.channels}, *grid): "
                f"this normaliser was fitted on {self.channels} channel(s); for one sample use "
                "t[None]"
            )
        shape = (1, self.channels) + (1,) * (t.ndim - 2)
        return (
            self.mean.to(device=t.device, dtype=t.dtype).view(shape),
            self.std.to(device=t.device, dtype=t.dtype).view(shape),
        )

    def encode(self, t: torch.Tensor) -> torch.Tensor:
        """``(t - mean) / std`` per channel; ``t`` has shape ``(B, C, *grid)``."""
        mean, std = self._affine(t)
        return (t - mean) / std

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """``t * std + mean`` per channel, the inverse of :meth:`encode`."""
        mean, std = self._affine(t)
        return t * std + mean

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.encode(t)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


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
