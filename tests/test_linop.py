"""The linear-operator protocol: the shipped conformance mixin on every operator class, algebra
checked against dense float64 matrices, conversions and tags."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns
from neuralsolve.linop import DiagonalOperator, IdentityOperator
from neuralsolve.testing import OperatorConformance

from .conftest import random_spd_dense, random_spd_sparse


class TestDense(OperatorConformance):
    def make(self):
        M = np.random.default_rng(1).standard_normal((7, 5))
        return ns.as_operator(M), M


class TestDenseSPD(OperatorConformance):
    def make(self):
        M = random_spd_dense(12, 50.0, seed=3)
        return ns.as_operator(torch.from_numpy(M)), M


class TestSparse(OperatorConformance):
    def make(self):
        M = random_spd_sparse(40, seed=4)
        return ns.as_operator(M), M.toarray()


class TestSparseNonsymmetric(OperatorConformance):
    def make(self):
        M = sp.random_array(
            (30, 30), density=0.2, random_state=np.random.default_rng(5)
        ) + sp.eye_array(30)
        return ns.as_operator(M), M.toarray()


class TestSparseFloat32(OperatorConformance):
    def make(self):
        M = random_spd_sparse(40, seed=6)
        return ns.as_operator(M, dtype="float32"), M.toarray()


class TestCallable(OperatorConformance):
    def make(self):
        M = np.random.default_rng(7).standard_normal((6, 6))
        Mt = torch.from_numpy(M)
        return ns.as_operator(lambda x: Mt @ x, shape=(6, 6), dtype=torch.float64), M


class TestScipyLinearOperator(OperatorConformance):
    def make(self):
        M = np.random.default_rng(8).standard_normal((5, 5))
        return ns.as_operator(spla.aslinearoperator(M)), M


class TestDiagonal(OperatorConformance):
    def make(self):
        d = np.arange(1.0, 9.0)
        return DiagonalOperator(torch.from_numpy(d)), np.diag(d)


class TestIdentity(OperatorConformance):
    def make(self):
        return IdentityOperator(4), np.eye(4)


class TestSum(OperatorConformance):
    def make(self):
        A = random_spd_sparse(20, seed=9)
        B = random_spd_dense(20, 10.0, seed=10)
        return ns.as_operator(A) + ns.as_operator(B), A.toarray() + B


class TestScaledDifference(OperatorConformance):
    def make(self):
        A = random_spd_dense(9, 10.0, seed=11)
        B = np.random.default_rng(12).standard_normal((9, 9))
        op = 2.5 * ns.as_operator(A) - ns.as_operator(B) / 4
        return op, 2.5 * A - B / 4


class TestProduct(OperatorConformance):
    def make(self):
        A = np.random.default_rng(13).standard_normal((4, 6))
        B = np.random.default_rng(14).standard_normal((6, 3))
        return ns.as_operator(A) @ ns.as_operator(B), A @ B


class TestStencilUniform(OperatorConformance):
    def make(self):
        prob = ns.datasets.poisson((5, 4, 3))
        return prob.A, prob.matrix.toarray()


class TestStencilMaskedVariable(OperatorConformance):
    def make(self):
        prob = ns.datasets.poisson(
            (9, 8), bc="mixed", obstacle="spheres", coefficient="darcy", seed=2
        )
        return prob.A, prob.matrix.toarray()


# ------------------------------------------------------------------------- tags and conversions
def test_symmetry_is_checked_and_diagonal_sign_marks_non_spd() -> None:
    A = ns.as_operator(np.array([[2.0, 1.0], [1.0, 3.0]]))
    assert A.symmetric is True and A.positive_definite is None
    N = ns.as_operator(np.array([[2.0, 1.0], [0.0, 3.0]]))
    assert N.symmetric is False and N.positive_definite is False
    neg = ns.as_operator(sp.csr_array(np.array([[2.0, 0.0], [0.0, -1.0]])))
    assert neg.symmetric is True and neg.positive_definite is False


def test_declared_tags_are_kept() -> None:
    A = ns.as_operator(np.eye(3), positive_definite=True)
    assert A.is_spd
    f = ns.as_operator(lambda x: 2 * x, shape=(3, 3), dtype="float64").with_tags(
        symmetric=True, positive_definite=True
    )
    assert f.is_spd and f.T is f
    with pytest.raises(ValueError, match="positive_definite=True must not be symmetric=False"):
        ns.as_operator(np.eye(2), symmetric=False, positive_definite=True)


def test_scaling_tags() -> None:
    A = ns.as_operator(np.eye(3), positive_definite=True)
    assert (2.0 * A).is_spd
    assert (-1.0 * A).positive_definite is False
    assert (A + A).is_spd


def test_sparse_is_converted_once_to_int32_csr() -> None:
    A = ns.as_operator(sp.coo_array(random_spd_sparse(10, seed=1)))
    assert isinstance(A, ns.SparseOperator)
    assert A.csr.layout == torch.sparse_csr and A.csr.crow_indices().dtype == torch.int32


def test_torch_sparse_inputs_are_accepted() -> None:
    M = random_spd_sparse(15, seed=2).toarray()
    A = ns.as_operator(torch.from_numpy(M).to_sparse())
    np.testing.assert_allclose(A.to_dense().numpy(), M)


def test_to_dense_refuses_huge_operators() -> None:
    big = ns.as_operator(lambda x: x, shape=(200_000, 200_000), dtype="float64")
    with pytest.raises(ValueError, match="to_scipy"):
        big.to_dense()


def test_as_operator_rejects_what_it_cannot_use() -> None:
    with pytest.raises(TypeError, match="cannot make a linear operator from str"):
        ns.as_operator("A")
    with pytest.raises(TypeError, match="shape and dtype"):
        ns.as_operator(lambda x: x)
    with pytest.raises(TypeError, match="int64"):
        ns.as_operator(np.eye(3, dtype=np.int64))
    assert ns.as_operator(np.eye(3, dtype=np.int64), dtype="float64").dtype == torch.float64
    with pytest.raises(ValueError, match="2-D"):
        ns.as_operator(torch.zeros(3))
    with pytest.raises(ns.NonFiniteError):
        ns.as_operator(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ns.NonFiniteError):
        ns.as_operator(sp.csr_array(np.array([[1.0, np.inf], [0.0, 1.0]])))
    with pytest.raises(TypeError, match="float16"):
        ns.as_operator(torch.eye(3, dtype=torch.float16))


def test_algebra_errors() -> None:
    A = ns.as_operator(np.eye(3))
    with pytest.raises(ValueError, match="shapes"):
        A + ns.as_operator(np.eye(4))
    with pytest.raises(TypeError, match="float32"):
        A + ns.as_operator(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="multiply"):
        A @ ns.as_operator(np.eye(4))


def test_to_moves_dtype() -> None:
    prob = ns.datasets.poisson((6, 6), coefficient="darcy")
    A32 = prob.A.to(dtype=torch.float32)
    x = torch.randn(prob.n, dtype=torch.float64)
    np.testing.assert_allclose(
        (A32 @ x.float()).double().numpy(), (prob.A @ x).numpy(), rtol=1e-5, atol=1e-3
    )


# ------------------------------------------------------------------------- random algebra
def _random_operator(
    rng: np.random.Generator, m: int, n: int
) -> tuple[ns.LinearOperator, np.ndarray]:
    """A random operator of shape (m, n) in one of the supported forms, with its dense matrix."""
    M = rng.standard_normal((m, n))
    kind = rng.integers(4)
    if kind == 0:
        return ns.as_operator(M), M
    if kind == 1:
        S = sp.random_array((m, n), density=0.4, random_state=rng)
        return ns.as_operator(S), S.toarray()
    if kind == 2:
        Mt = torch.from_numpy(M)
        return ns.as_operator(lambda x: Mt @ x, shape=(m, n), dtype=torch.float64), M
    return ns.as_operator(torch.from_numpy(M)), M


@pytest.mark.parametrize("seed", range(25))
def test_random_algebra_matches_dense(seed: int) -> None:
    """Sums, differences, scalings, products and transposes of random operators equal the same
    expressions of their dense matrices (float64, to rounding)."""
    rng = np.random.default_rng(seed)
    m, n, p = (int(v) for v in rng.integers(1, 9, size=3))
    A, Ad = _random_operator(rng, m, n)
    B, Bd = _random_operator(rng, m, n)
    C, Cd = _random_operator(rng, n, p)
    a, b = rng.standard_normal(2)
    expressions = [
        (A + B, Ad + Bd),
        (A - B, Ad - Bd),
        (a * A + B * b, a * Ad + b * Bd),
        (-A / 3.0, -Ad / 3.0),
        (A @ C, Ad @ Cd),
        ((a * A - B) @ C, (a * Ad - Bd) @ Cd),
    ]
    x = torch.from_numpy(rng.standard_normal(n))
    X = torch.from_numpy(rng.standard_normal((p, 3)))
    for op, dense in expressions:
        inp = X if op.shape[1] == p else torch.from_numpy(rng.standard_normal((op.shape[1], 3)))
        np.testing.assert_allclose((op @ inp).numpy(), dense @ inp.numpy(), atol=1e-12)
        if op.shape[1] == n:
            np.testing.assert_allclose((op @ x).numpy(), dense @ x.numpy(), atol=1e-12)
        try:
            T = op.T
        except NotImplementedError:  # a callable without its transpose: .T is refused, never wrong
            continue
        y = torch.from_numpy(rng.standard_normal(op.shape[0]))
        np.testing.assert_allclose((T @ y).numpy(), dense.T @ y.numpy(), atol=1e-12)


def test_a_non_canonical_user_matrix_is_left_untouched() -> None:
    # Duplicate entries and unsorted column indices: scipy would sum and sort them in place.
    # [[2, 1], [1, 7]] stored as row 0: (1, 1.0), (0, 2.0); row 1: (1, 3.0), (0, 1.0), (1, 4.0)
    M = sp.csr_array(
        (np.array([1.0, 2.0, 3.0, 1.0, 4.0]), np.array([1, 0, 1, 0, 1]), np.array([0, 2, 5])),
        shape=(2, 2),
    )
    assert not M.has_canonical_format
    before = (M.data.copy(), M.indices.copy(), M.indptr.copy())
    op = ns.as_operator(M)
    res = ns.solve(M, np.ones(2), method="pcg-ic")
    for a, b in zip(before, (M.data, M.indices, M.indptr), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(op.to_dense().numpy(), M.toarray())
    assert res.converged


@pytest.mark.parametrize(
    "make",
    [
        lambda: ns.datasets.poisson((5, 4, 3)).A,
        lambda: (
            ns.datasets.poisson(
                (7, 6), bc="mixed", obstacle="spheres", coefficient="darcy", seed=1
            ).A
        ),
        lambda: ns.as_operator(random_spd_sparse(20, seed=3)),
        lambda: ns.as_operator(random_spd_dense(8, 10.0, seed=4)),
    ],
    ids=["stencil", "masked-stencil", "sparse", "dense"],
)
def test_operators_are_differentiable(make) -> None:
    """A loss through an operator can be differentiated (DCDM trains through A): the gradient of
    ||A x - b||^2 is 2 A^T (A x - b), checked against the dense matrix."""
    op = make()
    n = op.shape[0]
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, dtype=torch.float64)
    loss = ((op @ x - b) ** 2).sum()
    loss.backward()
    M = op.to_dense().detach()
    expected = 2 * M.T @ (M @ x.detach() - b)
    np.testing.assert_allclose(x.grad.numpy(), expected.numpy(), rtol=1e-10, atol=1e-10)
