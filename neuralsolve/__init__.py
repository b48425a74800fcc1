"""neuralsolve: classical and learned solvers for PDEs and their linear systems, side by side.

Quick start::

    import neuralsolve as ns
    prob = ns.datasets.poisson((64, 64, 64), bc="neumann", obstacle="spheres")
    res = ns.solve(prob.A, prob.b, method="pcg-ic", rtol=1e-6)
    res.converged, res.iterations, res.residual_norms, res.stats

Sub-packages: :mod:`neuralsolve.solvers` (CG/PCG, preconditioners, Lanczos, reference
solvers), :mod:`neuralsolve.datasets` (the problem gallery, FEM meshes, system I/O),
:mod:`neuralsolve.operators` and :mod:`neuralsolve.optim` (learned models and their training).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import datasets, solvers
from ._version import __version__
from .errors import (
    ConvergenceError,
    DataFormatError,
    DeviceError,
    FileWriteError,
    GridStructureError,
    NeuralSolveWarning,
    NonFiniteError,
    NotSPDError,
)
from .lanczos import lanczos
from .linop import (
    CallableOperator,
    DenseOperator,
    DiagonalOperator,
    IdentityOperator,
    LinearOperator,
    SparseOperator,
    as_operator,
)
from .result import SolveResult, Status
from .solvers import available_methods, solve
from .stencil import StencilOperator

__all__ = [
    "CallableOperator",
    "ConvergenceError",
    "DataFormatError",
    "DenseOperator",
    "DeviceError",
    "DiagonalOperator",
    "FileWriteError",
    "GridStructureError",
    "IdentityOperator",
    "LinearOperator",
    "NeuralSolveWarning",
    "NonFiniteError",
    "NotSPDError",
    "SolveResult",
    "SparseOperator",
    "Status",
    "StencilOperator",
    "__version__",
    "as_operator",
    "available_methods",
    "datasets",
    "lanczos",
    "solve",
    "solvers",
]


def __getattr__(name: str) -> Any:
    # The learned-model packages import lazily: they are not needed to solve a linear system.
    if name in ("operators", "optim"):
        return importlib.import_module(f"neuralsolve.{name}")
    raise AttributeError(f"module 'neuralsolve' has no attribute {name!r}")
