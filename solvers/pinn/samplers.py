"""Collocation-point samplers for PINNs behind one interface, and their registry.

A sampler owns nothing but its method's state (a flow and its optimizer for AAS); the points of
the current round belong to the caller, who passes them back each round::

    sampler = make_sampler("rad", Box.cube(2, -1.0, 1.0), 2000)
    g = torch.Generator().manual_seed(0)
    X = sampler.initial(generator=g)                  # (2000, 2)
    for round in range(rounds):
        ...train the PINN on X...
        X = sampler.update(X, residual_fn, generator=g)

``residual_fn`` maps ``(m, d)`` points to their ``(m,)`` PDE residuals; the caller computes
them (with whatever autograd the PDE needs) and the sampler detaches the result. Every sampler
returns points inside the box (:meth:`Box.check_points`). ``state_dict`` /
``load_state_dict`` carry the sampler's own state (the round counter; the flow's weights and
optimizer state for AAS), so that a killed run restored from a checkpoint (with the caller's
points and generator state) draws the same next round.

Methods (registry names):

==================== =============================================================== ========
name                 points each round                                                count
==================== =============================================================== ========
``uniform``          one uniform draw, kept (``update`` returns the points unchanged) n
``uniform-resample`` a fresh uniform draw every round                                  n
``sobol``            scrambled Sobol points (``resample=True``: a new scrambling)       n
``lhs``              Latin hypercube (``resample=True``: redrawn every round)          n
``rar-g``            the points so far + the ``m`` candidates of largest ``|r|``       n + k m
``rar-d``            the points so far + ``m`` candidates drawn from ``p`` below       n + k m
``rad``              ``n`` candidates drawn from ``p`` below (all points replaced)     n
``aas``              ``n`` points drawn from a flow trained adversarially (see         n
                     :class:`AASSampler`)
==================== =============================================================== ========

(``k`` is the number of rounds so far.) RAD and RAR-D follow Wu, Zhu, Tan, Kartha, Lu, "A
comprehensive study of non-adaptive and residual-based adaptive sampling for physics-informed
neural networks", CMAME 403 (2023) 115671: over a set of uniform candidates,
``p(x) ∝ |r(x)|^k / E[|r|^k] + c`` (the mean over the candidates), drawn without replacement.
Defaults: RAD ``k=1, c=1`` (the paper's recommended RAD); RAR-D ``k=2, c=0`` and ``m=10``;
RAR-G adds the ``m=10`` points of largest residual (Lu et al.'s RAR). The candidate set has
``n_candidates`` points (default 100 000, the paper's). Sobol and Latin hypercube points follow
DeepXDE's ``train_distribution`` options.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from neuralsolve.checks import (
    check_bool,
    check_int,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_real,
)
from neuralsolve.domain import Box
from neuralsolve.errors import NonFiniteError

from .flow import BoundedFlow

__all__ = [
    "SAMPLERS",
    "AASSampler",
    "LatinHypercubeSampler",
    "RADSampler",
    "RARDSampler",
    "RARGSampler",
    "ResidualFn",
    "Sampler",
    "SobolSampler",
    "UniformSampler",
    "aas_flow_loss",
    "available_samplers",
    "check_residuals",
    "make_sampler",
]

ResidualFn = Callable[[torch.Tensor], torch.Tensor]


def _seed_from(generator: torch.Generator | None) -> int:
    """A 62-bit seed drawn from ``generator`` (the global generator when None)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def check_residuals(residual_fn: ResidualFn, X: torch.Tensor) -> torch.Tensor:
    """``residual_fn(X)`` detached, checked to be a finite ``(m,)`` tensor; clear errors otherwise.

    Raises
    ------
    TypeError
        ``residual_fn`` is not callable or returned something other than a tensor.
    ValueError
        The result's shape is not ``(m,)`` for ``m = X.shape[0]``.
    NonFiniteError
        The result holds NaN or infinite values.
    """
    if not callable(residual_fn):
        raise TypeError(
            f"residual_fn must be a callable (m, d) tensor -> (m,) residuals, got "
            f"{type(residual_fn).__name__}"
        )
    r = residual_fn(X)
    m = X.shape[0]
    if not isinstance(r, torch.Tensor):
        raise TypeError(
            f"residual_fn must return a torch.Tensor of shape ({m},), got {type(r).__name__}"
        )
    if tuple(r.shape) != (m,):
        raise ValueError(
            f"residual_fn returned shape {tuple(r.shape)} for {m} points; it must return one "
            f"residual per point, shape ({m},) (e.g. return r.reshape(-1) for an (m, 1) output)"
        )
    r = r.detach()
    if not bool(torch.isfinite(r).all()):
        bad = int((~torch.isfinite(r)).sum())
        first = int(torch.nonzero(~torch.isfinite(r))[0])
        raise NonFiniteError(
            f"residual_fn returned {bad} non-finite values of {m}, e.g. at point "
            f"{X[first].tolist()}: check the PINN's output and the PDE's coefficients there"
        )
    return r.to(dtype=X.dtype, device=X.device)


