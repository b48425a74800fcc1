"""Problems and data: the gallery of reference problems (finite-volume Poisson on boxes with
obstacles and variable coefficients, P1 finite elements on meshes), system I/O, and
operator-learning data (HDF5 datasets, ours and PDEBench's; generators built on our solvers),
and the PDE problems of the mesh-free solvers (:mod:`neuralsolve.datasets.pde`)."""

from . import pde
from .fem import FEMProblem, poisson_fem, read_mesh, unit_cube_mesh, unit_square_mesh
from .gallery import (
    PROBLEMS,
    Grid,
    PoissonProblem,
    available_problems,
    make_problem,
    obstacle_random,
    obstacle_spheres,
    poisson,
)
from .hdf5 import describe, format_description
from .hdf5_writer import DatasetWriter, write_dataset, write_pdebench_darcy
from .io import (
    LinearSystem,
    load_problem,
    read_rhs,
    read_system,
    write_solution,
    write_system,
)
from .operator_data import H5Dataset, Normalizer, split_indices

__all__ = [
    "PROBLEMS",
    "DatasetWriter",
    "FEMProblem",
    "Grid",
    "H5Dataset",
    "LinearSystem",
    "Normalizer",
    "PoissonProblem",
    "available_problems",
    "describe",
    "format_description",
    "load_problem",
    "make_problem",
    "obstacle_random",
    "obstacle_spheres",
    "pde",
    "poisson",
    "poisson_fem",
    "read_mesh",
    "read_rhs",
    "read_system",
    "split_indices",
    "unit_cube_mesh",
    "unit_square_mesh",
    "write_dataset",
    "write_pdebench_darcy",
    "write_solution",
    "write_system",
]
