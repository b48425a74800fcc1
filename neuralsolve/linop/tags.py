"""Tag inference for explicit matrices: ``symmetric`` checked exactly (to a few ulps of the
largest entry), ``positive_definite=False`` when a diagonal entry is not positive.

Each function takes the declared tags and returns them with the unknown (``None``) ones filled
in where the matrix decides them; a declared tag is never overridden.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["infer_tags_dense", "infer_tags_scipy", "symmetry_tolerance"]


def symmetry_tolerance(max_abs: float, dtype: Any) -> float:
    eps = np.finfo(np.float32).eps if np.dtype(dtype) == np.float32 else np.finfo(np.float64).eps
    return 16 * eps * max_abs


def infer_tags_scipy(
    mat: sp.csr_array, symmetric: bool | None, positive_definite: bool | None
) -> tuple[bool | None, bool | None]:
    m, n = mat.shape
    if m != n:
        return False, False
    if symmetric is None:
        max_abs = float(np.abs(mat.data).max()) if mat.nnz else 0.0
        diff = (mat - mat.T).tocsr()
        asym = float(np.abs(diff.data).max()) if diff.nnz else 0.0
        symmetric = bool(asym <= symmetry_tolerance(max_abs, mat.dtype))
    if positive_definite is None and n > 0 and bool((mat.diagonal() <= 0).any()):
        positive_definite = False
    if symmetric is False and positive_definite is None:
        positive_definite = False
    return symmetric, positive_definite


def infer_tags_dense(
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
            <= symmetry_tolerance(max_abs, np.float64 if A.dtype == torch.float64 else np.float32)
        )
    if positive_definite is None and n > 0 and bool((torch.diagonal(A) <= 0).any()):
        positive_definite = False
    if symmetric is False and positive_definite is None:
        positive_definite = False
    return symmetric, positive_definite
