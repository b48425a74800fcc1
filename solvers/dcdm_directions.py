"""Where DCDM's search directions come from, and the directions it keeps.

:class:`NetworkDirections` turns residuals into network directions (on the problem's grid or,
as a two-grid cycle, on a coarser one), :class:`ResidualDirections` is the no-network
``q = r``, and :class:`KeptDirections` holds the last directions for the A-orthogonalisation.
:mod:`.dcdm` runs the iteration.
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from neuralsolve.linop import LinearOperator

__all__ = ["KeptDirections", "NetworkDirections", "ResidualDirections"]


class ResidualDirections:
    """``R -> R``: the directions of ``model="identity"`` (no network; DCDM is then CG)."""

    network = None

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, Rt: torch.Tensor) -> torch.Tensor:
        return Rt.clone()


class NetworkDirections:
    """``R -> f(R / ||R||)`` on the active cells of a stencil operator, batch-first.

    Parameters
    ----------
    op : StencilOperator
    network : torch.nn.Module
    flags : torch.Tensor
        ``geometry_flags(op)``.
    dtype : torch.dtype, optional
        Dtype the network runs in (default its parameters' dtype, e.g. float32 while the solve
        runs in float64).
    level : int
        0: the network runs on the grid itself. ``L >= 1``: on the grid ``2^L`` times coarser
        per axis (a two-grid direction, see Notes).
    smoothing_steps : int
        With ``level >= 1``: damped-Jacobi steps on the fine grid after the prolongation (one
        product each).
    omega : float
        Damping of those Jacobi steps.

    Notes
    -----
    The network input is passed in the channels-last layout (``torch.channels_last_3d`` /
    ``torch.channels_last``), which oneDNN's CPU convolutions run faster (1.2-1.7x measured on
    the shipped 3-D model; the output is the same to float32 rounding).

    With ``level=L >= 1`` a direction is a two-grid cycle whose coarse solve is the network:
    the residual is averaged over blocks of ``2^L`` cells per side, the flags max-pooled (a
    coarse cell is fluid, or grounded, when one of its cells is), the network runs on that grid
    (``2^(dL)`` times fewer cells), its output is interpolated back
    (trilinear, cell-centred), scaled by the exact line search ``q.r / q.A q`` and then
    smoothed by ``smoothing_steps`` damped-Jacobi steps ``q += omega D^{-1} (r - A q)``
    (interpolation and smoothing in the network's dtype, float32 for the shipped models: they
    only shape the direction, which the solver then handles in its own precision). The
    smoothing restores the fine-grid detail the coarse network cannot see; the solver then
    A-orthogonalises the result as any other direction, so convergence does not rely on it.
    """

    def __init__(
        self,
        op: LinearOperator,
        network: torch.nn.Module,
        flags: torch.Tensor,
        dtype: torch.dtype | None = None,
        *,
        level: int = 0,
        smoothing_steps: int = 5,
        omega: float = 0.8,
    ):
        params = list(network.parameters())
        self.net_dtype = dtype or (params[0].dtype if params else torch.float32)
        self.op = op
        self.network = network
        self.grid = tuple(op.grid_shape)  # type: ignore[attr-defined]
        self.level = level
        self.smoothing_steps = smoothing_steps
        self.omega = omega
        self.fluid = flags[0].to(torch.bool)
        dim = len(self.grid)
        self.layout = {3: torch.channels_last_3d, 2: torch.channels_last}.get(dim)
        if level > 0:
            pool = F.max_pool3d if dim == 3 else F.max_pool2d
            flags = pool(flags.to(self.net_dtype).unsqueeze(0), 2**level, ceil_mode=True)[0]
            # interpolation and smoothing in the network's precision: they shape a direction,
            # which the solver A-orthogonalises and scales in its own precision
            self.smooth_dtype = self.net_dtype if self.net_dtype.is_floating_point else op.dtype
            self.smooth_op = op.to(dtype=self.smooth_dtype)
            diag = self.smooth_op.diagonal_grid()  # type: ignore[attr-defined]
            # omega D^{-1} on the fluid cells, 0 elsewhere
            self.jacobi = torch.where(self.fluid, omega / diag.where(self.fluid, 1.0), 0.0)
        self.flags = flags.to(self.net_dtype)
        self.calls = 0
        self.seconds = 0.0
        self.matvecs = 0

    @torch.no_grad()
    def __call__(self, Rt: torch.Tensor) -> torch.Tensor:
        """``(k, n) -> (k, n)`` directions (NaN rows where the network produced non-finite values)."""
        t0 = time.perf_counter()
        k = Rt.shape[0]
        dim = len(self.grid)
        R = self.op.to_grid(Rt.T)  # type: ignore[attr-defined]
        R = R.movedim(-1, 0).reshape(k, 1, *self.grid)
        Rin = R
        if self.level > 0:
            pool = F.avg_pool3d if dim == 3 else F.avg_pool2d
            Rin = pool(R, 2**self.level, ceil_mode=True)
        scale = torch.linalg.vector_norm(Rin.reshape(k, -1), dim=1).clamp_min(
            torch.finfo(R.dtype).tiny
        )
        x = torch.cat(
            [
                (Rin / scale.view(k, *[1] * (Rin.ndim - 1))).to(self.net_dtype),
                self.flags.unsqueeze(0).expand(k, *self.flags.shape),
            ],
            dim=1,
        )
        if self.layout is not None:
            x = x.contiguous(memory_format=self.layout)
        Q = self.network(x)
        if self.level > 0:
            mode = "trilinear" if dim == 3 else "bilinear"
            Q = F.interpolate(
                Q.to(self.smooth_dtype).contiguous(),
                scale_factor=2**self.level,
                mode=mode,
                align_corners=False,
            )
            Q = Q[(slice(None), 0, *(slice(0, s) for s in self.grid))]
            Q = torch.where(self.fluid, Q, 0.0).contiguous()
            Q = self._smooth(Q, (R[:, 0] / scale.view(k, *[1] * dim)).to(self.smooth_dtype))
        else:
            Q = Q[:, 0]
        Q = Q.to(Rt.dtype)
        Q = torch.where(self.fluid, Q, torch.zeros((), dtype=Q.dtype, device=Q.device))
        out = self.op.from_grid(Q.movedim(0, -1)).T.contiguous()  # type: ignore[attr-defined]
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out

    def _smooth(self, Q: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``(k, *grid)``: ``Q`` scaled by the line search on ``R``, then damped Jacobi."""
        if self.smoothing_steps == 0:
            return Q
        k = Q.shape[0]
        AQ = self.smooth_op.apply_grid(Q)  # type: ignore[attr-defined]
        qAq = torch.linalg.vecdot(Q.reshape(k, -1), AQ.reshape(k, -1))
        s = torch.linalg.vecdot(Q.reshape(k, -1), R.reshape(k, -1)) / torch.where(qAq > 0, qAq, 1.0)
        s = s.view(-1, *[1] * (Q.ndim - 1))
        Q.mul_(s)
        AQ.mul_(s)
        self.matvecs += 1
        T = torch.empty_like(Q)
        for step in range(self.smoothing_steps):
            Q.addcmul_(self.jacobi, torch.sub(R, AQ, out=T))  # q += omega D^-1 (r - A q)
            if step < self.smoothing_steps - 1:
                self.smooth_op.apply_grid(Q, out=AQ)  # type: ignore[attr-defined]
                self.matvecs += 1
        return Q


