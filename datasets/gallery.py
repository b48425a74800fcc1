"""The gallery of reference problems that tests, examples, docs and benchmarks share.

:func:`poisson` discretises ``-div(k grad u) = f`` on a box ``[0, L_1] x ... x [0, L_d]``
(``d = 1, 2`` or ``3``) with cell-centred finite volumes: the 3-, 5- or 7-point
stencil, harmonic means of ``k`` on interior faces, and walls that are either Dirichlet
(``u = 0``, ghost value at distance ``h/2``, face weight ``2 k / h^2``) or zero-flux Neumann.
Solid obstacles are removed from the system as in the pressure projection of a fluid solver:
their cells are not unknowns and the faces between fluid and solid carry no flux. The scheme
is second-order accurate (checked on manufactured solutions in the tests).

Null space. A connected fluid region that touches no Dirichlet wall (every region of a pure
Neumann problem, or a pocket enclosed by solids) makes the matrix singular, with the constants
on that region as null vectors. The gallery always projects ``b`` onto the range (subtracts its
mean on each such region), so that solutions exist, and then, with ``gauge="pin"`` (the
default), adds ``a_kk`` to the diagonal of the first cell ``k`` of each such region. The pinned
matrix is SPD and, because ``b`` is consistent, its solution solves the singular system exactly
with ``u_k = 0``. With ``gauge="none"`` the matrix stays singular (tagged not positive definite);
CG still converges on it for the consistent ``b`` when called with ``check_spd=False``.
``problem.null_space`` holds the orthonormal null vectors of the singular system either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
import torch

from neuralsolve.checks import check_choice, check_int
from neuralsolve.errors import NonFiniteError
from neuralsolve.linop import check_dtype, torch_dtype
from neuralsolve.stencil import StencilOperator

__all__ = [
    "PROBLEMS",
    "Grid",
    "PoissonProblem",
    "available_problems",
    "make_problem",
    "obstacle_random",
    "obstacle_spheres",
    "poisson",
]

AXES = "xyz"
BC_KINDS = ("dirichlet", "neumann")


@dataclass(frozen=True)
class Grid:
    """A box of ``shape`` cells with side ``lengths``; cell ``i`` along an axis is centred at
    ``(i + 1/2) h``."""

    shape: tuple[int, ...]
    lengths: tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(L / n for L, n in zip(self.lengths, self.shape, strict=True))

    def cell_centers(self) -> tuple[np.ndarray, ...]:
        """Coordinates of the cell centres, one array of grid shape per axis."""
        axes = [(np.arange(n) + 0.5) * h for n, h in zip(self.shape, self.spacing, strict=True)]
        return tuple(np.meshgrid(*axes, indexing="ij"))


@dataclass
class PoissonProblem:
    """A discretised Poisson problem: the operator, the right-hand side and the geometry.

    Attributes
    ----------
    name : str
        Short description, e.g. ``"poisson3d-dirichlet-64"``.
    A : StencilOperator
        The matrix-free operator over the unknowns (the active cells, in C order).
    b : torch.Tensor
        Right-hand side, shape ``(n,)``.
    grid : Grid
        Cells and spacing.
    mask : numpy.ndarray of bool
        Grid-shaped, ``True`` where a cell is an unknown (fluid), ``False`` in solids.
    bc : dict
        Wall kind per face (``"x-"``, ``"x+"``, ...): ``"dirichlet"`` or ``"neumann"``.
    coefficient : numpy.ndarray or None
        Cell-wise ``k`` (``None`` for ``k = 1``).
    null_space : torch.Tensor or None
        ``(n, m)`` orthonormal null vectors of the unpinned system (``None`` if nonsingular).
    pinned : numpy.ndarray
        Indices of the unknowns whose diagonal was increased to fix the gauge.
    regions : numpy.ndarray or None
        Per unknown, the index of its singular region (a column of ``null_space``), -1 if grounded.
    """

    name: str
    A: StencilOperator
    b: torch.Tensor
    grid: Grid
    mask: np.ndarray
    bc: dict[str, str]
    coefficient: np.ndarray | None = None
    null_space: torch.Tensor | None = None
    pinned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    regions: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of unknowns."""
        return self.A.shape[0]

    @property
    def matrix(self) -> sp.csr_array:
        """The same operator assembled as a scipy CSR matrix (built once and cached on ``A``;
        do not modify it in place)."""
        return self.A.to_scipy()

    @property
    def dirichlet_mask(self) -> np.ndarray:
        """Grid-shaped bool: active cells that touch a Dirichlet wall."""
        out = np.zeros(self.grid.shape, dtype=bool)
        for a in range(self.grid.ndim):
            for side, index in (("-", 0), ("+", -1)):
                if self.bc[f"{AXES[a]}{side}"] == "dirichlet":
                    sl = [slice(None)] * self.grid.ndim
                    sl[a] = index
                    out[tuple(sl)] = True
        return out & self.mask

    def to_grid(self, x: Any, fill: float = 0.0) -> np.ndarray:
        """A solution vector ``(n,)`` as a grid-shaped numpy array (``fill`` in solids)."""
        vec = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if vec.shape[0] != self.n:
            raise ValueError(f"expected a vector of length {self.n}, got shape {vec.shape}")
        out = np.full(self.grid.shape + vec.shape[1:], fill, dtype=vec.dtype)
        out[self.mask] = vec
        return out

    def from_grid(self, u: np.ndarray) -> np.ndarray:
        """The unknowns of a grid-shaped array."""
        u = np.asarray(u)
        if u.shape[: self.grid.ndim] != self.grid.shape:
            raise ValueError(f"expected an array of grid shape {self.grid.shape}, got {u.shape}")
        return u[self.mask]

    def random_rhs(self, k: int, *, seed: int = 0) -> torch.Tensor:
        """``k`` standard-normal right-hand sides ``(n, k)``, projected onto the range."""
        gen = np.random.default_rng(seed)
        B = gen.standard_normal((self.n, k))
        B = _project_range(B, self.regions)
        return torch.from_numpy(B).to(dtype=self.b.dtype, device=self.b.device)

    def to(self, device: Any = None, dtype: Any = None) -> PoissonProblem:
        """The same problem with its tensors on ``device`` and/or in ``dtype``."""
        dt = None if dtype is None else check_dtype(torch_dtype(dtype), "dtype")
        A = self.A.to(device=device, dtype=dt)
        return PoissonProblem(
            name=self.name,
            A=A,  # type: ignore[arg-type]
            b=self.b.to(device=A.device, dtype=A.dtype),
            grid=self.grid,
            mask=self.mask,
            bc=self.bc,
            coefficient=self.coefficient,
            null_space=None
            if self.null_space is None
            else self.null_space.to(device=A.device, dtype=A.dtype),
            pinned=self.pinned,
            regions=self.regions,
        )


