"""Zero-fill incomplete Cholesky, IC(0), and its application by sparse triangular solves.

IC(0) computes a lower-triangular ``L`` with the sparsity of ``tril(A)`` such that ``L L^T``
matches ``A`` on that pattern (Meijerink & van der Vorst, Math. Comp. 31, 1977):

.. math::

    l_{ij} = \\Big(a_{ij} - \\sum_{k < j} l_{ik} l_{jk}\\Big) / l_{jj}, \\qquad
    l_{ii} = \\Big(a_{ii} - \\sum_{k < i} l_{ik}^2\\Big)^{1/2},

with sums over the pattern. Rows are grouped by *level* (the longest dependency chain reaching
them, found by a frontier sweep over the lower-triangular graph); the rows of a level are
independent, so the factorisation runs as a handful of vectorised numpy operations per level
(a 3-D 7-point grid of ``N^3`` cells has ``3N - 2`` levels). ``M = (L L^T)^{-1}`` is applied by a
forward and a backward triangular solve: torch's sparse CSR kernel where the device has one
(MKL on x86 CPUs, cuSPARSE on CUDA), else the same level schedule in torch.

A factorisation whose pivot is not positive (possible for SPD matrices that are not
M-matrices) is retried on ``A + s diag(A)`` with a growing shift ``s`` (Manteuffel), with a
:class:`~neuralsolve.errors.PreconditionerShiftWarning`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from neuralsolve.errors import NotSPDError, PreconditionerShiftWarning
from neuralsolve.linop import (
    as_operator,
    canonical_csr,
    csr_tensor_from_arrays,
    quiet_sparse_warnings,
)
from neuralsolve.stencil import StencilOperator

from .base import Preconditioner, explicit_matrix

__all__ = ["ICPreconditioner", "ichol0", "row_levels"]

SHIFTS = (1e-3, 1e-2, 1e-1, 1.0)


class _Breakdown(ArithmeticError):
    def __init__(self, row: int, pivot: float) -> None:
        super().__init__(f"non-positive pivot {pivot:.3g} in row {row}")
        self.row, self.pivot = row, pivot


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(total)


def row_levels(L: sp.csr_array) -> np.ndarray:
    """Level of each row of a strictly lower-triangular pattern: 0 for rows without
    dependencies, else one more than the highest level among the rows it depends on."""
    n = L.shape[0]
    indeg = np.diff(L.indptr).astype(np.int64)
    Lc = sp.csc_array(L)
    level = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    lev = 0
    while frontier.size:
        level[frontier] = lev
        deps = Lc.indices[_ranges(Lc.indptr[frontier], Lc.indptr[frontier + 1])]
        if deps.size == 0:
            break
        rows, counts = np.unique(deps, return_counts=True)
        indeg[rows] -= counts
        frontier = rows[indeg[rows] == 0]
        lev += 1
    return level


def _triangles(L: sp.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``(i, j, k)`` with ``k < j < i`` and ``(i, j), (i, k), (j, k)`` in the pattern, as CSR
    entry ids (target ``(i, j)``, factors ``(i, k)`` and ``(j, k)``)."""
    n, nnz = L.shape[0], L.nnz
    ids = sp.csr_array(
        (np.arange(1, nnz + 1, dtype=np.float64), L.indices, L.indptr), shape=L.shape
    )
    C = sp.csc_array(ids)
    C.sort_indices()
    eid = C.data.astype(np.int64) - 1
    col_end = np.repeat(C.indptr[1:], np.diff(C.indptr))
    later = col_end - np.arange(C.nnz) - 1
    first = np.repeat(np.arange(C.nnz), later)
    if first.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    step = np.arange(first.size) - np.repeat(np.cumsum(later) - later, later) + 1
    second = first + step
    j, i = C.indices[first].astype(np.int64), C.indices[second].astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(L.indptr))
    keys = rows * n + L.indices
    target = i * n + j
    where = np.minimum(np.searchsorted(keys, target), nnz - 1)
    found = keys[where] == target
    return where[found], eid[second][found], eid[first][found]


