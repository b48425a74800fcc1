"""Adam variants: AdamP (projection of the radial component) and diffGrad (friction from the
change of the gradient). Both handle complex parameters (second moments use |g|^2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from ._common import Check, OptimizerContract, beta_pair, nonnegative, positive, run_closure

__all__ = ["AdamP", "DiffGrad"]


def _sq(g: torch.Tensor) -> torch.Tensor:
    return (g * g.conj()).real if g.is_complex() else g * g


def _adam_state(state: dict[str, Any], p: torch.Tensor) -> None:
    if "step" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p, dtype=p.real.dtype if p.is_complex() else p.dtype)


class AdamP(OptimizerContract, torch.optim.Optimizer):
    """AdamP (Heo et al., ICLR 2021): Adam that removes the radial part of the update of
    scale-invariant weights, so that their norm does not grow and slow their effective learning.

    For each parameter with more than one dimension::

        p = m_hat / (sqrt(v_hat) + eps)              (Nesterov: beta1 m + (1 - beta1) g instead of m)
        for the views (rows of W), then (all of W):
            if max |cos(g_view, w_view)| < delta / sqrt(view size):
                p <- p - w_hat (w_hat . p)  per view   # w_hat = w / ||w|| per view
                wd <- wd * wd_ratio; stop
        theta <- theta (1 - lr wd) - lr p

    Parameters
    ----------
    lr, betas, eps, weight_decay
    delta : float
        Threshold of the cosine test (0.1).
    wd_ratio : float
        Weight-decay factor for projected parameters (0.1).
    nesterov : bool
    """

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "betas": beta_pair,
        "eps": positive,
        "weight_decay": nonnegative,
        "delta": nonnegative,
        "wd_ratio": nonnegative,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                delta=delta,
                wd_ratio=wd_ratio,
                nesterov=nesterov,
            ),
        )

    @staticmethod
    def _project(
        w: torch.Tensor, g: torch.Tensor, update: torch.Tensor, delta: float, eps: float
    ) -> tuple[torch.Tensor, bool]:
        for rows in (w.shape[0], 1):  # per output channel, then the whole layer
            W = w.reshape(rows, -1)
            G = g.reshape(rows, -1)
            cos = (W.conj() * G).sum(dim=1).abs() / (
                torch.linalg.vector_norm(W, dim=1) * torch.linalg.vector_norm(G, dim=1) + eps
            )
            if float(cos.max()) < delta / math.sqrt(W.shape[1]):
                w_hat = W / torch.linalg.vector_norm(W, dim=1, keepdim=True).clamp_min(
                    torch.finfo(W.real.dtype).tiny
                )
                U = update.reshape(rows, -1)
                U = U - w_hat * (w_hat.conj() * U).sum(dim=1, keepdim=True)
                return U.reshape(update.shape), True
        return update, False

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in self._with_gradients(group):
                g = p.grad
                state = self.state[p]
                _adam_state(state, p)
                state["step"] += 1
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).add_(_sq(g), alpha=1 - b2)
                bc1 = 1 - b1 ** state["step"]
                bc2 = 1 - b2 ** state["step"]
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bc2)).add_(group["eps"])
                numer = (
                    b1 * state["exp_avg"] + (1 - b1) * g if group["nesterov"] else state["exp_avg"]
                )
                update = numer / denom / bc1
                wd = group["weight_decay"]
                if p.ndim > 1:
                    update, projected = self._project(p, g, update, group["delta"], group["eps"])
                    if projected:
                        wd *= group["wd_ratio"]
                if wd:
                    p.mul_(1 - group["lr"] * wd)
                p.add_(update, alpha=-group["lr"])
        return loss


class DiffGrad(OptimizerContract, torch.optim.Optimizer):
    """diffGrad (Dubey et al., IEEE TNNLS 2020): Adam whose step is damped where the gradient
    changes little::

        xi = sigmoid(|g_{t-1} - g_t|)          in [0.5, 1)   (the first step: g_{t-1} = 0)
        theta <- theta - lr sqrt(1 - beta2^t) / (1 - beta1^t) * xi m / (sqrt(v) + eps)

    with weight decay added to the gradient (L2, as in the reference).
    """

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "betas": beta_pair,
        "eps": positive,
        "weight_decay": nonnegative,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in self._with_gradients(group):
                g = p.grad
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                state = self.state[p]
                _adam_state(state, p)
                if "previous_grad" not in state:
                    state["previous_grad"] = torch.zeros_like(p)
                state["step"] += 1
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).add_(_sq(g), alpha=1 - b2)
                xi = torch.sigmoid((state["previous_grad"] - g).abs())
                state["previous_grad"].copy_(g)
                step_size = (
                    group["lr"] * math.sqrt(1 - b2 ** state["step"]) / (1 - b1 ** state["step"])
                )
                p.addcdiv_(
                    xi * state["exp_avg"],
                    state["exp_avg_sq"].sqrt().add_(group["eps"]),
                    value=-step_size,
                )
        return loss
