"""One linear-operator protocol for every solver, preconditioner and curvature matrix.

Anything with ``shape``, ``dtype``, ``device`` and ``matvec`` (and ``@``) is an operator.
:func:`as_operator` turns a torch tensor (dense or sparse), a numpy array, a scipy sparse matrix,
a scipy ``LinearOperator`` or a plain callable into a :class:`LinearOperator`. Subclasses
implement ``_matmat`` (and ``_transpose`` where they can) and get ``@``, ``+``, ``-``, scalar
``*``, ``.T``, ``to_dense()`` and ``to_scipy()``.

Structure is declared, never guessed by calling ``matvec``: ``symmetric`` and
``positive_definite`` are ``True`` (declared or verified), ``False`` (known not to hold) or
``None`` (unknown). Explicit matrices get ``symmetric`` checked exactly when they are wrapped, and
``positive_definite=False`` when a diagonal entry is not positive (a necessary condition for
SPD).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .errors import NonFiniteError

__all__ = [
    "CallableOperator",
    "DenseOperator",
    "DiagonalOperator",
    "IdentityOperator",
    "LinearOperator",
    "SparseOperator",
    "as_operator",
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
    ``_matmat(X)`` for ``X`` of shape ``(n, k)``; they may implement ``_transpose``,
    ``diagonal``, ``to_scipy`` and ``_to``.

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

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        """``(A @ Xt.T).T`` for a batch stored row-wise, ``Xt`` of shape ``(k, n)``.

        The Krylov solvers keep blocks of vectors batch-first (each vector contiguous), where
        per-vector dot products are fast; operators override this when they can skip the
        transposes.
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


# --------------------------------------------------------------------- concrete operators
class DenseOperator(LinearOperator):
    """An explicit dense matrix held as a torch tensor."""

    def __init__(
        self,
        matrix: torch.Tensor,
        *,
        symmetric: bool | None = None,
        positive_definite: bool | None = None,
    ) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"a matrix must be 2-D, got shape {tuple(matrix.shape)}")
        super().__init__(
            tuple(matrix.shape),
            matrix.dtype,
            matrix.device,
            symmetric=symmetric,
            positive_definite=positive_definite,
        )
        self.matrix = matrix

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.matrix @ X

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return Xt @ self.matrix.T

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        return DenseOperator(self.matrix.T.contiguous(), symmetric=self._symmetric)

    def diagonal(self) -> torch.Tensor:
        return torch.diagonal(self.matrix)

    def to_dense(self) -> torch.Tensor:
        return self.matrix

    def to_scipy(self) -> np.ndarray:
        return self.matrix.detach().cpu().numpy()

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        return DenseOperator(
            self.matrix.to(device=device, dtype=dtype),
            symmetric=self._symmetric,
            positive_definite=self._positive_definite,
        )


class SparseOperator(LinearOperator):
    """A sparse matrix held as a torch sparse CSR tensor (int32 indices when they fit).

    Build it from scipy with :meth:`from_scipy` (done once by :func:`as_operator`).
    """

    def __init__(
        self,
        csr: torch.Tensor,
        *,
        symmetric: bool | None = None,
        positive_definite: bool | None = None,
    ) -> None:
        if csr.layout != torch.sparse_csr:
            raise TypeError(
                f"SparseOperator needs a torch.sparse_csr tensor, got layout {csr.layout}"
            )
        super().__init__(
            tuple(csr.shape),
            csr.dtype,
            csr.device,
            symmetric=symmetric,
            positive_definite=positive_definite,
        )
        self.csr = csr
        self._transposed: SparseOperator | None = None

    @classmethod
    def from_scipy(
        cls,
        A: Any,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        symmetric: bool | None = None,
        positive_definite: bool | None = None,
    ) -> SparseOperator:
        """Convert a scipy sparse matrix (any format) once; indices become int32 when they fit."""
        A = canonical_csr(A)
        return cls(
            csr_tensor_from_arrays(
                A.indptr, A.indices, A.data, A.shape, dtype=dtype, device=device
            ),
            symmetric=symmetric,
            positive_definite=positive_definite,
        )

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if X.shape[1] == 1:
            return (self.csr @ X.reshape(-1)).reshape(-1, 1)
        return self.csr @ X

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        # One SpMV per vector: faster than torch's SpMM on a transposed block (measured).
        if Xt.shape[0] == 1:
            return (self.csr @ Xt.reshape(-1)).reshape(1, -1)
        return torch.stack([self.csr @ x for x in Xt])

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        if self._transposed is None:
            At = sp.csr_array(self.to_scipy().T)
            self._transposed = SparseOperator.from_scipy(At, dtype=self._dtype, device=self._device)
            self._transposed._transposed = self
        return self._transposed

    def diagonal(self) -> torch.Tensor:
        d = self.to_scipy().diagonal()
        return torch.from_numpy(np.ascontiguousarray(d)).to(device=self._device, dtype=self._dtype)

    def to_dense(self) -> torch.Tensor:
        m, n = self._shape
        if m * n > MAX_DENSE_ELEMENTS:
            return super().to_dense()  # raises with the size in the message
        return self.csr.to_dense()

    def to_scipy(self) -> sp.csr_array:
        crow = self.csr.crow_indices().cpu().numpy()
        col = self.csr.col_indices().cpu().numpy()
        val = self.csr.values().detach().cpu().numpy()
        return sp.csr_array((val, col, crow), shape=self._shape)

    @property
    def nnz(self) -> int:
        return int(self.csr.values().numel())

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        return SparseOperator(
            self.csr.to(device=device, dtype=dtype),
            symmetric=self._symmetric,
            positive_definite=self._positive_definite,
        )


