"""Exponential time differencing, fourth order (ETDRK4), for ``v' = L v + N(v)`` with a diagonal
linear part: the time stepper of the spectral generators (Burgers, Navier-Stokes).

References
----------
S. M. Cox, P. C. Matthews, "Exponential time differencing for stiff systems", J. Comput. Phys.
176 (2002) 430-455.

A.-K. Kassam, L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J. Sci. Comput.
26 (2005) 1214-1233.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

# Points on the upper half of the unit circle for the Kassam-Trefethen contour means.
CONTOUR_POINTS = 32


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


class BlowUp(Exception):
    """Raised by :func:`etdrk4_integrate` when rows of the state become NaN or infinite."""

    def __init__(self, step: int, rows: np.ndarray) -> None:
        super().__init__(step, rows)
        self.step = step
        self.rows = rows


def etdrk4_integrate(
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
    :class:`BlowUp` names the step and the rows.
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
                    raise BlowUp(step, np.flatnonzero(bad))
            if bar is not None:
                bar.update(1)
    return v


def step_count(t_final: float, dt_max: float) -> tuple[int, float]:
    """The number of equal steps that covers ``t_final`` with steps of at most ``dt_max``, and
    the step: ``t_final / ceil(t_final / dt_max)`` (a ratio a rounding error above an integer
    does not add a step)."""
    steps = max(1, math.ceil(t_final / dt_max * (1 - 1e-12)))
    return steps, t_final / steps


def blow_up_error(
    pde: str, err: BlowUp, start: int, steps: int, h: float, context: str
) -> RuntimeError:
    """The error a generator raises for :class:`BlowUp`: the samples (as indices from
    ``start``), the step and time, and ``context`` (the run's settings)."""
    bad = [start + int(r) for r in err.rows]
    return RuntimeError(
        f"{pde} samples {bad} became NaN or infinite by step {err.step} of {steps} "
        f"(t = {err.step * h:g}, dt = {h:g}, {context}); pass a smaller dt"
    )
