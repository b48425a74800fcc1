"""L-BFGS with the reason it stopped recorded after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["LBFGS"]


class LBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS`` (strong-Wolfe line search by default here) that records why each
    ``step`` ended, in :attr:`stop_reason`:

    * ``"gradient below tolerance_grad"`` and ``"step below tolerance_change"`` /
      ``"loss change below tolerance_change"``: converged (:attr:`converged` is ``True``);
    * ``"max_iter reached"`` / ``"max_eval reached"``: the step's budget ran out (normal when
      ``max_iter`` is small and the Trainer calls ``step`` repeatedly).

    L-BFGS "stopping" with a large gradient is a known failure mode of PINN training (the line
    search returns a zero step); the recorded reason and ``gradient_norm`` make it visible.
    """

    requires_closure = True
    CONVERGED = (
        "gradient below tolerance_grad",
        "step below tolerance_change",
        "loss change below tolerance_change",
    )

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = "strong_wolfe",
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        self.stop_reason: str | None = None
        self.gradient_norm: float | None = None

    @property
    def converged(self) -> bool:
        return self.stop_reason in self.CONVERGED

    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        if closure is None:
            raise ValueError("L-BFGS needs a closure that recomputes the loss and its gradient")
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        evals_before = state.get("func_evals", 0)
        iters_before = state.get("n_iter", 0)
        loss = super().step(closure)
        state = self.state[self._params[0]]
        grad = self._gather_flat_grad()
        self.gradient_norm = float(grad.abs().max())
        iters = state.get("n_iter", 0) - iters_before
        evals = state.get("func_evals", 0) - evals_before
        d, t = state.get("d"), state.get("t")
        if self.gradient_norm <= group["tolerance_grad"]:
            self.stop_reason = "gradient below tolerance_grad"
        elif iters >= group["max_iter"]:
            self.stop_reason = "max_iter reached"
        elif evals >= group["max_eval"]:
            self.stop_reason = "max_eval reached"
        elif (
            d is not None
            and t is not None
            and float(d.mul(t).abs().max()) <= group["tolerance_change"]
        ):
            self.stop_reason = "step below tolerance_change"
        else:
            self.stop_reason = "loss change below tolerance_change"
        return loss
