"""Curvature of a model's loss as linear operators, and estimators built on them.

Every matrix here is a :class:`~neuralsolve.LinearOperator` over the flattened trainable
parameters (length ``d``, in the parameters' order), so CG, Lanczos and the estimators below
apply to it unchanged:

* :func:`hessian_operator`: ``H = d^2 L / d theta^2`` by double backward (Pearlmutter's trick);
* :func:`ggn_operator`: the generalised Gauss-Newton ``G = J^T H_L J``, with ``J`` the Jacobian of
  the model's outputs and ``H_L`` the Hessian of the loss in the outputs (PSD for convex losses);
* :func:`fisher_operator`: the empirical Fisher ``F = (1/N) sum_i g_i g_i^T`` of the per-sample
  gradients ``g_i`` (of the loss on sample ``i`` alone).

Estimators, exact in expectation, with standard errors:

* :func:`hutchinson_trace` / :func:`hutchinson_diagonal`: ``E[z^T A z] = tr A`` and
  ``E[z * A z] = diag A`` for Rademacher probes ``z`` in {-1, +1} (Hutchinson 1990);
* :func:`top_eigenvalues`: block Lanczos with full reorthogonalisation (repeated eigenvalues
  found with their multiplicity);
* :func:`spectral_density`: stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani et
  al. 2019): Gauss quadrature nodes ``theta_i`` and weights ``w_i`` from each probe's Lanczos
  run, ``sum_i w_i theta_i^k = z^T A^k z / z^T z`` exactly for ``k <= 2m - 1``, smoothed with a
  Gaussian kernel into a density that integrates to one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuralsolve.checks import check_choice, check_int, check_positive_int
from neuralsolve.errors import NonFiniteError
from neuralsolve.lanczos import lanczos
from neuralsolve.linop import CallableOperator, LinearOperator, as_operator

__all__ = [
    "Estimate",
    "SpectralDensity",
    "fisher_operator",
    "ggn_operator",
    "hessian_operator",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "rademacher",
    "spectral_density",
    "top_eigenvalues",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- parameters
def _trainable(
    model: torch.nn.Module, params: Iterable[torch.nn.Parameter] | None
) -> list[torch.Tensor]:
    plist = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not plist:
        raise ValueError("the model has no trainable parameters (requires_grad=True)")
    if any(p.is_complex() for p in plist):
        raise TypeError(
            "curvature operators are real; view complex parameters as real (torch.view_as_real)"
        )
    dtypes = {p.dtype for p in plist}
    devices = {p.device for p in plist}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(
            f"all parameters must share one dtype and device, got {dtypes} on {devices}"
        )
    return plist


def _flat(tensors: Iterable[torch.Tensor | None], like: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (torch.zeros_like(p) if t is None else t).reshape(-1)
            for t, p in zip(tensors, like, strict=True)
        ]
    )


def _split(v: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in like:
        out.append(v[i : i + p.numel()].view_as(p))
        i += p.numel()
    return out


def _operator(
    fn: Callable[[torch.Tensor], torch.Tensor], plist: list[torch.Tensor], *, psd: bool
) -> LinearOperator:
    d = sum(p.numel() for p in plist)
    return CallableOperator(
        fn,
        (d, d),
        dtype=plist[0].dtype,
        device=plist[0].device,
        symmetric=True,
        positive_definite=True if psd else None,
    )


# ----------------------------------------------------------------------------- operators
def hessian_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
) -> LinearOperator:
    """The Hessian of ``loss_fn(model(inputs), targets)`` in the parameters, as an operator.

    The first backward pass (with its graph) is done once; each product is one more backward
    through it (``H v = d(g . v)/d theta``). Symmetric, not necessarily definite.
    """
    plist = _trainable(model, params)
    loss = loss_fn(model(inputs), targets)
    grads = torch.autograd.grad(loss, plist, create_graph=True, allow_unused=True)
    if all(g is None for g in grads):
        raise ValueError("the loss does not depend on the parameters")
    flat_grad = _flat(grads, plist)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        out = torch.autograd.grad(
            flat_grad, plist, grad_outputs=v, retain_graph=True, allow_unused=True
        )
        return _flat(out, plist).detach()

    return _operator(hvp, plist, psd=False)


def ggn_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
) -> LinearOperator:
    """The generalised Gauss-Newton ``J^T H_L J`` of ``loss_fn(model(inputs), targets)``.

    ``J v`` by the double-vjp trick, ``H_L`` by a Hessian-vector product in the outputs, ``J^T``
    by a vjp. Positive semi-definite when the loss is convex in the outputs (MSE,
    cross-entropy); tagged positive definite only for CG's benefit when that holds.
    """
    plist = _trainable(model, params)
    outputs = model(inputs)
    loss = loss_fn(outputs, targets)
    (dloss,) = torch.autograd.grad(loss, outputs, create_graph=True)
    dummy = torch.zeros_like(outputs, requires_grad=True)
    jt_dummy = torch.autograd.grad(
        outputs, plist, grad_outputs=dummy, create_graph=True, allow_unused=True
    )
    jt_dummy_flat = _flat(jt_dummy, plist)

    def gvp(v: torch.Tensor) -> torch.Tensor:
        (jv,) = torch.autograd.grad(jt_dummy_flat, dummy, grad_outputs=v, retain_graph=True)
        (hjv,) = torch.autograd.grad(dloss, outputs, grad_outputs=jv, retain_graph=True)
        out = torch.autograd.grad(
            outputs, plist, grad_outputs=hjv, retain_graph=True, allow_unused=True
        )
        return _flat(out, plist).detach()

    return _operator(gvp, plist, psd=True)


def fisher_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
) -> LinearOperator:
    """The empirical Fisher ``(1/N) sum_i g_i g_i^T`` over the ``N`` samples (rows of
    ``inputs``), ``g_i`` the gradient of ``loss_fn`` on sample ``i`` alone.

    The ``N x d`` per-sample gradients are computed once (``N`` backward passes) and kept; each
    product is then two matrix-vector products. Positive semi-definite.
    """
    plist = _trainable(model, params)
    n = inputs.shape[0]
    rows = []
    for i in range(n):
        loss = loss_fn(model(inputs[i : i + 1]), targets[i : i + 1])
        rows.append(_flat(torch.autograd.grad(loss, plist, allow_unused=True), plist).detach())
    G = torch.stack(rows)  # (N, d)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return G.T @ (G @ v) / n

    op = _operator(fvp, plist, psd=True)
    op.per_sample_gradients = G  # type: ignore[attr-defined]
    return op


# ----------------------------------------------------------------------------- estimators
@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate: ``value`` and its ``std_error`` (same shape), from ``num_probes``."""

    value: torch.Tensor
    std_error: torch.Tensor
    num_probes: int


