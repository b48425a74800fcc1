"""Optimizers preconditioned by a Hutchinson estimate of the Hessian diagonal: AdaHessian and
Sophia. Both need the gradient's graph: call ``loss.backward(create_graph=True)`` before
``step()`` (the Trainer does it for optimizers with ``requires_create_graph``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from ._common import (
    Check,
    OptimizerContract,
    ProbeGeneratorMixin,
    beta_pair,
    check_count,
    check_number,
    nonnegative,
    positive,
    run_closure,
)

__all__ = ["AdaHessian", "Sophia"]


def _hessian_power(name: str, value: Any) -> None:
    """``k`` in (0, 1]."""
    check_number(name, value, low=0.0, high=1.0, low_open=True)


def hessian_diagonal_sample(
    opt: ProbeGeneratorMixin, params: list[torch.Tensor]
) -> list[torch.Tensor]:
    """One Hutchinson sample ``z * (H z)`` per parameter, ``z`` Rademacher, from the gradients'
    graph (one extra backward pass).

    A gradient without a graph while others have one belongs to a parameter in which the loss
    is linear (its gradient depends on no parameter): its row of ``H`` is zero, and so is its
    sample. When no gradient has a graph, either ``backward`` was called without
    ``create_graph=True`` or the loss is linear in every parameter; the error says both.
    """
    grads = [p.grad for p in params]
    with_graph = [g is not None and g.grad_fn is not None for g in grads]
    if not any(with_graph):
        raise RuntimeError(
            f"{type(opt).__name__} needs the gradient's graph for its Hessian-vector product, and "
            "no gradient has one: call loss.backward(create_graph=True) before step() "
            "(neuralsolve.optim.Trainer does this). If you did, the loss is linear in every "
            "parameter, its Hessian is zero and there is no curvature to precondition with: use "
            "a first-order optimizer (adamw, sgd)"
        )
    zs = [opt.rademacher_like(p) for p in params]
    linked = [(g, p, z) for g, p, z, ok in zip(grads, params, zs, with_graph, strict=True) if ok]
    found = torch.autograd.grad(
        [g for g, _, _ in linked],
        [p for _, p, _ in linked],
        grad_outputs=[z for _, _, z in linked],
        retain_graph=False,
        allow_unused=True,
    )
    by_param = {id(p): hz for (_, p, _), hz in zip(linked, found, strict=True)}
    hzs = [by_param.get(id(p)) for p in params]
    for p in params:  # the graph is spent: drop it (it also held a reference cycle through p)
        p.grad = p.grad.detach()  # type: ignore[union-attr]
    return [z * (torch.zeros_like(z) if hz is None else hz) for z, hz in zip(zs, hzs, strict=True)]


class AdaHessian(ProbeGeneratorMixin, OptimizerContract, torch.optim.Optimizer):
    """AdaHessian (Yao et al., AAAI 2021): Adam with the Hessian diagonal in place of the
    squared gradient.

    ::

        D  = |z * (H z)|,  z Rademacher (+-1)       # for 4-D conv kernels: averaged over the
                                                    # spatial dims (2, 3) and broadcast back
        m  <- beta1 m + (1 - beta1) g
        v  <- beta2 v + (1 - beta2) D^2
        theta <- theta - lr [ m_hat / (sqrt(v_hat)^k + eps) + wd theta ]

    with bias-corrected ``m_hat``, ``v_hat`` and ``k`` = ``hessian_power``. The probes are true
    Rademacher signs (a popular implementation draws ``randint(0, 1) * 2 - 1``, always -1, and so
    estimates row sums of H instead of its diagonal; the tests check both signs occur).

    Parameters
    ----------
    lr : float
        0.15 in the paper.
    betas : (float, float)
    eps : float
    weight_decay : float
        Decoupled.
    hessian_power : float
        ``k`` in (0, 1].
    seed : int
        Seed of the probes (their generator state is in ``state_dict``).
    """

    requires_create_graph = True
    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "betas": beta_pair,
        "eps": positive,
        "weight_decay": nonnegative,
        "hessian_power": _hessian_power,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        seed: int = 0,
    ) -> None:
        self._init_generator(seed)
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                hessian_power=hessian_power,
            ),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        params = [p for g in self.param_groups for p in self._with_gradients(g)]
        if not params:
            return loss
        with torch.enable_grad():
            samples = hessian_diagonal_sample(self, params)
        D = dict(zip(params, samples, strict=True))
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in self._with_gradients(group):
                d = D[p].abs()
                if p.ndim == 4:  # spatial averaging over the kernel of a convolution
                    d = d.mean(dim=(2, 3), keepdim=True).expand_as(p)
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_hessian_diag_sq"] = torch.zeros_like(p)
                state["step"] += 1
                g = p.grad.detach()
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_hessian_diag_sq"].mul_(b2).addcmul_(d, d, value=1 - b2)
                bc1 = 1 - b1 ** state["step"]
                bc2 = 1 - b2 ** state["step"]
                denom = (
                    (state["exp_hessian_diag_sq"] / bc2)
                    .sqrt()
                    .pow_(group["hessian_power"])
                    .add_(group["eps"])
                )
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bc1)
        return loss


class Sophia(ProbeGeneratorMixin, OptimizerContract, torch.optim.Optimizer):
    """Sophia (Liu et al., ICLR 2024): clipped, diagonally Hessian-preconditioned momentum.

    ::

        m <- beta1 m + (1 - beta1) g
        every k steps:  h <- beta2 h + (1 - beta2) h_hat
        theta <- theta (1 - lr wd) - lr clip(m / max(rho h, eps), -1, 1)

    ``h_hat`` comes from one of two estimators:

    * ``"hutchinson"`` (Sophia-H): ``z * (H z)`` with Rademacher ``z``, computed inside
      ``step()`` from the gradient's graph (``backward(create_graph=True)``);
    * ``"gnb"`` (Sophia-G, Gauss-Newton-Bartlett): call :meth:`update_hessian` after a backward
      pass of the loss on labels *sampled from the model* (see :func:`gnb_loss`); it takes
      ``batch_size * g^2`` of that gradient.

    The fraction of coordinates not clipped is ``stats["win_rate"]`` after each step (the
    paper suggests keeping it in 0.1-0.5 by tuning ``rho``).

    Parameters
    ----------
    lr, betas, rho, weight_decay, eps
        Defaults of the reference code: 1e-4, (0.965, 0.99), 0.04, 0.1, 1e-15.
    estimator : {"hutchinson", "gnb"}
    update_every : int
        ``k``.
    seed : int
        Seed of the Hutchinson probes.
    """

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "betas": beta_pair,
        "rho": positive,
        "weight_decay": nonnegative,
        "eps": positive,
    }
    supports_complex: ClassVar[bool] = False  # clip(m / max(rho h, eps)) compares numbers

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        eps: float = 1e-15,
        estimator: str = "hutchinson",
        update_every: int = 10,
        seed: int = 0,
    ) -> None:
        if estimator not in ("hutchinson", "gnb"):
            raise ValueError(f"invalid estimator: {estimator!r} (expected 'hutchinson' or 'gnb')")
        check_count("update_every", update_every)
        self._init_generator(seed)
        super().__init__(
            params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps)
        )
        self.estimator = estimator
        self.update_every = update_every
        self.steps_taken = 0
        self.stats: dict[str, float] = {}

    @property
    def requires_create_graph(self) -> bool:  # type: ignore[override]
        """Sophia-H needs the graph on the steps that refresh ``h``."""
        return self.estimator == "hutchinson" and self.steps_taken % self.update_every == 0

    def _hessian_state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self, batch_size: int = 1) -> None:
        """Sophia-G: ``h <- beta2 h + (1 - beta2) batch_size g^2`` from the current gradients
        (those of a loss on model-sampled labels)."""
        for group in self.param_groups:
            b2 = group["betas"][1]
            for p in self._with_gradients(group):
                h = self._hessian_state(p)["hessian"]
                h.mul_(b2).addcmul_(p.grad, p.grad, value=(1 - b2) * batch_size)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        refresh = self.estimator == "hutchinson" and self.steps_taken % self.update_every == 0
        params = [p for g in self.param_groups for p in self._with_gradients(g)]
        if refresh and params:
            with torch.enable_grad():
                samples = dict(zip(params, hessian_diagonal_sample(self, params), strict=True))
        unclipped = total = 0
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in self._with_gradients(group):
                state = self._hessian_state(p)
                if refresh:
                    state["hessian"].mul_(b2).add_(samples[p], alpha=1 - b2)
                g = p.grad.detach()
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                ratio = state["exp_avg"] / torch.clamp(
                    group["rho"] * state["hessian"], min=group["eps"]
                )
                unclipped += int((ratio.abs() < 1).sum())
                total += ratio.numel()
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(ratio.clamp_(-1.0, 1.0), alpha=-group["lr"])
        self.steps_taken += 1
        self.stats = {"win_rate": unclipped / max(1, total)}
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["steps_taken"] = self.steps_taken
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.steps_taken = int(state_dict.pop("steps_taken", 0))
        super().load_state_dict(state_dict)


def gnb_loss(
    outputs: torch.Tensor, kind: str = "ce", generator: torch.Generator | None = None
) -> torch.Tensor:
    """The loss on labels sampled from the model, for Sophia-G's Gauss-Newton-Bartlett estimate.

    ``"ce"``: ``outputs`` are logits ``(batch, classes)``; labels are drawn from their softmax and
    the loss is the mean cross-entropy. ``"mse"``: outputs are predictions; targets are
    ``outputs + N(0, 1)`` noise (a unit-variance Gaussian likelihood) and the loss is
    ``0.5 * mean squared error``. In both, ``E[batch * g g^T]`` is the Gauss-Newton matrix.
    """
    if kind == "ce":
        with torch.no_grad():
            probs = torch.softmax(outputs.float(), dim=-1)
            labels = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return torch.nn.functional.cross_entropy(outputs, labels)
    if kind == "mse":
        with torch.no_grad():
            noise = torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype).to(
                outputs.device
            )
            target = outputs + noise
        return 0.5 * ((outputs - target) ** 2).sum() / outputs.shape[0]
    raise ValueError(f"unknown kind {kind!r}: use 'ce' or 'mse'")
