"""The PINN solver: a network fitted to a :class:`~neuralsolve.datasets.pde.PDEProblem` by
minimising its residual at collocation points, with the points drawn by a sampler each round.

Raissi, Perdikaris & Karniadakis, "Physics-informed neural networks", J. Comput. Phys. 378
(2019). The loss of a network ``u`` is

.. math::

    L(u) = \\frac{1}{N} \\sum_{i=1}^{N} r(x_i; u)^2
         + w_b \\frac{1}{N_b} \\sum_{j=1}^{N_b} (u(y_j) - g(y_j))^2
         + w_0 \\frac{1}{N_0} \\sum_{k=1}^{N_0} (u(z_k) - u_0(z_k))^2,

with the ``N`` collocation points ``x_i`` from the sampler (uniform, Sobol, Latin hypercube,
RAR-G, RAR-D, RAD or AAS: :mod:`.samplers`), ``N_b`` uniform points ``y_j`` on the Dirichlet
boundary (fixed for the run) and, for a time-dependent problem, ``N_0`` points ``z_k`` on the
initial face. With ``hard_dirichlet=True`` (steady problems) the network is
``u(x) = g(x) + l(x) N(x)`` with ``l(x) = prod_i 4 (x_i - a_i)(b_i - x_i) / (b_i - a_i)^2``, which
vanishes on the box's faces, so the boundary term is exactly zero (Lagaris, Likas & Fotiadis,
IEEE TNN 9 (1998)). Here ``g`` is the blend of the boundary data from the faces
(:meth:`~neuralsolve.domain.Box.boundary_lift`): the data is evaluated on the boundary only, so
a problem whose boundary data is its exact solution does not hand that solution to the network.

The weights are fixed (``loss_balance="fixed"``, the default), or balanced by gradient norms
(``loss_balance="grad-norm"``; Wang, Teng & Perdikaris, "Understanding and mitigating gradient
flow pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43 (2021); the
form of Wang et al., "An expert's guide to training physics-informed neural networks", arXiv
2308.08468): every ``balance_every`` steps

.. math::

    \\hat w_b = \\frac{\\|\\nabla_\\theta L_r\\|}{\\|\\nabla_\\theta L_b\\|}, \\qquad
    w_b \\leftarrow \\alpha w_b + (1 - \\alpha) \\hat w_b, \\quad \\alpha = 0.9,

with ``L_r`` and ``L_b`` the unweighted residual and boundary means above (``w_0`` likewise),
so that each term pulls the parameters as hard as the residual does. Our choices: the ratio is
taken against the residual term (whose weight stays 1; the expert's guide weights every term
by the sum of the norms over its own, the same ratios), the first update (step 0) sets the
weights to ``\\hat w`` outright, and an update whose norms are not finite and positive is
skipped. Where a few collocation points carry a forcing of thousands (peak2d: ``4k = 4000``),
the residual's gradient is orders of magnitude above the boundary's, and a fixed ``w_b = 1``
leaves the boundary values drifting by 0.1 (``docs/benchmarks/pinn.md``).

Training runs through :class:`~neuralsolve.optim.Trainer` (any ``neuralsolve.optim`` optimizer,
checkpoints, exact resume); the rounds are a :class:`~neuralsolve.optim.TrainerHook` that asks
the sampler for the next round's points every ``resample_every`` steps, with the sampler's
state (flow weights included) and its random generator in every checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralsolve.checks import check_nonnegative_float, check_positive_int
from neuralsolve.domain import Box
from neuralsolve.fileio import atomic_path
from neuralsolve.linop import torch_dtype
from neuralsolve.optim import Trainer, TrainerConfig, TrainResult

from .networks import MLP
from .samplers import Sampler, make_sampler

__all__ = ["PINN"]

#: points on which :meth:`PINN.error` measures a problem of more than 3 dimensions
HIGH_DIM_TEST_POINTS = 100_000


def _problem_name(problem: Any) -> str:
    return repr(getattr(problem, "name", type(problem).__name__))


class HardDirichlet(torch.nn.Module):
    """``u(x) = g(x) + l(x) N(x)``: a network that meets the Dirichlet data exactly (module
    notes)."""

    def __init__(self, net: torch.nn.Module, domain: Box, boundary: Any) -> None:
        super().__init__()
        self.net = net
        self.domain = domain
        self.boundary = boundary
        lower, upper = domain.bounds()
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lower.to(x.dtype), self.upper.to(x.dtype)
        bump = (4 * (x - lo) * (hi - x) / (hi - lo) ** 2).prod(dim=1)
        return self.lift(x) + bump * self.net(x).reshape(-1)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)``: the boundary data blended in from the faces (:meth:`Box.boundary_lift`)."""
        return self.domain.boundary_lift(self.boundary, x)