class quiet_sparse_warnings(warnings.catch_warnings):
    """Context manager silencing torch's notices that its sparse CSR support is in beta and
    skips invariant checks: they are about torch, not about the caller's data."""

    def __enter__(self) -> Any:
        out = super().__enter__()
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return out


def canonical_csr(A: Any, dtype: Any = None) -> sp.csr_array:
    """``A`` as a CSR array with sorted indices and no duplicates, in ``dtype`` if given.

    The caller's matrix is never modified: it is copied when it needs canonicalising (scipy may
    otherwise share its arrays and sort or sum them in place).
    """
    out = sp.csr_array(A, dtype=dtype)
    if not out.has_canonical_format:
        out = out.copy()
        out.sum_duplicates()
        out.sort_indices()
    return out


def csr_tensor_from_arrays(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    shape: tuple[int, int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A torch CSR tensor from CSR arrays; int32 indices when they fit (MKL is ~3x faster)."""
    index_dtype = torch.int32 if max(len(indices), shape[0], shape[1]) < 2**31 - 1 else torch.int64
    values = torch.from_numpy(np.ascontiguousarray(data))
    if dtype is not None:
        values = values.to(dtype)
    with quiet_sparse_warnings():
        return torch.sparse_csr_tensor(
            torch.from_numpy(np.ascontiguousarray(indptr)).to(index_dtype),
            torch.from_numpy(np.ascontiguousarray(indices)).to(index_dtype),
            values,
            size=shape,
        ).to(device)


class DiagonalOperator(LinearOperator):
    """``diag(d)``: elementwise scaling (the Jacobi preconditioner is one)."""

    def __init__(self, d: torch.Tensor, *, positive_definite: bool | None = None) -> None:
        if d.ndim != 1:
            raise ValueError(f"the diagonal must be 1-D, got shape {tuple(d.shape)}")
        if positive_definite is None:
            positive_definite = bool((d > 0).all()) if d.numel() else True
        super().__init__(
            (d.numel(), d.numel()),
            d.dtype,
            d.device,
            symmetric=True,
            positive_definite=positive_definite,
        )
        self.d = d

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return X * self.d[:, None]

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return Xt * self.d

    def diagonal(self) -> torch.Tensor:
        return self.d

    def to_scipy(self) -> sp.csr_array:
        return sp.csr_array(sp.diags_array(self.d.detach().cpu().numpy()))

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        return DiagonalOperator(self.d.to(device=device, dtype=dtype))


class IdentityOperator(LinearOperator):
    """The identity of size ``n``."""

    def __init__(
        self, n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__((n, n), dtype, device, symmetric=True, positive_definite=True)

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return X.clone()

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return Xt.clone()

    def diagonal(self) -> torch.Tensor:
        return torch.ones(self._shape[0], dtype=self._dtype, device=self._device)

    def to_scipy(self) -> sp.csr_array:
        np_dtype = np.float64 if self._dtype == torch.float64 else np.float32
        return sp.csr_array(sp.eye_array(self._shape[0], dtype=np_dtype))

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        return IdentityOperator(self._shape[0], dtype=dtype, device=device)


class CallableOperator(LinearOperator):
    """An operator given by a function, with declared shape, dtype and device.

    Parameters
    ----------
    fn : callable
        ``fn(x) -> y``; with ``batched=False`` it takes ``(n,)`` and returns ``(m,)`` (columns of
        a block are applied one at a time), with ``batched=True`` it takes ``(n, k)`` and
        returns ``(m, k)``.
    transpose_fn : callable, optional
        The transpose's product, same convention; gives ``.T``.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        shape: tuple[int, int],
        *,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        batched: bool = False,
        transpose_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        symmetric: bool | None = None,
        positive_definite: bool | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        super().__init__(
            shape, dtype, device, symmetric=symmetric, positive_definite=positive_definite
        )
        self.fn = fn
        self.batched = batched
        self.transpose_fn = transpose_fn

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        m = self._shape[0]
        if self.batched:
            Y = self.fn(X)
            expected: tuple[int, ...] = (m, X.shape[1])
        else:
            Y = torch.stack([self.fn(X[:, j]) for j in range(X.shape[1])], dim=1)
            expected = (m, X.shape[1])
        if not isinstance(Y, torch.Tensor) or tuple(Y.shape) != expected:
            got = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
            raise ValueError(f"the operator's function returned {got}, expected shape {expected}")
        return Y

    def _transpose(self) -> LinearOperator:
        if self._symmetric:
            return self
        if self.transpose_fn is None:
            return super()._transpose()
        m, n = self._shape
        return CallableOperator(
            self.transpose_fn,
            (n, m),
            dtype=self._dtype,
            device=self._device,
            batched=self.batched,
            transpose_fn=self.fn,
        )


# --------------------------------------------------------------------- composite operators
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

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A._apply_batch(Xt) + self.B._apply_batch(Xt)

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

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A._apply_batch(Xt) * self.alpha

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

    def _apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        return self.A._apply_batch(self.B._apply_batch(Xt))

    def _transpose(self) -> LinearOperator:
        return ProductOperator(self.B.T, self.A.T)

    def to_scipy(self) -> Any:
        a, b = self.A.to_scipy(), self.B.to_scipy()
        if isinstance(a, spla.LinearOperator) or isinstance(b, spla.LinearOperator):
            return spla.aslinearoperator(a) @ spla.aslinearoperator(b)
        return a @ b


# --------------------------------------------------------------------- as_operator
def as_operator(
    A: Any,
    *,
    shape: tuple[int, int] | None = None,
    dtype: Any = None,
    device: torch.device | str | None = None,
    symmetric: bool | None = None,
    positive_definite: bool | None = None,
    check: bool = True,
) -> LinearOperator:
    """Turn ``A`` into a :class:`LinearOperator`.

    Parameters
    ----------
    A : LinearOperator, torch.Tensor, numpy.ndarray, scipy sparse matrix, scipy LinearOperator or callable
        A dense or sparse matrix, an operator, or a function ``x -> A x`` (then ``shape`` and
        ``dtype`` are required: they are declared, never guessed by calling it).
    shape : tuple of int, optional
        Required for a callable.
    dtype : torch.dtype, numpy dtype or str, optional
        Convert to this dtype (float32 or float64); required for a callable.
    device : torch.device or str, optional
        Move to this device (a callable is taken to live on it; default CPU).
    symmetric, positive_definite : bool, optional
        Declared structure; for explicit matrices ``symmetric`` is checked when not given.
    check : bool
        For explicit matrices: check finiteness, symmetry (when not declared) and the sign of
        the diagonal. Costs one pass over the entries.

    Returns
    -------
    LinearOperator

    Raises
    ------
    TypeError
        For objects that are not matrices or operators, unsupported dtypes, and callables
        without ``shape``/``dtype``.
    ValueError
        For a matrix that is not 2-D; :class:`~neuralsolve.errors.NonFiniteError` for NaN/inf
        entries.

    Examples
    --------
    >>> import numpy as np, neuralsolve as ns
    >>> A = ns.as_operator(np.array([[4.0, 1.0], [1.0, 3.0]]))
    >>> A.symmetric, A.shape
    (True, (2, 2))
    """
    torch_dt = None if dtype is None else check_dtype(torch_dtype(dtype), "requested dtype")

    if isinstance(A, LinearOperator):
        op = A.to(device=device, dtype=torch_dt)
        if symmetric is not None or positive_definite is not None:
            op = op.with_tags(symmetric=symmetric, positive_definite=positive_definite)
        return op

    if sp.issparse(A):
        mat = sp.csr_array(A)
        if torch_dt is None:
            torch_dt = check_dtype(torch_dtype(mat.dtype), "A")
        if check:
            if not np.all(np.isfinite(mat.data)):
                raise NonFiniteError("A has NaN or infinite entries: fix the matrix before solving")
            symmetric, positive_definite = _infer_tags_scipy(mat, symmetric, positive_definite)
        return SparseOperator.from_scipy(
            mat,
            dtype=torch_dt,
            device=device or "cpu",
            symmetric=symmetric,
            positive_definite=positive_definite,
        )

    if isinstance(A, np.ndarray) or isinstance(A, np.matrix):
        arr = np.asarray(A)
        if arr.dtype.kind not in "f" and torch_dt is None:
            raise TypeError(
                f"A has dtype {arr.dtype}; neuralsolve computes in float32 or float64: pass "
                "A.astype(np.float64) or as_operator(A, dtype='float64')"
            )
        A = torch.from_numpy(np.ascontiguousarray(arr))

    if isinstance(A, torch.Tensor):
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got shape {tuple(A.shape)}")
        if torch_dt is None:
            check_dtype(A.dtype, "A")
        A = A.to(device=device or A.device, dtype=torch_dt or A.dtype)
        if A.layout in (torch.sparse_coo, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
            with quiet_sparse_warnings():
                A = A.to_sparse_csr()
        if A.layout == torch.sparse_csr:
            if check:
                if not bool(torch.isfinite(A.values()).all()):
                    raise NonFiniteError(
                        "A has NaN or infinite entries: fix the matrix before solving"
                    )
                if A.device.type == "cpu":
                    symmetric, positive_definite = _infer_tags_scipy(
                        SparseOperator(A).to_scipy(), symmetric, positive_definite
                    )
            return SparseOperator(A, symmetric=symmetric, positive_definite=positive_definite)
        if check:
            if not bool(torch.isfinite(A).all()):
                raise NonFiniteError("A has NaN or infinite entries: fix the matrix before solving")
            symmetric, positive_definite = _infer_tags_dense(A, symmetric, positive_definite)
        return DenseOperator(A, symmetric=symmetric, positive_definite=positive_definite)

    if isinstance(A, spla.LinearOperator):
        if A.dtype is None or np.dtype(A.dtype).kind != "f":
            raise TypeError(
                f"the scipy LinearOperator has dtype {A.dtype}; it must be float32 or float64"
            )
        dt = torch_dt or torch_dtype(A.dtype)
        np_dt = np.float64 if dt == torch.float64 else np.float32

        def fn(X: torch.Tensor) -> torch.Tensor:
            out = A.matmat(X.detach().cpu().numpy().astype(np_dt, copy=False))
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np_dt)).to(X.device)

        def fnT(X: torch.Tensor) -> torch.Tensor:
            out = A.rmatmat(X.detach().cpu().numpy().astype(np_dt, copy=False))
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np_dt)).to(X.device)

        return CallableOperator(
            fn,
            A.shape,
            dtype=dt,
            device=device or "cpu",
            batched=True,
            transpose_fn=fnT,
            symmetric=symmetric,
            positive_definite=positive_definite,
        )

    if callable(A):
        if shape is None or dtype is None:
            raise TypeError(
                "a callable operator needs its shape and dtype declared: "
                "as_operator(f, shape=(n, n), dtype=torch.float64)"
            )
        return CallableOperator(
            A,
            tuple(shape),
            dtype=torch_dt,
            device=device or "cpu",
            symmetric=symmetric,
            positive_definite=positive_definite,
        )

    raise TypeError(
        f"cannot make a linear operator from {type(A).__name__}: pass a torch.Tensor, a numpy "
        "array, a scipy sparse matrix, a neuralsolve LinearOperator, or a callable with shape= "
        "and dtype="
    )


