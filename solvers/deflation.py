"""Subdomain deflation: block-constant vectors taken out of a Krylov solve exactly.

Cut the grid into boxes of ``block`` cells per side and let ``Z`` (``n x m``) hold the indicator
vector of the unknowns in each box that has any (Nicolaides, SIAM J. Numer. Anal. 1987; Frank
and Vuik, SIAM J. Sci. Comput. 2001, "On the construction of deflation-based preconditioners").
With the coarse matrix ``E = Z^T A Z`` (SPD, ``m x m``), a solve starts from

    x0 <- x0 + Z E^{-1} Z^T (b - A x0)          # then Z^T r = 0

and every search direction is made A-orthogonal to ``range(Z)``,

    q <- q - Z E^{-1} Z^T A q,

so the residual stays orthogonal to ``Z`` and the method never has to find the smooth,
block-constant part of the error. For a Laplacian, the smallest eigenvalue left is that of one
box instead of the whole domain: CG's iterations then depend on ``block``, not on the grid size
(Frank and Vuik's bound ``kappa_eff = O((block / h)^2 ...)``; measured for obstacle3d to rtol 1e-6
with ``block = 8``: 62 / 61 / 59 at 32^3 / 64^3 / 128^3, plain CG 210 / 409 / 725).

``E`` is assembled from the stencil's coefficients: a box couples only to itself and its ``2d``
face neighbours (the operator is a ``2d + 1``-point stencil), its diagonal entry is the sum of
the diagonal over its cells less twice the face weights inside it, and its coupling to a
neighbour is minus the sum of the weights of the faces they share (a few sums over the grid, no
products; probing with ``3^d`` products of coloured box indicators, as before, took 3-7 s of a
128^3 set-up on a busy 2-core machine). ``E`` is factored once by a
sparse LU (SuperLU through scipy, on the CPU; only ``m``-vectors cross to the device) in a
geometric nested-dissection order of the boxes (George, SIAM J. Numer. Anal. 1973): split the
box grid across its longest axis by one plane of boxes, order the two halves first (recursively)
and the plane last. Since ``E`` couples face neighbours only, the halves never couple, and their
factors fill only within themselves and toward the plane. On obstacle3d 128^3 with ``block = 3``
(77,740 boxes) this took the factor from 132 to 56 million entries and 23 to 5.5 seconds
against SuperLU's default COLAMD order.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = ["BlockDeflation", "check_deflation_block", "nested_dissection"]


def check_deflation_block(block: Any) -> None:
    """``None`` or an integer box side of at least 2 cells."""
    if block is None:
        return
    if isinstance(block, bool) or not isinstance(block, int) or block < 2:
        raise ValueError(
            f"deflation_block must be None (no deflation) or the side of the deflation boxes in "
            f"cells, an integer >= 2 (dcdm-deflated uses 3, cg-deflated 8), got {block!r}"
        )


class BlockDeflation:
    """The deflation space of a stencil operator's grid cut into boxes (module notes).

    Parameters
    ----------
    op : StencilOperator
        The SPD operator of the solve (any gallery problem's ``prob.A``).
    block : int
        Side of the boxes in cells; the last box on an axis may be shorter.

    Attributes
    ----------
    vectors : int
        ``m``, the number of boxes holding at least one unknown.
    setup_s : float
        Seconds spent assembling ``E`` and factoring it.

    Notes
    -----
    Vectors are batch-first, ``(k, n)``, as inside the solvers.
    """

    def __init__(self, op: Any, block: int) -> None:
        from neuralsolve.stencil import StencilOperator

        check_deflation_block(block)
        if not isinstance(op, StencilOperator):
            raise TypeError(
                f"deflation needs a structured-grid operator (a StencilOperator, e.g. a gallery "
                f"problem's prob.A), got {type(op).__name__}: its boxes are cut from the grid"
            )
        t0 = time.perf_counter()
        self.op = op
        self.block = block
        self.grid = tuple(op.grid_shape)
        self.boxes = tuple(math.ceil(s / block) for s in self.grid)
        fluid = op.to_grid(torch.ones(op.shape[0], dtype=op.dtype, device=op.device))
        self._fluid = fluid
        counts = self._box_sums(fluid.unsqueeze(0))[0].reshape(-1)
        self._kept = counts > 0
        self.vectors = int(self._kept.sum())
        try:
            self._lu = _OrderedLU(self._coarse_matrix(), self._box_positions())
        except RuntimeError as err:  # a zero or negative pivot (SuperLU's or ours)
            raise ValueError(
                f"the deflation's coarse matrix Z^T A Z is singular or not positive definite "
                f"({err}): A is not SPD, or is singular on a region made of whole boxes (a "
                "fluid pocket with no grounded cell). Pin one cell per such region, as the "
                "gallery does, or solve without deflation_block"
            ) from err
        self.setup_s = time.perf_counter() - t0

    # ------------------------------------------------------------------ grid <-> boxes
    def _box_sums(self, U: torch.Tensor) -> torch.Tensor:
        """``(k, *grid) -> (k, *boxes)``: the sum over each box (exact; no averaging)."""
        b = self.block
        pad: list[int] = []
        for s in reversed(self.grid):
            pad += [0, (-s) % b]
        U = torch.nn.functional.pad(U, pad)
        shape = [U.shape[0]]
        for nb in self.boxes:
            shape += [nb, b]
        return U.reshape(shape).sum(dim=tuple(range(2, 2 + 2 * len(self.grid), 2)))

    def _box_fields(self, C: torch.Tensor) -> torch.Tensor:
        """``(k, *boxes) -> (k, *grid)``: each box's value on all its cells (solids included)."""
        for axis in range(1, C.ndim):
            C = C.repeat_interleave(self.block, dim=axis)
        return C[(slice(None), *(slice(0, s) for s in self.grid))]

    def _all_boxes(self, C: torch.Tensor) -> torch.Tensor:
        """``(k, m) -> (k, *boxes)``: zeros in the boxes without unknowns (differentiable)."""
        full = C.new_zeros(self._kept.numel(), C.shape[0]).index_put((self._kept,), C.T)
        return full.T.reshape(C.shape[0], *self.boxes)

    def _restrict_grid(self, U: torch.Tensor) -> torch.Tensor:
        """``(k, *grid) -> (k, m)``: the sums over the kept boxes."""
        return self._box_sums(U).reshape(U.shape[0], -1)[:, self._kept]

    def _prolong_grid(self, C: torch.Tensor) -> torch.Tensor:
        """``(k, m) -> (k, *grid)``: each kept box's value on all its cells (solids included)."""
        return self._box_fields(self._all_boxes(C))

    # ------------------------------------------------------------------ Z, Z^T, E^{-1}
    def restrict(self, Xt: torch.Tensor) -> torch.Tensor:
        """``Z^T x`` for a batch ``(k, n) -> (k, m)``."""
        return self._restrict_grid(self.op.to_grid(Xt.T).movedim(-1, 0))

    def prolong(self, C: torch.Tensor) -> torch.Tensor:
        """``Z c`` for a batch ``(k, m) -> (k, n)``."""
        return self.op.from_grid(self._prolong_grid(C).movedim(0, -1)).T

    def coarse_solve(self, Y: torch.Tensor) -> torch.Tensor:
        """``E^{-1} y`` for a batch ``(k, m)`` (float64 on the CPU, returned as ``Y``'s kind;
        differentiable, for training through the deflated method)."""
        return _CoarseSolve.apply(Y, self._lu)

    def correction(self, Rt: torch.Tensor) -> torch.Tensor:
        """``Z E^{-1} Z^T r``: added to ``x`` it makes the new residual orthogonal to ``Z``."""
        return self.prolong(self.coarse_solve(self.restrict(Rt)))

    def correction_grid(self, U: torch.Tensor) -> torch.Tensor:
        """:meth:`correction` on grid fields ``(k, *grid) -> (k, *grid)`` (zero in solids)."""
        coarse = self.coarse_solve(self._restrict_grid(U * self._fluid))
        return self._prolong_grid(coarse) * self._fluid

    @property
    def info(self) -> dict[str, Any]:
        """What a deflated solve reports in ``stats``: the box side, ``m`` and the set-up time."""
        return {
            "deflation_block": self.block,
            "deflation_vectors": self.vectors,
            "deflation_setup_s": self.setup_s,
        }

    def correct_start(
        self,
        B: torch.Tensor,
        X: torch.Tensor,
        R: torch.Tensor,
        columns: torch.Tensor,
        apply_A: Any,
    ) -> torch.Tensor:
        """Add :meth:`correction` of ``R`` to ``X`` in place on the ``columns`` (a ``(k,)``
        bool mask) and return the new residual ``B - A X`` (one product), orthogonal to ``Z``
        there: the start of a deflated solve."""
        X[columns] += self.correction(R[columns])
        return B - apply_A(X)

    def project(self, Qt: torch.Tensor, AQt: torch.Tensor) -> torch.Tensor:
        """``q - Z E^{-1} Z^T A q`` (A-orthogonal to ``range(Z)``), given ``A q``."""
        return Qt - self.correction(AQt)

    # ------------------------------------------------------------------ E from the stencil
    def _box_positions(self) -> np.ndarray:
        """``(m, d)`` integer positions on the box grid of the kept boxes, in ``E``'s order."""
        kept = np.flatnonzero(self._kept.cpu().numpy())
        return np.stack(np.unravel_index(kept, self.boxes), axis=1)

    def _coarse_matrix(self) -> sp.csr_array:
        """``E = Z^T A Z`` from the stencil's coefficients (no products).

        A box's diagonal entry is the sum of the diagonal over its cells less twice the face
        weights inside it; its coupling to the next box along an axis is minus the sum of the
        weights of the faces between them. Inactive cells have zero coefficients, so solids
        need no special case."""
        dim = len(self.grid)
        fluid = self._fluid.to(torch.float64)
        diag = self._box_sums((self.op.diagonal_grid().to(torch.float64) * fluid)[None])[0]
        number = torch.arange(int(np.prod(self.boxes))).reshape(self.boxes)
        rows, cols, vals = [number.reshape(-1)], [number.reshape(-1)], []
        off_vals = []
        for a, w in enumerate(self.op.face_weights()):
            if self.grid[a] == 1:
                continue
            w = w.to(torch.float64)
            shape = [1] * dim
            shape[a] = self.grid[a] - 1
            # face i joins cells i and i + 1: inside a box unless i + 1 starts the next one
            inside = (torch.arange(1, self.grid[a], device=w.device) % self.block != 0).reshape(
                shape
            )
            pad = [0, 0] * dim
            pad[2 * (dim - 1 - a) + 1] = 1  # face i sits in cell i's box (pairs from the last axis)
            within = torch.nn.functional.pad(torch.where(inside, w, 0.0), pad)
            across = torch.nn.functional.pad(torch.where(inside, 0.0, w), pad)
            diag -= 2 * self._box_sums(within[None])[0]
            coupling = self._box_sums(across[None])[0]  # box I to box I + e_a
            here = [slice(None)] * dim
            there = [slice(None)] * dim
            here[a] = slice(0, self.boxes[a] - 1)
            there[a] = slice(1, None)
            I, J = number[tuple(here)].reshape(-1), number[tuple(there)].reshape(-1)
            c = -coupling[tuple(here)].reshape(-1).cpu()
            rows += [I, J]
            cols += [J, I]
            off_vals += [c, c]
        vals = [diag.reshape(-1).cpu(), *off_vals]
        r, c, v = (torch.cat(x).numpy() for x in (rows, cols, vals))
        kept = self._kept.cpu().numpy()
        renumber = np.cumsum(kept) - 1
        use = kept[r] & kept[c] & (v != 0)
        m = self.vectors
        return sp.csr_array((v[use], (renumber[r[use]], renumber[c[use]])), shape=(m, m))


def nested_dissection(positions: np.ndarray, leaf: int = 64) -> np.ndarray:
    """An elimination order of grid points that couple only to their face neighbours.

    Parameters
    ----------
    positions : (m, d) integer array
        Distinct grid positions.
    leaf : int
        Parts this small are kept in their given order.

    Returns
    -------
    (m,) permutation: each part's two halves (recursively ordered) come before the plane that
    separates them, a plane across the part's longest axis at its middle.
    """
    order: list[np.ndarray] = []

    def split(part: np.ndarray) -> None:
        if len(part) <= leaf:
            order.append(part)
            return
        p = positions[part]
        low, high = p.min(axis=0), p.max(axis=0)
        axis = int(np.argmax(high - low))
        middle = (low[axis] + high[axis]) // 2
        split(part[p[:, axis] < middle])
        split(part[p[:, axis] > middle])
        order.append(part[p[:, axis] == middle])

    split(np.arange(len(positions)))
    return np.concatenate(order)


class _OrderedLU:
    """SuperLU's factor of ``E`` permuted symmetrically into :func:`nested_dissection` order."""

    def __init__(self, E: sp.csr_array, positions: np.ndarray) -> None:
        self.order = nested_dissection(positions)
        permuted = E[self.order][:, self.order].tocsc()
        # E is SPD: eliminate in this order on the diagonal, with no row exchanges. Pivot i
        # over E_ii is then the pivot of the Jacobi-scaled D^-1/2 E D^-1/2, at least its
        # smallest eigenvalue (interlacing): near zero only when E is (nearly) singular, however
        # the coefficients are scaled.
        self.lu = spla.splu(
            permuted,
            permc_spec="NATURAL",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        relative = self.lu.U.diagonal() / permuted.diagonal()
        worst = int(np.argmin(relative))
        if not relative[worst] > 1e-10:
            raise RuntimeError(
                f"pivot {self.lu.U.diagonal()[worst]:.3g} where E's diagonal is "
                f"{permuted.diagonal()[worst]:.3g}"
            )

    @property
    def nnz(self) -> int:
        """Entries of the ``L`` and ``U`` factors."""
        return int(self.lu.L.nnz + self.lu.U.nnz)

    def solve(self, Y: np.ndarray) -> np.ndarray:
        """``E^{-1} Y`` for ``(m, k)`` or ``(m,)`` arrays."""
        X = np.empty_like(Y)
        X[self.order] = self.lu.solve(Y[self.order])
        return X


class _CoarseSolve(torch.autograd.Function):
    """``y -> E^{-1} y`` row-wise with a SuperLU factor; ``E`` is symmetric, so the backward
    pass is the same solve."""

    @staticmethod
    def forward(ctx: Any, Y: torch.Tensor, lu: Any) -> torch.Tensor:
        ctx.lu = lu
        return _lu_solve(lu, Y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _lu_solve(ctx.lu, grad), None


def _lu_solve(lu: Any, Y: torch.Tensor) -> torch.Tensor:
    host = np.ascontiguousarray(Y.detach().to("cpu", torch.float64).numpy().T)
    return torch.from_numpy(lu.solve(host).T.copy()).to(Y)
