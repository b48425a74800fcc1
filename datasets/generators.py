"""Training data for neural operators, made with the project's own solvers.

Three generators, each a function that maps a range of sample indices to an
:class:`OperatorData` (inputs, outputs, coordinates and the parameters that made them):

* :func:`darcy`: 2-D Darcy flow ``-div(a grad u) = 1`` on the unit square, ``u = 0`` on the
  boundary, with the piecewise-constant permeability of the FNO paper (Li et al. 2021): the map
  ``a -> u``. Solved per sample with the gallery's finite-volume matrix and PCG.
* :func:`burgers`: 1-D viscous Burgers ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit
  interval: the map ``u(0) -> u(t_final)``. Solved pseudo-spectrally with ETDRK4, all samples of
  a call at once.
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
HDF5 file (:class:`neuralsolve.datasets.hdf5.DatasetWriter`) in chunks.

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
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from tqdm.auto import tqdm

from neuralsolve.errors import ConvergenceError
from neuralsolve.solvers import solve

from .gallery import poisson as _poisson_problem

__all__ = [
    "GENERATORS",
    "OperatorData",
    "burgers",
    "burgers_initial_condition",
    "darcy",
    "gaussian_random_field",
    "generate",
    "poisson",
]

# Points on the upper half of the unit circle for the Kassam-Trefethen contour means.
CONTOUR_POINTS = 32
# Largest default time step of :func:`burgers` (ETDRK4 is fourth order: its error at this step
# is far below the spatial error for the default viscosity).
BURGERS_MAX_DT = 1e-4


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
        if self.grid_kind not in ("cell", "node"):
            raise ValueError(f"grid_kind must be 'cell' or 'node', got {self.grid_kind!r}")
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
def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _float(name: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {value!r}")
    return v


def _method(method: Any) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name (str), got {type(method).__name__}")
    return method


def _show(progress: bool | None) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    return progress


def _bar(total: int, desc: str, progress: bool | None, unit: str = "sample") -> Any:
    return tqdm(total=total, desc=desc, unit=unit, disable=not _show(progress), file=sys.stderr)


def _cell_centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


# --------------------------------------------------------------------------- random fields
def gaussian_random_field(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    tau: float = 3.0,
    alpha: float = 2.0,
    normalize: bool = True,
) -> np.ndarray:
    r"""A sample of the Gaussian random field ``N(0, (-lap + tau^2 I)^(-alpha))`` with zero-flux
    walls on the unit box, at the cell centres, with the constant mode removed.

    The eigenfunctions of ``-lap`` on ``[0, 1]^d`` with zero Neumann data are the products of
    cosines, orthonormal in ``L^2``:

    .. math::

        \phi_k(x) = \prod_a c_{k_a} \cos(\pi k_a x_a), \quad c_0 = 1,\ c_m = \sqrt 2,
        \qquad -\Delta \phi_k = \pi^2 |k|^2 \phi_k,

    so the field is the Karhunen-Loeve sum

    .. math::

        \psi(x) = \sum_{k \ne 0} \sqrt{\lambda_k}\, \xi_k\, \phi_k(x), \qquad
        \lambda_k = (\pi^2 |k|^2 + \tau^2)^{-\alpha}, \quad \xi_k \sim N(0, 1),

    truncated to ``0 <= k_a < n_a`` and without the mean mode ``k = 0`` (as in the FNO data).
    At the cell centres ``x_j = (j + 1/2) / N`` the orthonormal DCT-III of an array ``a``
    (scipy's ``idct`` of type 2 with ``norm="ortho"``) is

    .. math::

        y_j = \frac{a_0}{\sqrt N} + \sqrt{\frac 2N} \sum_{m \ge 1} a_m
        \cos\frac{\pi m (2j + 1)}{2N} = \frac{1}{\sqrt N} \sum_m a_m \phi_m(x_j),

    so, axis by axis, ``psi(x_j) = sqrt(n_1 ... n_d) * idctn(a, type=2, norm="ortho")_j`` with
    ``a_k = sqrt(lambda_k) xi_k``.

    Two exact consequences: ``psi`` has zero mean over the grid (every cosine with ``m >= 1``
    sums to zero over the cell centres), and, the DCT matrix being orthogonal, the variance
    averaged over the grid cells is ``sum_{k != 0} lambda_k``.

    Parameters
    ----------
    shape : sequence of int
        Cells per axis, at least 2 cells in all.
    rng : numpy.random.Generator
        The source of ``xi`` (one ``standard_normal(shape)`` draw).
    tau, alpha : float
        Inverse length scale (``tau >= 0``) and smoothness (``alpha > 0``) of the covariance.
    normalize : bool
        Divide by ``sqrt(sum_{k != 0} lambda_k)``, so that the grid-averaged variance is 1.

    Returns
    -------
    numpy.ndarray
        Float64 array of ``shape``; axis ``a`` runs over the cell centres along ``x_a``.

    References
    ----------
    Li et al., "Fourier neural operator for parametric partial differential equations", 2021
    (the Darcy permeability is this field, thresholded).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    shape = tuple(_int("every size in shape", s, 1) for s in shape)
    if not shape or math.prod(shape) < 2:
        raise ValueError(f"shape must have at least 2 cells in all, got {shape}")
    tau = _float("tau", tau, positive=False)
    alpha = _float("alpha", alpha)
    k2 = sum(
        np.reshape(np.arange(s) ** 2, [-1 if a == b else 1 for b in range(len(shape))])
        for a, s in enumerate(shape)
    )
    lam = (np.pi**2 * k2 + tau**2) ** (-alpha)
    lam.flat[0] = 0.0  # drop the mean mode (and a division by zero when tau == 0)
    coef = np.sqrt(lam) * rng.standard_normal(shape)  # (*shape,)
    psi = math.sqrt(math.prod(shape)) * scipy.fft.idctn(coef, type=2, norm="ortho")
    if normalize:
        psi /= math.sqrt(float(lam.sum()))
    return psi


def burgers_initial_condition(
    n: int,
    rng: np.random.Generator,
    *,
    sigma: float = 25.0,
    tau: float = 5.0,
    alpha: float = 2.0,
) -> np.ndarray:
    r"""A sample of ``N(0, sigma^2 (-lap + tau^2 I)^(-alpha))`` on the periodic unit interval,
    at the nodes ``x_j = j / n``, with zero mean (FNO's Burgers initial conditions:
    ``sigma^2 = 625``, ``tau = 5``, ``alpha = 2``).

    In the real Fourier basis ``{1, sqrt2 cos(2 pi m x), sqrt2 sin(2 pi m x)}``, orthonormal in
    ``L^2(0, 1)`` and made of eigenfunctions of ``-lap`` with eigenvalues ``(2 pi m)^2``,

    .. math::

        u_0(x) = \sum_{m=1}^{n/2-1} \sqrt{2\mu_m}\,
        (\xi_m \cos 2\pi m x + \eta_m \sin 2\pi m x), \qquad
        \mu_m = \sigma^2 ((2\pi m)^2 + \tau^2)^{-\alpha},

    ``xi, eta ~ N(0, 1)``. The sum stops below the Nyquist mode, so ``u0`` is a trigonometric
    polynomial that every finer grid represents exactly (its spectrum zero-padded). It is
    evaluated with an inverse real FFT: ``irfft(c)_j = (1/n) (c_0 + 2 sum_m Re(c_m e^{2 pi i m
    j / n}))`` for the ``m < n/2`` present here, so ``c_m = n sqrt(mu_m / 2) (xi_m - i eta_m)``.
    The pointwise variance is ``sum_m 2 mu_m``.

    Parameters
    ----------
    n : int
        Number of nodes (even, >= 4).
    rng : numpy.random.Generator
        The source of ``xi`` and ``eta`` (one ``standard_normal((2, n/2 - 1))`` draw).
    sigma, tau, alpha : float
        Amplitude, inverse length scale and smoothness of the covariance.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = _even(n)
    sigma = _float("sigma", sigma)
    tau = _float("tau", tau, positive=False)
    alpha = _float("alpha", alpha)
    m = np.arange(1, n // 2)
    mu = sigma**2 * ((2 * np.pi * m) ** 2 + tau**2) ** (-alpha)
    xi, eta = rng.standard_normal((2, n // 2 - 1))
    c = np.zeros(n // 2 + 1, dtype=complex)
    c[1 : n // 2] = n * np.sqrt(mu / 2) * (xi - 1j * eta)
    return scipy.fft.irfft(c, n=n)


def _even(n: Any) -> int:
    n = _int("n", n, 4)
    if n % 2:
        raise ValueError(f"n must be even (a real FFT grid with a Nyquist mode), got {n}")
    return n


# --------------------------------------------------------------------------- Darcy
def darcy(
    n: int = 64,
    samples: int = 1,
    *,
    seed: int = 0,
    start: int = 0,
    rtol: float = 1e-10,
    method: str = "pcg-amg",
    tau: float = 3.0,
    alpha: float = 2.0,
    values: tuple[float, float] = (12.0, 3.0),
    progress: bool | None = None,
) -> OperatorData:
    r"""Darcy flow ``-div(a grad u) = 1`` on the unit square, ``u = 0`` on the boundary: the map
    from the permeability ``a`` to the pressure ``u`` (the FNO paper's 2-D benchmark).

    The permeability is a thresholded Gaussian random field,

    .. math::

        a(x) = \begin{cases} 12 & \psi(x) \ge 0 \\ 3 & \psi(x) < 0 \end{cases}, \qquad
        \psi \sim N(0, (-\Delta + \tau^2 I)^{-\alpha}),\ \tau = 3,\ \alpha = 2,

    with zero-flux walls for ``psi`` and its mean mode removed (see
    :func:`gaussian_random_field`; the sign threshold makes the field's scale irrelevant).
    ``psi`` has zero mean over the grid, so both values occur in every sample (unless ``psi``
    vanishes identically, an event of probability zero). The equation is
    discretised by the gallery's cell-centred finite volumes on ``n x n`` cells (harmonic means
    of ``a`` on the faces, ghost cells for the walls; :func:`neuralsolve.datasets.poisson`) and
    solved in float64 to ``||b - A u|| <= rtol ||b||``.

    Parameters
    ----------
    n : int
        Cells per axis (>= 2).
    samples : int
        Number of samples to make (>= 1).
    seed : int
        Seed (>= 0). Sample ``i`` uses ``numpy.random.default_rng([seed, i])``.
    start : int
        Index of the first sample: the call makes samples ``start .. start + samples - 1``.
    rtol : float
        Relative residual tolerance of each solve.
    method : str
        A method of :func:`neuralsolve.solve` for SPD systems (default ``"pcg-amg"``).
    tau, alpha : float
        Covariance parameters of ``psi``.
    values : (float, float)
        Permeability where ``psi >= 0`` and where ``psi < 0`` (positive).
    progress : bool or None
        Show a progress bar on stderr; ``None``: only when stderr is a terminal.

    Returns
    -------
    OperatorData
        ``inputs`` ``(samples, 1, n, n)`` = ``a``, ``outputs`` ``(samples, 1, n, n)`` = ``u``, at
        the cell centres (axes ``x``, ``y``); ``parameters`` holds the arguments and the solver's
        ``iterations_max`` / ``iterations_mean``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments.
    neuralsolve.ConvergenceError
        (a ``RuntimeError``) when a solve does not converge; the message names the sample.

    References
    ----------
    Z. Li et al., "Fourier neural operator for parametric partial differential equations",
    ICLR 2021 (the Darcy flow benchmark).

    Examples
    --------
    >>> from neuralsolve.datasets.generators import darcy
    >>> data = darcy(32, 2, seed=0, progress=False)
    >>> data.inputs.shape, data.outputs.shape
    ((2, 1, 32, 32), (2, 1, 32, 32))
    """
    n = _int("n", n, 2)
    samples = _int("samples", samples, 1)
    seed = _int("seed", seed, 0)
    start = _int("start", start, 0)
    rtol = _float("rtol", rtol)
    method = _method(method)
    tau = _float("tau", tau, positive=False)
    alpha = _float("alpha", alpha)
    if not isinstance(values, Sequence) or len(values) != 2:
        raise ValueError(f"values must be a pair (high, low) of permeabilities, got {values!r}")
    high, low = (_float("values[0]", values[0]), _float("values[1]", values[1]))

    inputs = np.empty((samples, 1, n, n))
    outputs = np.empty((samples, 1, n, n))
    iterations = np.zeros(samples, dtype=np.int64)
    with _bar(samples, "darcy", progress) as bar:
        for s in range(samples):
            i = start + s
            psi = gaussian_random_field(
                (n, n), np.random.default_rng([seed, i]), tau=tau, alpha=alpha
            )
            a = np.where(psi >= 0, high, low)  # (n, n)
            prob = _poisson_problem((n, n), bc="dirichlet", coefficient=a, rhs="ones")
            res = solve(prob.A, prob.b, method=method, rtol=rtol)
            if not res.converged:
                raise ConvergenceError(
                    f"darcy sample {i} (seed {seed}, n {n}): the {method!r} solve did not reach "
                    f"rtol={rtol:g} in {res.iterations} iterations ({res.status}); loosen rtol or "
                    "choose another method",
                    res,
                )
            inputs[s, 0] = a
            outputs[s, 0] = prob.to_grid(res.x)
            iterations[s] = res.iterations
            bar.update(1)
    parameters = {
        "n": n,
        "samples": samples,
        "seed": seed,
        "start": start,
        "rtol": rtol,
        "method": method,
        "tau": tau,
        "alpha": alpha,
        "values": [high, low],
        "equation": "-div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary",
        "discretisation": "cell-centred finite volumes, 5-point, harmonic face means",
        "iterations_max": int(iterations.max()),
        "iterations_mean": float(iterations.mean()),
    }
    c = _cell_centres(n)
    return OperatorData(inputs, outputs, {"x": c, "y": c.copy()}, "darcy", parameters, "cell")


# --------------------------------------------------------------------------- Poisson
def poisson(
    n: int = 64,
    samples: int = 1,
    *,
    seed: int = 0,
    start: int = 0,
    rtol: float = 1e-10,
    method: str = "cg",
    tau: float = 3.0,
    alpha: float = 2.0,
    progress: bool | None = None,
) -> OperatorData:
    r"""``-lap u = f`` on the unit square, ``u = 0`` on the boundary: the map from a random
    source ``f`` to ``u``.

    ``f`` is the Gaussian random field of :func:`gaussian_random_field` (``N(0, (-lap +
    tau^2 I)^(-alpha))`` with zero-flux modes, mean mode removed), scaled to unit variance
    averaged over the grid. The Laplacian is the gallery's cell-centred 5-point finite-volume
    operator on ``n x n`` cells (:func:`neuralsolve.datasets.poisson`). All samples share that
    matrix, so they are solved together: one call of :func:`neuralsolve.solve` with ``b`` of shape
    ``(n^2, samples)``, each column stopping on its own when
    ``||b_j - A u_j|| <= rtol ||b_j||``.

    Parameters
    ----------
    n : int
        Cells per axis (>= 2).
    samples : int
        Number of samples (>= 1).
    seed, start : int
        Sample ``i`` (``start <= i < start + samples``) uses ``default_rng([seed, i])``.
    rtol : float
        Relative residual tolerance, per sample.
    method : str
        A method of :func:`neuralsolve.solve` that takes a block right-hand side (default
        ``"cg"``).
    tau, alpha : float
        Covariance parameters of ``f``.
    progress : bool or None
        Show a progress bar on stderr (it advances when the batched solve returns); ``None``:
        only when stderr is a terminal.

    Returns
    -------
    OperatorData
        ``inputs`` ``(samples, 1, n, n)`` = ``f``, ``outputs`` ``(samples, 1, n, n)`` = ``u`` at
        the cell centres; ``parameters`` holds the arguments and ``iterations_max`` /
        ``iterations_mean`` over the columns.

    Raises
    ------
    TypeError, ValueError
        For bad arguments.
    neuralsolve.ConvergenceError
        When a column does not converge; the message lists the samples.
    """
    n = _int("n", n, 2)
    samples = _int("samples", samples, 1)
    seed = _int("seed", seed, 0)
    start = _int("start", start, 0)
    rtol = _float("rtol", rtol)
    method = _method(method)
    tau = _float("tau", tau, positive=False)
    alpha = _float("alpha", alpha)

    with _bar(samples, "poisson", progress) as bar:
        f = np.stack(
            [
                gaussian_random_field(
                    (n, n), np.random.default_rng([seed, start + s]), tau=tau, alpha=alpha
                )
                for s in range(samples)
            ]
        )  # (samples, n, n)
        prob = _poisson_problem((n, n), bc="dirichlet", rhs=f[0])
        B = f.reshape(samples, n * n).T  # (n^2, samples): unknowns in C order, no mask
        bar.set_postfix_str(f"batched {method} solve")
        res = solve(prob.A, np.ascontiguousarray(B), method=method, rtol=rtol)
        if not res.converged:
            statuses = res.column_status or (res.status,) * samples
            failed = [start + s for s, st in enumerate(statuses) if not st.converged]
            raise ConvergenceError(
                f"poisson samples {failed} (seed {seed}, n {n}): the batched {method!r} solve did "
                f"not reach rtol={rtol:g} ({res.status}); loosen rtol or choose another method",
                res,
            )
        bar.update(samples)
    X = np.asarray(res.x)  # (n^2, samples)
    outputs = X.T.reshape(samples, 1, n, n)
    its = np.asarray(res.column_iterations or (res.iterations,) * samples)
    parameters = {
        "n": n,
        "samples": samples,
        "seed": seed,
        "start": start,
        "rtol": rtol,
        "method": method,
        "tau": tau,
        "alpha": alpha,
        "equation": "-lap u = f on (0,1)^2, u = 0 on the boundary",
        "discretisation": "cell-centred finite volumes, 5-point",
        "iterations_max": int(its.max()),
        "iterations_mean": float(its.mean()),
    }
    c = _cell_centres(n)
    return OperatorData(
        f[:, None].copy(),
        np.ascontiguousarray(outputs),
        {"x": c, "y": c.copy()},
        "poisson",
        parameters,
        "cell",
    )


# --------------------------------------------------------------------------- Burgers
def _etdrk4_coefficients(
    L: np.ndarray, h: float, points: int = CONTOUR_POINTS
) -> tuple[np.ndarray, ...]:
    r"""The ETDRK4 coefficients of a diagonal linear part ``L`` (real, <= 0) and step ``h``.

    With ``z = h L``, Cox & Matthews' coefficients are ``E = e^z``, ``E2 = e^{z/2}``,
    ``Q = h (e^{z/2} - 1) / z`` and

    .. math::

        f_1 = h \frac{-4 - z + e^z (4 - 3z + z^2)}{z^3}, \quad
        f_2 = h \frac{2 + z + e^z (z - 2)}{z^3}, \quad
        f_3 = h \frac{-4 - 3z - z^2 + e^z (4 - z)}{z^3}.

    These lose every digit to cancellation as ``z -> 0``. They are entire functions, so (Kassam
    & Trefethen) each equals its mean over a circle ``z + r e^{i theta}``, and the trapezoidal
    rule on that circle converges faster than geometrically. Kassam & Trefethen take ``r = 1``;
    then for ``|z|`` near 1 some points come close to 0, where the formulas cancel again
    (1e-12 relative error at ``z = -1``). Here ``r = 2|z|`` for ``1/2 < |z| < 2`` and ``r = 1``
    otherwise, so every point is at least 1/2 from 0 while ``e^w`` stays below ``e^2`` on the
    circle: the coefficients are accurate to about 1e-14. For real ``z`` the values at
    conjugate points are conjugate, so the mean over the full circle is the real part of the
    mean over ``points`` points of the upper half.
    """
    theta = np.pi * (np.arange(points) + 0.5) / points
    z0 = h * L  # (modes,)
    # radius 1, widened to 2|z0| for 1/2 < |z0| < 2: every contour point stays >= 1/2 from 0
    radius = np.where((np.abs(z0) > 0.5) & (np.abs(z0) < 2), 2 * np.abs(z0), 1.0)
    z = z0[:, None] + radius[:, None] * np.exp(1j * theta)[None, :]  # (modes, points)
    ez = np.exp(z)

    def mean(values: np.ndarray) -> np.ndarray:
        return h * np.real(values.mean(axis=1))

    z3 = z**3
    Q = mean((np.exp(z / 2) - 1) / z)
    f1 = mean((-4 - z + ez * (4 - 3 * z + z**2)) / z3)
    f2 = mean((2 + z + ez * (z - 2)) / z3)
    f3 = mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z3)
    return np.exp(h * L), np.exp(h * L / 2), Q, f1, f2, f3


class _BlowUp(Exception):
    def __init__(self, step: int, rows: np.ndarray) -> None:
        super().__init__(step, rows)
        self.step = step
        self.rows = rows


def _etdrk4(
    v: np.ndarray,
    L: np.ndarray,
    nonlinear: Callable[[np.ndarray], np.ndarray],
    h: float,
    steps: int,
    *,
    bar: Any = None,
    check_every: int = 100,
) -> np.ndarray:
    r"""Integrate ``v' = L v + N(v)`` for a batch ``v`` of shape ``(batch, modes)`` (``L``
    diagonal, ``(modes,)``) by ``steps`` ETDRK4 steps of size ``h`` (Cox & Matthews 2002,
    eq. 26)::

        a = E2 v + Q N(v)
        b = E2 v + Q N(a)
        c = E2 a + Q (2 N(b) - N(v))
        v <- E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c)

    The linear part is integrated exactly, so diffusion imposes no step limit. Every
    ``check_every`` steps (and at the end) the rows of ``v`` are checked for NaN / infinity;
    :class:`_BlowUp` names the step and the rows.
    """
    E, E2, Q, f1, f2, f3 = _etdrk4_coefficients(L, h)
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(1, steps + 1):
            Nv = nonlinear(v)
            a = E2 * v + Q * Nv
            Na = nonlinear(a)
            b = E2 * v + Q * Na
            Nb = nonlinear(b)
            c = E2 * a + Q * (2 * Nb - Nv)
            Nc = nonlinear(c)
            v = E * v + f1 * Nv + 2 * f2 * (Na + Nb) + f3 * Nc
            if step % check_every == 0 or step == steps:
                bad = ~np.isfinite(v).all(axis=-1)  # (batch,)
                if bad.any():
                    raise _BlowUp(step, np.flatnonzero(bad))
            if bar is not None:
                bar.update(1)
    return v


def _burgers_terms(n: int, nu: float) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    r"""The linear part ``L`` and the nonlinear term ``N`` of Burgers' equation in real-FFT
    coefficients on ``n`` nodes of the periodic unit interval.

    With ``kappa_m = 2 pi m`` (``m = 0 .. n/2``), ``L_m = -nu kappa_m^2`` and

    .. math::

        N(\hat u)_m = -\frac{i \kappa_m}{2} \, P_m \widehat{\left[(P u)^2\right]},

    where ``P`` keeps the modes with ``3 m < n`` and the square is taken on the grid. Orszag's
    2/3 rule: a product of two modes of the kept band has its aliases outside that band, so
    ``N`` is the exact Fourier-Galerkin term ``-P (P u (P u)_x)``, free of aliasing. Modes
    outside the band (present in the initial condition up to ``n/2 - 1``) only diffuse.
    """
    m = np.arange(n // 2 + 1)
    kappa = 2 * np.pi * m
    keep = 3 * m < n
    g = np.where(keep, -0.5j * kappa, 0.0)  # (n/2 + 1,)

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = scipy.fft.irfft(np.where(keep, v, 0.0), n=n, axis=-1)
        return g * scipy.fft.rfft(u * u, axis=-1)

    return -nu * kappa**2, nonlinear


def _burgers_solve(
    u0: np.ndarray, nu: float, t_final: float, steps: int, *, bar: Any = None
) -> np.ndarray:
    """``u(t_final)`` of ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit interval for the
    rows of ``u0`` ``(batch, n)`` (nodes ``j / n``): Fourier-Galerkin in space
    (:func:`_burgers_terms`), ``steps`` ETDRK4 steps in time (:func:`_etdrk4`)."""
    n = u0.shape[-1]
    L, nonlinear = _burgers_terms(n, nu)
    v = scipy.fft.rfft(u0, axis=-1)  # (batch, n/2 + 1)
    v = _etdrk4(v, L, nonlinear, t_final / steps, steps, bar=bar)
    return scipy.fft.irfft(v, n=n, axis=-1)


def burgers(
    n: int = 256,
    samples: int = 1,
    *,
    seed: int = 0,
    start: int = 0,
    nu: float = 0.1,
    t_final: float = 1.0,
    dt: float | None = None,
    sigma: float = 25.0,
    tau: float = 5.0,
    alpha: float = 2.0,
    progress: bool | None = None,
) -> OperatorData:
    r"""1-D viscous Burgers ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit interval: the map
    ``u(., 0) -> u(., t_final)`` (the FNO paper's 1-D benchmark, ``nu = 0.1``, ``t_final = 1``).

    The initial conditions are ``N(0, 625 (-lap + 25 I)^(-2))`` with zero mean
    (:func:`burgers_initial_condition`), at the nodes ``x_j = j / n``. The equation is solved by
    a Fourier pseudo-spectral method with the 2/3 rule for the nonlinear term, and ETDRK4 in
    time (Cox & Matthews 2002) with the coefficients evaluated by contour means (Kassam &
    Trefethen 2005): the stiff diffusion ``-nu kappa^2`` is integrated exactly, so the step is
    limited only by advection and accuracy. All samples of a call are advanced together as one
    ``(samples, n/2 + 1)`` array of Fourier coefficients.

    As for the PDE, the mean of ``u`` is conserved exactly (the nonlinear term has no
    ``kappa = 0`` part) and the energy ``int u^2`` decays: the truncated nonlinear term does no
    work, ``<P ((P u)^2)_x, u> = (2/3) int ((P u)^3)_x dx = 0``, so only diffusion changes the
    energy of the semi-discrete system (the time stepping adds an ``O(dt^4)`` error).

    Parameters
    ----------
    n : int
        Grid nodes (even, >= 4).
    samples : int
        Number of samples (>= 1).
    seed, start : int
        Sample ``i`` (``start <= i < start + samples``) uses ``default_rng([seed, i])``.
    nu : float
        Viscosity (> 0).
    t_final : float
        Final time (> 0).
    dt : float, optional
        Largest time step; the step used is ``t_final / ceil(t_final / dt)``. Default
        ``min(1e-4, t_final)``: the ETDRK4 error is then far below the spatial one for the FNO
        setting. It does not depend on the samples, so a sample's answer does not depend on
        which other samples share the call.
    sigma, tau, alpha : float
        The covariance ``sigma^2 (-lap + tau^2 I)^(-alpha)`` of the initial condition.
    progress : bool or None
        Show a progress bar over the time steps on stderr; ``None``: only when stderr is a
        terminal.

    Returns
    -------
    OperatorData
        ``inputs`` ``(samples, 1, n)`` = ``u0``, ``outputs`` ``(samples, 1, n)`` =
        ``u(t_final)``, at the nodes (``grid_kind="node"``); ``parameters`` holds the arguments,
        the step ``dt`` and number of ``steps`` used, and ``advective_cfl_max``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments, and before any step when ``dt max|u0| min(kappa_max, max|u0|/nu)``
        exceeds 1 for some sample (advection-dominated modes would make the explicit part
        unstable or inaccurate; the message gives a ``dt`` that passes).
    RuntimeError
        When the solution becomes NaN or infinite (the message names the samples and the step).

    References
    ----------
    Z. Li et al., "Fourier neural operator for parametric partial differential equations",
    ICLR 2021 (the Burgers benchmark).

    S. M. Cox, P. C. Matthews, "Exponential time differencing for stiff systems", J. Comput.
    Phys. 176 (2002) 430-455.

    A.-K. Kassam, L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci.
    Comput. 26 (2005) 1214-1233.

    Examples
    --------
    >>> from neuralsolve.datasets.generators import burgers
    >>> data = burgers(64, 2, t_final=0.01, progress=False)
    >>> data.inputs.shape, data.parameters["steps"]
    ((2, 1, 64), 100)
    """
    n = _even(n)
    samples = _int("samples", samples, 1)
    seed = _int("seed", seed, 0)
    start = _int("start", start, 0)
    nu = _float("nu", nu)
    t_final = _float("t_final", t_final)
    sigma = _float("sigma", sigma)
    tau = _float("tau", tau, positive=False)
    alpha = _float("alpha", alpha)
    dt_max = min(BURGERS_MAX_DT, t_final) if dt is None else _float("dt", dt)
    steps = max(1, math.ceil(t_final / dt_max * (1 - 1e-12)))
    h = t_final / steps

    u0 = np.stack(
        [
            burgers_initial_condition(
                n, np.random.default_rng([seed, start + s]), sigma=sigma, tau=tau, alpha=alpha
            )
            for s in range(samples)
        ]
    )  # (samples, n)
    # Advective step check: modes with kappa < U / nu are advection-dominated; the explicit
    # (Runge-Kutta) part sees rates up to U kappa there. RK4's stability interval on the
    # imaginary axis is 2.83; 1 leaves room for accuracy.
    U = np.abs(u0).max(axis=1)  # (samples,)
    kappa_max = 2 * np.pi * ((n - 1) // 3)
    cfl = h * U * np.minimum(kappa_max, U / nu)
    worst = int(np.argmax(cfl))
    if cfl[worst] > 1:
        safe = 1 / (U[worst] * min(kappa_max, U[worst] / nu))
        raise ValueError(
            f"dt={h:g} is too large for burgers sample {start + worst}: dt * max|u0| * "
            f"min(kappa_max, max|u0|/nu) = {cfl[worst]:.3g} > 1; pass dt <= {safe:.3g}"
        )
    with _bar(steps, "burgers", progress, unit="step") as bar:
        try:
            uT = _burgers_solve(u0, nu, t_final, steps, bar=bar)
        except _BlowUp as err:
            bad = [start + int(r) for r in err.rows]
            raise RuntimeError(
                f"burgers samples {bad} became NaN or infinite by step {err.step} of {steps} "
                f"(t = {err.step * h:g}, dt = {h:g}, nu = {nu:g}, n = {n}); pass a smaller dt"
            ) from None
    parameters = {
        "n": n,
        "samples": samples,
        "seed": seed,
        "start": start,
        "nu": nu,
        "t_final": t_final,
        "dt": h,
        "steps": steps,
        "sigma": sigma,
        "tau": tau,
        "alpha": alpha,
        "equation": "u_t + (u^2/2)_x = nu u_xx on the periodic interval [0, 1)",
        "discretisation": "Fourier pseudo-spectral (2/3 rule), ETDRK4 (Kassam-Trefethen contour)",
        "advective_cfl_max": float(cfl.max()),
    }
    return OperatorData(
        u0[:, None], uT[:, None], {"x": np.arange(n) / n}, "burgers", parameters, "node"
    )


# --------------------------------------------------------------------------- registry
GENERATORS: dict[str, Callable[..., OperatorData]] = {
    "darcy": darcy,
    "burgers": burgers,
    "poisson": poisson,
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
    name : {"darcy", "burgers", "poisson"}
        The generator.
    out : str or Path, optional
        Without it, the generator is called once and its :class:`OperatorData` returned. With
        it, the samples are made ``chunk`` at a time (samples ``start + j * chunk ...``; each
        depends only on the seed and its index, so the file holds the same samples as one
        call) and written with :class:`neuralsolve.datasets.hdf5.DatasetWriter`, so a large
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

    chunk = _int("chunk", chunk, 1)
    samples = _int("samples", options.pop("samples", 1), 1)
    start = _int("start", options.pop("start", 0), 0)
    progress = options.pop("progress", None)
    show = _show(progress)
    from .hdf5 import DatasetWriter

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
