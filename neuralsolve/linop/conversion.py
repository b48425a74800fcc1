""":func:`as_operator`: a torch tensor (dense or sparse), a numpy array, a scipy sparse matrix,
a scipy ``LinearOperator`` or a plain callable becomes a :class:`~.base.LinearOperator`."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..errors import NonFiniteError
from .base import LinearOperator, check_dtype, torch_dtype
from .matrices import (
    CallableOperator,
    DenseOperator,
    SparseOperator,
    check_compressed_arrays,
    quiet_sparse_warnings,
)
from .tags import infer_tags_dense, infer_tags_scipy

__all__ = ["as_operator"]


def _refuse_complex(dtype: Any) -> None:
    raise TypeError(
        f"A is complex ({dtype}); neuralsolve solves real systems and does not drop the "
        "imaginary part: solve the real form [[Re A, -Im A], [Im A, Re A]] [Re x; Im x] = "
        "[Re b; Im b] instead"
    )


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
        For objects that are not matrices or operators, unsupported dtypes (complex matrices
        too, even with ``dtype`` given: the imaginary part is never dropped), and callables
        without ``shape``/``dtype``.
    ValueError
        For a matrix that is not 2-D, a CSR/CSC matrix whose index arrays are broken (checked
        when ``check``); :class:`~neuralsolve.errors.NonFiniteError` for NaN/inf entries.

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
        if np.dtype(A.dtype).kind == "c":
            _refuse_complex(A.dtype)
        if check and A.format in ("csr", "csc"):
            # a broken structure would crash scipy's kernels below: check before any use
            check_compressed_arrays(A.indptr, A.indices, A.data, A.shape, fmt=A.format)
        mat = sp.csr_array(A)
        if torch_dt is None:
            torch_dt = check_dtype(torch_dtype(mat.dtype), "A")
        if check:
            if not np.all(np.isfinite(mat.data)):
                raise NonFiniteError("A has NaN or infinite entries: fix the matrix before solving")
            symmetric, positive_definite = infer_tags_scipy(mat, symmetric, positive_definite)
        return SparseOperator.from_scipy(
            mat,
            dtype=torch_dt,
            device=device or "cpu",
            symmetric=symmetric,
            positive_definite=positive_definite,
        )

    if isinstance(A, np.ndarray) or isinstance(A, np.matrix):
        arr = np.asarray(A)
        if arr.dtype.kind == "c":
            _refuse_complex(arr.dtype)
        if arr.dtype.kind not in "f" and torch_dt is None:
            raise TypeError(
                f"A has dtype {arr.dtype}; neuralsolve computes in float32 or float64: pass "
                "A.astype(np.float64) or as_operator(A, dtype='float64')"
            )
        A = torch.from_numpy(np.ascontiguousarray(arr))

    if isinstance(A, torch.Tensor):
        if A.is_complex():
            _refuse_complex(A.dtype)
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
                    symmetric, positive_definite = infer_tags_scipy(
                        SparseOperator(A).to_scipy(), symmetric, positive_definite
                    )
            return SparseOperator(A, symmetric=symmetric, positive_definite=positive_definite)
        if check:
            if not bool(torch.isfinite(A).all()):
                raise NonFiniteError("A has NaN or infinite entries: fix the matrix before solving")
            symmetric, positive_definite = infer_tags_dense(A, symmetric, positive_definite)
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
