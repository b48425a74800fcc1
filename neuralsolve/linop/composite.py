"""Composite operators: ``A + B``, ``alpha * A`` and ``A @ B`` (what ``+``, ``*`` and ``@`` on
two operators build), with the tags that follow from the parts'."""

from __future__ import annotations

import math
from typing import Any

import scipy.sparse.linalg as spla
import torch

from ..errors import NonFiniteError
from .base import LinearOperator, same_device

__all__ = ["ProductOperator", "ScaledOperator", "SumOperator"]


def _check_compatible(a: LinearOperator, b: LinearOperator, what: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(
            f"cannot {what} a {a.dtype} operator and a {b.dtype} operator: convert one with .to(dtype=...)"
        )
    if not same_device(a.device, b.device):
        raise ValueError(
            f"cannot {what} operators on {a.device} and {b.device}: move one with .to(device=...)"
        )


class SumOperator(LinearOperator):
    """``A + B``."""

    def __init__(self, A: LinearOperator, B: LinearOperator) -> None:
        if A.shape != B.shape:
            raise ValueError(f"cannot add operators of shapes {A.shape} and {B.shape}")
        _check_compatible(A, B, "add")
        sym = True if (A.symmetric and B.symmetric) else None
        if A.symmetric is False and B.symmetric:
            sym = False
        if B.symmetric is False and A.symmetric:
            sym = False
        pd = True if (A.is_spd and B.is_spd) else None
        super().__init__(A.shape, A.dtype, A.device, symmetric=sym, positive_definite=pd)
        self.A, self.B = A, B

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.A._matmat(X) + self.B._matmat(X)

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A.apply_batch(Xt) + self.B.apply_batch(Xt)

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        return SumOperator(self.A.T, self.B.T)

    def diagonal(self) -> torch.Tensor:
        return self.A.diagonal() + self.B.diagonal()

    def to_scipy(self) -> Any:
        a, b = self.A.to_scipy(), self.B.to_scipy()
        if isinstance(a, spla.LinearOperator) or isinstance(b, spla.LinearOperator):
            return spla.aslinearoperator(a) + spla.aslinearoperator(b)
        return a + b


class ScaledOperator(LinearOperator):
    """``alpha * A`` for a real scalar ``alpha``."""

    def __init__(self, A: LinearOperator, alpha: float) -> None:
        if not math.isfinite(alpha):
            raise NonFiniteError(f"cannot scale an operator by {alpha}")
        pd: bool | None
        if alpha > 0:
            pd = A.positive_definite
        elif A.positive_definite and A.shape[0] > 0:
            pd = False
        else:
            pd = None
        super().__init__(A.shape, A.dtype, A.device, symmetric=A.symmetric, positive_definite=pd)
        self.A, self.alpha = A, alpha

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.A._matmat(X) * self.alpha

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A.apply_batch(Xt) * self.alpha

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        return ScaledOperator(self.A.T, self.alpha)

    def diagonal(self) -> torch.Tensor:
        return self.A.diagonal() * self.alpha

    def to_scipy(self) -> Any:
        a = self.A.to_scipy()
        return a * self.alpha


class ProductOperator(LinearOperator):
    """``A @ B``."""

    def __init__(self, A: LinearOperator, B: LinearOperator) -> None:
        if A.shape[1] != B.shape[0]:
            raise ValueError(f"cannot multiply operators of shapes {A.shape} and {B.shape}")
        _check_compatible(A, B, "multiply")
        super().__init__((A.shape[0], B.shape[1]), A.dtype, A.device)
        self.A, self.B = A, B

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.A._matmat(self.B._matmat(X))

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A.apply_batch(self.B.apply_batch(Xt))

    def _transpose(self) -> LinearOperator:
        return ProductOperator(self.B.T, self.A.T)

    def to_scipy(self) -> Any:
        a, b = self.A.to_scipy(), self.B.to_scipy()
        if isinstance(a, spla.LinearOperator) or isinstance(b, spla.LinearOperator):
            return spla.aslinearoperator(a) @ spla.aslinearoperator(b)
        return a @ b