class _Values(torch.nn.Module):
    """The fitted function: the network's ``(n, 1)`` output as ``(n,)`` values (any other
    shape is passed on, for the problem's check to name)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y


class CollocationRounds:
    """The :class:`~neuralsolve.optim.TrainerHook` of a PINN run: every ``resample_every``
    steps (not before the first) the sampler turns the current points and the current residual
    into the next round's points."""

    def __init__(self, pinn: PINN) -> None:
        self.pinn = pinn
        self.generator = torch.Generator().manual_seed(pinn.seed)
        self.points = pinn.sampler.initial(generator=self.generator).to(pinn.dtype)

    def before_step(self, trainer: Trainer) -> None:
        step = trainer.step
        if step == 0 or step % self.pinn.resample_every:
            return
        model = trainer.module

        def residual(x: torch.Tensor) -> torch.Tensor:
            out = []
            for chunk in torch.split(x.to(self.pinn.dtype), 8192):
                out.append(self.pinn.problem.residual(chunk, model).detach())
            return torch.cat(out).to(x.dtype)

        self.points = self.pinn.sampler.update(
            self.points.to(self.pinn.sampler.dtype), residual, generator=self.generator
        ).to(self.pinn.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {
            "points": self.points.detach().cpu().clone(),
            "sampler": self.pinn.sampler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.points = state["points"].to(dtype=self.pinn.dtype, device=self.pinn.device)
        self.pinn.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])


