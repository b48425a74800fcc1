"""Darcy flow data: the permeability-to-pressure map of the FNO paper's 2-D benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuralsolve.checks import check_int, check_positive_float
from neuralsolve.errors import ConvergenceError
from neuralsolve.solvers import solve

from ..gallery import poisson as _poisson_problem
from .common import (
    OperatorData,
    cell_centres,
    check_covariance,
    check_method,
    check_sampling,
    progress_bar,
    sample_rng,
)
from .random_fields import gaussian_random_field

__all__ = ["darcy"]


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
    n = check_int("n", n, minimum=2)
    samples, seed, start = check_sampling(samples, seed, start)
    rtol = check_positive_float("rtol", rtol)
    method = check_method(method)
    tau, alpha = check_covariance(tau, alpha)
    if not isinstance(values, Sequence) or len(values) != 2:
        raise ValueError(f"values must be a pair (high, low) of permeabilities, got {values!r}")
    high, low = (
        check_positive_float("values[0]", values[0]),
        check_positive_float("values[1]", values[1]),
    )

    inputs = np.empty((samples, 1, n, n))
    outputs = np.empty((samples, 1, n, n))
    iterations = np.zeros(samples, dtype=np.int64)
    with progress_bar(samples, "darcy", progress) as bar:
        for s in range(samples):
            i = start + s
            psi = gaussian_random_field((n, n), sample_rng(seed, i), tau=tau, alpha=alpha)
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
    c = cell_centres(n)
    return OperatorData(inputs, outputs, {"x": c, "y": c.copy()}, "darcy", parameters, "cell")
