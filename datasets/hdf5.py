"""Operator-learning data in HDF5: pairs of input and output functions on a grid, read lazily.

A sample is a pair ``(x, y)`` of arrays of shape ``(C_in, *grid)`` and ``(C_out, *grid)``
(e.g. a permeability field and the pressure it gives). This module reads, describes and writes
such files; :class:`~neuralsolve.datasets.operator_data.H5Dataset` reads their samples on
demand, so a data set larger than memory trains as well as a small one.

The operator-data layout, version 1 (written by
:class:`~neuralsolve.datasets.hdf5_writer.DatasetWriter`)::

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

Writing is in :mod:`neuralsolve.datasets.hdf5_writer` (:class:`DatasetWriter`,
:func:`write_dataset`), sub-sampling by strides in :mod:`neuralsolve.datasets.subsampling`, and
the torch side (``H5Dataset``, ``split_indices``, ``Normalizer``) in
:mod:`neuralsolve.datasets.operator_data`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neuralsolve._version import __version__
from neuralsolve.errors import DataFormatError

from .subsampling import reachable_resolutions

__all__ = [
    "FORMAT",
    "LAYOUTS",
    "LAYOUT_VERSION",
    "describe",
    "format_description",
]

FORMAT = "operator-data"
LAYOUT_VERSION = 1
LAYOUTS = ("neuralsolve", "pdebench-darcy", "pdebench-tensor", "pdebench-groups")
AXES = ("x", "y", "z")
GRID_KINDS = ("cell", "node")
# Root attributes the format itself writes: DatasetWriter refuses user attrs of these names.
RESERVED_ATTRS = ("neuralsolve_format", "version", "neuralsolve_version")
_EXPECTED_KEYS = (
    "'inputs' + 'outputs' (neuralsolve operator-data), 'nu' + 'tensor' (PDEBench Darcy), "
    "'tensor' (PDEBench time series), or groups '0000', '0001', ... each holding 'data' "
    "(PDEBench per-sample groups)"
)


# --------------------------------------------------------------------------- layout detection


@dataclass(frozen=True)
class _Layout:
    """What :func:`detect_layout` found in a file: how samples map to ``(input, output)`` pairs."""

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


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``, checked to exist and to be a file, not a directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {str(p)!r} does not exist: check the path")
    if p.is_dir():
        raise DataFormatError(f"{str(p)!r} is a directory, expected an HDF5 file")
    return p


def open_readonly(p: Path) -> h5py.File:
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


def detect_layout(f: h5py.File, p: Path) -> _Layout:
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


def read_rows(
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
    p = existing_file(path)
    with open_readonly(p) as f:
        layout = detect_layout(f, p)
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
