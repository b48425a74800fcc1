"""Argument checks shared by every module: integers, real numbers, choices and flags.

Each function checks one argument, returns it normalised (a Python ``int``, ``float``, ``bool``
or the chosen value) and otherwise raises with a message that names the argument, says what was
expected and what came, and how to fix it (CONVENTIONS 8)::

    n = check_positive_int("n", n)            # "n must be a positive integer, got 0: pass 1 or more"
    rtol = check_real("rtol", rtol, low=0.0)  # "rtol must be finite and >= 0, got -1.0"

The wrong kind of object (a string where a number belongs, a float or a ``bool`` where an
integer belongs) raises :class:`~neuralsolve.errors.InvalidTypeError`, a ``TypeError`` that is
also a ``ValueError``: the checks merged here raised one or the other for it, and callers that
catch either keep working. A value of the right kind out of its range raises ``ValueError``.

``bool`` is never accepted as a number (``True`` is not 1 sample); numpy integers and floats
are.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, TypeVar

from .errors import DeviceError, InvalidTypeError

__all__ = [
    "check_bool",
    "check_choice",
    "check_device",
    "check_int",
    "check_nonnegative_float",
    "check_nonnegative_int",
    "check_positive_float",
    "check_positive_int",
    "check_probability",
    "check_real",
]

T = TypeVar("T")


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _bound(x: float) -> str:
    """``0`` for ``0.0``, ``1e-08`` stays: bounds read as numbers, not as floats' reprs."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def _require_int(name: str, value: Any, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fix = "pass a Python int"
        if isinstance(value, bool):
            fix = f"a bool is not accepted as an integer; pass {int(value)} if that is meant"
        elif isinstance(value, numbers.Real) and float(value).is_integer():
            fix = f"pass {int(value)} (an int, not a {type(value).__name__})"
        raise InvalidTypeError(f"{name} must be {expected}, got {_got(value)}: {fix}")
    return int(value)


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> Any:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (either bound may be left open).

    Parameters
    ----------
    name : str
        The argument's name, as the caller wrote it.
    value : object
        What came.
    minimum, maximum : int, optional
        Inclusive bounds.
    allow_none : bool
        Accept (and return) ``None``.

    Returns
    -------
    int or None

    Raises
    ------
    InvalidTypeError
        ``value`` is not an integer (a ``bool`` is not one).
    ValueError
        ``value`` is out of range.
    """
    if value is None and allow_none:
        return None
    v = _require_int(name, value, "an integer or None" if allow_none else "an integer")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if minimum is not None and maximum is not None:
            raise ValueError(f"{name} must be an integer in {minimum}..{maximum}, got {v}")
        if minimum is not None:
            raise ValueError(f"{name} must be >= {minimum}, got {v}")
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int >= 1`` (a count: samples, steps, channels, threads).

    Raises :class:`InvalidTypeError` for a non-integer (or a ``bool``), ``ValueError`` for
    ``value < 1``.
    """
    v = _require_int(name, value, "a positive integer")
    if v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v}: pass 1 or more")
    return v


def check_nonnegative_int(name: str, value: Any) -> int:
    """``value`` as an ``int >= 0`` (a seed, an offset, an optional count that may be zero).

    Raises :class:`InvalidTypeError` for a non-integer (or a ``bool``), ``ValueError`` for
    ``value < 0``.
    """
    v = _require_int(name, value, "a non-negative integer")
    if v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v}: pass 0 or more")
    return v


def _require_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(
            f"{name} must be a real number, got {_got(value)}: pass a float such as 1.0"
        )
    return float(value)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` in the interval given by ``low`` and ``high``.

    Parameters
    ----------
    name : str
        The argument's name.
    value : object
        What came.
    low, high : float, optional
        Bounds of the interval; ``None`` leaves that side unbounded.
    low_open, high_open : bool
        Exclude the bound itself (``(low, ...`` rather than ``[low, ...``).

    Returns
    -------
    float

    Raises
    ------
    InvalidTypeError
        ``value`` is not a real number (a ``bool`` is not one).
    ValueError
        ``value`` is NaN, infinite, or outside the interval.
    """
    v = _require_real(name, value)
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if math.isfinite(v) and lo_ok and hi_ok:
        return v
    if low is not None and high is not None:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        where = f"in {left}{_bound(low)}, {_bound(high)}{right}"
    elif low is not None:
        where = f"{'>' if low_open else '>='} {_bound(low)}"
    elif high is not None:
        where = f"{'<' if high_open else '<='} {_bound(high)}"
    else:
        where = "a real number"
    raise ValueError(f"{name} must be finite and {where}, got {value!r}")


def check_positive_float(name: str, value: Any) -> float:
    """``value`` as a finite ``float > 0`` (a tolerance, a viscosity, a step size).

    Raises :class:`InvalidTypeError` for a non-number, ``ValueError`` for NaN, infinity or
    ``value <= 0``.
    """
    v = _require_real(name, value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def check_nonnegative_float(name: str, value: Any) -> float:
    """``value`` as a finite ``float >= 0``.

    Raises :class:`InvalidTypeError` for a non-number, ``ValueError`` for NaN, infinity or
    ``value < 0``.
    """
    v = _require_real(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return v


def check_probability(name: str, value: Any, *, open_high: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (``[0, 1)`` with ``open_high``: a momentum, a
    decay rate, a fraction)."""
    return check_real(name, value, low=0.0, high=1.0, high_open=open_high)


def _alternatives(choices: list[Any]) -> str:
    shown = [repr(c) for c in choices]
    if len(shown) == 1:
        return shown[0]
    return f"{', '.join(shown[:-1])} or {shown[-1]}"


def check_choice(name: str, value: Any, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices`` (a method name, a grid kind, a dimension).

    The message lists every valid choice: ``grid_kind must be 'cell' or 'node', got 'edge'``.

    Raises
    ------
    ValueError
        ``value`` is not one of ``choices`` (whatever its type: the list says what to pass).
    """
    options = list(choices)
    try:
        if value in options:
            return value
    except (TypeError, ValueError):  # an array or a tensor compared with a name
        pass
    raise ValueError(f"{name} must be {_alternatives(options)}, got {value!r}")


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not ``1``, not ``'yes'``).

    Raises :class:`InvalidTypeError` otherwise.
    """
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_device(name: str, value: Any) -> Any:
    """``value`` as a ``torch.device`` that this machine and this torch build have.

    Raises
    ------
    DeviceError
        An unknown device name, a device type this torch was built without (``cuda`` on a CPU
        build), or one with no hardware here (``cuda:3`` with two GPUs).

    Examples
    --------
    >>> check_device("device", "cpu")
    device(type='cpu')
    """
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"{name} {value!r} is not a torch device: use cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cpu" or device.type == "meta":
        return device
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceError(
                f"{name} {value!r}: this torch ({torch.__version__}) was built without CUDA; "
                "use cpu, or install a CUDA build of torch"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"{name} {value!r}: no CUDA GPU is visible (torch.cuda.is_available() is False); "
                "use cpu, or check the driver and CUDA_VISIBLE_DEVICES"
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"{name} {value!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
        return device
    module = getattr(torch, device.type, None)
    backend = getattr(torch.backends, device.type, None)
    available = getattr(module, "is_available", None) or getattr(backend, "is_available", None)
    if available is None or not available():
        raise DeviceError(f"{name} {value!r}: no {device.type} device is available; use cpu")
    return device
