"""Matrix-free symmetric 3-point (1-D), 5-point (2-D) and 7-point (3-D) operators on cell grids.

On a grid of cells ``c`` with unit vectors ``e_a`` along each axis ``a``,

.. math::

    (A u)_c = d_c u_c - \\sum_a \\left( w_a(c)\\, u_{c + e_a} + w_a(c - e_a)\\, u_{c - e_a} \\right),

where ``w_a(c)`` is the weight of the face between cells ``c`` and ``c + e_a``. Cells outside a
``mask`` (solids in a fluid simulation) are not unknowns: the operator's vectors hold the active
cells only, in C order, and every face touching an inactive cell has weight zero. The same
operator can be assembled as a CSR matrix with :meth:`StencilOperator.to_scipy`.

Two storage forms share one class: full coefficient arrays (variable coefficients, masks), or
the *uniform* form of a constant-coefficient box (scalar face weights, a scalar diagonal and
scalar corrections on the boundary layers), whose products read no coefficient arrays at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from .errors import NonFiniteError
from .linop import LinearOperator, check_dtype

__all__ = ["StencilOperator"]


def _axis_slice(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    idx = [slice(None)] * ndim
    idx[axis] = sl
    return tuple(idx)


class StencilOperator(LinearOperator):
    """A symmetric 3/5/7-point operator on a 1-, 2- or 3-D cell grid, applied without a matrix.

    Parameters
    ----------
    diagonal : torch.Tensor
        ``d_c`` on the full grid, shape ``grid_shape``.
    face_weights : sequence of torch.Tensor
        One per axis: ``w_a`` of shape ``grid_shape`` with ``N_a - 1`` along axis ``a``.
    mask : torch.Tensor of bool, optional
        Active cells (the unknowns). ``None`` means all cells. Inactive cells must have zero
        diagonal and zero face weights.
    positive_definite : bool, optional
        Declared by the builder (the gallery knows whether a problem is grounded).

    Notes
    -----
    Build constant-coefficient boxes with :meth:`uniform`. Vectors of the operator have length
    ``n = mask.sum()``; :meth:`to_grid` and :meth:`from_grid` convert between a vector and the
    grid (zeros at inactive cells). Batches of ``k`` vectors are ``(n, k)`` in the public
    protocol, and ``(k, *grid_shape)`` (batch first) in :meth:`apply_grid`.
    """

    def __init__(
        self,
        diagonal: torch.Tensor,
        face_weights: Sequence[torch.Tensor],
        mask: torch.Tensor | None = None,
        *,
        positive_definite: bool | None = None,
    ) -> None:
        grid = tuple(diagonal.shape)
        self._init_common(grid, diagonal.dtype, diagonal.device, mask, positive_definite)
        if len(face_weights) != len(grid):
            raise ValueError(
                f"need one face-weight array per axis ({len(grid)}), got {len(face_weights)}"
            )
        for a, w in enumerate(face_weights):
            expected = tuple(n - 1 if i == a else n for i, n in enumerate(grid))
            if tuple(w.shape) != expected:
                raise ValueError(
                    f"face weights of axis {a} have shape {tuple(w.shape)}, expected {expected}"
                )
            if w.dtype != diagonal.dtype or w.device != diagonal.device:
                raise TypeError("face weights must have the diagonal's dtype and device")
        for t in (diagonal, *face_weights):
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteError("stencil coefficients hold NaN or infinite values")
        self._diag: torch.Tensor | None = diagonal
        self._diag0 = 0.0
        self._boundary: tuple[tuple[float, float], ...] = tuple((0.0, 0.0) for _ in grid)
        self._weights: tuple[torch.Tensor | float, ...] = tuple(face_weights)

    @classmethod
    def uniform(
        cls,
        grid_shape: Sequence[int],
        weights: Sequence[float],
        boundary_weights: Sequence[tuple[float, float]],
        *,
        shift: float = 0.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> StencilOperator:
        """A constant-coefficient operator on a box, in flux form.

        Parameters
        ----------
        grid_shape : sequence of int
            Cells per axis (1 to 3 axes).
        weights : sequence of float
            Interior face weight per axis (``k / h_a**2`` for ``-div(k grad u)``).
        boundary_weights : sequence of (float, float)
            Per axis, the weight of the lower and upper wall faces: ``2 k / h_a**2`` for a
            Dirichlet wall (ghost value at distance ``h/2``), ``0`` for a zero-flux wall.
        shift : float
            A constant added to the diagonal.
        """
        grid = tuple(int(n) for n in grid_shape)
        self = cls.__new__(cls)
        self._init_common(grid, check_dtype(dtype, "dtype"), torch.device(device), None, None)
        if len(weights) != len(grid) or len(boundary_weights) != len(grid):
            raise ValueError("need one weight and one (lower, upper) boundary pair per axis")
        vals = (
            [float(w) for w in weights]
            + [float(v) for pair in boundary_weights for v in pair]
            + [shift]
        )
        if not all(np.isfinite(vals)):
            raise NonFiniteError("stencil coefficients hold NaN or infinite values")
        self._weights = tuple(float(w) for w in weights)
        self._diag = None
        self._diag0 = float(shift) + sum(2.0 * w for w in self._weights)
        # A wall face contributes its weight to the diagonal; the interior formula above already
        # counts w_a for the missing neighbour, so the boundary layer gets (W_b - w_a).
        self._boundary = tuple(
            (float(lo) - w, float(hi) - w)
            for w, (lo, hi) in zip(self._weights, boundary_weights, strict=True)
        )
        self._positive_definite = _uniform_is_pd(self._diag0, self._weights, self._boundary, grid)
        return self

    def _init_common(
        self,
        grid: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        mask: torch.Tensor | None,
        positive_definite: bool | None,
    ) -> None:
        if len(grid) not in (1, 2, 3) or any(n < 1 for n in grid):
            raise ValueError(f"a stencil grid has 1 to 3 axes of at least one cell, got {grid}")
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != grid:
                raise ValueError(
                    f"mask must be a bool tensor of shape {grid}, got {mask.dtype} {tuple(mask.shape)}"
                )
            mask = mask.to(device)
            n = int(mask.sum())
            if n == int(np.prod(grid)):
                mask = None
        else:
            n = int(np.prod(grid))
        super().__init__((n, n), dtype, device, symmetric=True, positive_definite=positive_definite)
        self.grid_shape = grid
        self.mask = mask
        self._csr_cache: sp.csr_array | None = None
        self._padded_cache: dict[str, object] | None = None
        self._flat_active: torch.Tensor | None = (
            None if mask is None else torch.nonzero(mask.reshape(-1), as_tuple=False).reshape(-1)
        )

    # ------------------------------------------------------------------ properties
    @property
    def ndim(self) -> int:
        return len(self.grid_shape)

    @property
    def is_uniform(self) -> bool:
        """``True`` for the constant-coefficient form (no coefficient arrays)."""
        return self._diag is None

    # ------------------------------------------------------------------ grid <-> vector
    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` or ``(n, k)`` -> ``grid_shape`` or ``(*grid_shape, k)``; zeros at inactive cells."""
        tail = tuple(x.shape[1:])
        if self.mask is None:
            return x.reshape(*self.grid_shape, *tail)
        out = x.new_zeros((int(np.prod(self.grid_shape)), *tail))
        out[self._flat_active] = x
        return out.reshape(*self.grid_shape, *tail)

    def from_grid(self, u: torch.Tensor) -> torch.Tensor:
        """``grid_shape`` (+ trailing batch) -> ``(n,)`` or ``(n, k)``: the active cells."""
        tail = tuple(u.shape[self.ndim :])
        flat = u.reshape(-1, *tail)
        if self.mask is None:
            return flat
        return flat[self._flat_active]

    # ------------------------------------------------------------------ products
    def apply_grid(self, U: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A u`` on the grid for a batch ``U`` of shape ``(k, *grid_shape)``, into ``out``.

        Eager and allocation-free (apart from ``out`` when not given): one scaled copy for the
        diagonal, then one fused multiply-subtract per neighbour direction. When ``U`` requires
        grad (a loss differentiated through the operator), the functional form of
        :func:`apply_padded` is used instead (``out`` is then ignored), so autograd works.
        """
        if U.requires_grad and torch.is_grad_enabled():
            pad = torch.nn.functional.pad(U, (1, 1) * self.ndim)
            return apply_padded(pad, self.padded_coefficients())
        if out is None:
            out = torch.empty_like(U)
        if self._diag is None:
            torch.mul(U, self._diag0, out=out)
            for a, (lo, hi) in enumerate(self._boundary):
                if lo != 0.0:
                    out.select(a + 1, 0).add_(U.select(a + 1, 0), alpha=lo)
                if hi != 0.0:
                    out.select(a + 1, -1).add_(U.select(a + 1, -1), alpha=hi)
        else:
            torch.mul(U, self._diag, out=out)
        nd = self.ndim + 1
        for a, w in enumerate(self._weights):
            if self.grid_shape[a] == 1:
                continue
            lower = _axis_slice(nd, a + 1, slice(0, -1))
            upper = _axis_slice(nd, a + 1, slice(1, None))
            if isinstance(w, float):
                out[lower].sub_(U[upper], alpha=w)
                out[upper].sub_(U[lower], alpha=w)
            else:
                out[lower].addcmul_(w, U[upper], value=-1.0)
                out[upper].addcmul_(w, U[lower], value=-1.0)
        return out

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.apply_batch(X.T.contiguous()).T

    def apply_batch(self, Xt: torch.Tensor) -> torch.Tensor:
        k = Xt.shape[0]
        if self.mask is None:
            return self.apply_grid(Xt.reshape(k, *self.grid_shape)).reshape(k, -1)
        U = Xt.new_zeros((k, int(np.prod(self.grid_shape))))
        U[:, self._flat_active] = Xt
        out = self.apply_grid(U.reshape(k, *self.grid_shape)).reshape(k, -1)
        return out[:, self._flat_active]

    # ------------------------------------------------------------------ for compiled kernels
    def padded_coefficients(self) -> dict[str, object]:
        """Coefficients in the form :func:`apply_padded` takes (built once, then cached)."""
        if self._padded_cache is not None:
            return self._padded_cache
        nd = self.ndim
        coeffs: dict[str, object] = {}
        if self._diag is None:
            coeffs["diag0"] = self._diag0
            vecs = []
            for a, (lo, hi) in enumerate(self._boundary):
                v = torch.zeros(self.grid_shape[a], dtype=self.dtype, device=self.device)
                v[0] += lo
                v[-1] += hi
                shape = [1] * nd
                shape[a] = self.grid_shape[a]
                vecs.append(v.reshape(shape))
            coeffs["diag_axes"] = tuple(vecs)
            coeffs["weights"] = tuple(self._weights)
        else:
            coeffs["diag"] = self._diag
            padded = []
            for a, w in enumerate(self._weights):
                pad = [0, 0] * nd
                # torch.nn.functional.pad counts pairs from the last axis backwards
                pad[2 * (nd - 1 - a)] = 1
                pad[2 * (nd - 1 - a) + 1] = 1
                padded.append(torch.nn.functional.pad(w, pad))
            coeffs["weights_padded"] = tuple(padded)
        self._padded_cache = coeffs
        return coeffs

    # ------------------------------------------------------------------ structure
    def diagonal(self) -> torch.Tensor:
        return self.from_grid(self.diagonal_grid())

    def diagonal_grid(self) -> torch.Tensor:
        """The diagonal on the full grid (zeros at inactive cells)."""
        if self._diag is not None:
            return self._diag
        d = torch.full(self.grid_shape, self._diag0, dtype=self.dtype, device=self.device)
        for a, (lo, hi) in enumerate(self._boundary):
            d.select(a, 0).add_(lo)
            d.select(a, -1).add_(hi)
        return d

    def face_weights(self) -> tuple[torch.Tensor, ...]:
        """The face-weight arrays (materialised for the uniform form)."""
        out = []
        for a, w in enumerate(self._weights):
            if isinstance(w, float):
                shape = tuple(n - 1 if i == a else n for i, n in enumerate(self.grid_shape))
                out.append(torch.full(shape, w, dtype=self.dtype, device=self.device))
            else:
                out.append(w)
        return tuple(out)

    def to_scipy(self) -> sp.csr_array:
        """The same operator assembled as a CSR matrix over the active cells.

        Built once from the stencil's diagonals and cached on the operator (do not modify the
        returned matrix; copy it first).
        """
        if self._csr_cache is None:
            self._csr_cache = self._assemble()
        return self._csr_cache

    def _assemble(self) -> sp.csr_array:
        grid = self.grid_shape
        ncell = int(np.prod(grid))
        strides = np.cumprod((1, *grid[::-1]))[:-1][::-1]  # C-order strides of the flat grid
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        bands = [self.diagonal_grid().detach().cpu().numpy().astype(np_dtype).reshape(-1)]
        offsets = [0]
        for a, w in enumerate(self.face_weights()):
            if grid[a] == 1:
                continue
            # The coupling of cell c with c + e_a sits on the diagonal at offset stride_a of the
            # full grid's matrix; cells on the last layer of axis a have no such neighbour.
            band = np.zeros(grid, dtype=np_dtype)
            band[_axis_slice(len(grid), a, slice(0, -1))] = -w.detach().cpu().numpy()
            band = band.reshape(-1)[: ncell - strides[a]]
            bands += [band, band]
            offsets += [int(strides[a]), -int(strides[a])]
        full = sp.csr_array(
            sp.dia_array((_dia_data(bands, offsets, ncell), offsets), shape=(ncell, ncell))
        )
        if self.mask is not None:
            active = self._flat_active.cpu().numpy()
            full = sp.csr_array(full[active][:, active])
        full.eliminate_zeros()
        full.sort_indices()
        return full

    def checkerboard(self) -> np.ndarray:
        """A proper 2-colouring of the unknowns' coupling graph (cell-index parity): a 3/5/7-point
        stencil only couples cells of different parity."""
        parity = np.indices(self.grid_shape).sum(axis=0) % 2
        flat = parity.reshape(-1)
        return flat if self.mask is None else flat[self._flat_active.cpu().numpy()]

    def _to(self, device: torch.device, dtype: torch.dtype) -> LinearOperator:
        if self._diag is None:
            new = StencilOperator.__new__(StencilOperator)
            new._init_common(self.grid_shape, dtype, device, None, self._positive_definite)
            new._weights, new._diag, new._diag0, new._boundary = (
                self._weights,
                None,
                self._diag0,
                self._boundary,
            )
            return new
        return StencilOperator(
            self._diag.to(device=device, dtype=dtype),
            [w.to(device=device, dtype=dtype) for w in self._weights],  # type: ignore[union-attr]
            None if self.mask is None else self.mask.to(device),
            positive_definite=self._positive_definite,
        )

    def __repr__(self) -> str:
        kind = "uniform" if self.is_uniform else "variable"
        masked = "" if self.mask is None else f", {self.shape[0]} active cells"
        return f"<StencilOperator grid={self.grid_shape} ({kind}{masked}) dtype={self.dtype} device={self.device}>"


def _dia_data(bands: list[np.ndarray], offsets: list[int], n: int) -> np.ndarray:
    """scipy's DIA storage: row ``i`` of the data holds diagonal ``offsets[i]`` indexed by
    column (so a super-diagonal starts at column ``offset``)."""
    data = np.zeros((len(bands), n), dtype=bands[0].dtype)
    for row, (band, off) in enumerate(zip(bands, offsets, strict=True)):
        if off >= 0:
            data[row, off : off + band.size] = band
        else:
            data[row, : band.size] = band
    return data


def apply_padded(up: torch.Tensor, coeffs: dict[str, object]) -> torch.Tensor:
    """``A u`` for a batch of zero-padded grids ``up`` of shape ``(k, *(N_a + 2))``; pure
    torch without in-place ops, so that ``torch.compile`` fuses it with what surrounds it.

    Returns the interiors, shape ``(k, *N_a)``.
    """
    nd = up.ndim - 1

    def shifted(a: int, s: int) -> torch.Tensor:
        idx = [slice(None)] + [slice(1, -1)] * nd
        idx[a + 1] = slice(1 + s, up.shape[a + 1] - 1 + s)
        return up[tuple(idx)]

    u = up[(slice(None),) + (slice(1, -1),) * nd]
    if "diag0" in coeffs:
        diag = coeffs["diag0"]
        for v in coeffs["diag_axes"]:  # type: ignore[union-attr]
            diag = diag + v
        out = diag * u
        for a, w in enumerate(coeffs["weights"]):  # type: ignore[arg-type]
            out = out - w * (shifted(a, 1) + shifted(a, -1))
        return out
    out = coeffs["diag"] * u
    for a, wp in enumerate(coeffs["weights_padded"]):  # type: ignore[arg-type]
        n = up.shape[a + 1] - 2
        hi = [slice(None)] * nd
        lo = [slice(None)] * nd
        hi[a] = slice(1, n + 1)
        lo[a] = slice(0, n)
        out = out - wp[tuple(hi)] * shifted(a, 1) - wp[tuple(lo)] * shifted(a, -1)
    return out


def _uniform_is_pd(
    diag0: float,
    weights: tuple[float | torch.Tensor, ...],
    boundary: tuple[tuple[float, float], ...],
    grid: tuple[int, ...],
) -> bool | None:
    """A constant-coefficient box with non-negative weights is positive definite when it has a
    positive shift or at least one wall with positive (Dirichlet) weight."""
    ws = [float(w) for w in weights]  # type: ignore[arg-type]
    if any(w < 0 for w in ws):
        return None
    walls = [lo + w for (lo, _), w in zip(boundary, ws, strict=True)] + [
        hi + w for (_, hi), w in zip(boundary, ws, strict=True)
    ]
    if any(b < 0 for b in walls):
        return None
    shift = diag0 - sum(2.0 * w for w in ws)
    if shift < 0:
        return None
    if shift > 0 or any(b > 0 for b in walls):
        return True
    return False
