"""Training DCDM networks: Ritz-vector right-hand sides, the one-step loss, and the run.

Data (Kaneda et al. 2023, ``src/datasetcreate.py`` of the official code, scaled down as the
authors' follow-up does): for each training geometry, ``m`` fully reorthogonalised Lanczos steps
from ``A g`` (``g`` Gaussian, so the start lies in the range of ``A``) give Ritz vectors
``v_1..v_m`` (ascending Ritz values); each sample is

.. math::  b = \\frac{\\sum_j c_j v_j}{\\|\\sum_j c_j v_j\\|}, \\qquad
           c_j \\sim N(0, 1) \\times (9 \\text{ if } j \\le m/2 + \\theta \\text{ else } 1),

weighting the low end of the spectrum, which CG resolves slowest. Several geometries of the same
named gallery problem (different seeds) are mixed so that one model generalises.

Loss (unsupervised; no solved systems): the residual left by one exact line search along the
network's direction ``q = f(b)``,

.. math::  L = \\operatorname{mean}_i \\big\\|b_i - s_i A q_i\\big\\|_2^2, \\qquad
           s_i = \\frac{q_i^T b_i}{q_i^T A q_i},

which is what one DCDM iteration from ``x = 0`` leaves (1 for a direction orthogonal to ``b``,
0 for ``q`` parallel to ``A^{-1} b``).

For the deflated method (``deflation_block``; :mod:`neuralsolve.solvers.deflation`) the loss
follows that method's first iteration instead: ``b`` is replaced by the unit residual left by
the coarse correction, ``r = (b - A Z E^{-1} Z^T b) / ||.||``, and ``q`` by its deflated form
``q - Z E^{-1} Z^T A q``. The network then learns only what the box space leaves.

It lives in :mod:`neuralsolve.operators`, beside the operators' own training, because it needs
the gallery (datasets) and the :class:`~neuralsolve.optim.Trainer`: the solvers layer imports
neither.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from neuralsolve.checkpoint import load_checkpoint, save_checkpoint
from neuralsolve.datasets import PROBLEMS, make_problem
from neuralsolve.errors import DataFormatError
from neuralsolve.fileio import atomic_path, h5_writer
from neuralsolve.lanczos import lanczos
from neuralsolve.optim import Trainer
from neuralsolve.report import run_record, write_report
from neuralsolve.solvers.dcdm import DCDM, DEFAULT_DIRECTIONS, load_network
from neuralsolve.solvers.dcdm_net import DCDMNet, DCDMNetConfig, geometry_flags
from neuralsolve.solvers.deflation import BlockDeflation, check_deflation_block
from neuralsolve.solvers.registry import solve

__all__ = [
    "DCDMData",
    "DCDMDataConfig",
    "dcdm_loss",
    "evaluate_iterations",
    "export_model",
    "generate_rhs",
    "load_rhs",
    "train_dcdm",
    "trajectory_rhs",
]

DATA_VERSION = 1


def problem_names(problem: str, *, distinct: bool = False) -> tuple[str, ...]:
    """``"obstacle3d, poisson3d"`` -> ``("obstacle3d", "poisson3d")``: the gallery problems of a
    mix, as :class:`DCDMDataConfig` and :func:`evaluate_iterations` read them. A weighted mix
    lists a name more than once; ``distinct=True`` keeps its first occurrence only."""
    names = tuple(name.strip() for name in problem.split(","))
    return tuple(dict.fromkeys(names)) if distinct else names


@dataclass(frozen=True)
class DCDMDataConfig:
    """Which systems to train on and how their right-hand sides are drawn.

    Attributes
    ----------
    problem : str
        A named gallery problem with a grid (``"obstacle3d"``, ``"poisson3d"``, ``"obstacle2d"``,
        ...; see ``neuralsolve.datasets.available_problems()``), or several of the same
        dimension separated by commas (``"obstacle3d,poisson3d"``): geometry ``g`` is then of
        problem ``g mod P``, so one model learns every boundary-condition type in the mix. A name
        listed twice gets twice the geometries (``"obstacle3d,obstacle3d,poisson3d"``).
    n : int
        Cells per axis.
    geometries : int
        How many geometries (gallery seeds ``first_seed, first_seed + 1, ...``).
    first_seed : int
        The first geometry's seed. Benchmarks use seed 0 and evaluation seeds
        ``first_seed + 1000 ...``, so the default 100 keeps training geometries out of both.
    samples : int
        Right-hand sides in all (split evenly over the geometries).
    ritz : int
        Lanczos steps ``m`` per geometry (the paper: 10,000 at 64^3; its authors' follow-up: 1,000).
    theta : int, optional
        Extra low Ritz vectors weighted up (default ``m // 20``, the follow-up's 50 at m = 1000).
    low_weight : float
        The weight of the lowest ``m/2 + theta`` Ritz vectors (the paper: 9).
    seed : int
        Seeds the Lanczos start vectors and the coefficients.
    """

    problem: str = "obstacle3d"
    n: int = 32
    geometries: int = 8
    first_seed: int = 100
    samples: int = 2000
    ritz: int = 400
    theta: int | None = None
    low_weight: float = 9.0
    seed: int = 0

    def __post_init__(self) -> None:
        names = self.names
        for name in names:
            if name not in PROBLEMS:
                raise ValueError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
        dims = {int(PROBLEMS[name]["dim"]) for name in names}
        if len(dims) > 1:
            raise ValueError(
                f"the problems {self.problem!r} mix 2-D and 3-D; one network is one dimension"
            )
        for name in ("n", "geometries", "samples", "ritz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.geometries < len(names):
            raise ValueError(
                f"geometries ({self.geometries}) must be at least the number of problems "
                f"({len(names)}: {self.problem})"
            )
        if self.samples < self.geometries:
            raise ValueError(
                f"samples ({self.samples}) must be at least geometries ({self.geometries})"
            )
        if not self.low_weight > 0:
            raise ValueError(f"low_weight must be positive, got {self.low_weight!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The gallery problems in the mix (one unless ``problem`` lists several)."""
        return problem_names(self.problem)

    @property
    def dim(self) -> int:
        return int(PROBLEMS[self.names[0]]["dim"])

    def seeds(self) -> list[int]:
        return [self.first_seed + g for g in range(self.geometries)]

    def geometry_names(self) -> list[str]:
        """The gallery problem of each training geometry (``names[g % P]``)."""
        return [self.names[g % len(self.names)] for g in range(self.geometries)]

    def problems(self, dtype: Any = torch.float64, device: Any = "cpu") -> list[Any]:
        """The training problems, rebuilt from their names and seeds."""
        return [
            make_problem(name, self.n, seed=s, dtype=dtype, device=device)
            for name, s in zip(self.geometry_names(), self.seeds(), strict=True)
        ]


def _ritz_rhs(
    op: Any, config: DCDMDataConfig, count: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` unit right-hand sides ``(count, n)`` of one geometry, and its Ritz values."""
    n = op.shape[0]
    m = min(config.ritz, n)
    start = op.apply_batch(torch.randn(1, n, generator=gen, dtype=op.dtype))[0]
    res = lanczos(op, m, v0=start, reorthogonalize="full")
    theta, _, V = res.ritz()
    assert V is not None
    keep = theta > 1e-8 * theta.abs().max()  # drop a null space, as the paper does
    theta, V = theta[keep], V[:, keep]
    m = V.shape[1]
    low = min(m, m // 2 + (config.theta if config.theta is not None else config.ritz // 20))
    C = torch.randn(count, m, generator=gen, dtype=V.dtype)
    C[:, :low] *= config.low_weight
    B = C @ V.T
    B /= torch.linalg.vector_norm(B, dim=1, keepdim=True)
    return B, theta


def generate_rhs(config: DCDMDataConfig, out: str | Path, *, progress: bool | None = None) -> Path:
    """Write the training right-hand sides to an HDF5 file (atomically; the layout is in
    :func:`load_rhs`). Takes seconds per geometry at 32^3 with ``ritz=400``."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(config.seed)
    per = [config.samples // config.geometries] * config.geometries
    for g in range(config.samples % config.geometries):
        per[g] += 1
    problems = config.problems()
    grid = problems[0].grid.shape
    t0 = time.perf_counter()
    with atomic_path(out) as tmp, h5_writer(tmp) as f:
        rhs = f.create_dataset("rhs", (config.samples, *grid), dtype="float32", chunks=(1, *grid))
        geometry = f.create_dataset("geometry", (config.samples,), dtype="int32")
        ritz = f.create_group("ritz_values")
        row = 0
        bar = tqdm(
            problems, desc="dcdm data", unit="geometry", disable=progress is False,
            leave=False,
        )  # fmt: skip
        for g, prob in enumerate(bar):
            B, theta = _ritz_rhs(prob.A, config, per[g], gen)
            rhs[row : row + per[g]] = prob.A.to_grid(B.T).movedim(-1, 0).numpy().astype(np.float32)
            geometry[row : row + per[g]] = g
            ritz[str(g)] = theta.numpy()
            row += per[g]
        f.attrs["layout"] = "neuralsolve-dcdm-rhs"
        f.attrs["version"] = DATA_VERSION
        f.attrs["config"] = json.dumps(asdict(config))
        f.attrs["seconds"] = time.perf_counter() - t0
    return Path(out)


@dataclass
class DCDMData(torch.utils.data.Dataset):
    """Right-hand sides in memory: items are ``(b, geometry)`` with ``b`` grid-shaped."""

    config: DCDMDataConfig
    rhs: torch.Tensor
    geometry: torch.Tensor
    ritz_values: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return self.rhs.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rhs[i], self.geometry[i]


def load_rhs(path: str | Path) -> DCDMData:
    """Read a file written by :func:`generate_rhs`.

    Layout: ``rhs`` ``(S, *grid)`` float32 (unit norm, zero in solids), ``geometry`` ``(S,)``
    int32 (the index of the training geometry), ``ritz_values/<g>``, and attributes ``layout =
    "neuralsolve-dcdm-rhs"``, ``version``, ``config`` (the :class:`DCDMDataConfig` as JSON).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DCDM data file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("layout") != "neuralsolve-dcdm-rhs":
                raise DataFormatError(
                    f"{str(path)!r} is not a DCDM right-hand-side file (attribute 'layout' is "
                    f"{f.attrs.get('layout')!r}); write one with `neuralsolve train dcdm`"
                )
            for key in ("rhs", "geometry", "ritz_values"):
                if key not in f:
                    raise DataFormatError(f"{str(path)!r} has no {key!r}: regenerate it")
            config = DCDMDataConfig(**json.loads(f.attrs["config"]))
            rhs = torch.from_numpy(f["rhs"][...])
            geometry = torch.from_numpy(f["geometry"][...].astype(np.int64))
            ritz = [f["ritz_values"][str(g)][...] for g in range(config.geometries)]
    except OSError as exc:
        raise DataFormatError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from None
    expected = (config.samples, *(config.n,) * config.dim)
    if tuple(rhs.shape) != expected:
        raise DataFormatError(
            f"{str(path)!r}: 'rhs' has shape {tuple(rhs.shape)}, expected {expected}"
        )
    return DCDMData(config, rhs, geometry, ritz)


class _Systems:
    """The training operators (in the training dtype and device), their flags, and their
    deflation spaces when the run trains for the deflated method."""

    def __init__(
        self,
        config: DCDMDataConfig,
        dtype: torch.dtype,
        device: torch.device,
        deflation_block: int | None = None,
    ) -> None:
        problems = config.problems(dtype=dtype, device=device)
        self.ops = [p.A for p in problems]
        self.flags = torch.stack([geometry_flags(op) for op in self.ops]).to(dtype)
        self.deflations = (
            None
            if deflation_block is None
            else [BlockDeflation(op, deflation_block) for op in self.ops]
        )


def _per_geometry(
    fn: Callable[[int, torch.Tensor], torch.Tensor], X: torch.Tensor, geometry: torch.Tensor
) -> torch.Tensor:
    """``fn(g, X[geometry == g])`` for each geometry ``g``, reassembled (differentiably)."""
    out = torch.zeros_like(X)
    for g in torch.unique(geometry).tolist():
        sel = geometry == g
        out = out.index_put((sel,), fn(g, X[sel]))
    return out


def dcdm_loss(
    net: torch.nn.Module,
    b: torch.Tensor,
    geometry: torch.Tensor,
    ops: Sequence[Any],
    flags: torch.Tensor,
    deflations: Sequence[BlockDeflation] | None = None,
) -> torch.Tensor:
    """The one-step loss (module notes) of a batch ``b`` ``(B, *grid)`` whose sample ``i`` belongs
    to the system ``ops[geometry[i]]`` with network flags ``flags[geometry[i]]``; with
    ``deflations`` (one per system), the loss of the deflated method's first iteration."""
    dims = tuple(range(1, b.ndim))
    apply = lambda g, X: ops[g].apply_grid(X)  # noqa: E731
    if deflations is not None:
        coarse = lambda g, X: deflations[g].correction_grid(X)  # noqa: E731
        b = b - _per_geometry(apply, _per_geometry(coarse, b, geometry), geometry)
        norm = torch.linalg.vector_norm(b, dim=dims).clamp_min(torch.finfo(b.dtype).tiny)
        b = b / norm.view(-1, *[1] * (b.ndim - 1))
    f = flags[geometry].to(b.dtype)
    q = net(torch.cat([b.unsqueeze(1), f], dim=1))[:, 0] * f[:, 0]
    Aq = _per_geometry(apply, q, geometry)
    if deflations is not None:
        q = q - _per_geometry(coarse, Aq, geometry)
        Aq = _per_geometry(apply, q, geometry)
    qb = (q * b).sum(dims)
    qAq = (q * Aq).sum(dims)
    s = qb / qAq.clamp_min(torch.finfo(q.dtype).tiny)
    return ((b - s.view(-1, *[1] * (b.ndim - 1)) * Aq) ** 2).sum(dims).mean()


def evaluate_iterations(
    model: Any,
    problem: str,
    n: int,
    seeds: Sequence[int],
    *,
    rtol: float = 1e-4,
    max_iters: int = 300,
    directions: int = DEFAULT_DIRECTIONS,
    device: Any = "cpu",
    deflation_block: int | None = None,
) -> dict[str, float]:
    """DCDM iterations (and CG's, for scale) on gallery problems with the given seeds.

    ``problem`` may list several problems separated by commas; each is solved with every seed.
    With ``deflation_block`` DCDM is the deflated method (CG stays plain).

    Returns ``{"dcdm_iters": mean, "cg_iters": mean, "converged": fraction}`` over all solves,
    and with several problems also ``"dcdm_iters/<name>"`` and ``"cg_iters/<name>"`` for each;
    an unconverged solve counts as ``max_iters``.
    """
    names = problem_names(problem, distinct=True)
    dcdm: dict[str, list[int]] = {name: [] for name in names}
    cg: dict[str, list[int]] = {name: [] for name in names}
    ok = 0
    for name in names:
        for seed in seeds:
            prob = make_problem(name, n, seed=seed, device=device)
            res = solve(prob.A, prob.b, method="dcdm", model=model, rtol=rtol,
                        max_iters=max_iters, directions=directions,
                        deflation_block=deflation_block)  # fmt: skip
            ref = solve(prob.A, prob.b, method="cg", rtol=rtol)
            dcdm[name].append(res.iterations if res.converged else max_iters)
            cg[name].append(ref.iterations)
            ok += int(res.converged)
    scores = {
        "dcdm_iters": float(np.mean([it for name in names for it in dcdm[name]])),
        "cg_iters": float(np.mean([it for name in names for it in cg[name]])),
        "converged": ok / (len(names) * len(seeds)),
    }
    if len(names) > 1:
        for name in names:
            scores[f"dcdm_iters/{name}"] = float(np.mean(dcdm[name]))
            scores[f"cg_iters/{name}"] = float(np.mean(cg[name]))
    return scores


def train_dcdm(
    data: DCDMData,
    trainer_config: Any,
    *,
    net_config: DCDMNetConfig | None = None,
    eval_seeds: Sequence[int] | None = None,
    eval_directions: int = DEFAULT_DIRECTIONS,
    resume: bool = False,
    init: Any = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    deflation_block: int | None = None,
) -> tuple[DCDMNet, Any]:
    """Train a :class:`DCDMNet` on ``data`` with the one Trainer.

    The evaluation (every ``trainer_config.eval_every`` steps) runs DCDM to ``rtol=1e-4`` on
    held-out geometries (``eval_seeds``; default two seeds from ``first_seed + 1000``) and picks
    ``best.pt`` by the mean iteration count, not the loss: a low one-step loss alone does not
    make a good solver.

    ``init`` (a checkpoint path or a network) gives the starting weights, e.g. the previous
    stage's ``best.pt``.

    ``deflation_block`` trains for the deflated method (``method="dcdm-deflated"``): the loss
    and the evaluation both deflate by boxes of that side, and the checkpoint's metadata
    records it.

    Returns
    -------
    (DCDMNet, TrainResult)
        The trained network (final weights) and the Trainer's result.
    """
    config = data.config
    net_config = net_config or DCDMNetConfig(dim=config.dim)
    if net_config.dim != config.dim:
        raise ValueError(
            f"the network is {net_config.dim}-D but the data ({config.problem}) is {config.dim}-D"
        )
    DCDM(directions=eval_directions)  # the solver's own checks, before the first step
    check_deflation_block(deflation_block)
    torch.manual_seed(trainer_config.seed)
    net = DCDMNet(net_config)
    if init is not None:  # start from another run's weights (a previous stage)
        start, _ = load_network(init, config.dim)
        if getattr(start, "config", None) != net_config:
            raise ValueError(
                f"init has network {getattr(start, 'config', None)}, this run {net_config}"
            )
        net.load_state_dict(start.state_dict())
    dtype = getattr(torch, trainer_config.dtype)
    systems = _Systems(config, dtype, torch.device(trainer_config.device), deflation_block)
    seeds = (
        list(eval_seeds)
        if eval_seeds is not None
        else [config.first_seed + 1000 + i for i in range(2)]
    )

    def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        b, g = batch
        return dcdm_loss(model, b, g.to(torch.long), systems.ops, systems.flags, systems.deflations)

    def eval_fn(model: torch.nn.Module) -> dict[str, float]:
        module = getattr(model, "module", model)
        was_training = module.training
        module.eval()
        scores = evaluate_iterations(
            module, config.problem, config.n, seeds, directions=eval_directions,
            device=trainer_config.device, deflation_block=deflation_block,
        )  # fmt: skip
        module.train(was_training)
        if callback is not None:
            callback(scores)
        return scores

    metadata = {
        "dcdm_net": net_config.to_dict(),
        "data": asdict(config),
        "eval_seeds": seeds,
        "deflation_block": deflation_block,
    }
    trainer = Trainer(net, loss_fn, trainer_config, data=data, eval_fn=eval_fn, metadata=metadata)
    result = trainer.fit(resume=resume)
    return trainer.module, result  # type: ignore[return-value]


def export_model(
    checkpoint: str | Path, out: str | Path, *, record: dict[str, Any] | None = None
) -> Path:
    """Write a small model file (weights and config only, ``kind="dcdm-model"``) from a training
    checkpoint, and its training record as JSON beside it (``<out>.json``)."""
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.get("metadata") or {}
    if ckpt.get("kind") not in ("trainer", "model") or "dcdm_net" not in meta:
        raise ValueError(f"{str(checkpoint)!r} is not a DCDM training checkpoint")
    state = {
        k: v.to(torch.float32) if v.is_floating_point() else v for k, v in ckpt["model"].items()
    }
    out = Path(out)
    save_checkpoint(out, {"model": state, "metadata": meta}, kind="dcdm-model")
    full = {
        "meta": run_record(),
        "config": ckpt.get("config"),
        "metadata": meta,
        "step": ckpt.get("step"),
        "eval": ckpt.get("eval"),
        "neuralsolve": ckpt.get("neuralsolve_version"),
        **(record or {}),
    }
    if "log_gain" in state:  # learn_gain: the config holds only the starting value
        full["learned_gain"] = float(state["log_gain"].exp())
    write_report(out.with_suffix(".json"), full, indent=2)
    return out


def trajectory_rhs(
    model: Any,
    data: DCDMData,
    count: int,
    *,
    iterations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    directions: int = 2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals the solver itself meets: ``count`` unit vectors ``r_t / ||r_t||`` taken at the
    given ``iterations`` of DCDM runs (with ``model``) started from samples of ``data``.

    A network trained only on Ritz combinations reduces the first residuals well and then
    stalls: later residuals look unlike its training data. Training on them as well (the
    follow-up the notes suggest) targets the iterations that dominate the count.

    Returns
    -------
    (rhs, geometry)
        ``(count, *grid)`` float32 and ``(count,)`` int64, as in :class:`DCDMData`.
    """
    config = data.config
    problems = config.problems()
    gen = torch.Generator().manual_seed(seed)
    per_run = len(iterations)
    runs = -(-count // per_run)
    picks = torch.randperm(len(data), generator=gen)[:runs]
    rows, geoms = [], []
    wanted = set(iterations)
    for g, prob in enumerate(problems):
        sel = picks[data.geometry[picks] == g]
        if len(sel) == 0:
            continue
        op = prob.A
        B = op.from_grid(data.rhs[sel].movedim(0, -1).to(torch.float64))
        caught: list[torch.Tensor] = []

        def catch(info: Any, B: torch.Tensor = B, op: Any = op, caught: list = caught) -> None:
            if info.iteration in wanted:
                X = info.x if info.x.ndim == 2 else info.x[None]
                caught.append(B.T - op.apply_batch(X))

        solve(op, B, method="dcdm", model=model, rtol=1e-10, directions=directions,
              max_iters=max(iterations), callback=catch)  # fmt: skip
        for R in caught:
            norms = torch.linalg.vector_norm(R, dim=1)
            ok = norms > 0
            R = R[ok] / norms[ok, None]
            rows.append(op.to_grid(R.T).movedim(-1, 0).to(torch.float32))
            geoms.append(torch.full((R.shape[0],), g, dtype=torch.int64))
    rhs, geometry = torch.cat(rows), torch.cat(geoms)
    order = torch.randperm(len(rhs), generator=gen)[:count]
    return rhs[order], geometry[order]
