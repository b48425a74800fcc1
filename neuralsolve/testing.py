"""Conformance checks for :class:`~neuralsolve.linop.LinearOperator` implementations.

A pytest class that inherits :class:`OperatorConformance` and implements ``make()``, returning
the operator and its matrix as a dense float64 numpy array computed independently, gets the
checks of the operator protocol (CONVENTIONS.md, rule 1) run against that reference::

    from neuralsolve.testing import OperatorConformance

    class TestMyOperator(OperatorConformance):
        def make(self):
            A = random_matrix()
            return MyOperator(A), A

The checks: declared ``shape``, ``dtype`` and ``device``; ``matvec``, ``matmat``, ``@`` on
vectors, matrices and numpy arrays, and the batch-first application, against the reference; the
transpose where the operator has one (and that a symmetric operator has one); the symmetry tag;
products with other operators, sums, differences, negation and scaling; ``to_dense`` and
``to_scipy``; and that a wrong operand is refused with the documented error. Tolerances are
relative to the size of the products and depend on the operator's dtype (``float64_tol``,
``float32_tol``; override them in a subclass whose operator is less exact, and say why there).

The module imports no test framework: the checks are plain methods that raise
``AssertionError``, collected by pytest through the subclass (named ``Test...``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .linop import IdentityOperator, LinearOperator, as_operator

__all__ = ["OperatorConformance", "dense_of"]


def dense_of(S: Any, n: int) -> np.ndarray:
    """What ``to_scipy()`` returned (sparse matrix, array or scipy ``LinearOperator``) as a
    dense float64 array with ``n`` columns."""
    if sp.issparse(S):
        return S.toarray().astype(np.float64)
    if isinstance(S, spla.LinearOperator):
        return np.asarray(S @ np.eye(n, dtype=S.dtype), dtype=np.float64)
    return np.asarray(S, dtype=np.float64)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _assert_close(got: np.ndarray, want: np.ndarray, atol: float, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    err = float(np.abs(got - want).max()) if want.size else 0.0
    if not err <= atol:  # also fails on NaN
        raise AssertionError(f"{what}: max abs error {err:.3g} > {atol:.3g}")


class OperatorConformance:
    """Mixin: inherit it in a ``Test...`` class and implement :meth:`make`.

    Class attributes
    ----------------
    float64_tol, float32_tol : float
        Allowed error relative to ``max |A| |x|`` (the size of a product's terms) for an
        operator of that dtype.
    seed : int
        Seed of the random operands.
    """

    float64_tol: ClassVar[float] = 1e-12
    float32_tol: ClassVar[float] = 1e-5
    seed: ClassVar[int] = 0

    def make(self) -> tuple[LinearOperator, np.ndarray]:
        """The operator under test and its matrix, a dense float64 array built without it."""
        raise NotImplementedError("implement make() -> (operator, dense float64 reference)")

    # ------------------------------------------------------------------ helpers
    def _made(self) -> tuple[LinearOperator, np.ndarray]:
        op, ref = self.make()
        ref = np.asarray(ref, dtype=np.float64)
        if not isinstance(op, LinearOperator):
            raise AssertionError(f"make() returned a {type(op).__name__}, not a LinearOperator")
        if ref.ndim != 2:
            raise AssertionError(f"the reference must be a matrix, got shape {ref.shape}")
        return op, ref

    def _tol(self, op: LinearOperator) -> float:
        return self.float64_tol if op.dtype == torch.float64 else self.float32_tol

    def _operands(self, op: LinearOperator, ref: np.ndarray, k: int = 3) -> tuple[Any, ...]:
        """A vector and a ``(n, k)`` block, as numpy and as tensors of the operator's kind."""
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal(ref.shape[1])
        X = rng.standard_normal((ref.shape[1], k))
        kind = {"dtype": op.dtype, "device": op.device}
        return x, X, torch.as_tensor(x).to(**kind), torch.as_tensor(X).to(**kind)

    def _scale(self, ref: np.ndarray, X: np.ndarray) -> float:
        """``max_i sum_j |A_ij| * max |X|``: a bound on the size of a product's entries."""
        row = float(np.abs(ref).sum(axis=1).max()) if ref.size else 0.0
        return max(row, 1e-300) * max(float(np.abs(X).max()), 1e-300)

    # ------------------------------------------------------------------ checks
    def test_declared_attributes(self) -> None:
        op, ref = self._made()
        assert op.shape == ref.shape, f"shape {op.shape}, reference {ref.shape}"
        assert op.dtype in (torch.float32, torch.float64), op.dtype
        assert isinstance(op.device, torch.device), type(op.device)
        for tag in (op.symmetric, op.positive_definite):
            assert tag in (True, False, None), tag

    def test_matvec_and_matmat_match_dense(self) -> None:
        op, ref = self._made()
        x, X, xt, Xt = self._operands(op, ref)
        atol = self._tol(op) * self._scale(ref, X)
        _assert_close(_numpy(op @ xt), ref @ x, atol, "A @ x")
        _assert_close(_numpy(op.matvec(xt)), ref @ x, atol, "A.matvec(x)")
        _assert_close(_numpy(op @ Xt), ref @ X, atol, "A @ X")
        _assert_close(_numpy(op.matmat(Xt)), ref @ X, atol, "A.matmat(X)")
        # the batch-first application of the Krylov loops
        apply_batch = op.apply_batch
        _assert_close(
            _numpy(apply_batch(Xt.T.contiguous())).T, ref @ X, atol, "batch-first application"
        )
        np_dtype = np.float64 if op.dtype == torch.float64 else np.float32
        _assert_close(op @ x.astype(np_dtype), ref @ x, atol, "A @ numpy vector")

    def test_adjoint_where_present(self) -> None:
        op, ref = self._made()
        try:
            T = op.T
        except NotImplementedError:
            assert op.symmetric is not True, "a symmetric operator must give its transpose"
            return
        assert T.shape == ref.T.shape, f"A.T has shape {T.shape}, expected {ref.T.shape}"
        rng = np.random.default_rng(self.seed + 1)
        Y = rng.standard_normal((ref.shape[0], 2))
        Yt = torch.as_tensor(Y).to(dtype=op.dtype, device=op.device)
        atol = self._tol(op) * self._scale(ref.T, Y)
        _assert_close(_numpy(T @ Yt), ref.T @ Y, atol, "A.T @ Y")

    def test_symmetric_tag_is_not_wrong(self) -> None:
        op, ref = self._made()
        if ref.shape[0] != ref.shape[1]:
            assert not op.symmetric and not op.positive_definite
            return
        asym = float(np.abs(ref - ref.T).max())
        size = max(float(np.abs(ref).max()), 1e-300)
        if op.symmetric is True:
            assert asym <= self._tol(op) * size * ref.shape[0], (
                f"tagged symmetric, but the reference is not: max |A - A^T| = {asym:.3g}"
            )
        if op.symmetric is False:
            assert asym > 0, "tagged not symmetric, but the reference is"
        if op.positive_definite is True:
            eigs = np.linalg.eigvalsh((ref + ref.T) / 2)
            assert eigs.min() > -self._tol(op) * size * ref.shape[0], (
                f"tagged positive definite, but the smallest eigenvalue is {eigs.min():.3g}"
            )

    def test_products_with_other_operators(self) -> None:
        op, ref = self._made()
        _, X, _, Xt = self._operands(op, ref)
        n = ref.shape[1]
        rng = np.random.default_rng(self.seed + 2)
        B = rng.standard_normal((n, 2))
        Bop = as_operator(torch.as_tensor(B).to(dtype=op.dtype, device=op.device), check=False)
        atol = self._tol(op) * self._scale(ref, B) * 4
        _assert_close(_numpy((op @ Bop).to_dense()), ref @ B, atol, "(A @ B).to_dense()")
        eye = IdentityOperator(n, dtype=op.dtype, device=op.device)
        atol = self._tol(op) * self._scale(ref, X) * 4
        _assert_close(_numpy((op @ eye) @ Xt), ref @ X, atol, "(A @ I) @ X")

    def test_sums_and_scaling(self) -> None:
        op, ref = self._made()
        x, X, xt, Xt = self._operands(op, ref)
        atol = self._tol(op) * self._scale(ref, X) * 8
        cases = {
            "A + A": (op + op, 2 * ref),
            "2.5 * A": (2.5 * op, 2.5 * ref),
            "A * 2.5": (op * 2.5, 2.5 * ref),
            "A / 4": (op / 4, ref / 4),
            "-A": (-op, -ref),
            "2.5 * A - A / 4": (2.5 * op - op / 4, 2.25 * ref),
        }
        for what, (combined, want) in cases.items():
            assert combined.shape == ref.shape, f"{what}: shape {combined.shape}"
            assert combined.dtype == op.dtype, f"{what}: dtype {combined.dtype}"
            _assert_close(_numpy(combined @ Xt), want @ X, atol, what)
            _assert_close(_numpy(combined @ xt), want @ x, atol, f"({what}) @ x")

    def test_to_dense_and_to_scipy(self) -> None:
        op, ref = self._made()
        atol = self._tol(op) * max(float(np.abs(ref).max()), 1e-300) * max(ref.shape)
        _assert_close(_numpy(op.to_dense()), ref, atol, "to_dense()")
        _assert_close(dense_of(op.to_scipy(), ref.shape[1]), ref, atol, "to_scipy()")

    def test_wrong_operand_is_refused(self) -> None:
        op, ref = self._made()
        wrong_length = torch.zeros(ref.shape[1] + 1, dtype=op.dtype, device=op.device)
        try:
            op @ wrong_length
        except ValueError as err:
            assert "pass a tensor of shape" in str(err), str(err)
        else:
            raise AssertionError("an operand of the wrong length was accepted")
        other = torch.float32 if op.dtype == torch.float64 else torch.float64
        try:
            op @ torch.zeros(ref.shape[1], dtype=other, device=op.device)
        except TypeError as err:
            assert "operand is" in str(err), str(err)
        else:
            raise AssertionError(f"a {other} operand was accepted by a {op.dtype} operator")
