"""Training data for neural operators, made with the project's own solvers.

Four generators, each a function that maps a range of sample indices to an
:class:`OperatorData` (inputs, outputs, coordinates and the parameters that made them):

* :func:`darcy`: 2-D Darcy flow ``-div(a grad u) = 1`` on the unit square, ``u = 0`` on the
  boundary, with the piecewise-constant permeability of the FNO paper (Li et al. 2021): the map
  ``a -> u``. Solved per sample with the gallery's finite-volume matrix and PCG.
* :func:`burgers`: 1-D viscous Burgers ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit
  interval: the map ``u(0) -> u(t_final)``. Solved pseudo-spectrally with ETDRK4, all samples of
  a call at once.
* :func:`navier_stokes`: 2-D incompressible Navier-Stokes in vorticity form on the periodic unit
  square with the FNO forcing: the map ``omega(0) -> omega(t_final)``. Solved pseudo-spectrally
  with ETDRK4, all samples of a call at once.
* :func:`poisson`: ``-lap u = f`` on the unit square, ``u = 0`` on the boundary, ``f`` a Gaussian
  random field: the map ``f -> u``. All samples share one matrix and are solved as one batched
  CG solve (``b`` of shape ``(n^2, k)``, converging per column).

Reproducibility. Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``: it depends
only on ``seed``, ``i`` and the generator's arguments, never on which other samples are made in
the same call. So ``darcy(n, 100, seed=s)`` is the first 100 samples of
``darcy(n, 1000, seed=s)``, and ``darcy(n, 10, seed=s, start=90)`` its samples 90 to 99; this is
how :func:`generate` writes a large dataset chunk by chunk without holding it in memory. The
inputs are then identical bit for bit; the outputs agree to the solver's tolerance (threaded
kernels may round differently from one run to the next).

:data:`GENERATORS` names the generators; :func:`generate` runs one by name, in memory or into an
HDF5 file (:class:`neuralsolve.datasets.hdf5_writer.DatasetWriter`) in chunks.

References
----------
Z. Li, N. Kovachki, K. Azizzadenesheli, B. Liu, K. Bhattacharya, A. Stuart, A. Anandkumar,
"Fourier neural operator for parametric partial differential equations", ICLR 2021.

S. M. Cox, P. C. Matthews, "Exponential time differencing for stiff systems", J. Comput. Phys.
176 (2002) 430-455.

A.-K. Kassam, L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci. Comput.
26 (2005) 1214-1233.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from neuralsolve.checks import check_int

from .burgers_data import burgers
from .common import OperatorData, show_progress
from .darcy_data import darcy
from .navier_stokes_data import navier_stokes
from .poisson_data import poisson
from .random_fields import (
    burgers_initial_condition,
    gaussian_random_field,
    vorticity_initial_condition,
)

__all__ = [
    "GENERATORS",
    "OperatorData",
    "burgers",
    "burgers_initial_condition",
    "darcy",
    "gaussian_random_field",
    "generate",
    "navier_stokes",
    "poisson",
    "vorticity_initial_condition",
]

GENERATORS: dict[str, Callable[..., OperatorData]] = {
    "darcy": darcy,
    "burgers": burgers,
    "poisson": poisson,
    "navier_stokes": navier_stokes,
}


# Keys of ``OperatorData.parameters`` that are measured while generating, not arguments.
MEASURED_SUFFIXES = ("_max", "_mean")


def _file_parameters(parameters: dict[str, Any], samples: int, start: int) -> dict[str, Any]:
    """The parameters a chunked file records: the generator's arguments, with ``samples`` and
    ``start`` of the whole file, without the statistics measured on one chunk."""
    out = {k: v for k, v in parameters.items() if not k.endswith(MEASURED_SUFFIXES)}
    out["samples"] = samples
    out["start"] = start
    return out


def generate(
    name: str,
    *,
    out: str | Path | None = None,
    chunk: int = 64,
    dtype: str = "float32",
    **options: Any,
) -> OperatorData | Path:
    """Run the generator ``name`` of :data:`GENERATORS`, in memory or into an HDF5 file.

    Parameters
    ----------
    name : {"darcy", "burgers", "poisson", "navier_stokes"}
        The generator.
    out : str or Path, optional
        Without it, the generator is called once and its :class:`OperatorData` returned. With
        it, the samples are made ``chunk`` at a time (samples ``start + j * chunk ...``; each
        depends only on the seed and its index, so the file holds the same samples as one
        call) and written with :class:`neuralsolve.datasets.hdf5_writer.DatasetWriter`, so a large
        dataset never sits in memory. The file is written atomically: if a chunk fails, no
        file is left. Its ``parameters`` attribute holds the generator's arguments (with the
        whole file's ``samples`` and ``start``); the statistics measured per chunk (keys ending
        in ``_max`` / ``_mean``) are left out, because the writer fixes its attributes when the
        file is opened, before the later chunks exist.
    chunk : int
        Samples per generator call when writing a file (>= 1).
    dtype : str
        Storage dtype of the file's ``inputs`` and ``outputs`` (the generators compute in
        float64).
    **options
        Arguments of the generator (``n``, ``samples``, ``seed``, ``start``, ``progress``, ...).

    Returns
    -------
    OperatorData or Path
        The data, or the path of the written file.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the available ones) or bad values.
    TypeError
        For an option the generator does not take (the message lists the valid ones).

    Examples
    --------
    >>> from neuralsolve.datasets.generators import generate
    >>> data = generate("darcy", n=16, samples=2, progress=False)
    >>> data.inputs.shape
    (2, 1, 16, 16)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a generator name (str), got {type(name).__name__}")
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; available: {', '.join(GENERATORS)}")
    func = GENERATORS[name]
    params = inspect.signature(func).parameters.values()
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
    unknown = [] if open_ended else sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for generator {name!r}; valid options: {', '.join(valid)}"
        )
    if out is None:
        return func(**options)

    chunk = check_int("chunk", chunk, minimum=1)
    samples = check_int("samples", options.pop("samples", 1), minimum=1)
    start = check_int("start", options.pop("start", 0), minimum=0)
    progress = options.pop("progress", None)
    show = show_progress(progress)
    from ..hdf5_writer import DatasetWriter

    path = Path(out)
    first = func(samples=min(chunk, samples), start=start, progress=False, **options)
    with (
        tqdm(
            total=samples,
            desc=f"{name} -> {path.name}",
            unit="sample",
            disable=not show,
            file=sys.stderr,
        ) as bar,
        DatasetWriter(
            path,
            samples,
            first.inputs.shape[1:],
            first.outputs.shape[1:],
            pde=first.pde,
            parameters=_file_parameters(first.parameters, samples, start),
            coordinates=first.coordinates,
            grid_kind=first.grid_kind,
            dtype=dtype,
        ) as writer,
    ):
        writer.write(0, first.inputs, first.outputs)
        bar.update(first.samples)
        for offset in range(first.samples, samples, chunk):
            block = func(
                samples=min(chunk, samples - offset),
                start=start + offset,
                progress=False,
                **options,
            )
            writer.write(offset, block.inputs, block.outputs)
            bar.update(block.samples)
    return path
