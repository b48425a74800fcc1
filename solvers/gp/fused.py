"""The 2-D GP-HM core with a hand-written backward that uses the Toeplitz structure.

On a uniform ``n_1 x n_2`` grid the per-axis kernel matrices are Toeplitz:
``K_k = T(kappa_k) + jitter I`` and ``K_k'' = T(kappa_k'')``, with ``T(c)_{ij} = c_{i-j}`` built
from the ``2 n_k - 1`` kernel values ``c``. :func:`kron_core` returns

* ``logdet = n_2 log|K_1| + n_1 log|K_2|``,
* ``quad = tr(U^T A_1 U A_2)`` (``A_k = K_k^{-1}``),
* ``Hx = K_1'' A_1 U`` and ``Hy = U A_2 K_2''^T`` (the conditional mean's second derivatives),

from ``(kappa_1, kappa_1'', kappa_2, kappa_2'', U)``. Forward: one Cholesky and inverse per
axis and four ``n x n`` products (``P_0 = A_1 U``, ``P_1 = U A_2``, ``Hx``, ``Hy``). Backward,
with ``g_l``, ``g_q``, ``G_x``, ``G_y`` the incoming gradients and ``S = A_1 U A_2``:

* ``dU = 2 g_q S + A_1 K_1''^T G_x + G_y K_2'' A_2``;
* ``dK_1'' = G_x P_0^T``, ``dK_2'' = G_y^T P_1``;
* ``dK_1 = -A_1 dA_1 A_1 + g_l n_2 A_1`` with ``dA_1 = (g_q P_1 + K_1''^T G_x) U^T``, i.e.
  ``-(g_q S + A_1 K_1''^T G_x) P_0^T + g_l n_2 A_1``; the same for axis 2.

A Toeplitz parameter's gradient is the sum of its matrix gradient along each diagonal; for a
product ``X Y^T`` that is the cross-correlation of the columns of ``X`` and ``Y`` summed over
columns, computed by FFT (``O(n^2 log n)``) instead of forming the product. The backward thus
takes five ``n x n`` products where autograd through the same algebra takes twelve.

:func:`kron_core_1d` is the 1-D case (``n_2 = 1``): ``logdet = log|K|``, ``quad = u^T A u``,
``H = K'' A u``; its backward is matrix-vector products and correlations of vectors only
(``dK = -(A z)(A u)^T + g_l A`` is rank one plus ``A``), so a step costs one Cholesky
factorisation and inverse.
"""

from __future__ import annotations

from typing import Any

import torch

from .kron import spd_inverse_logdet

__all__ = ["kron_core", "kron_core_1d", "toeplitz"]


def toeplitz(c: torch.Tensor, n: int) -> torch.Tensor:
    """``T_{ij} = c[i - j + n - 1]`` ``(n, n)`` from the ``2n - 1`` values ``c``."""
    idx = torch.arange(n, device=c.device)
    return c[idx[:, None] - idx[None, :] + (n - 1)]


def _toeplitz_inverse_logdet(
    k: torch.Tensor, n: int, jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K^{-1}, log|K|)`` of ``K = T(k) + jitter I`` ``(n, n)``."""
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    return spd_inverse_logdet(toeplitz(k, n) + jitter * eye)


def _diag_sums(M: torch.Tensor) -> torch.Tensor:
    """``s[m + n - 1] = sum_{i - j = m} M_ij`` for an ``(n, n)`` matrix: the gradient of the
    Toeplitz values from the gradient of the matrix."""
    n = M.shape[0]
    idx = torch.arange(n, device=M.device)
    out = torch.zeros(2 * n - 1, dtype=M.dtype, device=M.device)
    return out.index_add_(0, (idx[:, None] - idx[None, :] + (n - 1)).reshape(-1), M.reshape(-1))


def _corr_cols(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``_diag_sums(X @ Y.T)`` by FFT along the rows: the column cross-correlations summed."""
    n = X.shape[0]
    L = 2 * n
    Fx = torch.fft.rfft(X, n=L, dim=0)
    Fy = torch.fft.rfft(Y, n=L, dim=0)
    c = torch.fft.irfft((Fx * Fy.conj()).sum(dim=1), n=L)
    # lag m = i - j: m >= 0 at index m, m < 0 at L + m
    return torch.cat([c[L - (n - 1) :], c[:n]])