def ichol0(A: Any, *, shift: float = 0.0, coloring: np.ndarray | None = None) -> sp.csr_array:
    """IC(0) factor ``L`` (lower triangular CSR, diagonal included) of ``A + shift diag(A)``.

    ``coloring``, a proper 2-colouring of ``A``'s graph if one is known (a grid's checkerboard),
    proves the graph triangle-free and skips the search for the ``l_ik l_jk`` products; it is
    checked, and ignored when it is not proper.

    Raises
    ------
    _Breakdown
        When a pivot is not positive (the caller may retry with a shift).
    """
    A = canonical_csr(A, dtype=np.float64)
    n = A.shape[0]
    diag = A.diagonal() * (1.0 + shift)
    bad = np.flatnonzero(~(diag > 0))
    if bad.size:
        raise _Breakdown(int(bad[0]), float(diag[bad[0]]))
    Ls = sp.csr_array(sp.tril(A, k=-1, format="csr"))
    Ls.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(Ls.indptr))
    cols = Ls.indices.astype(np.int64)
    a = Ls.data.astype(np.float64)
    nnz = a.size
    levels = row_levels(Ls)
    nlev = int(levels.max()) + 1 if n else 0
    pos = np.arange(nnz) - Ls.indptr[rows]
    npos = int(pos.max()) + 1 if nnz else 1
    ent_level = levels[rows]
    # Entries in (level, position-in-row) groups; within a group the rows are independent.
    key = ent_level * npos + pos
    order = np.lexsort((pos, ent_level))
    group_bounds = np.searchsorted(key[order], np.arange(nlev * npos + 1))
    if (
        coloring is not None
        and coloring.shape == (n,)
        and not np.any(coloring[rows] == coloring[cols])
    ):
        tri_t = tri_a = tri_b = np.zeros(0, dtype=np.int64)  # bipartite: no triangles
    else:
        tri_t, tri_a, tri_b = _triangles(Ls)
    tri_order = np.argsort(key[tri_t], kind="stable")
    tri_t, tri_a, tri_b = tri_t[tri_order], tri_a[tri_order], tri_b[tri_order]
    tri_bounds = np.searchsorted(key[tri_t], np.arange(nlev * npos + 1))
    # Rows per level, and each level's entries in CSR order (rows contiguous) for the row sums.
    row_order = np.argsort(levels, kind="stable")
    row_bounds = np.searchsorted(levels[row_order], np.arange(nlev + 1))
    ent_order = np.argsort(ent_level, kind="stable")
    ent_bounds = np.searchsorted(ent_level[ent_order], np.arange(nlev + 1))

    vals = np.zeros(nnz)
    d = np.zeros(n)
    acc = np.zeros(nnz)
    for lev in range(nlev):
        for p in range(npos):
            g = lev * npos + p
            e = order[group_bounds[g] : group_bounds[g + 1]]
            if e.size == 0:
                continue
            t0, t1 = tri_bounds[g], tri_bounds[g + 1]
            if t1 > t0:
                np.add.at(acc, tri_t[t0:t1], vals[tri_a[t0:t1]] * vals[tri_b[t0:t1]])
                vals[e] = (a[e] - acc[e]) / d[cols[e]]
            else:
                vals[e] = a[e] / d[cols[e]]
        r = row_order[row_bounds[lev] : row_bounds[lev + 1]]
        e = ent_order[ent_bounds[lev] : ent_bounds[lev + 1]]
        piv = diag[r].copy()
        if e.size:
            sq = vals[e] ** 2
            er = rows[e]
            starts = np.flatnonzero(np.r_[True, er[1:] != er[:-1]])
            sums = np.add.reduceat(sq, starts)
            piv[np.searchsorted(r, er[starts])] -= sums
        bad = np.flatnonzero(~(piv > 0))
        if bad.size:
            raise _Breakdown(int(r[bad[0]]), float(piv[bad[0]]))
        d[r] = np.sqrt(piv)
    L = sp.csr_array((vals, cols, Ls.indptr), shape=(n, n)) + sp.diags_array(d, format="csr")
    L = sp.csr_array(L)
    L.sort_indices()
    return L


