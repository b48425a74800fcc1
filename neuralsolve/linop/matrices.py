"""The concrete operators: dense and sparse matrices, diagonals, the identity, functions.

:class:`SparseOperator` keeps a torch sparse CSR tensor; :func:`canonical_csr`,
:func:`csr_tensor_from_arrays` and :func:`quiet_sparse_warnings` are the helpers that build one
from scipy's arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .base import MAX_DENSE_ELEMENTS, LinearOperator

__all__ = [
    "CallableOperator",
    "DenseOperator",
    "DiagonalOperator",
    "IdentityOperator",
    "SparseOperator",
    "canonical_csr",
    "check_compressed_arrays",
    "csr_tensor_from_arrays",
    "quiet_sparse_warnings",
]


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

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
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

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
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


def check_compressed_arrays(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    shape: tuple[int, int],
    *,
    names: tuple[str, str, str] = ("indptr", "indices", "data"),
    fmt: str = "csr",
) -> None:
    """Check that CSR (or CSC) arrays describe a matrix of ``shape``, before anything uses them.

    scipy checks only some of this when it builds a matrix; an index out of range or a
    decreasing ``indptr`` reaches its C++ kernels and the process crashes or reads memory it
    does not own. This check is one vectorised pass over the arrays.

    Parameters
    ----------
    indptr, indices, data
        The compressed arrays.
    shape
        ``(rows, columns)``.
    names
        How the message calls the three arrays (``"A/indptr"`` for an HDF5 file, ...).
    fmt
        ``"csr"`` (``indptr`` runs over rows, ``indices`` are columns) or ``"csc"``.

    Raises
    ------
    ValueError
        Naming the array and the first bad position: not 1-D, not integer, wrong length,
        ``indptr`` not starting at 0, decreasing, or not ending at ``len(indices)``, an index
        outside ``[0, size)``, ``data`` and ``indices`` of different lengths.
    """
    p_name, i_name, d_name = names
    rows, cols = (int(s) for s in shape)
    if rows < 0 or cols < 0:
        raise ValueError(f"shape {tuple(shape)} has a negative size")
    major, minor = (rows, cols) if fmt == "csr" else (cols, rows)
    what_major, what_minor = ("row", "column") if fmt == "csr" else ("column", "row")
    for name, a in ((p_name, indptr), (i_name, indices), (d_name, data)):
        if np.ndim(a) != 1:
            raise ValueError(f"{name!r} has shape {np.shape(a)}, expected a 1-D array")
    for name, a in ((p_name, indptr), (i_name, indices)):
        if np.asarray(a).dtype.kind not in "iu":
            raise ValueError(f"{name!r} has dtype {np.asarray(a).dtype}, expected integers")
    ptr = np.asarray(indptr).astype(np.int64, copy=False)
    if len(ptr) != major + 1:
        raise ValueError(
            f"{p_name!r} has {len(ptr)} entries, expected {major + 1} ({what_major}s + 1) for "
            f"shape {(rows, cols)}: the shape and the arrays do not belong together"
        )
    if len(indices) != len(data):
        raise ValueError(
            f"{i_name!r} has {len(indices)} entries but {d_name!r} has {len(data)}: "
            "they must have one entry per stored value"
        )
    if ptr[0] != 0:
        raise ValueError(f"{p_name!r} starts at {ptr[0]}, expected 0")
    steps = np.diff(ptr)
    if (steps < 0).any():
        k = int(np.flatnonzero(steps < 0)[0])
        raise ValueError(
            f"{p_name!r} decreases at position {k + 1} ({ptr[k]} then {ptr[k + 1]}): "
            f"row pointers must not decrease"
        )
    if ptr[-1] != len(indices):
        raise ValueError(
            f"{p_name!r} ends at {ptr[-1]} but {i_name!r} has {len(indices)} entries: "
            "the last pointer must equal the number of stored values"
        )
    if len(indices):
        idx = np.asarray(indices)
        bad = (idx < 0) | (idx >= minor)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{i_name!r} holds {what_minor} index {idx[k]} at position {k}, outside "
                f"[0, {minor}) for shape {(rows, cols)}"
            )


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

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
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

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
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
