"""The Lanczos process: a symmetric operator reduced to a tridiagonal matrix, and its Ritz pairs.

After ``m`` steps from a unit vector ``q_1``, ``A Q_m = Q_m T_m + beta_m q_{m+1} e_m^T`` with
orthonormal ``Q_m = [q_1 ... q_m]`` and tridiagonal ``T_m`` (diagonal ``alpha``, off-diagonal
``beta``). The eigenpairs ``(theta_i, s_i)`` of ``T_m`` give Ritz pairs ``(theta_i, Q_m s_i)``
whose residual is exactly ``||A y_i - theta_i y_i|| = |beta_m (s_i)_m|``. Extremal eigenvalues
converge first. In floating point the ``q_j`` lose orthogonality once Ritz values converge,
which produces spurious copies of them; ``reorthogonalize="full"`` (the default) removes that
by Gram-Schmidt against all previous vectors, done twice (Parlett, *The Symmetric Eigenvalue
Problem*, 1998, ch. 13).

One implementation serves the DCDM training data (low-end Ritz vectors of a Poisson matrix)
and the curvature package (extreme eigenvalues and spectral densities of Hessians).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neuralsolve.checks import check_choice, check_int
from neuralsolve.errors import NonFiniteError, NotSPDError
from neuralsolve.linop import as_operator

__all__ = ["LanczosResult", "lanczos", "ritz_pairs"]


@dataclass(frozen=True)
class LanczosResult:
    """The output of :func:`lanczos`.

    Attributes
    ----------
    alpha : torch.Tensor
        ``(m,)`` diagonal of ``T_m``.
    beta : torch.Tensor
        ``(m,)`` off-diagonals; ``beta[:-1]`` are those of ``T_m`` and ``beta[-1]`` is the
        residual coefficient ``beta_m``.
    Q : torch.Tensor or None
        ``(m, n)`` Lanczos vectors as rows (``None`` when not stored).
    steps : int
        ``m``; fewer than asked when an invariant subspace was found.
    invariant : bool
        ``True`` when the process stopped because ``beta`` vanished (``T_m``'s eigenvalues are
        then exact eigenvalues of ``A``).
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    Q: torch.Tensor | None
    steps: int
    invariant: bool

    def tridiagonal(self) -> torch.Tensor:
        """``T_m`` as a dense ``(m, m)`` tensor."""
        T = torch.diag(self.alpha)
        if self.steps > 1:
            off = self.beta[: self.steps - 1]
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        return T

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """All Ritz values (ascending), their residual norms, and the Ritz vectors ``(n, m)``
        (``None`` when the Lanczos vectors were not stored)."""
        T = self.tridiagonal().to(torch.float64)
        theta, S = torch.linalg.eigh(T)
        resid = (self.beta[-1].to(torch.float64) * S[-1, :]).abs()
        vectors = None
        if self.Q is not None:
            vectors = self.Q.T @ S.to(self.Q.dtype)
        return theta.to(self.alpha.dtype), resid.to(self.alpha.dtype), vectors


