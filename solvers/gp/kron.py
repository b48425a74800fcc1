"""Kronecker algebra on tensor grids: ``K = K_1 (x) K_2 (x) ... (x) K_d`` from per-axis factors.

The values on an ``n_1 x ... x n_d`` grid are an array ``U`` (``indexing="ij"``, row-major
``vec``); then ``(K_1 (x) ... (x) K_d) vec(U)`` is ``U`` multiplied by ``K_k`` along axis ``k``
for every ``k`` (in 2-D: ``K_1 U K_2^T``). With ``N = prod_k n_k``:

* solve: ``K^{-1} vec(U)`` multiplies by ``K_k^{-1}`` along each axis;
* ``log|K| = sum_k (N / n_k) log|K_k|``;
* the quadratic form ``vec(U)^T K^{-1} vec(U)``: in 2-D ``tr(U^T K_1^{-1} U K_2^{-T})``.

Each costs ``O(N sum_k n_k)`` after the per-axis factorisations (``O(sum_k n_k^3)``), against
``O(N^3)`` for the dense ``N x N`` matrix, which is never formed. Two factorisations:
:class:`KroneckerCholesky` (``K_k = L_k L_k^T``; triangular solves) and :class:`KroneckerEigh`
(``K_k = Q_k diag(lambda_k) Q_k^T``; it also solves the shifted system ``(K + s I) x = b``
with ``K + s I = (Q_1 (x) ... ) (lambda_1 (x) ... + s) (Q_1 (x) ...)^T``, the GP posterior's
``(K + sigma^2 I)^{-1}``). Both are differentiable through torch's autograd (Saatci, PhD
thesis, Cambridge 2012, ch. 5; Wilson, Gilboa, Nehorai & Cunningham, NeurIPS 2014).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuralsolve.errors import NotSPDError

__all__ = [
    "KroneckerCholesky",
    "KroneckerEigh",
    "kron_apply",
    "kron_dense",
    "spd_inverse_logdet",
]


def _along(M: torch.Tensor, U: torch.Tensor, axis: int) -> torch.Tensor:
    """``M`` ``(m, n)`` applied along ``axis`` of ``U`` (whose size there is ``n``)."""
    if U.ndim == 1:
        return M @ U
    if U.ndim == 2:
        return M @ U if axis == 0 else U @ M.T
    return torch.movedim(torch.tensordot(M, U, dims=([1], [axis])), 0, axis)


def kron_apply(mats: Sequence[torch.Tensor], U: torch.Tensor) -> torch.Tensor:
    """``(M_1 (x) ... (x) M_d) vec(U)`` as an array: ``M_k`` along axis ``k`` of ``U``."""
    if len(mats) != U.ndim:
        raise ValueError(f"kron_apply: {len(mats)} factors for a {U.ndim}-D array")
    for k, M in enumerate(mats):
        U = _along(M, U, k)
    return U


def kron_dense(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """The dense ``M_1 (x) ... (x) M_d`` (for tests on small grids only)."""
    out = mats[0]
    for M in mats[1:]:
        out = torch.kron(out, M)
    return out


def _check(mats: Sequence[torch.Tensor], who: str) -> list[torch.Tensor]:
    mats = list(mats)
    if not mats:
        raise ValueError(f"{who}: give at least one factor")
    for k, M in enumerate(mats):
        if M.ndim != 2 or M.shape[0] != M.shape[1]:
            raise ValueError(f"{who}: factor {k} must be square, got shape {tuple(M.shape)}")
    return mats


class _SPDInverseLogdet(torch.autograd.Function):
    """``(K^{-1}, log|K|)`` of an SPD matrix through one Cholesky factorisation, with the
    closed-form backward ``dK = -A G_A A + g A`` (``A = K^{-1}``; two matrix products, where
    autograd through ``cholesky`` and ``cholesky_inverse`` takes triangular solves and more)."""

    @staticmethod
    def forward(ctx: Any, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        L, info = torch.linalg.cholesky_ex(K)
        if int(info) != 0:
            raise NotSPDError(
                f"a {K.shape[0]} x {K.shape[0]} kernel factor is not positive definite "
                f"(Cholesky failed at column {int(info)}): raise the jitter"
            )
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        inverse = torch.cholesky_inverse(L)
        # symmetrised into L's (row-major) memory: no further n x n block
        A = torch.add(inverse, inverse.mT, out=L).mul_(0.5)
        ctx.save_for_backward(A)
        return A, logdet

    @staticmethod
    def backward(ctx: Any, gA: torch.Tensor, glogdet: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (A,) = ctx.saved_tensors
        gK = glogdet * A
        if gA is not None:
            gK = gK - A @ gA @ A
        return gK


def spd_inverse_logdet(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K^{-1}, log|K|)`` of a symmetric positive definite ``K`` (differentiable; one
    Cholesky factorisation, a two-product backward).

    Raises
    ------
    NotSPDError
        ``K`` is not positive definite.
    """
    return _SPDInverseLogdet.apply(K)