def _symmetry_tolerance(max_abs: float, dtype: Any) -> float:
    eps = np.finfo(np.float32).eps if np.dtype(dtype) == np.float32 else np.finfo(np.float64).eps
    return 16 * eps * max_abs


def _infer_tags_scipy(
    mat: sp.csr_array, symmetric: bool | None, positive_definite: bool | None
) -> tuple[bool | None, bool | None]:
    m, n = mat.shape
    if m != n:
        return False, False
    if symmetric is None:
        max_abs = float(np.abs(mat.data).max()) if mat.nnz else 0.0
        diff = (mat - mat.T).tocsr()
        asym = float(np.abs(diff.data).max()) if diff.nnz else 0.0
        symmetric = bool(asym <= _symmetry_tolerance(max_abs, mat.dtype))
    if positive_definite is None and n > 0 and bool((mat.diagonal() <= 0).any()):
        positive_definite = False
    if symmetric is False and positive_definite is None:
        positive_definite = False
    return symmetric, positive_definite


def _infer_tags_dense(
    A: torch.Tensor, symmetric: bool | None, positive_definite: bool | None
) -> tuple[bool | None, bool | None]:
    m, n = A.shape
    if m != n:
        return False, False
    if symmetric is None:
        max_abs = float(A.abs().max()) if A.numel() else 0.0
        asym = float((A - A.T).abs().max()) if A.numel() else 0.0
        symmetric = bool(
            asym
            <= _symmetry_tolerance(max_abs, np.float64 if A.dtype == torch.float64 else np.float32)
        )
    if positive_definite is None and n > 0 and bool((torch.diagonal(A) <= 0).any()):
        positive_definite = False
    if symmetric is False and positive_definite is None:
        positive_definite = False
    return symmetric, positive_definite