class _KronCore(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        k1: torch.Tensor,
        k1dd: torch.Tensor,
        k2: torch.Tensor,
        k2dd: torch.Tensor,
        U: torch.Tensor,
        jitter: float,
    ) -> tuple[torch.Tensor, ...]:
        n1, n2 = U.shape
        A1, ld1 = _toeplitz_inverse_logdet(k1, n1, jitter)
        A2, ld2 = _toeplitz_inverse_logdet(k2, n2, jitter)
        T1, T2 = toeplitz(k1dd, n1), toeplitz(k2dd, n2)
        P0, P1 = A1 @ U, U @ A2
        quad = (P0 * P1).sum()
        Hx, Hy = T1 @ P0, P1 @ T2.T
        ctx.save_for_backward(A1, A2, T1, T2, U, P0, P1)
        return n2 * ld1 + n1 * ld2, quad, Hx, Hy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, gl: torch.Tensor, gq: torch.Tensor, Gx: torch.Tensor, Gy: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        A1, A2, T1, T2, U, P0, P1 = ctx.saved_tensors
        n1, n2 = U.shape
        S = A1 @ P1  # A1 U A2
        TG1 = T1.T @ Gx
        W1 = A1 @ TG1
        GT2 = Gy @ T2
        W2 = GT2 @ A2
        dU = 2 * gq * S + W1 + W2
        dk1dd = _corr_cols(Gx, P0)  # diag sums of Gx P0^T
        dk2dd = _corr_cols(Gy.T, P1.T)  # diag sums of Gy^T P1
        dk1 = -_corr_cols(gq * S + W1, P0) + gl * n2 * _diag_sums(A1)
        dk2 = -_corr_cols(P1.T, (gq * S + W2).T) + gl * n1 * _diag_sums(A2)
        return dk1, dk1dd, dk2, dk2dd, dU, None


def kron_core(
    k1: torch.Tensor,
    k1dd: torch.Tensor,
    k2: torch.Tensor,
    k2dd: torch.Tensor,
    U: torch.Tensor,
    jitter: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logdet, quad, Hx, Hy)`` of the 2-D GP-HM model on a uniform grid (module notes);
    ``k*`` are the ``2 n_k - 1`` Toeplitz values of ``K_k`` (without the jitter) and ``K_k''``.
    """
    return _KronCore.apply(k1, k1dd, k2, k2dd, U, jitter)


class _KronCore1d(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, k: torch.Tensor, kdd: torch.Tensor, u: torch.Tensor, jitter: float
    ) -> tuple[torch.Tensor, ...]:
        n = u.shape[0]
        A, logdet = _toeplitz_inverse_logdet(k, n, jitter)
        T = toeplitz(kdd, n)
        p = A @ u
        ctx.save_for_backward(A, T, p)
        return logdet, u @ p, T @ p

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, gl: torch.Tensor, gq: torch.Tensor, gH: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        A, T, p = ctx.saved_tensors
        w = gq * p + A @ (T.T @ gH)  # A z with z = g_q u + T''^T g_H
        du = gq * p + w
        dkdd = _corr_cols(gH[:, None], p[:, None])
        dk = -_corr_cols(w[:, None], p[:, None]) + gl * _diag_sums(A)
        return dk, dkdd, du, None


def kron_core_1d(
    k: torch.Tensor, kdd: torch.Tensor, u: torch.Tensor, jitter: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log|K|, u^T K^{-1} u, K'' K^{-1} u)`` on a uniform 1-D grid (module notes)."""
    return _KronCore1d.apply(k, kdd, u, jitter)