class KroneckerCholesky:
    """``K = K_1 (x) ... (x) K_d`` through per-axis Cholesky factors (module notes).

    Parameters
    ----------
    mats : sequence of Tensor
        The SPD factors ``K_k`` ``(n_k, n_k)``.
    jitter : float
        Added to each factor's diagonal before factorising.

    Raises
    ------
    NotSPDError
        A factor is not positive definite (with the jitter).
    """

    def __init__(self, mats: Sequence[torch.Tensor], jitter: float = 0.0) -> None:
        mats = _check(mats, "KroneckerCholesky")
        self.sizes = tuple(M.shape[0] for M in mats)
        self.L = []
        for k, M in enumerate(mats):
            if jitter:
                M = M + jitter * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
            L, info = torch.linalg.cholesky_ex(M)
            if int(info) != 0:
                raise NotSPDError(
                    f"Kronecker factor {k} ({M.shape[0]} x {M.shape[0]}) is not positive "
                    f"definite (Cholesky failed at column {int(info)}): raise the jitter"
                )
            self.L.append(L)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n

    def matvec(self, U: torch.Tensor) -> torch.Tensor:
        """``K vec(U)`` as an array."""
        return kron_apply([L @ L.T for L in self.L], U)

    def solve(self, U: torch.Tensor) -> torch.Tensor:
        """``K^{-1} vec(U)`` as an array."""
        for k, L in enumerate(self.L):
            if U.ndim == 1:
                U = torch.cholesky_solve(U[:, None], L)[:, 0]
            else:
                V = torch.movedim(U, k, 0)
                shape = V.shape
                V = torch.cholesky_solve(V.reshape(shape[0], -1), L).reshape(shape)
                U = torch.movedim(V, 0, k)
        return U

    def inverse_factors(self) -> list[torch.Tensor]:
        """``[K_1^{-1}, ..., K_d^{-1}]`` (dense per-axis inverses)."""
        return [torch.cholesky_inverse(L) for L in self.L]

    def logdet(self) -> torch.Tensor:
        """``log|K| = sum_k (N / n_k) log|K_k|``."""
        N = self.numel
        return sum(
            (N // n) * 2 * torch.log(torch.diagonal(L)).sum()
            for n, L in zip(self.sizes, self.L, strict=True)
        )

    def quad(self, U: torch.Tensor) -> torch.Tensor:
        """``vec(U)^T K^{-1} vec(U)``."""
        return (U * self.solve(U)).sum()


class KroneckerEigh:
    """``K = K_1 (x) ... (x) K_d`` through per-axis eigendecompositions (module notes).

    Parameters
    ----------
    mats : sequence of Tensor
        The symmetric PSD factors.
    jitter : float
        Added to each factor's diagonal before decomposing.
    """

    def __init__(self, mats: Sequence[torch.Tensor], jitter: float = 0.0) -> None:
        mats = _check(mats, "KroneckerEigh")
        self.sizes = tuple(M.shape[0] for M in mats)
        self.evals, self.evecs = [], []
        for M in mats:
            if jitter:
                M = M + jitter * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
            lam, Q = torch.linalg.eigh(M)
            self.evals.append(lam)
            self.evecs.append(Q)

    def eigenvalues(self) -> torch.Tensor:
        """The eigenvalues of ``K`` as an ``n_1 x ... x n_d`` array (outer products)."""
        lam = self.evals[0]
        for mu in self.evals[1:]:
            lam = lam.reshape(*lam.shape, 1) * mu
        return lam

    def matvec(self, U: torch.Tensor) -> torch.Tensor:
        Z = kron_apply([Q.T for Q in self.evecs], U)
        return kron_apply(self.evecs, Z * self.eigenvalues())

    def solve(self, U: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
        """``(K + shift I)^{-1} vec(U)`` as an array."""
        lam = self.eigenvalues() + shift
        if bool((lam <= 0).any()):
            raise NotSPDError(
                f"K + {shift} I is not positive definite (smallest eigenvalue "
                f"{float(lam.min()):.3g}): raise the jitter or the shift"
            )
        Z = kron_apply([Q.T for Q in self.evecs], U)
        return kron_apply(self.evecs, Z / lam)

    def logdet(self, shift: float = 0.0) -> torch.Tensor:
        """``log|K + shift I|``."""
        return torch.log(self.eigenvalues() + shift).sum()

    def quad(self, U: torch.Tensor) -> torch.Tensor:
        return (U * self.solve(U)).sum()
