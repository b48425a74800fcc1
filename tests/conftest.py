"""Shared fixtures and the case registry: every method is run on every case (CONVENTIONS 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl
import torch

import neuralsolve as ns

# One thread for torch and for numpy's BLAS in the test process. The suite's systems are small
# (at most a few thousand unknowns), where a second thread gains nothing, while idle OpenMP and
# OpenBLAS workers spin and starve each other (see solvers/precond.py: single_threaded_blas).
# On the shared 2-core machine that made single tests 10-80x slower (a 141-iteration DCDM solve
# on a 24 x 24 grid: 41.8 s with torch's default threads, 0.5 s with one). Results do not
# depend on it beyond rounding, which no test relies on. The variables reach the processes
# that tests start (examples, the console script, DDP workers) unless the caller set them.
torch.set_num_threads(1)
threadpoolctl.threadpool_limits(limits=1)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def kill_after_checkpoint(
    command: list[str], out: Path, min_lines: int, *, poll: float = 0.01, timeout: float = 120
) -> int:
    """Start ``command``, SIGKILL it once ``out`` holds ``last.pt`` and ``metrics.jsonl`` has
    ``min_lines`` lines (or after ``timeout`` seconds), and return the lines it left: the
    killed half of a resume test."""
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    metrics, deadline = out / "metrics.jsonl", time.time() + timeout
    while time.time() < deadline:  # kill it after a checkpoint and before the end
        if (
            (out / "last.pt").exists()
            and metrics.exists()
            and len(metrics.read_text().splitlines()) >= min_lines
        ):
            break
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(metrics.read_text().splitlines())


@dataclass
class Case:
    """A test system: the operator as the user would pass it, a right-hand side, and a float64
    reference matrix (scipy CSR) for exact checks."""

    name: str
    A: Any
    b: Any
    matrix: sp.csr_array
    stencil: bool  # a gallery StencilOperator (matrix-free)


def random_spd_dense(n: int, cond: float, seed: int) -> np.ndarray:
    """``Q diag(l) Q^T`` with eigenvalues spread log-uniformly over ``[1, cond]``."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.logspace(0, np.log10(cond), n)
    return (Q * eig) @ Q.T


def random_spd_sparse(n: int, seed: int) -> sp.csr_array:
    """A sparse, strictly diagonally dominant symmetric matrix (condition number bounded by
    the dominance margin: eigenvalues in [1, 2 max row sum + 1])."""
    rng = np.random.default_rng(seed)
    B = sp.random_array(
        (n, n), density=5.0 / n, random_state=rng, data_sampler=lambda size: -rng.random(size)
    )
    S = (B + B.T) / 2
    S = sp.csr_array(S)
    S.setdiag(0)
    S.eliminate_zeros()
    d = np.asarray(np.abs(S).sum(axis=1)).ravel() + 1.0
    return sp.csr_array(S + sp.diags_array(d))


def poisson1d(n: int) -> sp.csr_array:
    return sp.csr_array(
        sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1])
    )


def _gallery(shape: tuple[int, ...], **kw: Any) -> Callable[[], Case]:
    def make() -> Case:
        prob = ns.datasets.poisson(shape, **kw)
        return Case("", prob.A, prob.b, prob.matrix, True)

    return make


def _matrix_case(builder: Callable[[], Any], numpy_b: bool = True) -> Callable[[], Case]:
    def make() -> Case:
        M = builder()
        mat = sp.csr_array(M)
        n = mat.shape[0]
        b = np.random.default_rng(7).standard_normal(n)
        return Case("", M, b if numpy_b else torch.from_numpy(b), mat, False)

    return make


def _fem(mesh: Callable[[], Any]) -> Callable[[], Case]:
    def make() -> Case:
        prob = ns.datasets.poisson_fem(mesh())
        return Case("", prob.A, prob.b, prob.matrix, False)

    return make


CASES: dict[str, Callable[[], Case]] = {
    "spd-dense": _matrix_case(lambda: random_spd_dense(60, 1e3, seed=1)),
    "spd-sparse": _matrix_case(lambda: random_spd_sparse(300, seed=2), numpy_b=False),
    "tridiagonal-scipy": _matrix_case(lambda: poisson1d(100)),
    "poisson1d-dirichlet": _gallery((60,)),
    "poisson1d-neumann": _gallery((50,), bc="neumann"),
    "poisson1d-mixed-spheres": _gallery((80,), bc="mixed", obstacle="spheres", seed=2),
    "poisson2d-dirichlet": _gallery((16, 12)),
    "poisson2d-neumann": _gallery((12, 12), bc="neumann"),
    "poisson2d-mixed-spheres": _gallery((20, 20), bc="mixed", obstacle="spheres", seed=3),
    "poisson3d-dirichlet": _gallery((8, 8, 8)),
    "poisson3d-neumann-spheres": _gallery((12, 12, 12), bc="neumann", obstacle="spheres", seed=1),
    "poisson3d-mixed-random": _gallery((12, 12, 12), bc="mixed", obstacle="random", seed=4),
    "darcy2d": _gallery((16, 16), coefficient="darcy", seed=5),
    "fem-square": _fem(lambda: ns.datasets.unit_square_mesh(10)),
    "fem-cube": _fem(lambda: ns.datasets.unit_cube_mesh(4)),
}


def make_case(name: str) -> Case:
    case = CASES[name]()
    case.name = name
    return case


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(request.param)