# --------------------------------------------------------------------------- builders
def poisson(
    shape: Sequence[int],
    *,
    bc: str | Mapping[str, str] = "dirichlet",
    coefficient: np.ndarray | Callable[..., np.ndarray] | str | None = None,
    obstacle: np.ndarray | str | None = None,
    rhs: np.ndarray | Callable[..., np.ndarray] | str | None = None,
    lengths: Sequence[float] | None = None,
    gauge: str = "pin",
    seed: int = 0,
    dtype: Any = torch.float64,
    device: torch.device | str = "cpu",
) -> PoissonProblem:
    """A cell-centred finite-volume Poisson problem ``-div(k grad u) = f`` on a 1-, 2- or 3-D box.

    Parameters
    ----------
    shape : sequence of int
        Cells per axis, e.g. ``(64, 64, 64)`` (1 to 3 axes).
    bc : {"dirichlet", "neumann", "mixed"} or mapping
        Wall conditions: all Dirichlet ``u = 0``; all zero-flux; or ``"mixed"``: zero-flux
        walls with one open (Dirichlet) face, the upper face of the last axis (the top of a
        smoke simulation). A mapping sets each face (``"x-"``, ``"x+"``, ``"y-"``, ...; missing
        faces are Dirichlet).
    coefficient : array, callable, "darcy" or None
        Cell-wise ``k > 0``: an array of grid shape, a function of the cell-centre coordinates
        (``k(x, y[, z])``), or ``"darcy"``: a piecewise-constant field with values 12 and 3 from
        a thresholded Gaussian random field (as in the FNO paper's Darcy data). ``None``: ``k = 1``.
    obstacle : bool array, "spheres", "random" or None
        Solid cells (``True`` = solid): an array of grid shape, ``"spheres"`` (a few balls /
        discs, seeded) or ``"random"`` (smooth random blobs, seeded, about 20% solid).
    rhs : array, callable, "random", "ones" or None
        ``f`` at the cell centres: an array of grid shape or of length ``n``, a function of the
        coordinates, ``"ones"``, or ``"random"`` (standard normal, seeded; the default).
    lengths : sequence of float, optional
        Side lengths of the box (default 1 for every axis).
    gauge : {"pin", "none"}
        How a singular region is treated (see the module notes).
    seed : int
        Seed of the random geometry, coefficient and right-hand side.
    dtype, device
        Of the operator and ``b``.

    Returns
    -------
    PoissonProblem

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.poisson((16, 16, 16), bc="neumann", obstacle="spheres")
    >>> res = ns.solve(prob.A, prob.b, method="pcg-ic", rtol=1e-8)
    >>> res.converged
    True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape must have 1 to 3 positive sizes, got {shape}")
    nd = len(shape)
    lengths = tuple(float(v) for v in (lengths or (1.0,) * nd))
    if len(lengths) != nd or any(not np.isfinite(v) or v <= 0 for v in lengths):
        raise ValueError(f"lengths must be {nd} positive numbers, got {lengths}")
    check_choice("gauge", gauge, ("pin", "none"))
    torch_dt = check_dtype(torch_dtype(dtype), "dtype")
    grid = Grid(shape, lengths)
    faces = _parse_bc(bc, nd)
    rng = np.random.default_rng(seed)
    solid = _make_obstacle(obstacle, grid, rng)
    mask = ~solid
    if not mask.any():
        raise ValueError("the obstacle fills the whole domain: no unknowns are left")
    k = _make_coefficient(coefficient, grid, rng)
    f = _make_rhs(rhs, grid, mask, rng)

    h2 = [h * h for h in grid.spacing]
    uniform = solid.sum() == 0 and k is None and any(v == "dirichlet" for v in faces.values())
    if uniform:
        A = StencilOperator.uniform(
            shape,
            weights=[1.0 / v for v in h2],
            boundary_weights=[
                tuple(2.0 / h2[a] if faces[f"{AXES[a]}{s}"] == "dirichlet" else 0.0 for s in "-+")
                for a in range(nd)
            ],
            dtype=torch_dt,
            device=device,
        )
        labels = None
        pinned = np.zeros(0, dtype=np.int64)
        null_space = None
        b = f
    else:
        kk = np.ones(shape) if k is None else k
        weights, diag = _face_weights(kk, mask, grid, faces)
        labels, singular = _singular_regions(mask, diag, weights, grid, faces)
        b = _project_range(f, labels)
        pinned = np.zeros(0, dtype=np.int64)
        null_space = None
        if singular:
            null_space = _null_space(labels, len(singular))
            if gauge == "pin":
                pinned = np.array(
                    [int(np.flatnonzero(labels == r)[0]) for r in range(len(singular))]
                )
                flat_diag = diag[mask]
                cells = np.flatnonzero(mask.reshape(-1))[pinned]
                diag.reshape(-1)[cells] += flat_diag[pinned]
        A = StencilOperator(
            torch.from_numpy(diag).to(device=device, dtype=torch_dt),
            [torch.from_numpy(w).to(device=device, dtype=torch_dt) for w in weights],
            None if mask.all() else torch.from_numpy(mask).to(device),
            positive_definite=(not singular) or gauge == "pin",
        )
        if null_space is not None:
            null_space = torch.from_numpy(null_space).to(device=device, dtype=torch_dt)
    kinds = sorted(set(faces.values()))
    bc_name = bc if isinstance(bc, str) else "+".join(kinds)
    name = f"poisson{nd}d-{bc_name}" + (
        "" if obstacle is None else f"-{obstacle if isinstance(obstacle, str) else 'mask'}"
    )
    name += f"-{'x'.join(map(str, shape))}"
    return PoissonProblem(
        name=name,
        A=A,
        b=torch.from_numpy(np.ascontiguousarray(b)).to(device=device, dtype=torch_dt),
        grid=grid,
        mask=mask,
        bc=faces,
        coefficient=k,
        null_space=null_space,
        pinned=pinned,
        regions=labels if null_space is not None else None,
    )


def _parse_bc(bc: str | Mapping[str, str], nd: int) -> dict[str, str]:
    names = [f"{AXES[a]}{s}" for a in range(nd) for s in "-+"]
    if isinstance(bc, str):
        if bc == "dirichlet" or bc == "neumann":
            return dict.fromkeys(names, bc)
        if bc == "mixed":
            out = dict.fromkeys(names, "neumann")
            out[f"{AXES[nd - 1]}+"] = "dirichlet"
            return out
        raise ValueError(
            f"unknown bc {bc!r}: use 'dirichlet', 'neumann', 'mixed' or a mapping of faces"
        )
    if not isinstance(bc, Mapping):
        raise TypeError(
            f"bc must be a string or a mapping of faces to kinds, got {type(bc).__name__}"
        )
    unknown = set(bc) - set(names)
    if unknown:
        raise ValueError(f"unknown faces {sorted(unknown)} in bc; faces of a {nd}-D box: {names}")
    out = dict.fromkeys(names, "dirichlet")
    for face, kind in bc.items():
        if kind not in BC_KINDS:
            raise ValueError(f"face {face!r} has kind {kind!r}; use 'dirichlet' or 'neumann'")
        out[face] = kind
    return out


def _make_obstacle(obstacle: Any, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    if obstacle is None:
        return np.zeros(grid.shape, dtype=bool)
    if isinstance(obstacle, str):
        if obstacle == "spheres":
            return obstacle_spheres(grid, rng)
        if obstacle == "random":
            return obstacle_random(grid, rng)
        raise ValueError(
            f"unknown obstacle {obstacle!r}: use 'spheres', 'random' or a boolean array"
        )
    arr = (
        obstacle.detach().cpu().numpy()
        if isinstance(obstacle, torch.Tensor)
        else np.asarray(obstacle)
    )
    if arr.shape != grid.shape:
        raise ValueError(
            f"obstacle mask has shape {arr.shape}, expected the grid shape {grid.shape}"
        )
    if arr.dtype != bool:
        raise TypeError(f"obstacle mask must be boolean (True = solid), got dtype {arr.dtype}")
    return arr.copy()


def obstacle_spheres(grid: Grid, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """Solid balls (discs in 2-D) with random centres and radii 8-18% of the smallest side,
    kept away from the walls; seeded by ``rng``. Returns a bool array, ``True`` = solid."""
    nd = grid.ndim
    count = count if count is not None else (5 if nd == 3 else 4)
    centers = grid.cell_centers()
    scale = min(grid.lengths)
    solid = np.zeros(grid.shape, dtype=bool)
    for _ in range(count):
        c = [rng.uniform(0.2, 0.8) * L for L in grid.lengths]
        r = rng.uniform(0.08, 0.18) * scale
        dist2 = sum((x - ci) ** 2 for x, ci in zip(centers, c, strict=True))
        solid |= dist2 <= r * r
    return solid


def obstacle_random(grid: Grid, rng: np.random.Generator, fraction: float = 0.2) -> np.ndarray:
    """Smooth random blobs: a Gaussian-filtered white noise thresholded at its
    ``1 - fraction`` quantile; seeded by ``rng``. Returns a bool array, ``True`` = solid."""
    noise = rng.standard_normal(grid.shape)
    smooth = ndi.gaussian_filter(noise, sigma=max(1.0, min(grid.shape) / 10), mode="wrap")
    return smooth > np.quantile(smooth, 1.0 - fraction)


def _make_coefficient(coefficient: Any, grid: Grid, rng: np.random.Generator) -> np.ndarray | None:
    if coefficient is None:
        return None
    if isinstance(coefficient, str):
        if coefficient != "darcy":
            raise ValueError(
                f"unknown coefficient {coefficient!r}: use 'darcy', an array or a callable"
            )
        noise = rng.standard_normal(grid.shape)
        field_ = ndi.gaussian_filter(noise, sigma=max(1.0, min(grid.shape) / 16), mode="reflect")
        k = np.where(field_ >= 0, 12.0, 3.0)
    elif callable(coefficient):
        k = np.asarray(coefficient(*grid.cell_centers()), dtype=np.float64)
        k = np.broadcast_to(k, grid.shape).copy()
    else:
        arr = (
            coefficient.detach().cpu().numpy()
            if isinstance(coefficient, torch.Tensor)
            else coefficient
        )
        k = np.asarray(arr, dtype=np.float64)
        if k.shape != grid.shape:
            raise ValueError(
                f"coefficient has shape {k.shape}, expected the grid shape {grid.shape}"
            )
    if not np.all(np.isfinite(k)):
        raise NonFiniteError("the coefficient holds NaN or infinite values")
    if not np.all(k > 0):
        raise ValueError(f"the coefficient must be positive everywhere (min is {k.min():.3g})")
    return k


def _make_rhs(rhs: Any, grid: Grid, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(mask.sum())
    if rhs is None or (isinstance(rhs, str) and rhs == "random"):
        return rng.standard_normal(n)
    if isinstance(rhs, str):
        if rhs == "ones":
            return np.ones(n)
        raise ValueError(f"unknown rhs {rhs!r}: use 'random', 'ones', an array or a callable")
    if callable(rhs):
        f = np.broadcast_to(np.asarray(rhs(*grid.cell_centers()), dtype=np.float64), grid.shape)
        f = f[mask]
    else:
        arr = rhs.detach().cpu().numpy() if isinstance(rhs, torch.Tensor) else np.asarray(rhs)
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape == grid.shape:
            f = arr[mask]
        elif arr.shape == (n,):
            f = arr
        else:
            raise ValueError(
                f"rhs has shape {arr.shape}; expected the grid shape {grid.shape} or ({n},)"
            )
    if not np.all(np.isfinite(f)):
        raise NonFiniteError("the right-hand side holds NaN or infinite values")
    return np.array(f, dtype=np.float64)


def _face_weights(
    k: np.ndarray, mask: np.ndarray, grid: Grid, faces: dict[str, str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Interior face weights (harmonic mean of k over h^2, zero next to solids) and the
    diagonal (sum of the weights of a cell's faces, wall faces included)."""
    nd = grid.ndim
    kk = np.where(mask, k, 0.0)
    diag = np.zeros(grid.shape)
    weights = []
    for a in range(nd):
        h2 = grid.spacing[a] ** 2
        lo = [slice(None)] * nd
        hi = [slice(None)] * nd
        lo[a] = slice(0, -1)
        hi[a] = slice(1, None)
        k0, k1 = kk[tuple(lo)], kk[tuple(hi)]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where((k0 > 0) & (k1 > 0), 2.0 * k0 * k1 / (k0 + k1), 0.0) / h2
        weights.append(w)
        diag[tuple(lo)] += w
        diag[tuple(hi)] += w
        for side, index in (("-", 0), ("+", -1)):
            if faces[f"{AXES[a]}{side}"] == "dirichlet":
                sl = [slice(None)] * nd
                sl[a] = index
                diag[tuple(sl)] += 2.0 * kk[tuple(sl)] / h2
    return weights, diag


