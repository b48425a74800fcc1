"""Shared pieces of the optimizers: hyperparameter checks and a seeded probe generator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from neuralsolve.checks import check_int, check_positive_int, check_real

__all__ = ["ProbeGeneratorMixin", "check_betas", "check_count", "check_number", "run_closure"]


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """:func:`neuralsolve.checks.check_real` with torch.optim's ``invalid <name>:`` prefix:
    ``invalid lr: lr must be finite and >= 0, got -1.0``."""
    with _invalid(name):
        return check_real(name, value, low=low, high=high, low_open=low_open, high_open=high_open)


def check_count(name: str, value: Any) -> int:
    """:func:`neuralsolve.checks.check_positive_int` with the ``invalid <name>:`` prefix."""
    with _invalid(name):
        return check_positive_int(name, value)


@contextmanager
def _invalid(name: str) -> Iterator[None]:
    try:
        yield
    except ValueError as exc:  # InvalidTypeError is one too
        raise type(exc)(f"invalid {name}: {exc}") from None


def run_closure(closure: Any) -> Any:
    """The loss from a ``step(closure)`` argument, evaluated with gradients enabled (``step``
    itself runs under ``torch.no_grad``), or ``None``."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_betas(betas: Any) -> None:
    if not (isinstance(betas, tuple | list) and len(betas) == 2):
        raise ValueError(f"invalid betas: {betas!r} (expected a pair (beta1, beta2))")
    check_number("beta1", betas[0], low=0.0, high=1.0, high_open=True)
    check_number("beta2", betas[1], low=0.0, high=1.0, high_open=True)


class ProbeGeneratorMixin:
    """A CPU ``torch.Generator`` for random probes, seeded by the ``seed`` argument, whose state
    is saved in ``state_dict()`` so that a resumed run draws the same probes."""

    _generator: torch.Generator

    def _init_generator(self, seed: int) -> None:
        with _invalid("seed"):
            seed = check_int("seed", seed)
        self._generator = torch.Generator().manual_seed(seed)

    def rademacher_like(self, p: torch.Tensor) -> torch.Tensor:
        """Signs +1/-1 with probability 1/2 each, shaped like ``p`` (drawn on the CPU)."""
        bits = torch.randint(0, 2, p.shape, generator=self._generator, dtype=torch.int8)
        return (bits.to(p.dtype) * 2 - 1).to(p.device)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # type: ignore[misc]
        state["probe_generator"] = self._generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        gen = state_dict.pop("probe_generator", None)
        super().load_state_dict(state_dict)  # type: ignore[misc]
        if gen is not None:
            self._generator.set_state(gen)
