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

__all__ = [
    "KERNELS",
    "Kernel1d",
    "Matern52",
    "SpectralMixture",
    "SquaredExponential",
    "StudentTMixture",
    "make_kernel",
]
