"""Gaussian random fields: Darcy's permeability and Poisson's sources (zero-flux box), Burgers'
initial conditions (periodic interval) and the initial vorticity of Navier-Stokes (periodic
square)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft

from neuralsolve.checks import check_int, check_positive_float

from .common import check_covariance

__all__ = ["burgers_initial_condition", "gaussian_random_field", "vorticity_initial_condition"]


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
    shape = tuple(check_int("every size in shape", s, minimum=1) for s in shape)
    if not shape or math.prod(shape) < 2:
        raise ValueError(f"shape must have at least 2 cells in all, got {shape}")
    tau, alpha = check_covariance(tau, alpha)
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
    n = check_even_grid_size(n)
    sigma = check_positive_float("sigma", sigma)
    tau, alpha = check_covariance(tau, alpha)
    m = np.arange(1, n // 2)
    mu = sigma**2 * ((2 * np.pi * m) ** 2 + tau**2) ** (-alpha)
    xi, eta = rng.standard_normal((2, n // 2 - 1))
    c = np.zeros(n // 2 + 1, dtype=complex)
    c[1 : n // 2] = n * np.sqrt(mu / 2) * (xi - 1j * eta)
    return scipy.fft.irfft(c, n=n)


def check_even_grid_size(n: Any) -> int:
    """Checked grid size ``n`` of a spectral generator: an even integer >= 4."""
    n = check_int("n", n, minimum=4)
    if n % 2:
        raise ValueError(f"n must be even (a real FFT grid with a Nyquist mode), got {n}")
    return n


def vorticity_initial_condition(
    n: int,
    rng: np.random.Generator,
    *,
    sigma: float = math.sqrt(2.0) * 7.0**1.5,
    tau: float = 7.0,
    alpha: float = 2.5,
) -> np.ndarray:
    r"""A sample of ``N(0, sigma^2 (-lap + tau^2 I)^(-alpha))`` on the periodic unit square, at
    the nodes ``(i / n, j / n)``, with zero mean: the initial vorticity of the FNO paper's
    Navier-Stokes data.

    In the real Fourier basis ``{sqrt2 cos(2 pi k.x), sqrt2 sin(2 pi k.x)}`` (one pair per
    wave vector ``k`` up to sign), orthonormal in ``L^2`` and made of eigenfunctions of
    ``-lap`` with eigenvalues ``4 pi^2 |k|^2``, each coefficient is an independent
    ``N(0, sigma^2 lambda_k)`` with

    .. math::

        \lambda_k = (4 \pi^2 |k|^2 + \tau^2)^{-\alpha}, \qquad
        0 < |k|,\ |k_x|, |k_y| < n / 2 .

    The field is drawn as ``Re sum_k sigma sqrt(lambda_k) (xi_k + i eta_k) e^{2 pi i k.x}``
    over the whole FFT grid of wave vectors (``xi, eta ~ N(0, 1)`` independent for ``k`` and
    ``-k``): the pair ``k, -k`` then gives the two basis functions above coefficients
    ``sigma sqrt(lambda_k) (xi_k + xi_{-k}) / sqrt2`` and ``sigma sqrt(lambda_k) (eta_{-k} -
    eta_k) / sqrt2``, each of variance ``sigma^2 lambda_k``. The Nyquist rows are left out, so
    the field is a trigonometric polynomial that every finer grid represents exactly. Its
    pointwise variance is ``sigma^2 sum_{k != 0} lambda_k`` (0.069 for the defaults at ``n = 64``, a
    standard deviation of 0.26).

    The defaults are the amplitude of the FNO paper's data: its text writes the covariance
    ``7^{3/2} (-lap + 49 I)^{-2.5}``, but its data are drawn with coefficients of standard
    deviation ``sqrt2 7^{3/2} sqrt(lambda_k)``, which is ``sigma = sqrt2 7^{3/2}`` here.

    Parameters
    ----------
    n : int
        Nodes per axis (even, >= 4).
    rng : numpy.random.Generator
        The source of ``xi`` and ``eta`` (one ``standard_normal((2, n, n))`` draw).
    sigma, tau, alpha : float
        Amplitude, inverse length scale and smoothness of the covariance.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64; axis 0 runs along ``x``, axis 1 along ``y``.

    References
    ----------
    Z. Li et al., "Fourier neural operator for parametric partial differential equations",
    ICLR 2021 (the Navier-Stokes benchmark).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = check_even_grid_size(n)
    sigma = check_positive_float("sigma", sigma)
    tau, alpha = check_covariance(tau, alpha)
    m = np.fft.fftfreq(n, 1.0 / n)  # 0, 1, ..., n/2 - 1, -n/2, ..., -1
    lam = (4 * np.pi**2 * (m[:, None] ** 2 + m[None, :] ** 2) + tau**2) ** (-alpha)
    lam[0, 0] = 0.0
    nyquist = np.abs(m) == n // 2
    lam[nyquist, :] = 0.0
    lam[:, nyquist] = 0.0
    xi, eta = rng.standard_normal((2, n, n))
    c = sigma * np.sqrt(lam) * (xi + 1j * eta)
    return np.real(scipy.fft.ifft2(c)) * n * n
