"""Shared pieces of the optimizers: hyperparameter checks and a seeded probe generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch

from neuralsolve.checks import check_int, check_positive_int, check_real

__all__ = [
    "Check",
    "OptimizerContract",
    "ProbeGeneratorMixin",
    "beta_pair",
    "check_betas",
    "check_count",
    "check_number",
    "choice",
    "count",
    "fraction",
    "nonnegative",
    "positive",
    "run_closure",
]


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


def check_betas(value: Any) -> None:
    """A pair ``(beta1, beta2)``, each in ``[0, 1)``."""
    beta_pair("betas", value)


# ----------------------------------------------------------------------------- group checks
Check = Callable[[str, Any], Any]
"""``check(name, value)`` raises ``ValueError`` (or ``InvalidTypeError``) for a bad value."""


def nonnegative(name: str, value: Any) -> None:
    """A finite number ``>= 0`` (learning rates, weight decay)."""
    check_number(name, value, low=0.0)


def positive(name: str, value: Any) -> None:
    """A finite number ``> 0`` (eps, damping)."""
    check_number(name, value, low=0.0, low_open=True)


def fraction(name: str, value: Any) -> None:
    """A number in ``[0, 1)`` (momentum)."""
    check_number(name, value, low=0.0, high=1.0, high_open=True)


def count(name: str, value: Any) -> None:
    """A positive integer (window lengths, ranks, iteration counts)."""
    check_count(name, value)


def beta_pair(name: str, value: Any) -> None:
    """A pair ``(beta1, beta2)``, each in ``[0, 1)``; ``name`` prefixes the pair's messages."""
    prefix = name[: -len("betas")] if name.endswith("betas") else ""
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise ValueError(f"invalid {name}: {value!r} (expected a pair (beta1, beta2))")
    check_number(f"{prefix}beta1", value[0], low=0.0, high=1.0, high_open=True)
    check_number(f"{prefix}beta2", value[1], low=0.0, high=1.0, high_open=True)


def choice(*options: Any) -> Check:
    """A check that the value is one of ``options``."""

    def check(name: str, value: Any) -> None:
        if value not in options:
            raise ValueError(
                f"invalid {name}: {value!r} (expected one of {', '.join(map(repr, options))})"
            )

    return check


class OptimizerContract:
    """What every optimizer of this package shares with the torch.optim contract, in one place.

    Mixed in before ``torch.optim.Optimizer``:

    * **Every parameter group is validated**, the first one (the defaults) as well as those
      given as dicts or added later by ``add_param_group``, by the checks in
      :attr:`hyperparameter_checks` (name -> :data:`Check`); a refused group is not kept, and
      the message names the value and the group.
    * **Complex parameters** are refused up front when :attr:`supports_complex` is false.
    * :meth:`_with_gradients` gives the parameters a step updates: those with a gradient and at
      least one element (a zero-size parameter has nothing to update, as in torch's Adam). A
      sparse gradient gets an error that says what to do instead of failing inside torch.
    * ``load_state_dict`` keeps integer state tensors (indices) integer: torch casts every
      state tensor of a floating parameter to the parameter's dtype, which rounds indices above
      256 in bfloat16 and above 2048 in float16.
    """

    hyperparameter_checks: ClassVar[Mapping[str, Check]] = {}
    supports_complex: ClassVar[bool] = True
    param_groups: list[dict[str, Any]]
    state: Any

    @classmethod
    def check_hyperparameters(cls, values: Mapping[str, Any], where: str = "") -> None:
        """Run :attr:`hyperparameter_checks` on the keys ``values`` has; ``where`` is appended
        to a message (``" (in param group 1)"``)."""
        for key, check in cls.hyperparameter_checks.items():
            if key in values:
                try:
                    check(key, values[key])
                except ValueError as exc:  # InvalidTypeError is one too
                    raise type(exc)(f"{exc}{where}") from None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # type: ignore[misc]
        index = len(self.param_groups) - 1
        group = self.param_groups[index]
        try:
            self.check_hyperparameters(group, f" (in param group {index})")
            if not self.supports_complex:
                for p in group["params"]:
                    if p.is_complex():
                        raise TypeError(
                            f"{type(self).__name__} supports real parameters only, but param group "
                            f"{index} holds a {p.dtype} parameter of shape {tuple(p.shape)}: view "
                            "complex parameters as real ones with torch.view_as_real"
                        )
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    def _with_gradients(self, group: dict[str, Any]) -> list[torch.Tensor]:
        """The parameters of ``group`` that a step updates: a dense gradient, size > 0."""
        params = []
        for p in group["params"]:
            if p.grad is None or p.numel() == 0:
                continue
            if p.grad.is_sparse or p.grad.layout != torch.strided:
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients (a parameter of "
                    f"shape {tuple(p.shape)} has a {p.grad.layout} gradient): make the layer "
                    "dense (torch.nn.Embedding(..., sparse=False)) or train it with "
                    "torch.optim.SparseAdam"
                )
            params.append(p)
        return params

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]
        saved = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved, params, strict=True):
            for key, value in state_dict["state"].get(pid, {}).items():
                if (
                    key != "step"
                    and isinstance(value, torch.Tensor)
                    and not (value.is_floating_point() or value.is_complex())
                ):
                    self.state[p][key] = value.to(device=p.device, copy=True)


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
