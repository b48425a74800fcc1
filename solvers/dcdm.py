"""DCDM, the deep conjugate-direction method, and the network as a flexible-PCG preconditioner.

Kaneda, Akar, Chen, Trevino Kala, Hyde, Teran, "A Deep Conjugate Direction Method for
Iteratively Solving Linear Systems", ICML 2023 (arXiv 2205.10763).

Each iteration turns the residual into a search direction with a network ``f`` and makes it
A-conjugate to the last ``directions`` ones (64 by default; the paper: 2; per column of a block ``b``)::

    r = b - A x0
    repeat:
        q = f(r / ||r||, flags)                 # zeroed outside the fluid
        if |cos(q, r)| < fallback_cos: q = r    # a CG step instead (the paper has no safeguard)
        q -= sum_j p_j (q.A p_j) / (p_j.A p_j)  # over the last `directions` directions
        alpha = (q.r) / (q.A q)                 # exact line search in the A-norm
        x += alpha q;  r -= alpha A q           # true residual recomputed periodically

The network's scale is absorbed by the line search, so ``f`` only has to approximate the
*direction* of ``A^{-1} r``. With ``f`` the identity this is CG; with ``f`` a fixed SPD
linear map it is PCG (exact arithmetic); in general it is Notay's truncated flexible CG with a
nonlinear preconditioner. The A-norm error never grows: each step lowers ``||e||_A^2`` by
``(q.r)^2 / (q.A q)``.

With ``deflation_block`` (method ``"dcdm-deflated"``) the solve is also deflated by the
block-constant vectors of boxes of that many cells per side (:mod:`.deflation`): ``x0`` gets the
coarse correction ``Z E^{-1} Z^T r0``, and each direction is made A-orthogonal to ``range(Z)``
(``q -= Z E^{-1} Z^T A q``, one more product) before the kept directions. The network then never
has to produce the smoothest error, the part it reaches worst and that makes plain DCDM's
iterations grow with the grid. ``model="identity"`` takes ``q = r`` (no network): CG with
the kept directions' explicit A-orthogonalisation (with deflation, deflated CG; method
``"cg-deflated"`` is the classical deflated CG itself, :class:`~neuralsolve.solvers.CG` with
``deflation_block``).

Differences from the paper, each tested: the network also sees the fluid and grounded-cell flags
(:func:`~neuralsolve.solvers.dcdm_net.geometry_flags`); the fallback above; the recursive
residual (one product per iteration instead of two) with the shared true-residual checks; a
non-finite network output stops that column with ``Status.NON_FINITE`` and keeps the last
finite iterate.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuralsolve.checkpoint import VersionMismatchWarning, load_checkpoint
from neuralsolve.checks import check_int, check_positive_int, check_real
from neuralsolve.errors import DataFormatError
from neuralsolve.linop import LinearOperator, as_operator
from neuralsolve.result import SolveResult, Status
from neuralsolve.validation import PreparedSystem

from .base import SolverBase
from .convergence import Callback, ConvergenceControl, rowdot, rownorm, start
from .dcdm_directions import KeptDirections, NetworkDirections, ResidualDirections
from .dcdm_net import DCDMNet, DCDMNetConfig, geometry_flags
from .deflation import BlockDeflation, check_deflation_block
from .krylov import FlexibleCG, KrylovSetup, buffered_apply
from .precond import Preconditioner

__all__ = [
    "DCDM",
    "DEFAULT_DIRECTIONS",
    "DCDMPreconditioner",
    "FlexibleDCDM",
    "KeptDirections",
    "NetworkDirections",
    "ResidualDirections",
    "load_network",
    "shipped_model_path",
]

MODELS_DIR = Path(__file__).parent / "models"
# Directions each new one is A-orthogonalised against; training evaluates with the same number.
DEFAULT_DIRECTIONS = 64
# network_level="auto" (3-D): at least one grid down, and down to the first grid with at most
# AUTO_NETWORK_CELLS cells (32^3, the size the shipped model was first trained at), keeping
# AUTO_MIN_SIDE cells per side for the network.
AUTO_NETWORK_CELLS = 2**15
AUTO_MIN_SIDE = 8
# deflation_block="auto": the smallest of these boxes with at most AUTO_MAX_BOXES boxes (the
# coarse factor then takes well under a second; boxes of 3 at 128^3 took 5-16 s).
AUTO_BLOCKS = (3, 4, 6, 8)
AUTO_MAX_BOXES = 2**14


def shipped_model_path(dim: int) -> Path:
    """Where the package's trained model for ``dim``-D grids lives (``dcdm{dim}d.pt``)."""
    return MODELS_DIR / f"dcdm{dim}d.pt"