class _LevelSolver:
    """Forward/backward substitution with ``L`` level by level in torch (any device)."""

    def __init__(self, L: sp.csr_array, dtype: torch.dtype, device: torch.device) -> None:
        n = L.shape[0]
        d = L.diagonal()
        Ls = sp.csr_array(sp.tril(L, k=-1, format="csr"))
        levels = row_levels(Ls)
        self.inv_d = torch.from_numpy(1.0 / d).to(device=device, dtype=dtype)
        self.forward = self._schedule(Ls, levels, dtype, device)
        # The backward solve L^T x = y runs the same levels in reverse, with the columns of L.
        Lt = sp.csr_array(Ls.T)
        Lt.sort_indices()
        self.backward = self._schedule(Lt, levels, dtype, device)[::-1]
        self.n = n

    @staticmethod
    def _schedule(
        T: sp.csr_array, levels: np.ndarray, dtype: torch.dtype, device: torch.device
    ) -> list[tuple[torch.Tensor, ...]]:
        nlev = int(levels.max()) + 1 if levels.size else 0
        order = np.argsort(levels, kind="stable")
        bounds = np.searchsorted(levels[order], np.arange(nlev + 1))
        steps = []
        for lev in range(nlev):
            r = order[bounds[lev] : bounds[lev + 1]]
            e = _ranges(T.indptr[r], T.indptr[r + 1])
            local = np.repeat(np.arange(r.size), T.indptr[r + 1] - T.indptr[r])
            steps.append(
                (
                    torch.from_numpy(r).to(device),
                    torch.from_numpy(T.indices[e].astype(np.int64)).to(device),
                    torch.from_numpy(T.data[e]).to(device=device, dtype=dtype),
                    torch.from_numpy(local).to(device),
                )
            )
        return steps

    def _sweep(
        self, steps: list[tuple[torch.Tensor, ...]], Rt: torch.Tensor, Y: torch.Tensor
    ) -> torch.Tensor:
        for rows, cols, vals, local in steps:
            rhs = Rt[:, rows]
            if cols.numel():
                contrib = Y[:, cols] * vals
                rhs = rhs.index_add(1, local, contrib, alpha=-1.0)
            Y[:, rows] = rhs * self.inv_d[rows]
        return Y

    def solve(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        Y = self._sweep(self.forward, Rt, torch.empty_like(Rt))
        return self._sweep(self.backward, Y, torch.empty_like(Rt) if out is None else out)


_NATIVE_TRISOLVE: dict[str, bool] = {}


def native_trisolve_available(device: torch.device) -> bool:
    """Whether ``torch.triangular_solve`` takes a sparse CSR matrix on this device type."""
    if device.type not in _NATIVE_TRISOLVE:
        try:
            with quiet_sparse_warnings():
                L = torch.tensor(
                    [[2.0, 0.0], [1.0, 4.0]], dtype=torch.float64, device=device
                ).to_sparse_csr()
            y = torch.triangular_solve(
                torch.ones(2, 1, dtype=torch.float64, device=device), L, upper=False
            ).solution
            _NATIVE_TRISOLVE[device.type] = bool(
                torch.allclose(y.cpu().reshape(-1), torch.tensor([0.5, 0.125], dtype=torch.float64))
            )
        except (RuntimeError, NotImplementedError):
            _NATIVE_TRISOLVE[device.type] = False
    return _NATIVE_TRISOLVE[device.type]


class ICPreconditioner(Preconditioner):
    """Zero-fill incomplete Cholesky ``M = (L L^T)^{-1}``, applied by two triangular solves.

    Parameters
    ----------
    A : operator or matrix
        SPD with an explicit matrix (sparse, dense or a gallery stencil operator).
    shift : float
        Factor ``A + shift * diag(A)``; 0 is plain IC(0). On breakdown the shift is raised
        through 1e-3, 1e-2, 1e-1, 1 with a ``PreconditionerShiftWarning``.
    trisolve : {"auto", "native", "levels"}
        ``"native"``: torch's sparse CSR triangular solve (MKL / cuSPARSE); ``"levels"``: the
        level-scheduled solve in torch; ``"auto"`` takes native where the device supports it.
        The choice is reported in ``info["trisolve"]``.

    Raises
    ------
    NotSPDError
        If a diagonal entry is not positive, or the factorisation breaks down at every shift.
    """

    name = "ic"

    def __init__(self, A: Any, *, shift: float = 0.0, trisolve: str = "auto") -> None:
        super().__init__(A)
        if trisolve not in ("auto", "native", "levels"):
            raise ValueError(f"trisolve must be 'auto', 'native' or 'levels', got {trisolve!r}")
        if not (np.isfinite(shift) and shift >= 0):
            raise ValueError(f"shift must be finite and >= 0, got {shift}")
        t0 = time.perf_counter()
        mat = explicit_matrix(A, "IC(0)")
        op = as_operator(A)
        self._coloring = op.checkerboard() if isinstance(op, StencilOperator) else None
        if bool((mat.diagonal() <= 0).any()):
            i = int(np.flatnonzero(mat.diagonal() <= 0)[0])
            raise NotSPDError(
                f"IC(0) needs a positive diagonal, but A[{i}, {i}] = {mat.diagonal()[i]:.4g}: A is not SPD"
            )
        L, used = self._factor(mat, shift, self._coloring)
        if trisolve == "auto":
            trisolve = "native" if native_trisolve_available(self.device) else "levels"
        elif trisolve == "native" and not native_trisolve_available(self.device):
            raise ValueError(
                f"torch has no sparse triangular solve on {self.device}: use trisolve='levels'"
            )
        self.trisolve = trisolve
        if trisolve == "native":
            self._L = csr_tensor_from_arrays(
                L.indptr, L.indices, L.data, L.shape, dtype=self.dtype, device=self.device
            )
        else:
            self._levels = _LevelSolver(L, self.dtype, self.device)
        self.factor = L
        self._scratch: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.setup_s = time.perf_counter() - t0
        self.info = {"ic_shift": used, "trisolve": trisolve}

    @staticmethod
    def _factor(
        mat: sp.csr_array, shift: float, coloring: np.ndarray | None = None
    ) -> tuple[sp.csr_array, float]:
        try:
            return ichol0(mat, shift=shift, coloring=coloring), shift
        except _Breakdown as first:
            for s in SHIFTS:
                if s <= shift:
                    continue
                try:
                    L = ichol0(mat, shift=s, coloring=coloring)
                except _Breakdown:
                    continue
                warnings.warn(
                    f"IC(0) broke down ({first}); factored A + {s:g} diag(A) instead",
                    PreconditionerShiftWarning,
                    stacklevel=4,
                )
                return L, s
            raise NotSPDError(
                f"IC(0) broke down ({first}) even with a diagonal shift of {SHIFTS[-1]:g}: "
                "A is probably not SPD"
            ) from None

    def apply(self, Rt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.trisolve == "levels":
            return self._levels.solve(Rt, out)
        k, n = Rt.shape
        scratch = self._scratch.get(k)
        if scratch is None or scratch[0].dtype != Rt.dtype:
            scratch = (
                torch.empty((n, k), dtype=Rt.dtype, device=Rt.device),
                torch.empty_like(Rt.T.contiguous()),
            )
            self._scratch = {k: scratch}
        Y, Z = scratch
        unused = torch.empty(0, dtype=Rt.dtype, device=Rt.device)
        # (n, k) column-major work arrays; a single vector needs no copies at all.
        B = Rt.T if k == 1 else Rt.T.contiguous()
        torch.triangular_solve(B, self._L, upper=False, out=(Y, unused))
        if k == 1 and out is not None:
            torch.triangular_solve(
                Y, self._L, upper=False, transpose=True, out=(out.view(n, 1), unused)
            )
            return out
        torch.triangular_solve(Y, self._L, upper=False, transpose=True, out=(Z, unused))
        return Z.T.clone() if out is None else out.copy_(Z.T)
