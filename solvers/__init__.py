"""Linear solvers: batched CG/PCG and flexible CG in torch, preconditioners (Jacobi, IC(0),
AMG), DCDM (a learned search direction), Lanczos, and reference runners for scipy, pyamg and a sparse direct solve.

Use :func:`solve` with a method name, or the solver classes directly::

    from neuralsolve.solvers import CG, AMGPreconditioner
    M = AMGPreconditioner(A)                   # set up once
    res = CG(rtol=1e-8).solve(A, b, M=M)       # solve many
"""

from neuralsolve.lanczos import LanczosResult, lanczos, ritz_pairs

from .base import PreparedSolver, Solver, SolverBase
from .chebyshev import ChebyshevResult, ChebyshevSolver
from .convergence import IterationInfo
from .dcdm import DCDM, DCDMPreconditioner, FlexibleDCDM, load_network
from .dcdm_net import DCDMNet, DCDMNetConfig, geometry_flags
from .gp import GPSolver
from .krylov import CG, FlexibleCG
from .pinn import MLP, FourierMLP
from .pinn.solver import PINN
from .precond import (
    PRECONDITIONERS,
    AMGPreconditioner,
    ICPreconditioner,
    JacobiPreconditioner,
    Preconditioner,
    ichol0,
    make_preconditioner,
)
from .reference import DirectSolver, PyAMGSolver, ScipyCG
from .registry import METHODS, MethodSpec, available_methods, make_solver, solve

__all__ = [
    "CG",
    "DCDM",
    "METHODS",
    "MLP",
    "PINN",
    "PRECONDITIONERS",
    "AMGPreconditioner",
    "ChebyshevResult",
    "ChebyshevSolver",
    "DCDMNet",
    "DCDMNetConfig",
    "DCDMPreconditioner",
    "DirectSolver",
    "FlexibleCG",
    "FlexibleDCDM",
    "FourierMLP",
    "GPSolver",
    "ICPreconditioner",
    "IterationInfo",
    "JacobiPreconditioner",
    "LanczosResult",
    "MethodSpec",
    "Preconditioner",
    "PreparedSolver",
    "PyAMGSolver",
    "ScipyCG",
    "Solver",
    "SolverBase",
    "available_methods",
    "geometry_flags",
    "ichol0",
    "lanczos",
    "load_network",
    "make_preconditioner",
    "make_solver",
    "ritz_pairs",
    "solve",
]