def _singular_regions(
    mask: np.ndarray, diag: np.ndarray, weights: list[np.ndarray], grid: Grid, faces: dict[str, str]
) -> tuple[np.ndarray, list[int]]:
    """Label the connected fluid regions (face neighbours); return, for each unknown, the index
    of its singular region (-1 if grounded) and the list of singular regions."""
    structure = ndi.generate_binary_structure(grid.ndim, 1)
    regions, count = ndi.label(mask, structure=structure)
    # A region is grounded when some cell's diagonal exceeds the sum of its interior weights
    # (it touches a Dirichlet wall).
    interior = np.zeros(grid.shape)
    for a, w in enumerate(weights):
        lo = [slice(None)] * grid.ndim
        hi = [slice(None)] * grid.ndim
        lo[a] = slice(0, -1)
        hi[a] = slice(1, None)
        interior[tuple(lo)] += w
        interior[tuple(hi)] += w
    wall = mask & (diag > interior * (1 + 1e-12))
    grounded = np.zeros(count + 1, dtype=bool)
    grounded[np.unique(regions[wall])] = True
    singular = [r for r in range(1, count + 1) if not grounded[r]]
    region_of = regions[mask]
    labels = np.full(region_of.shape, -1, dtype=np.int64)
    for i, r in enumerate(singular):
        labels[region_of == r] = i
    return labels, singular