class GradNormBalance:
    """The :class:`~neuralsolve.optim.TrainerHook` of ``loss_balance="grad-norm"``: every
    ``every`` steps it sets the PINN's boundary (and initial) weight towards the ratio of the
    residual term's gradient norm to that term's (module notes), on the round's points."""

    momentum = 0.9

    def __init__(self, pinn: PINN, every: int) -> None:
        self.pinn = pinn
        self.every = every
        #: ``(step, w_b, w_0, target_b, target_0)`` after each update (a target is nan where
        #: the loss has no such term or its update was skipped)
        self.history: list[tuple[int, float, float, float, float]] = []

    def before_step(self, trainer: Trainer) -> None:
        if trainer.step % self.every:
            return
        terms = self.pinn.loss_terms(trainer.module)
        params = [p for p in trainer.module.parameters() if p.requires_grad]
        norms = {name: _grad_norm(value, params) for name, value in terms.items()}
        targets = {"boundary": math.nan, "initial": math.nan}
        for name, attr in (("boundary", "boundary_weight"), ("initial", "initial_weight")):
            if name not in norms:
                continue
            target = norms["residual"] / norms[name] if norms[name] > 0 else math.inf
            if not (math.isfinite(target) and target > 0):
                continue
            targets[name] = target
            old = getattr(self.pinn, attr)
            first = not self.history
            setattr(
                self.pinn,
                attr,
                target if first else self.momentum * old + (1 - self.momentum) * target,
            )
        if not all(math.isnan(t) for t in targets.values()):
            self.history.append(
                (
                    trainer.step,
                    self.pinn.boundary_weight,
                    self.pinn.initial_weight,
                    targets["boundary"],
                    targets["initial"],
                )
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "boundary_weight": self.pinn.boundary_weight,
            "initial_weight": self.pinn.initial_weight,
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pinn.boundary_weight = float(state["boundary_weight"])
        self.pinn.initial_weight = float(state["initial_weight"])
        self.history = [(int(h[0]), *map(float, h[1:])) for h in state["history"]]


def _grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    """``||d value / d params||_2`` (0 for a term that does not depend on them)."""
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    total = sum(float((g.detach() ** 2).sum()) for g in grads if g is not None)
    return math.sqrt(total)


LOSS_BALANCES = ("fixed", "grad-norm")


class PINN:
    """A physics-informed neural network for a PDE problem, with adaptive collocation.

    Parameters
    ----------
    problem : PDEProblem
        From :func:`neuralsolve.datasets.pde.make` (or built by hand).
    net : MLP, FourierMLP or torch.nn.Module
        The network (a specification is built for the problem's dimension; a module must map
        ``(n, d)`` to ``(n,)`` or ``(n, 1)``). Default ``MLP(width=32, depth=6)``.
    sampler : str
        One of :func:`~neuralsolve.solvers.pinn.available_samplers` (``"uniform"``,
        ``"uniform-resample"``, ``"sobol"``, ``"lhs"``, ``"rar-g"``, ``"rar-d"``, ``"rad"``,
        ``"aas"``).
    n_points : int
        Collocation points per round.
    n_boundary : int, optional
        Dirichlet boundary points (and initial points); default ``max(100, n_points // 4)``.
    resample_every : int
        Optimizer steps per round: the sampler draws new points after each round.
    sampler_options : dict, optional
        The sampler's own options (e.g. ``{"k": 2, "c": 0}`` for RAD, ``{"beta": 1e-3}`` for
        AAS).
    boundary_weight, initial_weight : float
        ``w_b`` and ``w_0`` in the loss (module notes); with ``loss_balance="grad-norm"``,
        where they start (the first update replaces them).
    loss_balance : {"fixed", "grad-norm"}
        Keep the weights, or balance them by gradient norms every ``balance_every`` steps
        (module notes).
    balance_every : int
        Steps between two updates of the balanced weights (default 100).
    hard_dirichlet : bool
        Build the boundary data into the network (steady problems; module notes).
    dtype : {"float32", "float64"}
    device : str or torch.device
    seed : int
        Seeds the boundary points, the sampler's generator and the training run.

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.pde.make("peak2d")
    >>> pinn = ns.solvers.PINN(prob, net=ns.solvers.MLP(width=32, depth=6), sampler="rad")
    >>> result = pinn.fit(steps=10_000, optimizer="adam", lr=1e-3)  # doctest: +SKIP
    >>> pinn.error(grid=201)  # doctest: +SKIP
    """

    def __init__(
        self,
        problem: Any,
        *,
        net: MLP | torch.nn.Module | None = None,
        sampler: str = "uniform",
        n_points: int = 1000,
        n_boundary: int | None = None,
        resample_every: int = 1000,
        sampler_options: dict[str, Any] | None = None,
        boundary_weight: float = 1.0,
        initial_weight: float = 1.0,
        loss_balance: str = "fixed",
        balance_every: int = 100,
        hard_dirichlet: bool = False,
        dtype: str = "float32",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        for attr in ("domain", "residual", "boundary_data", "name"):
            if not hasattr(problem, attr):
                raise TypeError(
                    f"problem must be a neuralsolve.datasets.pde.PDEProblem (e.g. "
                    f"ns.datasets.pde.make('peak2d')), got {type(problem).__name__} without "
                    f".{attr}"
                )
        who = f"PINN for problem {_problem_name(problem)}"
        self.problem = problem
        self.n_points = check_positive_int("n_points", n_points)
        self.n_boundary = check_positive_int(
            "n_boundary", max(100, n_points // 4) if n_boundary is None else n_boundary
        )
        self.resample_every = check_positive_int("resample_every", resample_every)
        self.boundary_weight = check_nonnegative_float("boundary_weight", boundary_weight)
        self.initial_weight = check_nonnegative_float("initial_weight", initial_weight)
        if loss_balance not in LOSS_BALANCES:
            raise ValueError(
                f"PINN for problem {_problem_name(problem)}: unknown loss_balance "
                f"{loss_balance!r}; available: {', '.join(LOSS_BALANCES)}"
            )
        self.loss_balance = loss_balance
        self.balance_every = check_positive_int("balance_every", balance_every)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.dtype = torch_dtype(dtype)
        self.device = torch.device(device)
        time_dependent = bool(getattr(problem, "time_dependent", False))
        if hard_dirichlet and time_dependent:
            raise ValueError(
                f"{who}: hard_dirichlet=True builds steady box boundaries into the network; "
                "problem is time-dependent: use the soft boundary and initial terms"
            )
        self.hard_dirichlet = bool(hard_dirichlet)
        self.sampler: Sampler = make_sampler(
            sampler, problem.domain, self.n_points, **dict(sampler_options or {})
        )
        self.sampler_name = sampler
        dim = problem.domain.dim
        if net is None:
            net = MLP()
        if isinstance(net, MLP):
            module = net.build(dim, dtype=self.dtype, device=self.device)
        elif isinstance(net, torch.nn.Module):
            module = net.to(dtype=self.dtype, device=self.device)
        else:
            raise TypeError(
                f"net must be an MLP / FourierMLP specification or a torch.nn.Module, got "
                f"{type(net).__name__}"
            )
        if self.hard_dirichlet:
            module = HardDirichlet(module, problem.domain, problem.boundary_values)
        self.model = _Values(module).to(dtype=self.dtype, device=self.device)
        generator = torch.Generator().manual_seed(seed)
        self.boundary_points, self.boundary_values = problem.boundary_data(
            self.n_boundary, generator=generator, dtype=self.dtype, device=self.device
        )
        self.initial_points = self.initial_values = None
        if time_dependent:
            self.initial_points, self.initial_values = problem.initial_data(
                self.n_boundary, generator=generator, dtype=self.dtype, device=self.device
            )
        self.rounds = CollocationRounds(self)
        self.balance = (
            GradNormBalance(self, self.balance_every) if loss_balance != "fixed" else None
        )
        self._check_network()
        self.result: TrainResult | None = None

    def _check_network(self) -> None:
        """Evaluate the loss once, before any training: a network of the wrong output shape or
        a non-finite residual fails here, with the problem's name in the message."""
        x = self.rounds.points[: min(8, self.n_points)]
        self.problem.residual(x, self.model)

    # ------------------------------------------------------------------ the loss
    def loss_terms(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The unweighted terms of the loss on the current round's points: ``"residual"``
        (``L_r``), and ``"boundary"`` (``L_b``, soft boundary only) and ``"initial"``
        (``L_0``, time-dependent problems only) where the loss has them (module notes)."""
        r = self.problem.residual(self.rounds.points, model)
        terms = {"residual": (r**2).mean()}
        if not self.hard_dirichlet:
            terms["boundary"] = ((model(self.boundary_points) - self.boundary_values) ** 2).mean()
        if self.initial_points is not None:
            terms["initial"] = ((model(self.initial_points) - self.initial_values) ** 2).mean()
        return terms

    def loss(self, model: torch.nn.Module, _batch: Any = None) -> torch.Tensor:
        """The PINN loss of ``model`` on the current round's points (module notes)."""
        terms = self.loss_terms(model)
        total = terms["residual"]
        if "boundary" in terms and self.boundary_weight > 0:
            total = total + self.boundary_weight * terms["boundary"]
        if "initial" in terms and self.initial_weight > 0:
            total = total + self.initial_weight * terms["initial"]
        return total

    # ------------------------------------------------------------------ training
    def fit(
        self,
        steps: int = 10_000,
        *,
        optimizer: str = "adam",
        lr: float = 1e-3,
        schedule: str = "constant",
        optimizer_options: dict[str, Any] | None = None,
        out_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        checkpoint_every: int = 0,
        log_every: int = 100,
        progress: bool | None = None,
    ) -> TrainResult:
        """Train the network for ``steps`` optimizer steps.

        Parameters
        ----------
        steps : int
        optimizer : str
            Any ``neuralsolve.optim`` optimizer (``"adam"``, ``"lbfgs"``, ``"muon"``, ...).
            Adam then L-BFGS: call ``fit`` twice.
        lr : float
        schedule : str
            ``"constant"`` (default), ``"cosine"``, ``"linear"``, ``"wsd"``.
        optimizer_options : dict, optional
        out_dir : path, optional
            Checkpoints (``last.pt``) and ``metrics.jsonl``; needed for ``resume``.
        resume : bool or path
            Continue a killed run (the round's points, the sampler and its flow included).
        checkpoint_every, log_every : int
        progress : bool, optional
            A progress bar (default: on a terminal).

        Returns
        -------
        TrainResult
        """
        config = TrainerConfig.full_batch(
            steps=steps,
            device=self.device,
            dtype=self.dtype,
            out_dir=out_dir,
            optimizer=optimizer,
            optimizer_options=optimizer_options,
            lr=lr,
            schedule=schedule,
            seed=self.seed,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
        trainer = Trainer(
            self.model,
            self.loss,
            config,
            hooks=[self.rounds] if self.balance is None else [self.rounds, self.balance],
            metadata={
                "problem": str(getattr(self.problem, "name", "")),
                "sampler": self.sampler_name,
                "n_points": self.n_points,
            },
        )
        self.result = trainer.fit(resume=resume)
        return self.result

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted solution at the points ``x`` ``(n, d)``, ``(n,)`` (no gradient)."""
        self.problem.domain.check_points(x)
        with torch.no_grad():
            return self.model(x.to(dtype=self.dtype, device=self.device))

    def test_points(self, grid: int = 201) -> torch.Tensor:
        """The points of :meth:`test_set` (without their weights)."""
        return self.test_set(grid)[0]

    def test_set(self, grid: int = 201) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where :meth:`error` measures: ``(points, weights)``.

        A ``grid^d`` tensor grid for ``d <= 3`` (at most ``grid = 201`` per axis in 3-D is
        8.1 M points: use a smaller grid there), with ``weights = None`` (equal). Else
        ``HIGH_DIM_TEST_POINTS`` points from a fixed seed (12345): uniform in the box (weights
        ``None``), or, for a problem with a ``focus`` (a solution concentrated about a centre),
        half uniform and half from ``N(centre, scale^2 I)`` kept inside the box, with importance
        weights. With the uniform density ``1 / |Ω|`` and the focus density ``φ_B`` (the normal
        density restricted to the box ``B``, ``φ / Z`` with ``Z = prod_i [Φ((b_i - c_i) / s) -
        Φ((a_i - c_i) / s)]``), the points follow ``m = (1/|Ω| + φ_B) / 2`` and ``w = (1/|Ω|) /
        m``, so that ``sum_j w_j g(x_j) / n`` estimates the box average of ``g``: both norms of
        the relative error are estimated with the points where the solution lives.
        """
        domain = self.problem.domain
        if domain.dim <= 3:
            check_positive_int("grid", grid)
            if grid < 2:
                raise ValueError(f"grid must be at least 2 points per axis, got {grid}")
            axes = [
                torch.linspace(a, b, grid, dtype=torch.float64)
                for a, b in zip(domain.lower, domain.upper, strict=True)
            ]
            mesh = torch.meshgrid(*axes, indexing="ij")
            return torch.stack([m.reshape(-1) for m in mesh], dim=1), None
        generator = torch.Generator().manual_seed(12345)
        focus = getattr(self.problem, "focus", None)
        if focus is None:
            return domain.uniform(HIGH_DIM_TEST_POINTS, generator=generator), None
        centre = torch.tensor(focus[0], dtype=torch.float64)
        scale = float(focus[1])
        half = HIGH_DIM_TEST_POINTS // 2
        uniform = domain.uniform(HIGH_DIM_TEST_POINTS - half, generator=generator)
        kept: list[torch.Tensor] = []
        count = 0
        while count < half:  # rejection: the normal sample restricted to the box
            draw = centre + scale * torch.randn(
                2 * half, domain.dim, generator=generator, dtype=torch.float64
            )
            draw = draw[domain.contains(draw)]
            kept.append(draw)
            count += draw.shape[0]
        focused = torch.cat(kept)[:half]
        X = torch.cat([uniform, focused])
        lo, hi = domain.bounds()
        normal = torch.distributions.Normal(0.0, 1.0)
        mass = (normal.cdf((hi - centre) / scale) - normal.cdf((lo - centre) / scale)).prod()
        log_phi = (
            -0.5 * ((X - centre) / scale).square().sum(dim=1)
            - domain.dim * math.log(scale * math.sqrt(2 * math.pi))
            - torch.log(mass)
        )
        uniform_density = 1.0 / domain.volume
        weights = uniform_density / (0.5 * uniform_density + 0.5 * torch.exp(log_phi))
        return X, weights

    def error(self, grid: int = 201, *, points: torch.Tensor | None = None) -> float:
        """Relative L2 error ``||u - u*|| / ||u*||`` against the exact solution, on
        :meth:`test_set`, weighted (or on ``points``, equally weighted):
        fixed points, never the training ones."""
        if points is None:
            x, weights = self.test_set(grid)
        else:
            x, weights = points, None
        exact = self.problem.solution(x.to(torch.float64))
        approx = torch.cat(
            [self.predict(chunk).to(torch.float64) for chunk in torch.split(x, 65536)]
        )
        w = torch.ones_like(exact) if weights is None else weights.to(exact)
        gap = (w * (approx - exact).square()).sum()
        return float(torch.sqrt(gap / (w * exact.square()).sum()))

    def plot(self, path: str | Path, *, grid: int = 101) -> Path:
        """The fitted solution, its pointwise error (when the exact solution is known) and the
        current collocation points, as a PNG (1-D and 2-D problems)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        domain = self.problem.domain
        if domain.dim > 2:
            raise ValueError(
                f"plot shows 1-D and 2-D problems; problem {_problem_name(self.problem)} is "
                f"{domain.dim}-D: use error() for a number"
            )
        x = self.test_points(grid)
        u = torch.cat([self.predict(c) for c in torch.split(x, 65536)]).double().cpu().numpy()
        has_exact = getattr(self.problem, "exact", None) is not None
        exact = err = None
        if has_exact:
            exact = self.problem.solution(x).cpu().numpy()
            err = np.abs(u - exact)
        pts = self.rounds.points.detach().double().cpu().numpy()
        panels = 3 if has_exact else 2
        fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
        if domain.dim == 1:
            xs = x[:, 0].numpy()
            axes[0].plot(xs, u, label="PINN")
            if has_exact:
                axes[0].plot(xs, exact, "--", label="exact")
                axes[1].semilogy(xs, np.maximum(err, 1e-300))
                axes[1].set_title("|error|")
            axes[0].legend()
            axes[-1].hist(pts[:, 0], bins=50)
            axes[-1].set_title(f"collocation points ({self.sampler_name})")
        else:
            shape = (grid, grid)
            extent = (domain.lower[0], domain.upper[0], domain.lower[1], domain.upper[1])
            im = axes[0].imshow(u.reshape(shape).T, origin="lower", extent=extent)
            fig.colorbar(im, ax=axes[0])
            axes[0].set_title("PINN solution")
            if has_exact:
                im = axes[1].imshow(err.reshape(shape).T, origin="lower", extent=extent)
                fig.colorbar(im, ax=axes[1])
                axes[1].set_title("|error|")
            axes[-1].scatter(pts[:, 0], pts[:, 1], s=1)
            axes[-1].set_xlim(extent[0], extent[1])
            axes[-1].set_ylim(extent[2], extent[3])
            axes[-1].set_title(f"collocation points ({self.sampler_name})")
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path

    def __repr__(self) -> str:
        return (
            f"PINN(problem={_problem_name(self.problem)}, sampler={self.sampler_name!r}, "
            f"n_points={self.n_points}, dtype={str(self.dtype).replace('torch.', '')})"
        )
