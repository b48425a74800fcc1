"""Bad input to solve(): each raises the documented error, before any work, with a message
that names what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import neuralsolve as ns

A = ns.datasets.poisson((4, 4)).matrix  # 16 x 16 SPD, float64
b = np.ones(16)


def _nan(v: np.ndarray) -> np.ndarray:
    v = v.copy()
    v[3] = np.nan
    return v


CASES = [
    (
        "non-square",
        lambda: ns.solve(sp.random_array((16, 12), density=0.3), np.ones(16)),
        ValueError,
        "square",
    ),
    (
        "b too short",
        lambda: ns.solve(A, np.ones(15)),
        ValueError,
        r"b has shape \(15,\) but A is \(16, 16\)",
    ),
    ("b 3-D", lambda: ns.solve(A, np.ones((16, 2, 2))), ValueError, "pass a vector of length 16"),
    ("b NaN", lambda: ns.solve(A, _nan(b)), ns.NonFiniteError, "b holds NaN"),
    (
        "b inf",
        lambda: ns.solve(A, np.full(16, np.inf)),
        ns.NonFiniteError,
        "b holds NaN or infinite",
    ),
    ("A NaN", lambda: ns.solve(np.diag(_nan(b)), b), ns.NonFiniteError, "A has NaN"),
    ("x0 NaN", lambda: ns.solve(A, b, x0=_nan(b)), ns.NonFiniteError, "x0 holds NaN"),
    ("x0 shape", lambda: ns.solve(A, b, x0=np.ones(3)), ValueError, "x0 has shape"),
    ("b integer", lambda: ns.solve(A, np.ones(16, dtype=np.int64)), TypeError, "b has dtype int64"),
    ("b list", lambda: ns.solve(A, [1.0] * 16), TypeError, "np.asarray"),
    (
        "dtype mismatch",
        lambda: ns.solve(A, np.ones(16, dtype=np.float32)),
        TypeError,
        "b is torch.float32 but A is torch.float64",
    ),
    (
        "A float16",
        lambda: ns.solve(torch.eye(4, dtype=torch.float16), torch.ones(4, dtype=torch.float16)),
        TypeError,
        "float16",
    ),
    ("A kind", lambda: ns.solve("A", b), TypeError, "cannot make a linear operator from str"),
    (
        "non-symmetric to cg",
        lambda: ns.solve(np.array([[2.0, 1.0], [0.0, 2.0]]), np.ones(2)),
        ns.NotSPDError,
        "symmetric positive definite",
    ),
    (
        "negative diagonal to cg",
        lambda: ns.solve(np.diag([1.0, -1.0]), np.ones(2), method="pcg-jacobi"),
        ns.NotSPDError,
        "symmetric=True, positive_definite=False",
    ),
    (
        "unknown method",
        lambda: ns.solve(A, b, method="gmres"),
        ValueError,
        "unknown method 'gmres'; available",
    ),
    ("method not str", lambda: ns.solve(A, b, method=3), TypeError, "method must be a name"),
    (
        "unknown option",
        lambda: ns.solve(A, b, method="pyamg-sa", smoother="x"),
        TypeError,
        "valid options",
    ),
    ("positional rtol", lambda: ns.solve(A, b, "cg", 1e-3), TypeError, "positional"),
    (
        "negative rtol",
        lambda: ns.solve(A, b, rtol=-1e-3),
        ValueError,
        "rtol must be finite and >= 0",
    ),
    (
        "callback to reference",
        lambda: ns.solve(A, b, method="scipy-cg", callback=print),
        ValueError,
        "callback",
    ),
    (
        "M to pyamg",
        lambda: ns.solve(A, b, method="pyamg-sa", M=np.eye(16)),
        ValueError,
        "do not pass M",
    ),
    (
        "matrix-free to direct",
        lambda: ns.solve(
            ns.as_operator(lambda x: x, shape=(16, 16), dtype="float64"), b, method="direct"
        ),
        TypeError,
        "matrix-free",
    ),
    (
        "fused on a matrix",
        lambda: ns.solve(A, b, method="cg-fused"),
        ns.GridStructureError,
        "stencil operators",
    ),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(name: str, call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_mixed_devices_are_refused() -> None:
    op = ns.as_operator(A)
    with pytest.raises(ValueError, match="b is on cuda"):
        ns.solve(op, torch.ones(16, dtype=torch.float64, device="cuda"))


def test_mixed_devices_are_refused_on_cpu_too() -> None:
    """Without a GPU, the 'meta' device stands in for another device."""
    op = ns.as_operator(A)
    with pytest.raises(ValueError, match="b is on meta but A is on cpu"):
        ns.solve(op, torch.ones(16, dtype=torch.float64, device="meta"))
