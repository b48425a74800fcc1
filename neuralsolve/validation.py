"""One validation helper for every solve entry point (CONVENTIONS 8): shapes, squareness, dtype,
device and finiteness are checked before any work, and the messages say how to fix them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .checks import check_int, check_real
from .errors import NonFiniteError
from .linop import LinearOperator, as_operator, same_device, torch_dtype

__all__ = [
    "PreparedSystem",
    "check_tolerances",
    "prepare_operator",
    "prepare_rhs",
    "prepare_system",
]


@dataclass
class PreparedSystem:
    """A validated system, with the right-hand sides stored batch-first.

    Attributes
    ----------
    A : LinearOperator
    B : torch.Tensor
        ``(k, n)``: the right-hand sides as rows (each vector contiguous).
    X0 : torch.Tensor or None
        ``(k, n)`` initial guesses, a private copy (the caller's ``x0`` is never mutated).
    vector : bool
        ``b`` was 1-D.
    numpy_out : bool
        ``b`` was a numpy array: the answer goes back as one.
    """

    A: LinearOperator
    B: torch.Tensor
    X0: torch.Tensor | None
    vector: bool
    numpy_out: bool

    @property
    def k(self) -> int:
        return self.B.shape[0]

    def split(self, size: int) -> list[PreparedSystem]:
        """The columns in groups of ``size`` (torch blocks, for solving group by group)."""
        return [
            PreparedSystem(
                A=self.A,
                B=self.B[i : i + size],
                X0=None if self.X0 is None else self.X0[i : i + size],
                vector=False,
                numpy_out=False,
            )
            for i in range(0, self.k, size)
        ]

    def wrap(self, Xt: torch.Tensor) -> Any:
        """Return a batch-first block ``(k, n)`` in the form ``b`` came in."""
        x = Xt.reshape(-1) if self.vector else Xt.T
        if self.numpy_out:
            return np.ascontiguousarray(x.detach().cpu().numpy())
        return x.contiguous() if not self.vector else x


def _as_tensor(v: Any, name: str, A: LinearOperator) -> tuple[torch.Tensor, bool]:
    """A torch view of ``v`` on A's device; whether ``v`` was numpy."""
    if isinstance(v, torch.Tensor):
        return v, False
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "f":
            raise TypeError(
                f"{name} has dtype {v.dtype}; pass a floating array of A's dtype, e.g. "
                f"{name}.astype(np.{np.dtype(_np_dtype(A.dtype)).name})"
            )
        return torch.from_numpy(np.ascontiguousarray(v)).to(A.device), True
    raise TypeError(
        f"{name} must be a torch.Tensor or a numpy array, got {type(v).__name__}: "
        f"convert it with np.asarray({name}, dtype=np.float64)"
    )


def _np_dtype(dtype: torch.dtype) -> Any:
    return np.float64 if dtype == torch.float64 else np.float32


def prepare_system(A: Any, b: Any, x0: Any = None) -> PreparedSystem:
    """Validate ``A``, ``b``, ``x0`` and convert them for a solver
    (:func:`prepare_operator`, then :func:`prepare_rhs`).

    Raises
    ------
    TypeError
        ``A`` or ``b`` of the wrong kind, or dtypes that do not match.
    ValueError
        Non-square ``A``, shapes that do not match, mixed devices;
        :class:`~neuralsolve.errors.NonFiniteError` for NaN/inf in ``b`` or ``x0``.
    """
    return prepare_rhs(prepare_operator(A), b, x0)


def prepare_operator(A: Any) -> LinearOperator:
    """``A`` as a square :class:`~neuralsolve.linop.LinearOperator` (TypeError / ValueError)."""
    op = as_operator(A)
    m, n = op.shape
    if m != n:
        raise ValueError(
            f"A must be square, got shape {op.shape}: a linear solve needs n equations for n unknowns"
        )
    if n == 0:
        raise ValueError("A is 0 x 0: there is nothing to solve; pass a matrix with n >= 1")
    return op


def prepare_rhs(op: LinearOperator, b: Any, x0: Any = None) -> PreparedSystem:
    """Validate ``b`` and ``x0`` against an operator from :func:`prepare_operator`."""
    n = op.shape[0]
    bt, numpy_out = _as_tensor(b, "b", op)
    if bt.ndim not in (1, 2) or bt.shape[0] != n:
        raise ValueError(
            f"b has shape {tuple(bt.shape)} but A is {op.shape}: pass a vector of length {n} "
            f"or a block of shape ({n}, k)"
        )
    if bt.dtype != op.dtype:
        raise TypeError(
            f"b is {bt.dtype} but A is {op.dtype}: convert one of them, e.g. "
            f"b.to({op.dtype}) / b.astype(np.{np.dtype(_np_dtype(op.dtype)).name})"
        )
    if not numpy_out and not same_device(bt.device, op.device):
        raise ValueError(
            f"b is on {bt.device} but A is on {op.device}: move b with b.to('{op.device}')"
        )
    if not bool(torch.isfinite(bt).all()):
        raise NonFiniteError(
            "b holds NaN or infinite values: fix the right-hand side before solving"
        )
    vector = bt.ndim == 1
    B = bt.reshape(1, n) if vector else bt.T
    B = B.contiguous()
    X0 = None
    if x0 is not None:
        xt, _ = _as_tensor(x0, "x0", op)
        if tuple(xt.shape) != tuple(bt.shape):
            raise ValueError(
                f"x0 has shape {tuple(xt.shape)} but b has shape {tuple(bt.shape)}: they must match"
            )
        if xt.dtype != op.dtype:
            raise TypeError(
                f"x0 is {xt.dtype} but A is {op.dtype}: convert it with x0.to({op.dtype})"
            )
        if not isinstance(x0, np.ndarray) and not same_device(xt.device, op.device):
            raise ValueError(
                f"x0 is on {xt.device} but A is on {op.device}: move it with x0.to('{op.device}')"
            )
        if not bool(torch.isfinite(xt).all()):
            raise NonFiniteError("x0 holds NaN or infinite values")
        X0 = (xt.reshape(1, n) if vector else xt.T).clone(memory_format=torch.contiguous_format)
    return PreparedSystem(A=op, B=B, X0=X0, vector=vector, numpy_out=numpy_out)


def check_tolerances(rtol: Any, atol: Any, max_iters: Any) -> None:
    """Validate the tolerances every solver shares (raises ValueError / TypeError)."""
    check_real("rtol", rtol, low=0.0)
    check_real("atol", atol, low=0.0)
    check_int("max_iters", max_iters, minimum=0, allow_none=True)


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """``None`` or a torch dtype from a name/numpy dtype."""
    return None if dtype is None else torch_dtype(dtype)