def rademacher(
    n: int, k: int, *, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``(n, k)`` independent signs, +1 or -1 with probability 1/2 each (drawn on the CPU from
    ``generator`` so that results do not depend on the device)."""
    bits = torch.randint(0, 2, (n, k), generator=generator, dtype=torch.int8)
    return (bits.to(dtype) * 2 - 1).to(device)


def _probe_products(
    op: LinearOperator, num_probes: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    check_positive_int("num_probes", num_probes)
    n = op.shape[0]
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"the operator must be square, got {op.shape}")
    Z = rademacher(n, num_probes, dtype=op.dtype, device=op.device, generator=generator)
    return Z, op.matmat(Z)


def _estimate(samples: torch.Tensor, num_probes: int) -> Estimate:
    value = samples.mean(dim=-1)
    err = (
        samples.std(dim=-1, unbiased=True) / num_probes**0.5
        if num_probes > 1
        else torch.full_like(value, float("inf"))
    )
    return Estimate(value, err, num_probes)


def hutchinson_trace(A: Any, num_probes: int, generator: torch.Generator | None = None) -> Estimate:
    """``tr A`` from ``num_probes`` Rademacher probes: the mean of ``z^T A z``.

    The variance of one sample is ``2 (||A||_F^2 - ||diag A||^2)`` for symmetric ``A``.
    """
    op = as_operator(A)
    Z, AZ = _probe_products(op, num_probes, generator)
    return _estimate((Z * AZ).sum(dim=0), num_probes)  # one sample z^T A z per probe


def hutchinson_diagonal(
    A: Any, num_probes: int, generator: torch.Generator | None = None
) -> Estimate:
    """``diag A`` from ``num_probes`` Rademacher probes: the mean of ``z * (A z)``.

    The variance of entry ``i`` of one sample is ``sum_{j != i} A_ij^2``.
    """
    op = as_operator(A)
    Z, AZ = _probe_products(op, num_probes, generator)
    return _estimate(Z * AZ, num_probes)


def top_eigenvalues(
    A: Any,
    k: int,
    *,
    which: str = "largest",
    num_steps: int | None = None,
    block_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The ``k`` largest (or ``"smallest"``, or largest-``"magnitude"``) eigenvalues of a
    symmetric operator, repeated eigenvalues as often as they occur.

    Block Lanczos with full reorthogonalisation: a block of ``block_size`` Rademacher vectors
    (default ``k``) and its Krylov blocks ``Z, AZ, A^2 Z, ...`` are orthonormalised against each
    other until ``num_steps`` vectors (default ``min(d, max(6k, 40))``; more, more accurate),
    and the Rayleigh-Ritz values of ``A`` on that space are returned. One start vector spans
    only one direction of each eigenspace (in exact arithmetic its Krylov space holds one copy
    of a repeated eigenvalue), a block of ``b`` vectors spans ``b``: an eigenvalue of
    multiplicity up to ``block_size`` is found with all its copies (PyHessian deflates a power
    iteration for the same reason).

    Parameters
    ----------
    A : LinearOperator or matrix
        Symmetric, ``(d, d)``.
    k : int
        How many eigenvalues, ``1 <= k <= d``.
    which : {"largest", "smallest", "magnitude"}
    num_steps : int, optional
        Matrix-vector products (Krylov vectors) in all, ``k..d``.
    block_size : int, optional
        Start vectors, ``1..num_steps``: the highest multiplicity found in full.
    generator : torch.Generator, optional
        For the start block.

    Returns
    -------
    torch.Tensor
        ``(k,)``: descending for ``"largest"`` and ``"magnitude"`` (by absolute value),
        ascending for ``"smallest"``.
    """
    op = as_operator(A)
    d = op.shape[0]
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"the operator must be square, got {op.shape}")
    check_int("k", k, minimum=1, maximum=d)
    check_choice("which", which, ("largest", "smallest", "magnitude"))
    m = num_steps if num_steps is not None else min(d, max(6 * k, 40))
    check_int("num_steps", m, minimum=k, maximum=d)
    b = block_size if block_size is not None else k
    check_int("block_size", b, minimum=1, maximum=m)
    theta = _block_krylov_ritz_values(op, m, b, generator)
    if which == "largest":
        return theta.flip(0)[:k]
    if which == "smallest":
        return theta[:k]
    return theta[theta.abs().argsort(descending=True)][:k]


