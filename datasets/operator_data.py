"""Operator-learning data for torch: the samples of an HDF5 file as a lazy ``Dataset``, a
split by index, and per-channel normalisers.

* :class:`H5Dataset`: ``(x, y)`` pairs of any layout :mod:`neuralsolve.datasets.hdf5` reads
  (ours and PDEBench's), read on demand, with spatial sub-sampling by a stride (train at 32,
  test at 64 on the same file);
* :func:`split_indices`: a contiguous train / validation / test split by sample index;
* :class:`Normalizer`: per-channel mean and standard deviation, kept in buffers so that they
  ride in ``state_dict()`` and hence in checkpoints.

Examples
--------
>>> import numpy as np
>>> from torch.utils.data import DataLoader
>>> from neuralsolve.datasets import write_dataset
>>> x = np.random.default_rng(0).random((10, 1, 16, 16))
>>> path = write_dataset("toy.h5", x, 2 * x, pde="toy")  # doctest: +SKIP
>>> split = split_indices(10, test=0.2)
>>> split["train"].tolist(), split["test"].tolist()
([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
>>> train = H5Dataset("toy.h5", split["train"], resolution=8)  # doctest: +SKIP
>>> loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from neuralsolve.checks import check_choice, check_int, check_positive_int
from neuralsolve.errors import NonFiniteError

from .hdf5 import AXES, detect_layout, existing_file, open_readonly, read_rows
from .subsampling import resolution_strides, subsample

__all__ = ["H5Dataset", "Normalizer", "split_indices"]


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
        p = existing_file(path)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(
                f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}"
            )
        with open_readonly(p) as f:
            layout = detect_layout(f, p)
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
        self.strides = resolution_strides(layout.grid, resolution)
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
            self._file = open_readonly(self.path)
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
        x, y = read_rows(self._layout, self._handle(), self.path, unique, self._steps)
        if unique.size != rows.size or np.any(np.diff(rows) < 0):
            x, y = x[inverse], y[inverse]
        x = subsample(x, self.strides)
        y = subsample(y, self.strides)
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
    n = check_positive_int("n", n)
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
        c = check_int("channels", channels, minimum=1)
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
        check_choice("which", which, ("input", "output"))
        check_positive_int("batch", batch)
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
