"""Burgers data: 1-D viscous Burgers on the periodic interval, pseudo-spectral in space and
ETDRK4 in time (Cox & Matthews 2002; contour coefficients of Kassam & Trefethen 2005)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft

from neuralsolve.checks import check_positive_float

from .common import OperatorData, check_covariance, check_sampling, progress_bar, sample_rng
from .etdrk4 import BlowUp, blow_up_error, etdrk4_integrate, step_count
from .random_fields import burgers_initial_condition, check_even_grid_size

__all__ = ["burgers"]

# Largest default time step of :func:`burgers` (ETDRK4 is fourth order: its error at this step
# is far below the spatial error for the default viscosity).
BURGERS_MAX_DT = 1e-4


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
    (:func:`_burgers_terms`), ``steps`` ETDRK4 steps in time (:func:`etdrk4_integrate`)."""
    n = u0.shape[-1]
    L, nonlinear = _burgers_terms(n, nu)
    v = scipy.fft.rfft(u0, axis=-1)  # (batch, n/2 + 1)
    v = etdrk4_integrate(v, L, nonlinear, t_final / steps, steps, bar=bar)
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
    n = check_even_grid_size(n)
    samples, seed, start = check_sampling(samples, seed, start)
    nu = check_positive_float("nu", nu)
    t_final = check_positive_float("t_final", t_final)
    sigma = check_positive_float("sigma", sigma)
    tau, alpha = check_covariance(tau, alpha)
    dt_max = min(BURGERS_MAX_DT, t_final) if dt is None else check_positive_float("dt", dt)
    steps, h = step_count(t_final, dt_max)

    u0 = np.stack(
        [
            burgers_initial_condition(
                n, sample_rng(seed, start + s), sigma=sigma, tau=tau, alpha=alpha
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
    with progress_bar(steps, "burgers", progress, unit="step") as bar:
        try:
            uT = _burgers_solve(u0, nu, t_final, steps, bar=bar)
        except BlowUp as err:
            context = f"nu = {nu:g}, n = {n}"
            raise blow_up_error("burgers", err, start, steps, h, context) from None
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