class Sampler:
    """The interface: ``initial`` draws round 0, ``update`` draws each later round.

    Parameters
    ----------
    domain : Box
        Where the points live.
    n_points : int
        Points per round (the initial set for the RAR methods, which grow it).
    dtype, device
        Of the points (default float64 on the CPU).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        domain: Box,
        n_points: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if not isinstance(domain, Box):
            raise TypeError(f"domain must be a neuralsolve.domain.Box, got {type(domain).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.domain = domain
        self.n_points = check_positive_int("n_points", n_points)
        self.dtype = dtype
        self.device = torch.device(device)
        self.rounds = 0  # completed update() calls

    @property
    def dim(self) -> int:
        return self.domain.dim

    # -- the interface -------------------------------------------------------------------
    def initial(self, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Round 0: ``(n_points, d)`` points in the box."""
        X = self._initial(generator)
        self.domain.check_points(X)
        return X

    def update(
        self,
        points: torch.Tensor,
        residual_fn: ResidualFn,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The next round's points from the current ``points`` ``(n, d)`` and the residual.

        ``residual_fn``: ``(m, d) -> (m,)`` residuals; it is called on candidate points (never
        for ``uniform``, ``uniform-resample``, ``sobol``, ``lhs``).
        """
        self.domain.check_points(points)
        if not callable(residual_fn):
            raise TypeError(
                f"residual_fn must be a callable (m, d) tensor -> (m,) residuals, got "
                f"{type(residual_fn).__name__}"
            )
        X = self._update(points.to(dtype=self.dtype, device=self.device), residual_fn, generator)
        self.domain.check_points(X)
        self.rounds += 1
        return X

    def state_dict(self) -> dict[str, Any]:
        """The sampler's own state (a deep copy); the caller saves points and generator."""
        return {
            "name": self.name,
            "dim": self.dim,
            "n_points": self.n_points,
            "rounds": self.rounds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (of a sampler of the same name, dim, n_points)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        for key in ("name", "dim", "n_points", "rounds"):
            if key not in state:
                raise ValueError(f"sampler state lacks the key {key!r}: pass state_dict()'s output")
        for key, mine in (("name", self.name), ("dim", self.dim), ("n_points", self.n_points)):
            if state[key] != mine:
                raise ValueError(
                    f"sampler state is for {key}={state[key]!r}, this sampler has {key}={mine!r}: "
                    "build the sampler with the checkpoint's settings"
                )
        self.rounds = int(state["rounds"])

    # -- for subclasses ------------------------------------------------------------------
    def _uniform(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.domain.uniform(n, generator=generator, dtype=self.dtype, device=self.device)

    def _from_unit(self, U: torch.Tensor) -> torch.Tensor:
        """Unit-cube points -> box points, clamped to the closed box against rounding."""
        lo, hi = self.domain.bounds(self.dtype, self.device)
        X = self.domain.from_unit(U.to(dtype=self.dtype, device=self.device))
        return torch.minimum(torch.maximum(X, lo), hi)

    def _initial(self, generator: torch.Generator | None) -> torch.Tensor:
        return self._uniform(self.n_points, generator)

    def _update(
        self, points: torch.Tensor, residual_fn: ResidualFn, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, n_points={self.n_points})"
        )


class UniformSampler(Sampler):
    """Uniform points: drawn once and kept (``uniform``), or redrawn every round
    (``uniform-resample``, ``resample=True``)."""

    name = "uniform"

    def __init__(self, domain: Box, n_points: int, *, resample: bool = False, **kw: Any) -> None:
        super().__init__(domain, n_points, **kw)
        self.resample = check_bool("resample", resample)
        if self.resample:
            self.name = "uniform-resample"

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        return self._uniform(self.n_points, generator) if self.resample else points.clone()


class SobolSampler(Sampler):
    """Scrambled Sobol points (``torch.quasirandom.SobolEngine``, Owen scrambling seeded from
    the generator); kept, or a new scrambling each round with ``resample=True``.

    The first ``n_points`` of a scrambled sequence (a power of two balances best)."""

    name = "sobol"

    def __init__(self, domain: Box, n_points: int, *, resample: bool = False, **kw: Any) -> None:
        super().__init__(domain, n_points, **kw)
        if self.dim > torch.quasirandom.SobolEngine.MAXDIM:
            raise ValueError(
                f"Sobol points exist up to {torch.quasirandom.SobolEngine.MAXDIM} dimensions, "
                f"the box has {self.dim}: use 'lhs' or 'uniform'"
            )
        self.resample = check_bool("resample", resample)

    def _draw(self, generator: torch.Generator | None) -> torch.Tensor:
        engine = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=_seed_from(generator))
        return self._from_unit(engine.draw(self.n_points, dtype=torch.float64))

    def _initial(self, generator):  # type: ignore[no-untyped-def]
        return self._draw(generator)

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        return self._draw(generator) if self.resample else points.clone()


class LatinHypercubeSampler(Sampler):
    """Latin hypercube points: each axis cut into ``n_points`` equal strata, one point per
    stratum (uniform inside it), the strata of the axes paired by independent random
    permutations. Kept, or redrawn each round with ``resample=True``."""

    name = "lhs"

    def __init__(self, domain: Box, n_points: int, *, resample: bool = False, **kw: Any) -> None:
        super().__init__(domain, n_points, **kw)
        self.resample = check_bool("resample", resample)

    def _draw(self, generator: torch.Generator | None) -> torch.Tensor:
        n, d = self.n_points, self.dim
        strata = torch.stack([torch.randperm(n, generator=generator) for _ in range(d)], dim=1)
        jitter = torch.rand(n, d, generator=generator, dtype=torch.float64)
        return self._from_unit((strata.to(torch.float64) + jitter) / n)  # (n, d)

    def _initial(self, generator):  # type: ignore[no-untyped-def]
        return self._draw(generator)

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        return self._draw(generator) if self.resample else points.clone()


class _ResidualSampler(Sampler):
    """Shared by RAR-G, RAR-D and RAD: a fresh uniform candidate set each round."""

    def __init__(
        self, domain: Box, n_points: int, *, n_candidates: int = 100_000, **kw: Any
    ) -> None:
        super().__init__(domain, n_points, **kw)
        self.n_candidates = check_positive_int("n_candidates", n_candidates)

    def _candidates(
        self, residual_fn: ResidualFn, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        C = self._uniform(self.n_candidates, generator)  # (n_candidates, d)
        return C, check_residuals(residual_fn, C).abs()


def _draw(
    r: torch.Tensor, k: float, c: float, n: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` indices drawn without replacement with probability ``∝ |r|^k / mean(|r|^k) + c``
    (Wu et al.); uniform when that is zero everywhere."""
    w = r.abs() ** k
    mean = w.mean()
    p = (w / mean if bool(mean > 0) else torch.zeros_like(w)) + c
    if not bool(p.sum() > 0):
        p = torch.ones_like(p)
    positive = int((p > 0).sum())
    if positive < n:
        raise ValueError(
            f"only {positive} of {r.shape[0]} candidates have a nonzero probability (c=0 and "
            f"zero residuals elsewhere), fewer than the {n} to draw: pass c > 0 or more candidates"
        )
    idx = torch.multinomial(p.cpu(), n, replacement=False, generator=generator)
    return idx.to(r.device)


class RARGSampler(_ResidualSampler):
    """RAR-G (greedy residual-based adaptive refinement, Lu et al. 2021): each round adds the
    ``m`` candidates of largest ``|r|`` to the points (``m=10`` by default)."""

    name = "rar-g"

    def __init__(self, domain: Box, n_points: int, *, m: int = 10, **kw: Any) -> None:
        super().__init__(domain, n_points, **kw)
        self.m = check_positive_int("m", m)
        if self.m > self.n_candidates:
            raise ValueError(
                f"m={self.m} exceeds n_candidates={self.n_candidates}: raise n_candidates"
            )

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        C, r = self._candidates(residual_fn, generator)
        top = torch.topk(r, self.m).indices
        return torch.cat([points, C[top]])


class RARDSampler(_ResidualSampler):
    """RAR-D (Wu et al. 2023): each round adds ``m`` candidates drawn without replacement with
    probability ``∝ |r|^k / E[|r|^k] + c`` (defaults ``m=10, k=2, c=0``)."""

    name = "rar-d"

    def __init__(
        self, domain: Box, n_points: int, *, m: int = 10, k: float = 2.0, c: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(domain, n_points, **kw)
        self.m = check_positive_int("m", m)
        self.k = check_nonnegative_float("k", k)
        self.c = check_nonnegative_float("c", c)
        if self.m > self.n_candidates:
            raise ValueError(
                f"m={self.m} exceeds n_candidates={self.n_candidates}: raise n_candidates"
            )

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        C, r = self._candidates(residual_fn, generator)
        return torch.cat([points, C[_draw(r, self.k, self.c, self.m, generator)]])


class RADSampler(_ResidualSampler):
    """RAD (residual-based adaptive distribution, Wu et al. 2023): each round replaces all
    points by ``n_points`` candidates drawn without replacement with probability
    ``∝ |r|^k / E[|r|^k] + c`` (defaults ``k=1, c=1``, the paper's recommendation)."""

    name = "rad"

    def __init__(
        self, domain: Box, n_points: int, *, k: float = 1.0, c: float = 1.0, **kw: Any
    ) -> None:
        super().__init__(domain, n_points, **kw)
        self.k = check_nonnegative_float("k", k)
        self.c = check_nonnegative_float("c", c)
        if self.n_points > self.n_candidates:
            raise ValueError(
                f"RAD draws n_points={self.n_points} of n_candidates={self.n_candidates} "
                "candidates without replacement: raise n_candidates"
            )

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        C, r = self._candidates(residual_fn, generator)
        return C[_draw(r, self.k, self.c, self.n_points, generator)]


def aas_flow_loss(
    flow: BoundedFlow,
    U: torch.Tensor,
    residuals: torch.Tensor,
    weights: torch.Tensor,
    *,
    beta: float,
) -> torch.Tensor:
    """Minus AAS's flow objective, estimated on fixed points of the unit cube (differentiable
    in the flow's parameters).

    With ``q`` the flow's density on the unit cube ``[0, 1]^d`` (``q(u) = |Ω| p(x)`` at
    ``x = lower + u (upper - lower)``) and ``ρ = r² / E_U[r²]`` the squared residual normalised
    by its uniform mean, the flow maximises

    .. math::

        J(q) = \\int_{[0,1]^d} ρ(u)\\, q(u)\\, du
               - β \\int_{[0,1]^d} |\\nabla_u q(u)|^2\\, du
             = E_{u \\sim q}[ρ(u)] - β \\| \\nabla_u q \\|^2_{L^2}.

    Both integrals are estimated by importance sampling over points ``u_j`` drawn from a
    proposal ``m`` that does not depend on the parameters, ``w_j = 1 / (M m(u_j))``:

    .. math::

        \\hat J = \\sum_j w_j\\, q(u_j)\\, ρ_j - β \\sum_j w_j\\, |\\nabla_u q(u_j)|^2,
        \\qquad \\nabla_u q = q\\, \\nabla_u \\log q,

    with ``∇_u log q`` from autograd (``create_graph=True``, so the estimator is differentiable
    in the parameters). Returns ``-Ĵ`` (a scalar to minimise).

    Parameters
    ----------
    flow : BoundedFlow
    U : torch.Tensor
        ``(M, d)`` points of the unit cube, drawn from the proposal (no gradient).
    residuals : torch.Tensor
        ``(M,)`` normalised squared residuals ``ρ_j``.
    weights : torch.Tensor
        ``(M,)`` importance weights ``1 / (M m(u_j))``.
    beta : float
        ``β >= 0``, the weight of the H1 penalty.
    """
    beta = check_nonnegative_float("beta", beta)
    dtype = next(flow.parameters()).dtype
    U = U.detach().to(dtype).requires_grad_(True)
    log_q = flow.log_prob(flow.domain.from_unit(U)) + math.log(flow.domain.volume)  # (M,)
    q = torch.exp(log_q)
    gain = (weights * q * residuals).sum()
    if beta == 0.0:
        return -gain
    (grad_log_q,) = torch.autograd.grad(log_q.sum(), U, create_graph=True)  # (M, d)
    grad_q2 = q.square() * grad_log_q.square().sum(dim=1)  # |∇_u q|^2, (M,)
    return -(gain - beta * (weights * grad_q2).sum())


class AASSampler(Sampler):
    """AAS (adversarial adaptive sampling; Tang, Zhai, Wan, Yang, ICLR 2024): the round's
    points are drawn from a :class:`BoundedFlow` trained to maximise the expected squared
    residual under its density minus an H1 penalty on the density.

    The min-max of AAS, as we implement it: the PINN minimises its loss over θ on points drawn
    from the flow's density ``p_α``; the flow maximises over α (see :func:`aas_flow_loss`)

    .. math::

        J(α) = E_{u \\sim q_α}[ρ(u)] - β \\| \\nabla_u q_α \\|^2_{L^2([0,1]^d)},
        \\qquad ρ = r^2(\\cdot; θ) / E_U[r^2],

    the reconstruction ``∫_Ω r² p_α dx - β ||∇_x p_α||²`` (notes/pinn_gp.md §1, not verified
    against the paper) written on the unit cube and with ``r²`` normalised. The two alternate:
    the caller trains the PINN for a while, then :meth:`update` takes ``steps`` Adam steps on
    ``-Ĵ`` and draws the next ``n_points`` from the flow. Round 0 (:meth:`initial`) is a sample
    of the initial flow, which is uniform (identity couplings).

    Each :meth:`update`:

    1. draws ``n_candidates`` proposal points ``u_j`` in the unit cube: a fraction ``mix`` from
       the current flow (detached) and the rest uniform, so the proposal is the defensive
       mixture ``m = (1 - mix) + mix q_old`` and ``w_j = 1 / (M m(u_j))``;
    2. evaluates ``r_j = residual_fn(x_j)`` once (the residual does not depend on α), and
       ``ρ_j = r_j² / Σ_k w_k r_k²``;
    3. takes ``steps`` Adam steps (``lr``) on ``aas_flow_loss`` over these fixed points;
    4. returns the round's ``n_points``: a fraction ``uniform_share`` drawn uniformly on the box
       and the rest fresh samples of the flow.

    Choices that are ours (the paper's code is not public): the importance-sampled estimator
    over a fixed proposal (rather than REINFORCE: it needs the residual only once per round),
    the defensive mixture proposal, normalising ``r²`` by its mean (β is then scale-free; it is
    a rescaling of β), writing the penalty on the unit cube (for a non-cubic box this weighs
    the axes by their widths), the logistic base and sigmoid last map of the flow, the
    defaults ``steps=100, lr=1e-3, beta=1e-3, mix=0.5, n_candidates=10 * n_points``, and the
    flow's defaults (6 couplings of width 24 as in DAS's code). Replacing all points each
    round (rather than DAS's adding) follows the AAS abstract's "samples drawn from p_α".
    The uniform share of each round (default one half, the same floor as RAD's ``c = 1``)
    is ours too: with the flow's samples alone the points leave the regions of small
    residual, and on peak2d the error there then dominates (docs/benchmarks/pinn.md).

    Parameters
    ----------
    domain, n_points, dtype, device
        See :class:`Sampler`; the flow is held in ``dtype``.
    steps : int
        Adam steps on the flow per round.
    lr : float
        Adam's learning rate.
    beta : float
        The H1 penalty's weight ``β >= 0``.
    mix : float
        Fraction of the proposal drawn from the current flow, in ``[0, 1)``.
    uniform_share : float
        Fraction of each round's points drawn uniformly on the box rather than from the flow,
        in ``[0, 1]`` (0: flow samples only).
    n_candidates : int, optional
        Proposal points per round (default ``10 * n_points``, at least 1000).
    seed : int
        Seeds the flow's initial weights.
    flow_options
        Passed to :class:`BoundedFlow` (``n_layers``, ``width``, ``hidden_layers``,
        ``max_log_scale``).
    """

    name = "aas"

    def __init__(
        self,
        domain: Box,
        n_points: int,
        *,
        steps: int = 100,
        lr: float = 1e-3,
        beta: float = 1e-3,
        mix: float = 0.5,
        uniform_share: float = 0.5,
        n_candidates: int | None = None,
        seed: int = 0,
        flow_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(domain, n_points, **kw)
        self.steps = check_positive_int("steps", steps)
        self.lr = check_positive_float("lr", lr)
        self.beta = check_nonnegative_float("beta", beta)
        self.mix = check_real("mix", mix, low=0.0, high=1.0, high_open=True)
        self.uniform_share = check_real("uniform_share", uniform_share, low=0.0, high=1.0)
        if n_candidates is None:
            n_candidates = max(10 * self.n_points, 1000)
        self.n_candidates = check_positive_int("n_candidates", n_candidates)
        seed = check_int("seed", seed, minimum=0)
        options = dict(flow_options or {})
        if "identity_init" in options or "generator" in options:
            raise TypeError("flow_options may not set identity_init or generator (use seed)")
        self.flow = BoundedFlow(
            domain, generator=torch.Generator().manual_seed(int(seed)), **options
        ).to(dtype=self.dtype, device=self.device)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=self.lr)
        self.last_loss: float | None = None  # the flow loss after the last update's steps

    def _initial(self, generator):  # type: ignore[no-untyped-def]
        return self.flow.sample(self.n_points, generator=generator)

    def _update(self, points, residual_fn, generator):  # type: ignore[no-untyped-def]
        M = self.n_candidates
        n_flow = round(self.mix * M)
        parts = [torch.rand(M - n_flow, self.dim, generator=generator, dtype=self.dtype)]
        if n_flow:
            parts.append(self.domain.to_unit(self.flow.sample(n_flow, generator=generator)).cpu())
        U = torch.cat(parts).to(self.device).clamp(0.0, 1.0)  # (M, d)
        X = self._from_unit(U)
        r2 = check_residuals(residual_fn, X).square()
        with torch.no_grad():
            q_old = torch.exp(self.flow.log_prob(X)) * self.domain.volume
            weights = 1.0 / (M * ((1.0 - self.mix) + self.mix * q_old))  # (M,)
            mean_r2 = (weights * r2).sum()
            rho = r2 / mean_r2 if bool(mean_r2 > 0) else torch.zeros_like(r2)
        self.flow.train()
        for step in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = aas_flow_loss(self.flow, U, rho, weights, beta=self.beta)
            if not bool(torch.isfinite(loss)):
                raise NonFiniteError(
                    f"the AAS flow loss became non-finite at step {step} of round "
                    f"{self.rounds + 1}: lower lr or raise beta, and restore the last state_dict"
                )
            loss.backward()
            self.optimizer.step()
        self.last_loss = float(loss.detach())
        return self._draw_round(generator)

    def _draw_round(self, generator: torch.Generator | None) -> torch.Tensor:
        n_uniform = round(self.uniform_share * self.n_points)
        parts = [self.flow.sample(self.n_points - n_uniform, generator=generator)]
        if n_uniform:
            parts.append(self._uniform(n_uniform, generator).to(parts[0]))
        return torch.cat(parts)

    def log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """The current sampling density's ``log p(x)`` on the box, ``(n,)``."""
        with torch.no_grad():
            return self.flow.log_prob(X.to(dtype=self.dtype, device=self.device))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["flow"] = copy.deepcopy(self.flow.state_dict())
        state["optimizer"] = copy.deepcopy(self.optimizer.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for key in ("flow", "optimizer"):
            if key not in state:
                raise ValueError(
                    f"AAS sampler state lacks the key {key!r}: pass state_dict()'s output"
                )
        self.flow.load_state_dict(state["flow"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))


SAMPLERS: dict[str, tuple[type[Sampler], dict[str, Any]]] = {
    "uniform": (UniformSampler, {"resample": False}),
    "uniform-resample": (UniformSampler, {"resample": True}),
    "sobol": (SobolSampler, {}),
    "lhs": (LatinHypercubeSampler, {}),
    "rar-g": (RARGSampler, {}),
    "rar-d": (RARDSampler, {}),
    "rad": (RADSampler, {}),
    "aas": (AASSampler, {}),
}


def available_samplers() -> list[str]:
    """The registry's names."""
    return list(SAMPLERS)


def _options_of(cls: type[Sampler]) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return names


def make_sampler(name: str, domain: Box, n_points: int, **options: Any) -> Sampler:
    """Build the sampler called ``name`` (see :func:`available_samplers`).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), ``n_points < 1``, a bad option value.
    TypeError
        An option the sampler does not take (the message lists those it takes), a domain that
        is not a :class:`Box`.
    """
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")
    cls, fixed = SAMPLERS[name]
    valid = _options_of(cls) - set(fixed)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(
            f"sampler {name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(sorted(valid))}"
        )
    return cls(domain, n_points, **fixed, **options)
