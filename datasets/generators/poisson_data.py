"""Poisson data: the source-to-solution map of ``-lap u = f``, solved as one batched CG."""

from __future__ import annotations

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

__all__ = ["poisson"]


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
    n = check_int("n", n, minimum=2)
    samples, seed, start = check_sampling(samples, seed, start)
    rtol = check_positive_float("rtol", rtol)
    method = check_method(method)
    tau, alpha = check_covariance(tau, alpha)

    with progress_bar(samples, "poisson", progress) as bar:
        f = np.stack(
            [
                gaussian_random_field((n, n), sample_rng(seed, start + s), tau=tau, alpha=alpha)
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
    c = cell_centres(n)
    return OperatorData(
        f[:, None].copy(),
        np.ascontiguousarray(outputs),
        {"x": c, "y": c.copy()},
        "poisson",
        parameters,
        "cell",
    )
