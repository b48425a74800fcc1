"""GP-HM: Gaussian-process PDE solvers with spectral-mixture kernels on grids.

Fang, Cooley, Long, Li, Kirby & Zhe, ICLR 2024 (arXiv 2311.04465). :mod:`.kernels` (the 1-D
kernels and their analytic derivatives), :mod:`.kron` (Kronecker algebra on tensor grids),
:mod:`.solver` (the solver, :class:`GPSolver`).
"""

from .kernels import (
    KERNELS,
    Kernel1d,
    Matern52,
    SpectralMixture,
    SquaredExponential,
    StudentTMixture,
    make_kernel,
)
from .kron import KroneckerCholesky, KroneckerEigh, kron_apply
from .solver import GPModel, GPSolver

__all__ = [
    "KERNELS",
    "GPModel",
    "GPSolver",
    "Kernel1d",
    "KroneckerCholesky",
    "KroneckerEigh",
    "Matern52",
    "SpectralMixture",
    "SquaredExponential",
    "StudentTMixture",
    "kron_apply",
    "make_kernel",
]
