"""Problems and data: the gallery of reference problems (finite-volume Poisson on boxes with
obstacles and variable coefficients, P1 finite elements on meshes) and system I/O."""

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
from .io import (
    LinearSystem,
    load_problem,
    read_rhs,
    read_system,
    write_solution,
    write_system,
)

__all__ = [
    "PROBLEMS",
    "FEMProblem",
    "Grid",
    "LinearSystem",
    "PoissonProblem",
    "available_problems",
    "load_problem",
    "make_problem",
    "obstacle_random",
    "obstacle_spheres",
    "poisson",
    "poisson_fem",
    "read_mesh",
    "read_rhs",
    "read_system",
    "unit_cube_mesh",
    "unit_square_mesh",
    "write_solution",
    "write_system",
]
