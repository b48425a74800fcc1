"""The value and derivatives of a function at a set of points: what a PDE problem's
``equation(x, D)`` reads, whoever computed them (autograd for PINNs, differentiation matrices
for the grid solvers), so that an equation is written once for every solver."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Derivatives"]


@dataclass(frozen=True)
class Derivatives:
    """The value and derivatives of ``u`` at ``n`` points in ``d`` dimensions.

    Attributes
    ----------
    x : Tensor, (n, d)
        The points the derivatives were taken at.
    u : Tensor, (n,)
        ``u(x_j)``.
    grad : Tensor, (n, d) or None
        ``du/dx_i (x_j)`` (``None`` when not taken).
    hess_diag : Tensor, (n, d) or None
        ``d^2 u/dx_i^2 (x_j)`` for the axes in ``second_axes``; the other columns are zero
        (``None`` when not taken).
    second_axes : tuple of int
        The axes whose second derivatives were taken.
    """

    x: torch.Tensor
    u: torch.Tensor
    grad: torch.Tensor | None
    hess_diag: torch.Tensor | None
    second_axes: tuple[int, ...]

    @property
    def laplacian(self) -> torch.Tensor:
        """``sum_{i in second_axes} d^2 u / dx_i^2``, shape ``(n,)`` (the spatial Laplacian of
        a time-dependent problem when ``second_axes`` leaves out the time axis)."""
        if self.hess_diag is None:
            raise ValueError("the Laplacian needs second derivatives: call derivatives(order=2)")
        return self.hess_diag[:, list(self.second_axes)].sum(dim=1)
