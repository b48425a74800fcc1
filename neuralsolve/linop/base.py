"""The protocol: :class:`LinearOperator`, its dtype rules, device comparison and its algebra.

Anything with ``shape``, ``dtype``, ``device`` and ``matvec`` (and ``@``) is an operator.
Subclasses implement ``_matmat`` (and ``_transpose`` where they can) and get ``@``, ``+``, ``-``,
scalar ``*``, ``.T``, ``to_dense()`` and ``to_scipy()``. The sums, scalings and
products those operators build (``A + B``, ``alpha * A``, ``A @ B``, with the tags that follow
from the parts') are defined here too, since the protocol's operators build them; the concrete
matrices live in :mod:`.matrices`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

from ..errors import NonFiniteError

__all__ = [
    "MAX_DENSE_ELEMENTS",
    "SUPPORTED_DTYPES",
    "LinearOperator",
    "check_dtype",
    "same_device",
    "torch_dtype",
]

SUPPORTED_DTYPES = (torch.float32, torch.float64)
# The largest dense matrix to_dense() builds without being asked (elements, ~800 MB in float64).
MAX_DENSE_ELEMENTS = 10**8


def check_dtype(dtype: torch.dtype, what: str) -> torch.dtype:
    """Return ``dtype`` if neuralsolve computes in it, else raise a TypeError that says how."""
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{what} has dtype {dtype}; neuralsolve computes in float32 or float64: convert it "
            f"first (tensor.to(torch.float64), array.astype(np.float64)) or pass dtype=torch.float64"
        )
    return dtype


def torch_dtype(dtype: Any) -> torch.dtype:
    """Map a numpy dtype, a torch dtype or a name such as ``"float64"`` to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if (
        isinstance(dtype, str)
        and hasattr(torch, dtype)
        and isinstance(getattr(torch, dtype), torch.dtype)
    ):
        return getattr(torch, dtype)
    try:
        return torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype
    except TypeError as exc:
        raise TypeError(f"unknown dtype {dtype!r}: use 'float32' or 'float64'") from exc


