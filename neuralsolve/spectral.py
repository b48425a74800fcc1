"""Orthonormal transforms shared by the optimizers and the neural operators.

The DCT-II of ``x in R^n`` is ``X = Q^T x`` with the orthonormal matrix

    Q[j, i] = s_i cos(pi i (2 j + 1) / (2 n)),   s_0 = sqrt(1 / n),  s_i = sqrt(2 / n),

so ``Q^T Q = I`` and the inverse (DCT-III) is ``x = Q X``. The columns are the cosine modes
that satisfy a zero-flux condition at both ends of a cell-centred grid, which is why T1 uses
them on non-periodic problems. Transforms along several axes are applied one axis at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .checks import check_positive_int

__all__ = ["dct", "dct_matrix", "idct"]


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64, device: Any = "cpu") -> torch.Tensor:
    """The orthonormal DCT-II matrix ``Q`` (``Q^T Q = I``), columns the basis vectors:
    ``Q[j, i] = s_i cos(pi i (2 j + 1) / (2 n))``, ``s_0 = sqrt(1/n)``, ``s_i = sqrt(2/n)``."""
    n = check_positive_int("n", n)
    j = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    Q = torch.cos(math.pi * i * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
    Q[:, 0] /= math.sqrt(2.0)
    return Q.to(dtype=dtype, device=device)


def _along(x: torch.Tensor, dims: Sequence[int], transpose: bool) -> torch.Tensor:
    for d in dims:
        Q = dct_matrix(x.shape[d], dtype=x.dtype, device=x.device)
        x = torch.movedim(torch.movedim(x, d, -1) @ (Q if transpose else Q.T), -1, d)
    return x


def dct(x: torch.Tensor, dims: int | Sequence[int] = -1) -> torch.Tensor:
    """Orthonormal DCT-II of ``x`` along ``dims`` (``scipy.fft.dctn(x, type=2, norm="ortho")``)."""
    return _along(x, [dims] if isinstance(dims, int) else list(dims), transpose=True)


def idct(X: torch.Tensor, dims: int | Sequence[int] = -1) -> torch.Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III) along ``dims``."""
    return _along(X, [dims] if isinstance(dims, int) else list(dims), transpose=False)
