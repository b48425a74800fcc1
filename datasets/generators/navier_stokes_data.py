"""Navier-Stokes data: 2-D incompressible flow on the periodic unit square in vorticity form,
Fourier pseudo-spectral in space (2/3 rule) and ETDRK4 in time (the FNO paper's benchmark)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft

from neuralsolve.checks import check_nonnegative_float, check_positive_float

from .common import OperatorData, check_covariance, check_sampling, progress_bar, sample_rng
from .etdrk4 import BlowUp, blow_up_error, etdrk4_integrate, step_count
from .random_fields import check_even_grid_size, vorticity_initial_condition

__all__ = ["navier_stokes"]

# Default time step of :func:`navier_stokes`. For the FNO setting (nu = 1e-3, t_final = 50,
# n = 64) the answer changes by less than 2e-9 (relative L2) when the step is halved, and its
# advective CFL number peaks near 1.05.
NS_DEFAULT_DT = 0.02
# ETDRK4's explicit part is RK4, stable for advection rates h |u.k| up to 2.83; stop before.
NS_MAX_CFL = 2.5


class _CFLExceeded(Exception):
    def __init__(self, cfl: float, safe_dt: float) -> None:
        super().__init__(cfl, safe_dt)
        self.cfl = cfl
        self.safe_dt = safe_dt  # the step that would have given a CFL number of 1


def _modes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integer frequencies ``m_x`` ``(n, 1)`` and ``m_y`` ``(1, n/2 + 1)`` of ``rfft2`` on
    ``n x n`` nodes, and the 2/3-rule mask ``keep`` ``(n, n/2 + 1)``: ``3 |m_x| < n`` and
    ``3 m_y < n``."""
    mx = np.fft.fftfreq(n, 1.0 / n)[:, None]
    my = np.arange(n // 2 + 1)[None, :]
    keep = (3 * np.abs(mx) < n) & (3 * my < n)
    return mx, my, keep


def _navier_stokes_terms(
    n: int, nu: float, forcing: np.ndarray, dt: float
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], dict[str, float]]:
    r"""The linear part ``L`` and the nonlinear term ``N`` of the vorticity equation

    .. math::

        \partial_t \omega + \mathbf u \cdot \nabla \omega = \nu \Delta \omega + f, \qquad
        \mathbf u = (\partial_y \psi, -\partial_x \psi), \quad -\Delta \psi = \omega,

    in real-FFT coefficients on ``n x n`` nodes of the periodic unit square, flattened to
    ``(batch, n (n/2 + 1))`` for :func:`~.etdrk4.etdrk4_integrate`. With ``k = 2 pi m``,
    ``L_k = -nu |k|^2`` and

    .. math::

        N(\hat\omega)_k = -P_k \widehat{\left[u\, \partial_x (P\omega)
        + v\, \partial_y (P\omega)\right]}_k + \hat f_k,
        \qquad \hat u = \frac{i k_y}{|k|^2} P\hat\omega,\ \hat v = -\frac{i k_x}{|k|^2}
        P\hat\omega,

    where ``P`` keeps the modes with ``3 |m_x| < n`` and ``3 |m_y| < n`` and the products are
    taken on the grid. A product of two kept modes has its aliases outside the kept band
    (Orszag's 2/3 rule, axis by axis), so ``N`` is the exact Fourier-Galerkin term, free of
    aliasing: the truncated system conserves energy and enstrophy when ``nu = 0`` and ``f = 0``
    (tested). The mean vorticity (``k = 0``) has no nonlinear part and stays zero.

    ``forcing`` is ``f`` on the grid ``(n, n)``. The returned ``state`` records the largest
    advective CFL number ``dt max(|u| + |v|) k_max`` seen (``k_max = 2 pi max |m|`` over the
    kept modes); :class:`_CFLExceeded` stops the run above :data:`NS_MAX_CFL`.
    """
    mx, my, keep = _modes(n)
    kx, ky = 2 * np.pi * mx, 2 * np.pi * my
    k2 = kx**2 + ky**2
    inverse_laplacian = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    k_max = 2 * np.pi * ((n - 1) // 3)
    f_hat = scipy.fft.rfft2(forcing)
    shape = (n, n // 2 + 1)
    state = {"cfl": 0.0}

    def nonlinear(v: np.ndarray) -> np.ndarray:
        w = np.where(keep, v.reshape(-1, *shape), 0.0)
        psi = w * inverse_laplacian
        spectral = np.stack([1j * ky * psi, -1j * kx * psi, 1j * kx * w, 1j * ky * w])
        u, vel_y, w_x, w_y = scipy.fft.irfft2(spectral, s=(n, n), workers=-1)
        speed = float(np.max(np.abs(u) + np.abs(vel_y)))
        cfl = dt * speed * k_max
        state["cfl"] = max(state["cfl"], cfl)
        if cfl > NS_MAX_CFL:
            raise _CFLExceeded(cfl, 1 / (speed * k_max))
        advection = scipy.fft.rfft2(u * w_x + vel_y * w_y, workers=-1)
        return (f_hat - np.where(keep, advection, 0.0)).reshape(v.shape)

    return (-nu * k2).ravel(), nonlinear, state


def fno_forcing(n: int, amplitude: float = 0.1) -> np.ndarray:
    """The FNO paper's forcing ``amplitude (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` at the
    nodes ``(i / n, j / n)`` of the periodic unit square, ``(n, n)``."""
    x = np.arange(n) / n
    phase = 2 * np.pi * (x[:, None] + x[None, :])
    return amplitude * (np.sin(phase) + np.cos(phase))


def _navier_stokes_solve(
    w0: np.ndarray,
    nu: float,
    forcing: np.ndarray,
    t_final: float,
    steps: int,
    *,
    bar: Any = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """``omega(t_final)`` for the initial vorticities ``w0`` ``(batch, n, n)``: Fourier-Galerkin
    in space (:func:`_navier_stokes_terms`), ``steps`` ETDRK4 steps in time. Returns it with
    the CFL record of the run."""
    batch, n = w0.shape[0], w0.shape[-1]
    h = t_final / steps
    L, nonlinear, state = _navier_stokes_terms(n, nu, forcing, h)
    v = scipy.fft.rfft2(w0).reshape(batch, -1)
    v = etdrk4_integrate(v, L, nonlinear, h, steps, bar=bar)
    return scipy.fft.irfft2(v.reshape(batch, n, n // 2 + 1), s=(n, n)), state


def navier_stokes(
    n: int = 64,
    samples: int = 1,
    *,
    seed: int = 0,
    start: int = 0,
    nu: float = 1e-3,
    t_final: float = 50.0,
    dt: float | None = None,
    forcing: float = 0.1,
    sigma: float = math.sqrt(2.0) * 7.0**1.5,
    tau: float = 7.0,
    alpha: float = 2.5,
    progress: bool | None = None,
) -> OperatorData:
    r"""2-D incompressible Navier-Stokes in vorticity form on the periodic unit square, the map
    ``omega(., 0) -> omega(., t_final)`` (the FNO paper's benchmark; the T1 paper's setting is
    ``nu = 1e-3``, ``t_final = 50``, 64 x 64):

    .. math::

        \partial_t \omega + \mathbf u \cdot \nabla \omega = \nu \Delta \omega + f, \quad
        \nabla \cdot \mathbf u = 0, \quad \omega = \partial_x u_y - \partial_y u_x,

    with the FNO forcing ``f = forcing (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` and initial
    vorticity ``N(0, sigma^2 (-lap + tau^2 I)^(-alpha))`` (:func:`vorticity_initial_condition`,
    the FNO data's amplitude by default). Space: Fourier pseudo-spectral with the 2/3 rule
    (:func:`_navier_stokes_terms`); time: ETDRK4 with the diffusion integrated exactly (Cox &
    Matthews 2002, coefficients by contour means as in Kassam & Trefethen 2005). All samples
    of a call are advanced together.

    Accuracy, measured for the defaults on 8 samples (relative L2 at ``t_final = 50``): the
    step 0.02 against 0.01 differs by at most 1.6e-9, and the 64 x 64 run against a 128 x 128
    run from the same initial vorticity by at most 4e-9: at ``nu = 1e-3`` this flow is well
    resolved on 64 x 64. The parameters record ``spectral_tail_max``, the largest fraction of
    enstrophy in the outer half (``|m| > n/6`` on either axis) of the kept modes at
    ``t_final``, as a check on resolution for other settings (smaller ``nu``, larger ``sigma``).

    Parameters
    ----------
    n : int
        Nodes per axis (even, >= 4).
    samples : int
        Number of samples (>= 1).
    seed, start : int
        Sample ``i`` (``start <= i < start + samples``) uses ``default_rng([seed, i])``.
    nu : float
        Viscosity (> 0).
    t_final : float
        Final time (> 0).
    dt : float, optional
        Largest time step; the step used is ``t_final / ceil(t_final / dt)``. Default 0.02 (or
        ``t_final`` if smaller). It does not depend on the samples, so a sample's answer does
        not depend on which other samples share the call.
    forcing : float
        Amplitude of the forcing (>= 0; 0 for decaying flow).
    sigma, tau, alpha : float
        The covariance ``sigma^2 (-lap + tau^2 I)^(-alpha)`` of the initial vorticity.
    progress : bool or None
        Show a progress bar over the time steps on stderr; ``None``: only when stderr is a
        terminal.

    Returns
    -------
    OperatorData
        ``inputs`` ``(samples, 1, n, n)`` = ``omega(0)``, ``outputs`` ``(samples, 1, n, n)`` =
        ``omega(t_final)``, at the nodes ``(i / n, j / n)`` (``grid_kind="node"``; axis 2 is
        ``x``, axis 3 ``y``); ``parameters`` holds the arguments, the step ``dt`` and number
        of ``steps`` used, ``advective_cfl_max`` and ``spectral_tail_max``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments.
    RuntimeError
        When the advective CFL number ``dt max(|u| + |v|) k_max`` passes 2.5 (the explicit part
        would soon be unstable; the message gives a ``dt`` that keeps it near 1), or when the
        solution becomes NaN or infinite (the message names the samples and the step).

    References
    ----------
    Z. Li et al., "Fourier neural operator for parametric partial differential equations",
    ICLR 2021 (the Navier-Stokes benchmark).

    M. Poli et al., "Transform once: efficient operator learning in frequency domain",
    NeurIPS 2022 (``nu = 1e-3``, ``omega(0) -> omega(50)``).

    S. M. Cox, P. C. Matthews, "Exponential time differencing for stiff systems", J. Comput.
    Phys. 176 (2002) 430-455.

    Examples
    --------
    >>> from neuralsolve.datasets.generators import navier_stokes
    >>> data = navier_stokes(16, 2, t_final=0.1, progress=False)
    >>> data.inputs.shape, data.parameters["steps"]
    ((2, 1, 16, 16), 5)
    """
    n = check_even_grid_size(n)
    samples, seed, start = check_sampling(samples, seed, start)
    nu = check_positive_float("nu", nu)
    t_final = check_positive_float("t_final", t_final)
    amplitude = check_nonnegative_float("forcing", forcing)
    sigma = check_positive_float("sigma", sigma)
    tau, alpha = check_covariance(tau, alpha)
    dt_max = min(NS_DEFAULT_DT, t_final) if dt is None else check_positive_float("dt", dt)
    steps, h = step_count(t_final, dt_max)

    w0 = np.stack(
        [
            vorticity_initial_condition(
                n, sample_rng(seed, start + s), sigma=sigma, tau=tau, alpha=alpha
            )
            for s in range(samples)
        ]
    )  # (samples, n, n)
    context = f"nu = {nu:g}, n = {n}, t_final = {t_final:g}"
    with progress_bar(steps, "navier_stokes", progress, unit="step") as bar:
        try:
            wT, state = _navier_stokes_solve(
                w0, nu, fno_forcing(n, amplitude), t_final, steps, bar=bar
            )
        except _CFLExceeded as err:
            raise RuntimeError(
                f"navier_stokes: the advective CFL number dt max(|u|+|v|) k_max reached "
                f"{err.cfl:.3g} > {NS_MAX_CFL} ({context}, dt = {h:g}), so the time stepping "
                f"would soon be unstable; pass dt <= {err.safe_dt:.3g}"
            ) from None
        except BlowUp as err:
            raise blow_up_error("navier_stokes", err, start, steps, h, context) from None
    parameters = {
        "n": n,
        "samples": samples,
        "seed": seed,
        "start": start,
        "nu": nu,
        "t_final": t_final,
        "dt": h,
        "steps": steps,
        "forcing": amplitude,
        "sigma": sigma,
        "tau": tau,
        "alpha": alpha,
        "equation": "w_t + u.grad w = nu lap w + f, -lap psi = w, u = (psi_y, -psi_x), periodic "
        "[0, 1)^2, f = forcing (sin(2 pi (x + y)) + cos(2 pi (x + y)))",
        "discretisation": "Fourier pseudo-spectral (2/3 rule), ETDRK4 (Kassam-Trefethen contour)",
        "advective_cfl_max": state["cfl"],
        "spectral_tail_max": float(_spectral_tail(wT).max()),
    }
    x = np.arange(n) / n
    return OperatorData(
        w0[:, None], wT[:, None], {"x": x, "y": x.copy()}, "navier_stokes", parameters, "node"
    )


def _spectral_tail(w: np.ndarray) -> np.ndarray:
    """Per sample of ``w`` ``(batch, n, n)``: the fraction of enstrophy ``sum |w_hat|^2`` over
    the kept modes (2/3 rule) that lies in their outer half, ``|m| > n/6`` on either axis."""
    n = w.shape[-1]
    mx, my, kept = _modes(n)
    outer = kept & ((6 * np.abs(mx) > n) | (6 * my > n))
    weight = np.where(my == 0, 1.0, 2.0)  # rfft2 holds one of each conjugate pair off my = 0
    power = weight * np.abs(scipy.fft.rfft2(w)) ** 2
    return (power * outer).sum(axis=(1, 2)) / np.maximum((power * kept).sum(axis=(1, 2)), 1e-300)