def _block_krylov_ritz_values(
    op: LinearOperator, m: int, b: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Ascending Ritz values of ``op`` on the block Krylov space of a random ``(d, b)`` block,
    built to at most ``m`` orthonormal vectors (fewer when it becomes invariant: its Ritz values
    are then exact eigenvalues, and at least ``b`` of them)."""
    d = op.shape[0]
    eps = torch.finfo(op.dtype).eps
    Z = rademacher(d, b, dtype=op.dtype, device=op.device, generator=generator)
    Q, _ = torch.linalg.qr(Z)  # (d, b); a Rademacher block has full rank with probability ~1
    blocks: list[torch.Tensor] = [Q]
    products: list[torch.Tensor] = []
    scale = 0.0
    while True:
        AQ = op.matmat(blocks[-1])  # (d, b_j)
        if not bool(torch.isfinite(AQ).all()):
            raise NonFiniteError("the operator returned non-finite values: check it")
        products.append(AQ)
        scale = max(scale, float(torch.linalg.matrix_norm(AQ, ord=2)))
        done = sum(q.shape[1] for q in blocks)
        if done >= m:
            break
        basis = torch.cat(blocks, dim=1)  # (d, done)
        W = AQ
        for _ in range(2):  # full reorthogonalisation, twice (Parlett)
            W = W - basis @ (basis.T @ W)
        U, S, _ = torch.linalg.svd(W, full_matrices=False)
        keep = int((S > 10 * eps * max(scale, 1e-300) * d**0.5).sum())
        if keep == 0:  # invariant subspace: its Ritz values are exact eigenvalues
            break
        blocks.append(U[:, : min(keep, m - done)])
    basis = torch.cat(blocks, dim=1)
    T = basis.T @ torch.cat(products, dim=1)  # (n, n) Rayleigh quotient Q^T A Q
    T = 0.5 * (T + T.T)
    return torch.linalg.eigvalsh(T.to(torch.float64)).to(op.dtype)


@dataclass(frozen=True)
class SpectralDensity:
    """An SLQ spectral density.

    Attributes
    ----------
    grid, density : torch.Tensor
        The smoothed density on a grid (integrates to one; plot ``density`` against ``grid``).
    nodes, weights : torch.Tensor
        ``(num_probes, m)`` Gauss quadrature nodes (Ritz values) and weights of each probe;
        each probe's weights sum to one.
    """

    grid: torch.Tensor
    density: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor

    def moment(self, k: int) -> torch.Tensor:
        """The estimate of ``tr(A^k) / d``: the probes' mean of ``sum_i w_i theta_i^k``."""
        return (self.weights * self.nodes**k).sum(dim=1).mean()


def spectral_density(
    A: Any,
    num_probes: int,
    lanczos_steps: int,
    *,
    grid_points: int = 512,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of a symmetric operator's eigenvalue density.

    Parameters
    ----------
    num_probes : int
        Rademacher start vectors (averaged).
    lanczos_steps : int
        ``m`` per probe (fully reorthogonalised).
    grid_points : int
        Points of the returned grid, spanning the nodes with a margin.
    sigma : float, optional
        Gaussian kernel width; default 1% of the nodes' span.
    """
    op = as_operator(A)
    d = op.shape[0]
    check_int("lanczos_steps", lanczos_steps, minimum=1, maximum=d)
    check_positive_int("num_probes", num_probes)
    nodes, weights = [], []
    for _ in range(num_probes):
        z = rademacher(d, 1, dtype=op.dtype, device=op.device, generator=generator)[:, 0]
        res = lanczos(op, lanczos_steps, v0=z, reorthogonalize="full", store_vectors=False)
        T = res.tridiagonal().to(torch.float64)
        theta, S = torch.linalg.eigh(T)
        w = S[0, :] ** 2
        pad = lanczos_steps - res.steps  # an early invariant subspace: pad with zero weights
        nodes.append(torch.cat([theta, theta.new_full((pad,), float(theta[-1]))]))
        weights.append(torch.cat([w, w.new_zeros(pad)]))
    N = torch.stack(nodes)
    W = torch.stack(weights)
    lo, hi = float(N.min()), float(N.max())
    span = max(hi - lo, 1e-12 * max(1.0, abs(hi)))
    s = sigma if sigma is not None else 0.01 * span
    if not s > 0:
        raise ValueError(f"sigma must be positive, got {s}")
    grid = torch.linspace(lo - 5 * s, hi + 5 * s, grid_points, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((grid[:, None, None] - N[None]) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    density = (kernel * W[None]).sum(dim=2).mean(dim=1)
    return SpectralDensity(grid=grid, density=density, nodes=N, weights=W)