class KeptDirections:
    """The last ``capacity`` directions ``P``, their products ``A P`` and ``p.A p``, per column
    of a block, for :class:`DCDM`'s A-orthogonalisation in two batched products.

    Parameters
    ----------
    capacity : int
        Directions kept (the oldest is overwritten when full).

    Notes
    -----
    Buffers are ``(k, j, n)``: ``P`` and ``A P`` take ``2 j k n`` numbers (64 directions of one
    128^3 column in float64: 2.1 GB). They grow by doubling (from 8) up to ``capacity``, so a
    solve that ends after ``i`` iterations holds at most ``2 * 2i`` vectors per column, and a
    growth step briefly holds the old buffers beside the new ones.

    :meth:`orthogonalise` is classical Gram-Schmidt in the A-inner product, ``q -= P (A P)^T q
    / (p.A p)``, as two batched matrix products (``torch.bmm``) instead of one dot product and
    one update per kept direction. The kept directions are A-orthogonal to each other, so it
    equals the modified (one-at-a-time) form up to rounding.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0  # directions held
        self.next = 0  # slot the next one goes to
        self.P: torch.Tensor | None = None  # (k, slots, n)
        self.AP: torch.Tensor | None = None
        self.pAp: torch.Tensor | None = None  # (k, slots)

    def __len__(self) -> int:
        return self.count

    def append(self, Q: torch.Tensor, AQ: torch.Tensor, qAq: torch.Tensor) -> None:
        """Keep ``Q``, ``A Q`` ``(k, n)`` and ``q.A q`` ``(k,)`` (copies)."""
        if self.P is None or (self.next >= self.P.shape[1] and self.P.shape[1] < self.capacity):
            self._grow(Q)
        assert self.P is not None and self.AP is not None and self.pAp is not None
        self.P[:, self.next] = Q
        self.AP[:, self.next] = AQ
        self.pAp[:, self.next] = qAq
        self.count = min(self.count + 1, self.capacity)
        self.next = (self.next + 1) % self.capacity

    def _grow(self, Q: torch.Tensor) -> None:
        k, n = Q.shape
        slots = min(self.capacity, 8 if self.P is None else 2 * self.P.shape[1])
        P, AP = Q.new_empty(k, slots, n), Q.new_empty(k, slots, n)
        pAp = Q.new_ones(k, slots)
        if self.P is not None and self.AP is not None and self.pAp is not None:
            held = self.P.shape[1]
            P[:, :held], AP[:, :held], pAp[:, :held] = self.P, self.AP, self.pAp
        self.P, self.AP, self.pAp = P, AP, pAp

    def orthogonalise(self, Q: torch.Tensor) -> None:
        """``Q -= sum_j p_j (q.A p_j) / (p_j.A p_j)`` in place, ``Q`` of shape ``(k, n)``."""
        if self.count == 0 or self.P is None or self.AP is None or self.pAp is None:
            return
        j = self.count
        coeff = torch.bmm(self.AP[:, :j], Q.unsqueeze(2)).squeeze(2) / self.pAp[:, :j]  # (k, j)
        Q.sub_(torch.bmm(coeff.unsqueeze(1), self.P[:, :j]).squeeze(1))