def _null_space(labels: np.ndarray, m: int) -> np.ndarray:
    Z = np.zeros((labels.size, m))
    for r in range(m):
        sel = labels == r
        Z[sel, r] = 1.0 / np.sqrt(sel.sum())
    return Z


def _project_range(f: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Subtract the mean of ``f`` on each singular region (columns of ``f`` independently)."""
    if labels is None or not (labels >= 0).any():
        return f
    f = np.array(f, dtype=np.float64, copy=True)
    for r in range(int(labels.max()) + 1):
        sel = labels == r
        f[sel] -= f[sel].mean(axis=0)
    return f


# --------------------------------------------------------------------------- named problems
PROBLEMS: dict[str, dict[str, Any]] = {
    "poisson2d": {"dim": 2, "bc": "dirichlet", "doc": "2-D Dirichlet box, k = 1"},
    "poisson3d": {
        "dim": 3,
        "bc": "dirichlet",
        "doc": "3-D Dirichlet box, k = 1 (the 7-point Laplacian)",
    },
    "neumann3d": {
        "dim": 3,
        "bc": "neumann",
        "obstacle": "spheres",
        "doc": "3-D pure Neumann box with solid spheres (null space pinned)",
    },
    "obstacle3d": {
        "dim": 3,
        "bc": "mixed",
        "obstacle": "spheres",
        "doc": "smoke pressure projection: solid spheres, zero-flux walls, open top face",
    },
    "obstacle2d": {
        "dim": 2,
        "bc": "mixed",
        "obstacle": "spheres",
        "doc": "2-D pressure projection: solid discs, zero-flux walls, open top face",
    },
    "darcy2d": {
        "dim": 2,
        "bc": "dirichlet",
        "coefficient": "darcy",
        "doc": "2-D Darcy flow, piecewise-constant permeability 12/3",
    },
}


def available_problems() -> dict[str, str]:
    """Names of the gallery's named problems and a line on each."""
    return {name: spec["doc"] for name, spec in PROBLEMS.items()}


def make_problem(
    name: str, n: int, *, seed: int = 0, dtype: Any = torch.float64, device: Any = "cpu"
) -> PoissonProblem:
    """A named gallery problem with ``n`` cells per axis (see :data:`PROBLEMS`)."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
    check_int("n", n, minimum=2)
    spec = {k: v for k, v in PROBLEMS[name].items() if k not in ("dim", "doc")}
    prob = poisson((n,) * PROBLEMS[name]["dim"], seed=seed, dtype=dtype, device=device, **spec)
    prob.name = f"{name}-{n}"
    return prob