class LinearOperator:
    """A linear map ``R^n -> R^m`` on a torch device.

    Subclasses call ``super().__init__(shape, dtype, device, ...)`` and implement
    ``_matmat(X)`` for ``X`` of shape ``(n, k)``; they may implement ``apply_batch`` (the
    solvers' batch-first hot path), ``_transpose``, ``diagonal``, ``to_scipy`` and ``_to``.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : torch.device or str
        Where the operator's data lives and its products are computed.
    symmetric, positive_definite : bool or None
        Structure tags: ``True`` declared/verified, ``False`` known not to hold, ``None`` unknown.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        symmetric: bool | None = None,
        positive_definite: bool | None = None,
    ) -> None:
        if len(shape) != 2 or any(not isinstance(s, numbers.Integral) or s < 0 for s in shape):
            raise ValueError(f"shape must be a pair of non-negative integers (m, n), got {shape!r}")
        self._shape = (int(shape[0]), int(shape[1]))
        self._dtype = check_dtype(dtype, type(self).__name__)
        self._device = torch.device(device)
        if positive_definite and symmetric is False:
            raise ValueError(
                "an operator tagged positive_definite=True must not be symmetric=False"
            )
        if positive_definite and self._shape[0] != self._shape[1]:
            raise ValueError(
                f"a positive definite operator must be square, got shape {self._shape}"
            )
        self._symmetric = symmetric if self._shape[0] == self._shape[1] else False
        self._positive_definite = positive_definite if self._shape[0] == self._shape[1] else False

    # ----------------------------------------------------------------- declared attributes
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def symmetric(self) -> bool | None:
        return self._symmetric

    @property
    def positive_definite(self) -> bool | None:
        return self._positive_definite

    @property
    def is_spd(self) -> bool:
        """``True`` only when both tags are ``True``."""
        return bool(self._symmetric) and bool(self._positive_definite)

    def with_tags(
        self, *, symmetric: bool | None = None, positive_definite: bool | None = None
    ) -> LinearOperator:
        """A shallow copy with the given tags set (``None`` keeps the current value).

        Use it to declare structure you know: ``as_operator(f, ...).with_tags(symmetric=True,
        positive_definite=True)``.
        """
        import copy

        new = copy.copy(self)
        sym = self._symmetric if symmetric is None else symmetric
        pd = self._positive_definite if positive_definite is None else positive_definite
        LinearOperator.__init__(
            new, self._shape, self._dtype, self._device, symmetric=sym, positive_definite=pd
        )
        return new

    # ----------------------------------------------------------------- products
    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _matmat(X)")

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        """``(A @ Xt.T).T`` for a batch stored row-wise, ``Xt`` of shape ``(k, n)``.

        The solvers' hot path: the Krylov solvers keep blocks of vectors batch-first (each
        vector contiguous), where per-vector dot products are fast; operators override this
        when they can skip the transposes. Unlike :meth:`matvec` and :meth:`matmat` it checks
        nothing: ``Xt`` must already have this operator's dtype, device and ``n`` columns.
        """
        return self._matmat(Xt.T).T.contiguous()

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``x`` of shape ``(n,)``."""
        self._check_operand(x, 1)
        return self._matmat(x.reshape(-1, 1)).reshape(-1)

    def matmat(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` for ``X`` of shape ``(n, k)``."""
        self._check_operand(X, 2)
        return self._matmat(X)

    def _check_operand(self, x: Any, ndim: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != ndim or x.shape[0] != self._shape[1]:
            want = f"({self._shape[1]},)" if ndim == 1 else f"({self._shape[1]}, k)"
            raise ValueError(
                f"operand has shape {tuple(x.shape)} but the operator is {self._shape}: "
                f"pass a tensor of shape {want}"
            )
        if x.dtype != self._dtype:
            raise TypeError(
                f"operand is {x.dtype} but the operator is {self._dtype}: use x.to({self._dtype})"
            )
        if x.device != self._device and not same_device(x.device, self._device):
            raise ValueError(
                f"operand is on {x.device} but the operator is on {self._device}: "
                f"move it with x.to('{self._device}')"
            )

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return ProductOperator(self, other)
        if isinstance(other, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(other)).to(self._device)
            out = self.__matmul__(t)
            return out.cpu().numpy()
        if isinstance(other, torch.Tensor):
            if other.ndim == 1:
                return self.matvec(other)
            if other.ndim == 2:
                return self.matmat(other)
            raise ValueError(
                f"can only multiply a vector (n,) or a matrix (n, k), got {tuple(other.shape)}"
            )
        return NotImplemented

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self @ x

    # ----------------------------------------------------------------- algebra
    def __add__(self, other: Any) -> LinearOperator:
        if isinstance(other, LinearOperator):
            return SumOperator(self, other)
        return NotImplemented

    def __sub__(self, other: Any) -> LinearOperator:
        if isinstance(other, LinearOperator):
            return SumOperator(self, ScaledOperator(other, -1.0))
        return NotImplemented

    def __mul__(self, alpha: Any) -> LinearOperator:
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            return ScaledOperator(self, float(alpha))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, alpha: Any) -> LinearOperator:
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            return ScaledOperator(self, 1.0 / float(alpha))
        return NotImplemented

    def __neg__(self) -> LinearOperator:

        return ScaledOperator(self, -1.0)

    @property
    def T(self) -> LinearOperator:
        """The transpose (the adjoint: all operators here are real)."""
        return self._transpose()

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        raise NotImplementedError(
            f"{type(self).__name__} does not implement its transpose; declare symmetric=True "
            "if it is symmetric"
        )

    # ----------------------------------------------------------------- export
    def diagonal(self) -> torch.Tensor:
        """The main diagonal, shape ``(min(m, n),)``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not know its diagonal; build a DenseOperator or "
            "SparseOperator, or use to_dense() for a small operator"
        )

    def to_dense(self) -> torch.Tensor:
        """The matrix as a dense tensor (built from products with the identity, in blocks)."""
        m, n = self._shape
        if m * n > MAX_DENSE_ELEMENTS:
            raise ValueError(
                f"to_dense() of a {m} x {n} operator would hold {m * n:,} entries "
                f"({m * n * 8 / 1e9:.1f} GB in float64); use to_scipy() for large operators"
            )
        out = torch.empty((m, n), dtype=self._dtype, device=self._device)
        block = max(1, min(n, 4096))
        for start in range(0, n, block):
            stop = min(n, start + block)
            E = torch.zeros((n, stop - start), dtype=self._dtype, device=self._device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1
            out[:, start:stop] = self._matmat(E)
        return out

    def to_scipy(self) -> Any:
        """The operator for scipy: a CSR matrix where the operator has one (sparse, stencil),
        a numpy array (dense), else a ``scipy.sparse.linalg.LinearOperator`` (on the CPU)."""
        return _scipy_wrapper(self)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> LinearOperator:
        """The same operator on another device and/or in another dtype."""
        device = self._device if device is None else torch.device(device)
        dtype = self._dtype if dtype is None else check_dtype(dtype, "requested dtype")
        if device == self._device and dtype == self._dtype:
            return self
        return self._to(device, dtype)

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        raise NotImplementedError(
            f"{type(self).__name__} cannot be moved to another device or dtype"
        )

    def __repr__(self) -> str:
        tags = []
        if self._symmetric:
            tags.append("symmetric")
        if self._positive_definite:
            tags.append("positive_definite")
        tag_text = ", ".join(tags) if tags else "none"
        return (
            f"<{type(self).__name__} shape={self._shape} dtype={str(self._dtype).replace('torch.', '')} "
            f"device={self._device} tags={tag_text}>"
        )


def _scipy_wrapper(op: LinearOperator) -> spla.LinearOperator:
    """A scipy LinearOperator that calls ``op`` (numpy in and out, through the CPU)."""
    np_dtype = np.float64 if op.dtype == torch.float64 else np.float32

    def apply(target: LinearOperator, V: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(V, dtype=np_dtype)).to(target.device)
        out = target.matvec(t.reshape(-1)) if V.ndim == 1 else target.matmat(t)
        return out.detach().cpu().numpy()

    kwargs: dict[str, Any] = {"matvec": lambda v: apply(op, v), "matmat": lambda V: apply(op, V)}
    try:
        tr = op.T
        kwargs["rmatvec"] = lambda v: apply(tr, v)
        kwargs["rmatmat"] = lambda V: apply(tr, V)
    except NotImplementedError:
        pass
    return spla.LinearOperator(op.shape, dtype=np_dtype, **kwargs)


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` name the same device when 0 is current."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = a.index if a.index is not None else torch.cuda.current_device()
        ib = b.index if b.index is not None else torch.cuda.current_device()
        return ia == ib
    return True


# ---------------------------------------------------------------------- the algebra
# What `+`, `-`, scalar `*` and `@` of operators return: they live beside the protocol, whose
# operators build them.

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
