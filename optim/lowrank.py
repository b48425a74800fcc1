"""SVD-free low-rank gradient projection onto DCT basis vectors, with Adam in the low-rank space."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from neuralsolve.spectral import dct_matrix

from ._common import Check, OptimizerContract, beta_pair, count, nonnegative, positive, run_closure

__all__ = ["DCTLowRank", "dct_matrix"]


class DCTLowRank(OptimizerContract, torch.optim.Optimizer):
    """Adam on a low-rank projection of each matrix gradient, the projection chosen among the
    DCT basis vectors that carry the most gradient energy (Modoranu et al., arXiv 2505.17967);
    no SVD, and only ``rank`` integer indices stored per matrix.

    For a weight ``W`` of shape ``(p, q)`` (conv kernels viewed as ``(out, rest)``), projected on
    its longer side ``n = max(p, q)`` (transposed so that it is the second)::

        every update_gap steps:  S = G Q,  keep the `rank` columns of S with the largest l1 norm
                                 (their indices idx; P = Q[:, idx], n x rank)
        R = G P                              # (short side, rank) low-rank gradient
        Adam moments of R (bias-corrected)   # 2 * short * rank numbers instead of 2 p q
        W <- W (1 - lr wd) - lr * scale * (m_hat / (sqrt(v_hat) + eps)) P^T

    Parameters with fewer than 2 dimensions, or whose longer side is at most ``rank``, get
    plain AdamW. With ``rank >= n`` the projection is the identity and the update is AdamW's.
    :meth:`memory_report` compares the optimizer state with full Adam's. The column indices
    stay ``int64`` through ``state_dict`` / ``load_state_dict`` in every parameter dtype.
    """

    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "rank": count,
        "update_gap": count,
        "scale": positive,
        "betas": beta_pair,
        "eps": positive,
        "weight_decay": nonnegative,
    }
    supports_complex: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        rank: int = 32,
        update_gap: int = 50,
        scale: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                rank=rank,
                update_gap=update_gap,
                scale=scale,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
            ),
        )
        self._bases: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def _basis(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.dtype, like.device)
        if key not in self._bases:
            self._bases[key] = dct_matrix(n, dtype=like.dtype, device=like.device)
        return self._bases[key]

    @staticmethod
    def _as_matrix(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(short, long) view of a 2+-D tensor and whether it was transposed."""
        M = t.reshape(t.shape[0], -1)
        return (M.T, True) if M.shape[0] > M.shape[1] else (M, False)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = run_closure(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in self._with_gradients(group):
                state = self.state[p]
                G, transposed = (p.grad, False) if p.ndim < 2 else self._as_matrix(p.grad)
                lowrank = p.ndim >= 2 and G.shape[1] > group["rank"]
                if "step" not in state:
                    state["step"] = 0
                    shape = (G.shape[0], group["rank"]) if lowrank else p.shape
                    state["exp_avg"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
                    state["exp_avg_sq"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
                if lowrank:
                    Q = self._basis(G.shape[1], G)
                    if state["step"] % group["update_gap"] == 0:
                        energy = (G @ Q).abs().sum(dim=0)
                        state["indices"] = torch.topk(energy, group["rank"]).indices.sort().values
                    P = Q[:, state["indices"]]  # (long, rank)
                    R = G @ P
                else:
                    R = p.grad
                state["step"] += 1
                state["exp_avg"].mul_(b1).add_(R, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(R, R, value=1 - b2)
                bc1 = 1 - b1 ** state["step"]
                bc2 = 1 - b2 ** state["step"]
                low = (state["exp_avg"] / bc1) / ((state["exp_avg_sq"] / bc2).sqrt() + group["eps"])
                if lowrank:
                    full = low @ P.T
                    update = (full.T if transposed else full).reshape(p.shape) * group["scale"]
                else:
                    update = low
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss

    def memory_report(self) -> dict[str, int]:
        """Bytes of optimizer state, and what full Adam would hold for the same parameters."""
        ours = full = 0
        for group in self.param_groups:
            for p in group["params"]:
                full += 2 * p.numel() * p.element_size()
                for key in ("exp_avg", "exp_avg_sq", "indices"):
                    t = self.state.get(p, {}).get(key)
                    if t is not None:
                        ours += t.numel() * t.element_size()
        return {"state_bytes": ours, "adam_state_bytes": full}
