"""Pointwise derivatives of a network (or any callable) through autograd, batched over points.

For ``u_fn: (n, d) -> (n,)`` (or ``(n, 1)``) acting row by row, the gradient of
``sum_j u(x_j)`` with respect to the ``(n, d)`` points is the ``(n, d)`` block of per-point
gradients ``grad u(x_j)``: one backward pass gives every point's gradient. A second backward
pass through column ``i`` of that block gives ``d^2 u / dx_i^2`` at every point, so the
Laplacian ``lap u = sum_i d^2 u / dx_i^2`` costs one backward pass per axis (``d`` in all), not
the ``d^2`` of a full Hessian.

Every pass uses ``create_graph=True``: the derivatives are differentiable functions of the
network's parameters (a PINN backpropagates its residual loss through them) and of the points
(an adversarial sampler moves the points along the residual's gradient).

Autograd is enabled inside the helper even under ``torch.no_grad()`` (an evaluation loop gets
the true derivatives, not zeros). A ``u_fn`` whose output does not depend on ``x`` (a constant,
or a detached tensor) has zero derivatives.

The batching is exact only when ``u_fn`` treats rows independently (an MLP does; a batch-norm
layer in training mode couples the rows and would mix the points' derivatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from neuralsolve.derivatives import Derivatives

__all__ = ["Derivatives", "derivatives", "evaluate"]


def _grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``d(sum y)/dx`` with a graph; zeros where ``y`` does not depend on ``x``."""
    if not y.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(
        y.sum(), x, create_graph=True, allow_unused=True, materialize_grads=True
    )
    return g


def evaluate(
    u_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, name: str
) -> torch.Tensor:
    """``u_fn(x)`` as an ``(n,)`` tensor; ``(n,)`` and ``(n, 1)`` outputs are accepted.

    Raises
    ------
    TypeError
        ``u_fn`` did not return a tensor.
    ValueError
        The output has another shape (the message names ``name``, e.g. the problem).
    """
    u = u_fn(x)
    n = x.shape[0]
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"{name}: u_fn must return a torch.Tensor, got {type(u).__name__}")
    if tuple(u.shape) == (n, 1):
        u = u[:, 0]
    elif tuple(u.shape) != (n,):
        raise ValueError(
            f"{name}: u_fn returned shape {tuple(u.shape)} for {n} points of shape "
            f"{tuple(x.shape)}: it must return ({n},) or ({n}, 1), one value per point"
        )
    return u


def derivatives(
    u_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    order: int = 2,
    *,
    second_axes: Sequence[int] | None = None,
    name: str = "derivatives",
) -> Derivatives:
    """The value, gradient and second derivatives of ``u_fn`` at the rows of ``x``.

    Parameters
    ----------
    u_fn : callable
        ``(n, d) -> (n,)`` or ``(n, 1)``, row by row (a network, an exact solution).
    x : Tensor, (n, d)
        Floating points. If ``x`` already requires grad it is used as is, so the
        derivatives stay differentiable in ``x``; otherwise a detached copy requiring grad is
        used.
    order : {0, 1, 2}
        0: ``u``; 1: ``u`` and ``grad u``; 2: also ``d^2 u/dx_i^2`` for ``i`` in
        ``second_axes``.
    second_axes : sequence of int, optional
        The axes of the second derivatives (default: all; a time-dependent problem passes its
        spatial axes). Costs one backward pass each.
    name : str
        Names the caller in error messages (the problem's name).

    Returns
    -------
    Derivatives
        ``u`` ``(n,)``, ``grad`` ``(n, d)``, ``hess_diag`` ``(n, d)``; built with
        ``create_graph=True``.

    Raises
    ------
    ValueError
        ``order`` not 0, 1 or 2; an axis out of range; ``x`` not ``(n, d)``; ``u_fn`` returned
        another shape than ``(n,)`` or ``(n, 1)``.
    TypeError
        ``x`` is not a floating tensor, or ``u_fn`` did not return a tensor.

    Examples
    --------
    >>> x = torch.rand(5, 2, dtype=torch.float64)
    >>> D = derivatives(lambda x: (x**2).sum(1), x)
    >>> torch.allclose(D.laplacian, torch.full((5,), 4.0, dtype=torch.float64))
    True
    """
    if order not in (0, 1, 2) or isinstance(order, bool):
        raise ValueError(f"{name}: order must be 0, 1 or 2, got {order!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}: points must be a floating torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: points must have shape (n, d), got {tuple(x.shape)}")
    d = x.shape[1]
    axes = tuple(range(d)) if second_axes is None else tuple(int(a) for a in second_axes)
    if any(not 0 <= a < d for a in axes):
        raise ValueError(f"{name}: second_axes {axes} out of range for {d}-D points")
    # Under torch.no_grad() (an evaluation loop) autograd is switched back on here: otherwise
    # u would carry no graph and every derivative would silently come out zero.
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        u = evaluate(u_fn, x, name)  # (n,)
        if order == 0:
            return Derivatives(x=x, u=u, grad=None, hess_diag=None, second_axes=axes)
        grad = _grad(u, x)  # (n, d)
        hess = None
        if order == 2:
            cols = [torch.zeros_like(u)] * d
            for a in axes:
                cols[a] = _grad(grad[:, a], x)[:, a]  # d^2u/dx_a^2, (n,)
            hess = torch.stack(cols, dim=1)  # (n, d)
    return Derivatives(x=x, u=u, grad=grad, hess_diag=hess, second_axes=axes)