def lanczos(
    A: Any,
    num_steps: int,
    *,
    v0: torch.Tensor | None = None,
    reorthogonalize: str = "full",
    store_vectors: bool = True,
    generator: torch.Generator | None = None,
) -> LanczosResult:
    """Run ``num_steps`` steps of Lanczos on a symmetric operator.

    Parameters
    ----------
    A : LinearOperator or matrix
        Symmetric (tag not ``False``).
    num_steps : int
        ``m``, at most ``n``.
    v0 : torch.Tensor, optional
        Start vector ``(n,)`` (normalised here); default a Rademacher vector from ``generator``.
    reorthogonalize : {"full", "none"}
        Full (twice-applied classical Gram-Schmidt) or none (three-term recurrence only; cheaper,
        loses orthogonality, fine for spectral densities with few steps).
    store_vectors : bool
        Keep ``Q`` (needed for Ritz vectors; ``"full"`` keeps it anyway while running).
    generator : torch.Generator, optional
        For the default start vector.

    Returns
    -------
    LanczosResult

    Raises
    ------
    NotSPDError
        If ``A`` is tagged non-symmetric.
    ValueError
        For ``num_steps`` outside ``1..n`` or a zero/mis-shaped ``v0``.
    """
    op = as_operator(A)
    n = op.shape[0]
    if op.shape[0] != op.shape[1] or op.symmetric is False:
        raise NotSPDError(
            f"Lanczos needs a symmetric operator; A has shape {op.shape} and symmetric={op.symmetric}"
        )
    check_int("num_steps", num_steps, minimum=1, maximum=n)
    check_choice("reorthogonalize", reorthogonalize, ("full", "none"))
    if v0 is None:
        v = torch.randint(0, 2, (n,), generator=generator, device="cpu").to(op.dtype) * 2 - 1
        v = v.to(op.device)
    else:
        if not isinstance(v0, torch.Tensor) or tuple(v0.shape) != (n,):
            raise ValueError(
                f"v0 must be a tensor of shape ({n},), got {getattr(v0, 'shape', type(v0))}"
            )
        v = v0.to(device=op.device, dtype=op.dtype)
    vnorm = torch.linalg.vector_norm(v)
    if not bool(torch.isfinite(vnorm)) or float(vnorm) == 0:
        raise ValueError("the start vector v0 is zero or not finite")
    keep = store_vectors or reorthogonalize == "full"
    Q = torch.empty((num_steps, n), dtype=op.dtype, device=op.device) if keep else None
    alpha = torch.zeros(num_steps, dtype=op.dtype, device=op.device)
    beta = torch.zeros(num_steps, dtype=op.dtype, device=op.device)
    q = v / vnorm
    q_prev = torch.zeros_like(q)
    b_prev = torch.zeros((), dtype=op.dtype, device=op.device)
    scale = torch.zeros((), dtype=op.dtype, device=op.device)
    eps = torch.finfo(op.dtype).eps
    steps, invariant = 0, False
    for j in range(num_steps):
        if Q is not None:
            Q[j] = q
        w = op.apply_batch(q.reshape(1, n)).reshape(n)
        a = torch.dot(q, w)
        w = w - a * q - b_prev * q_prev
        if reorthogonalize == "full":
            for _ in range(2):
                w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)  # type: ignore[index]
        b = torch.linalg.vector_norm(w)
        alpha[j], beta[j] = a, b
        steps = j + 1
        if not bool(torch.isfinite(b)):
            raise NonFiniteError(
                f"Lanczos produced a non-finite value at step {j + 1}: check the operator"
            )
        scale = torch.maximum(scale, a.abs() + b + b_prev)
        if float(b) <= 10 * eps * max(float(scale), 1e-300) * (n**0.5):
            invariant = True
            break
        q_prev, q, b_prev = q, w / b, b
    Qout = None
    if store_vectors and Q is not None:
        Qout = Q[:steps]
    return LanczosResult(
        alpha=alpha[:steps], beta=beta[:steps], Q=Qout, steps=steps, invariant=invariant
    )


def ritz_pairs(
    A: Any,
    k: int,
    *,
    which: str = "largest",
    num_steps: int | None = None,
    v0: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``k`` extreme Ritz pairs of a symmetric operator from one fully reorthogonalised run.

    Parameters
    ----------
    k : int
        How many pairs.
    which : {"largest", "smallest"}
        Which end of the spectrum.
    num_steps : int, optional
        Lanczos steps (default ``min(n, max(2k + 20, 3k))``); more steps, more accurate pairs.

    Returns
    -------
    values : torch.Tensor
        ``(k,)`` Ritz values, descending for ``"largest"``, ascending for ``"smallest"``.
    vectors : torch.Tensor
        ``(n, k)`` orthonormal Ritz vectors.
    residuals : torch.Tensor
        ``(k,)`` exact residual norms ``||A y - theta y||`` (check convergence with them).
    """
    op = as_operator(A)
    n = op.shape[0]
    check_int("k", k, minimum=1, maximum=n)
    check_choice("which", which, ("largest", "smallest"))
    m = num_steps if num_steps is not None else min(n, max(2 * k + 20, 3 * k))
    if m < k:
        raise ValueError(f"num_steps ({m}) must be at least k ({k})")
    res = lanczos(op, m, v0=v0, reorthogonalize="full", store_vectors=True, generator=generator)
    theta, resid, Y = res.ritz()
    if res.steps < k:
        raise ValueError(
            f"Lanczos found an invariant subspace of dimension {res.steps} < k = {k} from this start "
            "vector: pass another v0 or a smaller k"
        )
    idx = (
        torch.arange(res.steps - 1, res.steps - 1 - k, -1)
        if which == "largest"
        else torch.arange(k)
    )
    idx = idx.to(theta.device)
    return theta[idx], Y[:, idx], resid[idx]  # type: ignore[index]
