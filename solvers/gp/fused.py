"""The GP-HM core on a uniform grid, with a hand-written backward that uses the Toeplitz
structure.

On a uniform ``n_1 x n_2`` grid the per-axis kernel matrices are Toeplitz:
``K_k = T(kappa_k) + jitter I`` and ``K_k'' = T(kappa_k'')``, with ``T(c)_{ij} = c_{i-j}`` built
from the ``2 n_k - 1`` kernel values ``c``. :func:`kron_core` returns

* ``logdet = n_2 log|K_1| + n_1 log|K_2|``,
* ``quad = tr(U^T A_1 U A_2)`` (``A_k = K_k^{-1}``),
* ``Hx = K_1'' A_1 U`` and ``Hy = U A_2 K_2''^T`` (the conditional mean's second derivatives),

from ``(kappa_1, kappa_1'', kappa_2, kappa_2'', U)``.

Forward: one Cholesky factorisation and inverse per axis, two ``n x n`` products
(``P_0 = A_1 U``, ``P_1 = U A_2``), and ``Hx``, ``Hy`` as circulant products by FFT:
``T(c)`` is the top-left block of the ``2n``-periodic circulant with first column
``(c_0, .., c_{n-1}, 0, c_{-(n-1)}, .., c_{-1})``, so ``T(c) X`` is the first ``n`` rows of
``irfft(rfft(col) * rfft(X zero-padded to 2n))`` along the axis (``T(c)^T`` takes the
conjugate spectrum).

Backward, with ``g_l``, ``g_q``, ``G_x``, ``G_y`` the incoming gradients and
``S = A_1 U A_2``:

* ``dU = Y_1 + Y_2`` with ``Y_1 = A_1 (g_q P_1 + K_1''^T G_x)`` and
  ``Y_2 = (g_q P_0 + G_y K_2'') A_2`` (so ``Y_1 + Y_2 = 2 g_q S + A_1 K_1''^T G_x +
  G_y K_2'' A_2``);
* ``dK_1'' = G_x P_0^T``, ``dK_2'' = G_y^T P_1``;
* ``dK_1 = -A_1 dA_1 A_1 + g_l n_2 A_1`` with ``dA_1 = (g_q P_1 + K_1''^T G_x) U^T``, i.e.
  ``-Y_1 P_0^T + g_l n_2 A_1``; for axis 2, ``-P_1^T Y_2 + g_l n_1 A_2``.

A Toeplitz parameter's gradient is the sum of its matrix gradient along each diagonal; for a
product ``X Y^T`` that is the cross-correlation of the columns of ``X`` and ``Y`` summed over
columns, computed by FFT (``O(n^2 log n)``) instead of forming the product. The spectra of
``P_0``, ``P_1`` and of the incoming gradients serve both the circulant products and these
correlations. A step thus takes four ``n x n`` products (two forward, two backward), where
autograd through the same algebra takes sixteen.

:func:`kron_core_1d` is the 1-D case (``n_2 = 1``): ``logdet = log|K|``, ``quad = u^T A u``,
``H = K'' A u``; its backward is matrix-vector products and correlations of vectors only
(``dK = -(A z)(A u)^T + g_l A`` is rank one plus ``A``), so a step costs one Cholesky
factorisation and inverse.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .kron import spd_inverse_logdet

__all__ = ["kron_core", "kron_core_1d", "toeplitz"]


def toeplitz(c: torch.Tensor, n: int) -> torch.Tensor:
    """``T_{ij} = c[i - j + n - 1]`` ``(n, n)`` from the ``2n - 1`` values ``c``."""
    return c[_lag_index(n, c.device)]


@functools.lru_cache(maxsize=4)
def _lag_index(n: int, device: torch.device) -> torch.Tensor:
    """``I_{ij} = i - j + n - 1`` ``(n, n)``: where entry ``(i, j)`` of ``T(c)`` sits in ``c``."""
    idx = torch.arange(n, device=device)
    return idx[:, None] - idx[None, :] + (n - 1)


_scratch = threading.local()


def _buffer(name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A scratch tensor of this thread, kept from call to call (zero when first made).

    Used for the zero-padded FFT inputs: ``torch.fft.rfft(x, n=2n)`` pads into a fresh zeroed
    array on every call, which costs more than the transform (and, with glibc, page faults for
    a block this large; see :mod:`neuralsolve.allocator`). Here the far half stays zero and only
    the near half is written. (The transforms' outputs are not reused: with ``out=`` torch's CPU
    FFT computes into a temporary and copies.)
    """
    store: dict[tuple[Any, ...], Tensor] = _scratch.__dict__.setdefault("buffers", {})
    key = (name, tuple(shape), dtype, device)
    buf = store.get(key)
    if buf is None:
        if len(store) >= 32:
            store.clear()
        buf = store[key] = torch.zeros(tuple(shape), dtype=dtype, device=device)
    return buf


