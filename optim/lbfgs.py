"""L-BFGS with the reason it stopped recorded after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ._common import Check, OptimizerContract, choice, count, nonnegative

__all__ = ["LBFGS"]

STALLED = "line search stalled"


class LBFGS(OptimizerContract, torch.optim.LBFGS):
    """``torch.optim.LBFGS`` (strong-Wolfe line search by default here) with its
    hyperparameters validated, that records why each ``step`` ended, in :attr:`stop_reason`:

    * ``"gradient below tolerance_grad"`` and ``"step below tolerance_change"`` /
      ``"loss change below tolerance_change"``: converged (:attr:`converged` is ``True``);
    * ``"line search stalled: ..."``: the last line search returned a zero step, so torch's
      loop stopped on "no progress" while the gradient is still above ``tolerance_grad``
      (:attr:`stalled` is ``True``, :attr:`converged` ``False``). A known failure mode of PINN
      training; the Trainer does not stop a run for it (the next step may find a way on, a
      resampled loss in particular);
    * ``"max_iter reached"`` / ``"max_eval reached"``: the step's budget ran out (normal when
      ``max_iter`` is small and the Trainer calls ``step`` repeatedly).

    ``gradient_norm`` is ``max |g|`` at the last point the closure evaluated.
    """

    requires_closure = True
    CONVERGED = (
        "gradient below tolerance_grad",
        "step below tolerance_change",
        "loss change below tolerance_change",
    )
    hyperparameter_checks: ClassVar[dict[str, Check]] = {
        "lr": nonnegative,
        "max_iter": count,
        "max_eval": count,
        "tolerance_grad": nonnegative,
        "tolerance_change": nonnegative,
        "history_size": count,
        "line_search_fn": choice(None, "strong_wolfe"),
    }

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
        # checked before torch's own lr check, so that every message has one form; max_iter
        # first: torch derives max_eval from it
        self.check_hyperparameters({"max_iter": max_iter, "lr": lr})
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
        """The last step ended on a convergence test (not on a stall or its budget)."""
        return self.stop_reason in self.CONVERGED

    @property
    def stalled(self) -> bool:
        """The last step's line search returned a zero step with the gradient above
        ``tolerance_grad``."""
        return self.stop_reason is not None and self.stop_reason.startswith(STALLED)

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
        elif t is not None and float(t) == 0.0:
            self.stop_reason = (
                f"{STALLED}: no step decreased the loss along the search direction, with the "
                f"gradient (max |g| = {self.gradient_norm:.3g}) still above tolerance_grad "
                f"({group['tolerance_grad']:.3g}); check the loss and its gradient (float64 "
                "helps), or lower lr"
            )
        elif (
            d is not None
            and t is not None
            and float(d.mul(t).abs().max()) <= group["tolerance_change"]
        ):
            self.stop_reason = "step below tolerance_change"
        else:
            self.stop_reason = "loss change below tolerance_change"
        return loss
