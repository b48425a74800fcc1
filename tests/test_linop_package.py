"""`neuralsolve.linop` is a package split along its seams; every name the single module had is
still importable from the package, and is the object its home module defines."""

from __future__ import annotations

import importlib

import pytest

import neuralsolve.linop as linop

HOMES = {
    "base": [
        "LinearOperator",
        "MAX_DENSE_ELEMENTS",
        "ProductOperator",
        "ScaledOperator",
        "SumOperator",
        "SUPPORTED_DTYPES",
        "check_dtype",
        "same_device",
        "torch_dtype",
    ],
    "matrices": [
        "CallableOperator",
        "DenseOperator",
        "DiagonalOperator",
        "IdentityOperator",
        "SparseOperator",
        "canonical_csr",
        "csr_tensor_from_arrays",
        "quiet_sparse_warnings",
    ],
    "conversion": ["as_operator"],
}


@pytest.mark.parametrize("module", sorted(HOMES))
def test_every_name_is_reexported_from_its_home(module: str) -> None:
    home = importlib.import_module(f"neuralsolve.linop.{module}")
    for name in HOMES[module]:
        assert getattr(linop, name) is getattr(home, name), name


def test_star_import_set_is_unchanged() -> None:
    assert sorted(linop.__all__) == [
        "CallableOperator",
        "DenseOperator",
        "DiagonalOperator",
        "IdentityOperator",
        "LinearOperator",
        "SparseOperator",
        "as_operator",
    ]


def test_algebra_builds_the_composites() -> None:
    import torch

    A = linop.as_operator(torch.eye(3, dtype=torch.float64))
    assert isinstance(A + A, linop.SumOperator)
    assert isinstance(A - A, linop.SumOperator)
    assert isinstance(2 * A, linop.ScaledOperator)
    assert isinstance(A / 2, linop.ScaledOperator)
    assert isinstance(-A, linop.ScaledOperator)
    assert isinstance(A @ A, linop.ProductOperator)