def _toeplitz_inverse_logdet(k: Tensor, n: int, jitter: float) -> tuple[Tensor, Tensor]:
    """``(K^{-1}, log|K|)`` of ``K = T(k) + jitter I`` ``(n, n)``."""
    K = toeplitz(k, n)
    K.diagonal().add_(jitter)
    return spd_inverse_logdet(K)


def _diag_sums(M: Tensor) -> Tensor:
    """``s[m + n - 1] = sum_{i - j = m} M_ij`` for an ``(n, n)`` matrix: the gradient of the
    Toeplitz values from the gradient of the matrix."""
    n = M.shape[0]
    out = torch.zeros(2 * n - 1, dtype=M.dtype, device=M.device)
    return out.index_add_(0, _lag_index(n, M.device).reshape(-1), M.reshape(-1))


def _spectrum(X: Tensor, dim: int) -> Tensor:
    """The real FFT of ``X`` along ``dim``, zero-padded to twice its length (no wrap-around
    for lags up to ``n - 1``)."""
    n = X.shape[dim]
    shape = list(X.shape)
    shape[dim] = 2 * n
    padded = _buffer(f"padded{dim}", shape, X.dtype, X.device)  # its far half stays zero
    padded.narrow(dim, 0, n).copy_(X)
    return torch.fft.rfft(padded, dim=dim)


def _corr(FX: Tensor, FYc: Tensor, dim: int, n: int) -> Tensor:
    """``s[m + n - 1] = sum_{i - j = m} sum_c X_ic Y_jc`` (lags along ``dim``, summed over the
    other axis) from the spectrum ``FX`` of :func:`_spectrum` and the *conjugate* spectrum
    ``FYc`` of ``Y``: the diagonal sums of ``X Y^T`` (``dim = 0``) or of ``X^T Y``
    (``dim = 1``) without forming the product. (Conjugated once by the caller: a product with
    a lazily conjugated tensor copies it first.)"""
    L = 2 * n
    c = torch.fft.irfft((FX * FYc).sum(dim=1 - dim), n=L)
    # lag m = i - j: m >= 0 at index m, m < 0 at L + m
    return torch.cat([c[L - (n - 1) :], c[:n]])


def _embedding_spectrum(c: Tensor, n: int) -> Tensor:
    """The spectrum of the ``2n``-periodic circulant that holds ``T(c)`` in its top-left
    ``n x n`` block: first column ``(c_0, .., c_{n-1}, 0, c_{-(n-1)}, .., c_{-1})``."""
    col = torch.cat([c[n - 1 :], c.new_zeros(1), c[: n - 1]])
    return torch.fft.rfft(col)