def load_network(
    model: Any, dim: int, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network for ``dim``-D grids and a description of it for ``stats``.

    Parameters
    ----------
    model : None, str, Path or torch.nn.Module
        ``None``: the shipped model; a path: a checkpoint from ``neuralsolve train dcdm``
        (``best.pt``/``last.pt``) or an exported model file; a module: used as it is (it must
        map ``(k, 3, *grid)`` to ``(k, 1, *grid)``).
    dim : int
        Grid dimension of the problem.
    """
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval(), {"model": type(model).__name__}
    if model is None:
        path = shipped_model_path(dim)
        if not path.exists():
            raise FileNotFoundError(
                f"no shipped DCDM model for {dim}-D grids (looked for {path}); train one with "
                f"`neuralsolve train dcdm` and pass model='runs/.../best.pt'"
            )
        source = f"shipped:{path.name}"
    elif isinstance(model, str | Path):
        path = Path(model)
        source = str(path)
    else:
        raise TypeError(
            f"model must be None (the shipped model), a checkpoint path or a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    with warnings.catch_warnings():
        if model is None:  # the shipped file was written by the packaged version
            warnings.simplefilter("ignore", VersionMismatchWarning)
        record = load_checkpoint(path, map_location=device)
    if record.get("kind") not in ("trainer", "model", "dcdm-model"):
        raise DataFormatError(
            f"{str(path)!r} is a {record.get('kind')!r} checkpoint, expected a DCDM model "
            "(from `neuralsolve train dcdm`)"
        )
    meta = record.get("metadata") or {}
    if "dcdm_net" not in meta:
        raise ValueError(
            f"{str(path)!r} is not a DCDM model: its metadata has no 'dcdm_net' entry (was it "
            "written by `neuralsolve train dcdm`?)"
        )
    config = DCDMNetConfig.from_dict(dict(meta["dcdm_net"]))
    if config.dim != dim:
        raise ValueError(
            f"the DCDM model {str(path)!r} is for {config.dim}-D grids but the problem is {dim}-D; "
            f"use a {dim}-D model"
        )
    net = DCDMNet(config)
    net.load_state_dict(record["model"])
    return net.to(device).eval(), {"model": source, "network": config.kind}


@dataclass
class DCDMSetup:
    """What :class:`DCDM` builds from ``A`` once: the directions (network or identity), what
    ``stats`` says about them, and the deflation space (with ``deflation_block``)."""

    directions: NetworkDirections | ResidualDirections
    info: dict[str, Any]
    deflation: BlockDeflation | None


@dataclass(frozen=True, kw_only=True)
class DCDM(SolverBase):
    """The deep conjugate-direction method (see the module notes).

    Parameters
    ----------
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol ||b||, atol)`` on the true residual.
    max_iters : int, optional
        Default ``min(10 n, 10000)``.
    model : None, path, torch.nn.Module or "identity"
        The network (``None``: the shipped model for the problem's dimension; see
        :func:`load_network`). ``stats["model"]`` says which was used. ``"identity"``: no
        network, ``q = r`` (CG; with ``deflation_block``, deflated CG).
    directions : int
        How many previous directions each new one is A-orthogonalised against. The paper uses 2;
        with trained networks that stalls near a relative residual of 1e-2 to 1e-3 (the
        network's directions lose conjugacy with older ones), and more kept directions keep
        paying off, most on large grids (docs/benchmarks/dcdm.md has the measurements). Each
        kept direction costs one dot product and one update of length n per iteration, and
        memory for two vectors: 64 of them at 128^3 in float64 hold 2.1 GB. Lower it for very
        large grids.
    fallback_cos : float
        Use the residual itself (a CG step) when ``|cos(f(r), r)|`` is below this.
    true_residual_every : int
        Recompute ``b - A x`` every this many iterations (and before declaring convergence).
    check_spd : bool
        Refuse operators tagged not SPD.
    network_dtype : str, optional
        Run the network in this dtype (default its own, float32 for the shipped model).
    network_level : int or "auto"
        Where the network runs: 0, on the problem's grid (the paper's method); ``L >= 1``, on
        the grid ``2^L`` times coarser per axis, followed by ``smoothing_steps`` damped-Jacobi
        steps on the fine grid (a two-grid direction whose coarse solve is the network,
        :class:`NetworkDirections`; network calls ``2^(dL)`` times cheaper). ``"auto"``, on
        3-D grids: at least 1, and the first level whose grid has at most ``2^15`` cells (32^3,
        the size the shipped model was first trained at: level 1 at 32^3 and 64^3, 2 at
        128^3), as long as that grid keeps 8 cells per side (0 on smaller grids); on 2-D
        grids 0 (not measured there). ``stats["network_level"]`` says which was used.
    smoothing_steps : int, optional
        Jacobi steps after a coarse network call; each costs a product (in the network's
        dtype). Default ``4 L + 1`` (5 at level 1, 9 at level 2).
    smoothing_omega : float
        Their damping, in ``(0, 1]``.
    deflation_block : int or "auto", optional
        Deflate the solve by the indicator vectors of boxes of this many cells per side (see
        the module notes and :class:`~neuralsolve.solvers.deflation.BlockDeflation`); ``None``
        (default): no deflation, the paper's method. Costs a set-up of ``3^d`` products and a
        sparse factorisation of the ``m x m`` coarse matrix (``m`` ~ cells / block^d), then one
        more product and one coarse solve per iteration. ``stats`` reports ``m``, the box side
        and the set-up seconds. ``"auto"``: the smallest box of 3, 4, 6 or 8 cells per side
        that makes at most ``2^14`` boxes (3 up to 64^3, 6 at 128^3): the factor of ``E``
        then takes well under a second, where boxes of 3 took 5-16 s at 128^3 (the
        measurements are in docs/benchmarks/dcdm.md).
    """

    model: Any = None
    directions: int = DEFAULT_DIRECTIONS
    fallback_cos: float = 1e-3
    true_residual_every: int = 20
    network_dtype: str | None = None
    network_level: int | str = 0
    smoothing_steps: int | None = None
    smoothing_omega: float = 0.8
    deflation_block: int | str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def label(self) -> str:
        name = "dcdm-identity" if self.model == "identity" else "dcdm"
        return f"{name}-deflated" if self.deflation_block else name

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("directions", self.directions)
        check_fallback_cos(self.fallback_cos)
        if self.deflation_block != "auto":
            try:
                check_deflation_block(self.deflation_block)
            except ValueError as err:
                raise ValueError(
                    f"{err}; dcdm also takes deflation_block='auto' (boxes of 3, larger above "
                    "2^14 boxes)"
                ) from None
        check_positive_int("true_residual_every", self.true_residual_every)
        level = self.network_level
        if level != "auto" and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
            raise ValueError(
                f"network_level must be 0 (the network on the problem's grid), an integer L >= 1 "
                f"(on the grid 2^L times coarser) or 'auto', got {level!r}"
            )
        check_int("smoothing_steps", self.smoothing_steps, minimum=0, allow_none=True)
        check_real("smoothing_omega", self.smoothing_omega, low=0.0, high=1.0, low_open=True)

    def level_for(self, grid: tuple[int, ...]) -> int:
        """``network_level`` resolved for a grid (see the class notes for ``"auto"``)."""
        if self.network_level != "auto":
            return int(self.network_level)
        if len(grid) != 3:
            return 0
        level = 0
        while (
            level == 0 or math.prod(math.ceil(s / 2**level) for s in grid) > AUTO_NETWORK_CELLS
        ) and min(grid) >= 2 ** (level + 1) * AUTO_MIN_SIDE:
            level += 1
        return level

    def block_for(self, grid: tuple[int, ...]) -> int | None:
        """``deflation_block`` resolved for a grid (``"auto"``: see the class notes)."""
        if self.deflation_block != "auto":
            return self.deflation_block  # type: ignore[return-value]
        for block in AUTO_BLOCKS:
            if math.prod(math.ceil(s / block) for s in grid) <= AUTO_MAX_BOXES:
                return block
        return AUTO_BLOCKS[-1]

    def network_for(
        self, op: LinearOperator
    ) -> tuple[NetworkDirections | ResidualDirections, dict[str, Any]]:
        """The network wrapped for ``op`` (the loaded module is cached on this solver)."""
        if isinstance(self.model, str) and self.model == "identity":
            return ResidualDirections(), {"model": "identity"}
        dim = len(getattr(op, "grid_shape", ()))
        flags = geometry_flags(op)  # raises the no-grid error before any file is read
        if dim not in (2, 3) and not isinstance(self.model, torch.nn.Module):
            raise ValueError(
                f"DCDM networks run on 2-D and 3-D grids; this operator's grid is {dim}-D "
                "(use cg or pcg-ic, or pass your own model=torch.nn.Module)"
            )
        key = f"{dim}:{op.device}"
        if key not in self._cache:
            self._cache[key] = load_network(self.model, dim, op.device)
        net, info = self._cache[key]
        dtype = None if self.network_dtype is None else getattr(torch, self.network_dtype)
        if dtype is not None:
            net = net.to(dtype)
        level = self.level_for(tuple(op.grid_shape))  # type: ignore[attr-defined]
        directions = NetworkDirections(
            op,
            net,
            flags,
            dtype,
            level=level,
            smoothing_steps=4 * level + 1 if self.smoothing_steps is None else self.smoothing_steps,
            omega=self.smoothing_omega,
        )
        return directions, {**info, "network_level": level}

    def _setup(self, op: LinearOperator, M: Any) -> DCDMSetup:
        """The network for ``op``'s grid and, with ``deflation_block``, the coarse space."""
        if M is not None:
            raise ValueError(
                "dcdm takes no M=: the network is its preconditioner (use method='fcg' with M= "
                "for another one)"
            )
        directions, info = self.network_for(op)
        block = self.block_for(tuple(getattr(op, "grid_shape", ())))
        deflation = BlockDeflation(op, block) if block is not None else None
        return DCDMSetup(directions, info, deflation)

    def _solve(
        self,
        system: PreparedSystem,
        context: DCDMSetup,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        """Solve for the block ``system.B`` (see the module notes)."""
        op, B = system.A, system.B
        directions, deflation = context.directions, context.deflation
        calls, seconds = directions.calls, directions.seconds
        matvecs = getattr(directions, "matvecs", 0)
        k, n = B.shape
        apply_A = buffered_apply(op, k)
        max_iters = self.max_iters if self.max_iters is not None else min(10 * n, 10_000)
        control, X, R = start(self, B, system.X0, apply_A, max_iters=max_iters, deflation=deflation)
        fallbacks = torch.zeros(k, dtype=torch.int64)
        if control.running:
            self._loop(apply_A, directions, deflation, B, X, R, control, callback, fallbacks)
        smoothing = getattr(directions, "matvecs", 0) - matvecs
        control.matvecs += smoothing
        extra = {
            **context.info,
            "network_calls": directions.calls - calls,
            "network_matvecs": smoothing,
            "network_s": directions.seconds - seconds,
            "directions": self.directions,
            "fallbacks": int(fallbacks.sum()),
            "network_mac_per_cell": float(
                getattr(directions.network, "flops_per_cell", lambda: 0.0)()
            )
            / 2 ** (len(getattr(op, "grid_shape", ())) * getattr(directions, "level", 0)),
        }
        if deflation is not None:
            extra.update(deflation.info)
        return control.conclude(
            system, X, B - apply_A(X), method=self.label, setup_s=setup_s, extra=extra
        )

    def _loop(
        self,
        apply_A: Any,
        network: NetworkDirections | ResidualDirections,
        deflation: BlockDeflation | None,
        B: torch.Tensor,
        X: torch.Tensor,
        R: torch.Tensor,
        control: ConvergenceControl,
        callback: Callback | None,
        fallbacks: torch.Tensor,
    ) -> None:
        history = KeptDirections(self.directions)
        while control.running:
            control.begin_iteration()
            active = control.active
            if bool(active.all()):
                Q = network(R)
            else:  # converged columns cost no network call
                Q = torch.zeros_like(R)
                Q[active] = network(R[active])
            finite = torch.isfinite(Q).all(dim=1)
            if not bool(finite[active].all()):
                bad = [j for j in control.active_list() if not bool(finite[j])]
                control.stop(bad, Status.NON_FINITE)
                Q[~finite] = 0
            fallbacks += replace_weak_directions(Q, R, self.fallback_cos, finite)
            if deflation is not None:  # A-orthogonal to range(Z); q.r is unchanged (Z^T r = 0)
                Q = deflation.project(Q, apply_A(Q))
                control.matvecs += 1
            history.orthogonalise(Q)
            AQ = apply_A(Q)  # apply_A's buffer: used, and copied into history, before its next call
            control.matvecs += 1
            qAq = rowdot(Q, AQ)
            control.stop_nonpositive(qAq, Status.INDEFINITE)
            active = control.active
            safe = torch.where(active, qAq, torch.ones_like(qAq))
            alpha = torch.where(active, rowdot(Q, R) / safe, torch.zeros_like(qAq))[:, None]
            X.addcmul_(Q, alpha)
            R.addcmul_(AQ, alpha, value=-1.0)
            history.append(Q, AQ, safe)
            replaced = control.end_iteration(
                rownorm(R),
                ~active,
                true_residual=lambda: B - apply_A(X),
                iterate=lambda: X,
                callback=callback,
            )
            if replaced is not None:
                R[replaced.index] = replaced.residual[replaced.index]


def check_fallback_cos(value: float) -> None:
    """``fallback_cos`` must lie in ``[0, 1)`` (0: never fall back)."""
    check_real("fallback_cos", value, low=0.0, high=1.0, high_open=True)


def replace_weak_directions(
    Q: torch.Tensor, R: torch.Tensor, fallback_cos: float, finite: torch.Tensor | None = None
) -> torch.Tensor:
    """Replace, in place, each row of ``Q`` with ``|cos(q, r)| < fallback_cos`` by its ``r``
    (a CG step instead of a direction that cannot lower the error); returns the int64 mask
    of replaced rows (on the CPU, for counting). Rows where ``finite`` is false are left alone.

    A step along ``q`` lowers ``||e||_A^2`` by ``(q.r)^2 / (q.A q)``, nothing when ``q``
    is orthogonal to ``r``: a network whose output has a large part that does not depend on
    ``r`` (the geometry flags are inputs too) can stall a solve there."""
    cos = rowdot(Q, R).abs() / (rownorm(Q) * rownorm(R)).clamp_min(torch.finfo(R.dtype).tiny)
    weak = cos < fallback_cos
    if finite is not None:
        weak &= finite
    if bool(weak.any()):
        Q[weak] = R[weak]
    return weak.cpu().to(torch.int64)


class DCDMPreconditioner(Preconditioner):
    """The DCDM network as a (nonlinear, variable) preconditioner ``z = f(r / ||r||) ||r||``,
    for :class:`~neuralsolve.solvers.FlexibleCG` (method ``"pcg-dcdm"``).

    As in :class:`DCDM`, a column whose ``|cos(f(r), r)|`` is below ``fallback_cos`` gets
    ``z = r`` instead (counted in ``fallbacks``); without it flexible CG stalls on a network
    whose output is nearly orthogonal to the residual.
    """

    name = "dcdm"

    def __init__(
        self,
        A: Any,
        *,
        model: Any = None,
        network_dtype: str | None = None,
        fallback_cos: float = 1e-3,
    ) -> None:
        t0 = time.perf_counter()
        super().__init__(A)
        solver = DCDM(model=model, network_dtype=network_dtype, fallback_cos=fallback_cos)
        self.directions, self.info = solver.network_for(as_operator(A))
        self.fallback_cos = fallback_cos
        self.fallbacks = 0
        self.setup_s = time.perf_counter() - t0

    def apply(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        Z = self.directions(Rt)
        self.fallbacks += int(replace_weak_directions(Z, Rt, self.fallback_cos).sum())
        # The network sees unit residuals: restore the scale. Its training loss does not fix
        # the sign of f(r), so orient each column to r.z > 0 as flexible CG requires.
        sign = torch.where(rowdot(Rt, Z) < 0, -1.0, 1.0).to(Z.dtype)
        Z = Z * (rownorm(Rt) * sign)[:, None]
        return Z if out is None else out.copy_(Z)


@dataclass(frozen=True, kw_only=True)
class FlexibleDCDM(FlexibleCG):
    """Flexible CG preconditioned by the DCDM network (method ``"pcg-dcdm"``).

    Same parameters as :class:`~neuralsolve.solvers.FlexibleCG`, plus ``model``,
    ``network_dtype`` and ``fallback_cos`` as in :class:`DCDM`.
    """

    model: Any = None
    network_dtype: str | None = None
    fallback_cos: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fallback_cos(self.fallback_cos)

    @property
    def label(self) -> str:
        return "pcg-dcdm"

    def _setup(self, op: LinearOperator, M: Any) -> KrylovSetup:
        """The network as flexible CG's preconditioner (counted in ``setup_s``)."""
        if M is not None:
            raise ValueError("pcg-dcdm builds its own preconditioner from the network; drop M=")
        pre = DCDMPreconditioner(
            op, model=self.model, network_dtype=self.network_dtype, fallback_cos=self.fallback_cos
        )
        return super()._setup(op, pre)

    def _solve(
        self,
        system: PreparedSystem,
        context: KrylovSetup,
        callback: Callback | None,
        setup_s: float,
    ) -> SolveResult:
        pre: DCDMPreconditioner = context.preconditioner
        calls, seconds, fallbacks = pre.directions.calls, pre.directions.seconds, pre.fallbacks
        res = super()._solve(system, context, callback, setup_s)
        res.stats.update(
            network_calls=pre.directions.calls - calls,
            network_s=pre.directions.seconds - seconds,
            fallbacks=pre.fallbacks - fallbacks,
        )
        return res
