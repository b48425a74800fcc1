"""The PINN solver: a smooth problem to 1e-3, hard boundary conditions, adaptive rounds through the
Trainer with an exact resume (the AAS flow included), and clear errors before any training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import neuralsolve as ns
from neuralsolve.datasets.pde import PDEProblem
from neuralsolve.domain import Box
from neuralsolve.solvers import MLP, PINN


def smooth1d() -> PDEProblem:
    """u'' = -pi^2 sin(pi x) on [-1, 1], u = sin(pi x)."""
    return PDEProblem(
        name="smooth1d",
        domain=Box((-1.0,), (1.0,)),
        equation=lambda x, D: D.laplacian + math.pi**2 * torch.sin(math.pi * x[:, 0]),
        exact=lambda x: torch.sin(math.pi * x[:, 0]),
    )


def test_a_pinn_fits_a_smooth_1d_poisson_problem_to_1e_3() -> None:
    pinn = PINN(smooth1d(), net=MLP(width=20, depth=2), n_points=64, dtype="float64")
    result = pinn.fit(200, optimizer="lbfgs", lr=1.0, progress=False)
    assert result.steps >= 1
    assert pinn.error(grid=401) < 1e-3


def test_hard_dirichlet_meets_the_boundary_data_exactly() -> None:
    prob = ns.datasets.pde.make("peak2d")
    pinn = PINN(prob, net=MLP(width=8, depth=2), n_points=50, hard_dirichlet=True, dtype="float64")
    xb, g = prob.boundary_data(200, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(pinn.predict(xb), g, rtol=0, atol=1e-14)
    assert float(pinn.loss(pinn.model).detach()) == pytest.approx(
        float((prob.residual(pinn.rounds.points, pinn.model) ** 2).mean().detach())
    )


def test_rounds_draw_new_points_from_the_sampler_every_resample_every_steps() -> None:
    prob = ns.datasets.pde.make("peak2d")
    pinn = PINN(prob, net=MLP(width=8, depth=2), sampler="rad", n_points=64, resample_every=2)
    first = pinn.rounds.points.clone()
    pinn.fit(5, progress=False)  # rounds after steps 2 and 4
    assert pinn.sampler.rounds == 2
    assert pinn.rounds.points.shape == (64, 2) and not torch.equal(pinn.rounds.points, first)
    assert bool(prob.domain.contains(pinn.rounds.points).all())


class CrashingProblem:
    """A problem whose residual raises at its ``crash_at``-th call (a run killed mid-way)."""

    def __init__(self, problem: PDEProblem, crash_at: int | None) -> None:
        self._problem, self._calls, self._crash_at = problem, 0, crash_at

    def __getattr__(self, name: str):
        return getattr(self._problem, name)

    def residual(self, x: torch.Tensor, u_fn):
        self._calls += 1
        if self._calls == self._crash_at:
            raise RuntimeError("simulated crash")
        return self._problem.residual(x, u_fn)


@pytest.mark.parametrize(
    ("sampler", "balance"), [("aas", "fixed"), ("rad", "fixed"), ("rad", "grad-norm")]
)
def test_a_crashed_run_resumes_to_the_same_losses_sampler_included(
    tmp_path: Path, sampler: str, balance: str
) -> None:
    options = {"steps": 5, "n_candidates": 256} if sampler == "aas" else {"n_candidates": 256}

    def make(out: Path, crash_at: int | None = None) -> PINN:
        prob = CrashingProblem(ns.datasets.pde.make("peak2d"), crash_at)
        return PINN(
            prob,
            net=MLP(width=8, depth=2),
            sampler=sampler,
            sampler_options=options,
            n_points=32,
            resample_every=3,
            loss_balance=balance,
            balance_every=2,
            seed=1,
        )

    def fit(pinn: PINN, out: Path, resume: bool = False):
        return pinn.fit(12, lr=1e-2, out_dir=out, checkpoint_every=2, progress=False, resume=resume)

    full = make(tmp_path / "a")
    losses = fit(full, tmp_path / "a").losses
    crashed = make(tmp_path / "b", crash_at=11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(crashed, tmp_path / "b")
    resumed = make(tmp_path / "b")
    assert fit(resumed, tmp_path / "b", resume=True).losses == losses
    torch.testing.assert_close(resumed.rounds.points, full.rounds.points, rtol=0, atol=0)
    assert resumed.boundary_weight == full.boundary_weight
    if balance == "grad-norm":
        history = repr(full.balance.history)  # repr: its nan targets compare equal
        assert repr(resumed.balance.history) == history and len(full.balance.history) == 6


def _gradient_norm(value: torch.Tensor, model: torch.nn.Module) -> float:
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.cat([g.reshape(-1) for g in grads if g is not None]).norm())


@pytest.mark.parametrize("problem", ["peak2d", "burgers"])
def test_grad_norm_balance_sets_the_weights_to_the_gradient_norm_ratios(problem: str) -> None:
    pinn = PINN(
        ns.datasets.pde.make(problem),
        net=MLP(width=8, depth=2),
        n_points=64,
        loss_balance="grad-norm",
        balance_every=3,
        dtype="float64",
    )
    assert pinn.boundary_weight == 1.0 and pinn.initial_weight == 1.0
    r = (pinn.problem.residual(pinn.rounds.points, pinn.model) ** 2).mean()
    gr = _gradient_norm(r, pinn.model)
    gap = pinn.model(pinn.boundary_points) - pinn.boundary_values
    want_b = gr / _gradient_norm((gap**2).mean(), pinn.model)
    if problem == "burgers":
        gap0 = pinn.model(pinn.initial_points) - pinn.initial_values
        want_0 = gr / _gradient_norm((gap0**2).mean(), pinn.model)
    pinn.fit(1, lr=1e-3, progress=False)  # the first update sets the weights outright
    assert pinn.boundary_weight == pytest.approx(want_b, rel=1e-10)
    assert pinn.boundary_weight != pytest.approx(1.0, rel=1e-3)
    if problem == "burgers":
        assert pinn.initial_weight == pytest.approx(want_0, rel=1e-10)
    else:
        assert pinn.initial_weight == 1.0
    assert [h[0] for h in pinn.balance.history] == [0]


def test_grad_norm_updates_are_a_moving_average_of_the_ratio() -> None:
    pinn = PINN(
        ns.datasets.pde.make("peak2d"),
        net=MLP(width=8, depth=2),
        n_points=64,
        loss_balance="grad-norm",
        balance_every=2,
        dtype="float64",
    )
    pinn.fit(5, lr=1e-2, progress=False)  # updates before steps 0, 2 and 4
    steps, w_b, w_0, target_b, target_0 = zip(*pinn.balance.history, strict=True)
    assert steps == (0, 2, 4) and w_0 == (1.0, 1.0, 1.0)
    assert all(math.isnan(t) for t in target_0)  # a steady problem has no initial term
    assert w_b[0] == target_b[0]
    for k in (1, 2):
        assert w_b[k] == pytest.approx(0.9 * w_b[k - 1] + 0.1 * target_b[k], rel=1e-12)
    assert len(set(target_b)) == 3  # the parameters moved: each update saw a new ratio
    assert pinn.boundary_weight == w_b[-1]


def test_bad_input_is_refused_before_any_training() -> None:
    prob = ns.datasets.pde.make("peak2d")
    with pytest.raises(ValueError, match="unknown sampler|sampler must be"):
        PINN(prob, sampler="halton")
    with pytest.raises(ValueError, match="n_points"):
        PINN(prob, n_points=0)
    with pytest.raises(TypeError, match="PDEProblem"):
        PINN("peak2d")
    with pytest.raises(ValueError, match="'peak2d'.*loss_balance 'auto'.*grad-norm"):
        PINN(prob, loss_balance="auto")
    with pytest.raises(ValueError, match="balance_every"):
        PINN(prob, loss_balance="grad-norm", balance_every=0)

    class TwoOutputs(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 2, dtype=x.dtype)

    with pytest.raises(ValueError, match="'peak2d'.*shape"):
        PINN(prob, net=TwoOutputs(), n_points=16)

    class NotFinite(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1) * float("nan")

    with pytest.raises(ns.NonFiniteError, match="'peak2d'"):
        PINN(prob, net=NotFinite(), n_points=16)
    with pytest.raises(ValueError, match="time-dependent"):
        PINN(ns.datasets.pde.make("burgers"), hard_dirichlet=True, n_points=16)
    with pytest.raises(ValueError, match="no exact solution"):
        PINN(ns.datasets.pde.make("burgers"), n_points=16).error(grid=5)


@pytest.mark.parametrize("d", [5, 10])
def test_high_dimensional_test_points_estimate_the_norm_of_a_concentrated_solution(d: int) -> None:
    # exp-nd's u = exp(-10|x|^2): ||u||^2 / |Ω| = (sqrt(pi / 20) erf(sqrt(20)) / 2)^d exactly.
    # Uniform points alone miss it at d = 10 (2 of 1e5 points hold half of it).
    prob = ns.datasets.pde.make("exp-nd", d=d)
    pinn = PINN(prob, net=MLP(width=4, depth=1), n_points=10)
    X, w = pinn.test_set()
    assert X.shape == (100_000, d) and w is not None and bool(prob.domain.contains(X).all())
    exact = (math.sqrt(math.pi / 20) * math.erf(math.sqrt(20)) / 2) ** d
    estimate = float((w * prob.solution(X).square()).mean())
    assert estimate == pytest.approx(exact, rel=0.02)
    assert float(w.mean()) == pytest.approx(1.0, rel=0.02)  # the weights average the box


def test_a_bad_focus_is_refused_naming_the_problem() -> None:
    def make(focus: object) -> PDEProblem:
        return PDEProblem(
            name="focused", domain=Box.cube(4), equation=lambda x, D: D.laplacian,
            exact=lambda x: x[:, 0], focus=focus,  # type: ignore[arg-type]
        )  # fmt: skip

    with pytest.raises(ValueError, match="'focused'.*centre must be a point of the 4-D box"):
        make(((2.0, 0.0, 0.0, 0.0), 0.1))
    with pytest.raises(ValueError, match="'focused'.*scale must be a positive length"):
        make(((0.5,) * 4, 0.0))
    with pytest.raises(TypeError, match="'focused'.*focus must be \\(centre, scale\\)"):
        make(0.3)