def _toeplitz_apply(
    Ft: Tensor, FX: Tensor, dim: int, n: int, *, overwrite: bool = False, contiguous: bool = True
) -> Tensor:
    """``T(c)`` applied along ``dim`` of ``X`` from the spectra ``Ft`` of
    :func:`_embedding_spectrum` and ``FX`` of :func:`_spectrum` (``Ft.conj()`` applies
    ``T(c)^T``); ``overwrite`` multiplies ``FX`` in place; ``contiguous=False`` returns a view
    into the inverse transform (no copy)."""
    Ft = Ft.reshape((-1, 1) if dim == 0 else (1, -1))
    product = FX.mul_(Ft) if overwrite else FX * Ft
    out = torch.fft.irfft(product, n=2 * n, dim=dim).narrow(dim, 0, n)
    return out.contiguous() if contiguous else out


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
        Ft1, Ft2 = _embedding_spectrum(k1dd, n1), _embedding_spectrum(k2dd, n2)
        P0, P1 = A1 @ U, U @ A2
        quad = torch.dot(P0.reshape(-1), P1.reshape(-1))
        # axis 1 works along the rows (against P0), axis 2 along the columns (against P1)
        F0, F1 = _spectrum(P0, 0), _spectrum(P1, 1)
        Hx, Hy = _toeplitz_apply(Ft1, F0, 0, n1), _toeplitz_apply(Ft2, F1, 1, n2)
        # the backward correlates against P0 and P1: keep their conjugate spectra
        ctx.save_for_backward(A1, A2, Ft1, Ft2, P0, P1, F0.conj_physical_(), F1.conj_physical_())
        return n2 * ld1 + n1 * ld2, quad, Hx, Hy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, gl: torch.Tensor, gq: torch.Tensor, Gx: torch.Tensor, Gy: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        A1, A2, Ft1, Ft2, P0, P1, F0c, F1c = ctx.saved_tensors
        n1, n2 = P0.shape
        g = float(gq)
        # axis 1: Y1 = A1 (g_q P1 + T1^T Gx) = g_q S + A1 T1^T Gx
        FG = _spectrum(Gx, 0)
        dk1dd = _corr(FG, F0c, 0, n1)  # diag sums of Gx P0^T
        TG = _toeplitz_apply(Ft1.conj(), FG, 0, n1, overwrite=True, contiguous=False)
        Y1 = A1 @ TG.add_(P1, alpha=g)
        FY = _spectrum(Y1, 0)
        dk1 = _diag_sums(A1).mul_(float(gl) * n2).sub_(_corr(FY, F0c, 0, n1))
        # axis 2: Y2 = (g_q P0 + Gy T2) A2
        FG = _spectrum(Gy, 1)
        dk2dd = _corr(FG, F1c, 1, n2)  # diag sums of Gy^T P1
        TG = _toeplitz_apply(Ft2.conj(), FG, 1, n2, overwrite=True, contiguous=False)
        Y2 = TG.add_(P0, alpha=g) @ A2
        FY = _spectrum(Y2, 1)
        # diag sums of P1^T Y2: those of Y2^T P1 with the lags reversed
        dk2 = _diag_sums(A2).mul_(float(gl) * n1).sub_(_corr(FY, F1c, 1, n2).flip(0))
        return dk1, dk1dd, dk2, dk2dd, Y1.add_(Y2), None


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
        n = p.shape[0]
        w = gq * p + A @ (T.T @ gH)  # A z with z = g_q u + T''^T g_H
        du = gq * p + w
        Fp = _spectrum(p[:, None], 0).conj_physical_()  # both correlations are against p
        dkdd = _corr(_spectrum(gH[:, None], 0), Fp, 0, n)
        dk = -_corr(_spectrum(w[:, None], 0), Fp, 0, n) + gl * _diag_sums(A)
        return dk, dkdd, du, None


def kron_core_1d(
    k: torch.Tensor, kdd: torch.Tensor, u: torch.Tensor, jitter: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log|K|, u^T K^{-1} u, K'' K^{-1} u)`` on a uniform 1-D grid (module notes)."""
    return _KronCore1d.apply(k, kdd, u, jitter)
