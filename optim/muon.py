"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for matrix-shaped weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from neuralsolve.params import MATRIX_DIMS

from ._common import (
    Check,
    OptimizerContract,
    beta_pair,
    choice,
    count,
    fraction,
    nonnegative,
    positive,
    run_closure,
)

__all__ = ["Muon", "newton_schulz"]

# Quintic Newton-Schulz coefficients of Jordan et al. (2024), chosen to push the singular values of
# a normalised matrix towards 1 quickly rather than exactly.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(
    G: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """An approximate orthogonal polar factor ``U V^T`` of a matrix ``G = U S V^T``, or of each
    matrix in a stack ``G[..., :, :]``.

    ``X_0 = G / ||G||_F``, then ``X <- a X + (b A + c A^2) X`` with ``A = X X^H``, ``steps``
    times (on the short side). With the default 5 steps, the singular values of the result lie
    in about [0.6, 1.2] whenever ``sigma / ||G||_F >= 2e-3`` (checked in the tests): Muon needs
    a direction, not an exact polar factor. Real and complex matrices; a stack is normalised and
    iterated matrix by matrix, in one batched computation. ``dtype`` runs the iteration in
    another precision (the reference and ``torch.optim.Muon`` use bfloat16, fast on GPUs); the
    result comes back in ``G``'s dtype.
    """
    if G.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a matrix or a stack of matrices, got shape {tuple(G.shape)}"
        )
    a, b, c = NS_COEFFICIENTS
    out_dtype = G.dtype
    if dtype is not None:
        G = G.to(dtype)
    X = G / (torch.linalg.matrix_norm(G, keepdim=True) + eps)
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mH
    for _ in range(steps):
        A = X @ X.mH
        X = a * X + (b * A + c * (A @ A)) @ X
    return (X.mH if tall else X).to(out_dtype)


class Muon(OptimizerContract, torch.optim.Optimizer):
    """Muon for matrix-shaped parameters, AdamW for the others, in one optimizer.

    For a parameter ``W`` of 2 or more dimensions (a convolution kernel is viewed as the matrix
    ``(out, in * kh * kw)``; a parameter marked by :func:`matrix_dims` as a stack of matrices
    is orthogonalised matrix by matrix) with gradient ``g``::

        m <- beta m + (1 - beta) g                 # momentum (EMA form)
        u <- (1 - beta) g + beta m                 # Nesterov look-ahead (if nesterov)
        O <- newton_schulz(u) * sqrt(max(1, rows / cols))        # variant "muon"
          or (u / ||u||_F) / rms(cosh(u / ||u||_F))              # variant "auon"
        W <- W (1 - lr wd) - lr O

    Parameters of fewer than 2 dimensions (biases, gains), marked ``matrix_dims(p, None)``, or
    in a group with ``use_muon=False`` (embeddings, heads), get AdamW with ``adamw_lr``,
    ``adamw_betas``, ``adamw_eps`` and the group's weight decay.

    References: K. Jordan et al., "Muon: an optimizer for hidden layers" (2024); the AuON
    variant (arXiv 2509.24320) normalises the momentum instead of orthogonalising it, so its
    update has Frobenius norm about 1 and needs a larger lr (the paper used 0.24); it does not
    suppress off-diagonal structure and is offered for comparison only.

    Parameters
    ----------
    lr : float
        Learning rate of the matrix parameters (0.02 in the reference).
    momentum : float
        ``beta``.
    nesterov : bool
    ns_steps : int
        Newton-Schulz iterations.
    ns_dtype : torch.dtype, optional
        Precision of the iteration (default: the parameter's; ``torch.bfloat16`` is the
        reference recipe for GPUs).
    weight_decay : float
        Decoupled weight decay (both parts).
    variant : {"muon", "auon"}
    adamw_lr, adamw_betas, adamw_eps
        The AdamW part.
    """

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "momentum": fraction,
        "weight_decay": nonnegative,
        "ns_steps": count,
        "variant": choice("muon", "auon"),
        "adamw_lr": nonnegative,
        "adamw_betas": beta_pair,
        "adamw_eps": positive,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
        weight_decay: float = 0.0,
        variant: str = "muon",
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
            weight_decay=weight_decay,
            variant=variant,
            adamw_lr=adamw_lr,
            adamw_betas=adamw_betas,
            adamw_eps=adamw_eps,
            use_muon=None,
        )
        super().__init__(params, defaults)

    @staticmethod
    def _is_matrix(p: torch.Tensor, group: dict[str, Any]) -> bool:
        if group["use_muon"] is not None and not group["use_muon"]:
            return False
        if hasattr(p, MATRIX_DIMS):
            return getattr(p, MATRIX_DIMS) is not None
        return p.ndim >= 2

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        for group in self.param_groups:
            for p in self._with_gradients(group):
                if self._is_matrix(p, group):
                    self._muon_update(p, group)
                else:
                    self._adamw_update(p, group)
        return loss

    def _muon_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        g = p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        m = state["momentum_buffer"]
        beta = group["momentum"]
        m.lerp_(g, 1 - beta)
        u = torch.lerp(g, m, beta) if group["nesterov"] else m
        dims = getattr(p, MATRIX_DIMS, None)
        if dims is None:
            mat = u.reshape(u.shape[0], -1)
        else:  # contiguous: batched matmuls on a strided stack copy it at every product
            mat = torch.movedim(u, dims, (-2, -1)).contiguous()
        rows, cols = mat.shape[-2:]
        if group["variant"] == "muon":
            ortho = newton_schulz(mat, group["ns_steps"], dtype=group["ns_dtype"])
            update = ortho * math.sqrt(max(1.0, rows / cols))
        else:
            norm = torch.linalg.matrix_norm(mat, keepdim=True)
            normed = mat / (norm + 1e-12)
            update = normed / torch.sqrt(torch.mean(torch.cosh(normed.abs()) ** 2, (-2, -1), True))
        update = update.reshape(p.shape) if dims is None else torch.movedim(update, (-2, -1), dims)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"])

    def _adamw_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        g = p.grad
        state = self.state[p]
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(
                p, dtype=p.real.dtype if p.is_complex() else p.dtype
            )
        state["step"] += 1
        b1, b2 = group["adamw_betas"]
        state["exp_avg"].lerp_(g, 1 - b1)
        state["exp_avg_sq"].mul_(b2).add_(
            (g * g.conj()).real if p.is_complex() else g * g, alpha=1 - b2
        )
        bc1 = 1 - b1 ** state["step"]
        bc2 = 1 - b2 ** state["step"]
        denom = (state["exp_avg_sq"] / bc2).sqrt_().add_(group["adamw_eps"])
        if group["weight_decay"]:
            p.mul_(1 - group["adamw_lr"] * group["weight_decay"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["adamw_lr"] / bc1)
