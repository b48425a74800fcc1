"""Lanczos and Ritz pairs against scipy.sparse.linalg.eigsh and dense eigensolvers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import neuralsolve as ns
from neuralsolve.lanczos import lanczos, ritz_pairs

from .conftest import random_spd_dense


def test_full_run_reproduces_the_spectrum() -> None:
    A = random_spd_dense(40, 100.0, seed=0)
    res = lanczos(A, 40, generator=torch.Generator().manual_seed(0))
    theta = res.ritz()[0]
    np.testing.assert_allclose(theta.numpy(), np.linalg.eigvalsh(A), rtol=1e-10)
    # The Lanczos vectors stay orthonormal with full reorthogonalisation, and A Q = Q T.
    Q = res.Q.numpy()
    np.testing.assert_allclose(Q @ Q.T, np.eye(40), atol=1e-10)
    np.testing.assert_allclose(Q @ A @ Q.T, res.tridiagonal().numpy(), atol=1e-9)


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_ritz_pairs_match_eigsh(which: str) -> None:
    prob = ns.datasets.poisson((20, 20, 20), bc="mixed", obstacle="spheres")
    k = 6
    vals, vecs, resid = ritz_pairs(
        prob.A, k, which=which, num_steps=300, generator=torch.Generator().manual_seed(1)
    )
    ref = spla.eigsh(prob.matrix, k=k, which="LA" if which == "largest" else "SA", tol=1e-12)[0]
    ref = np.sort(ref)[::-1] if which == "largest" else np.sort(ref)
    np.testing.assert_allclose(vals.numpy(), ref, rtol=1e-8)
    # The reported residuals are the true ones, and small.
    true = np.linalg.norm(prob.matrix @ vecs.numpy() - vecs.numpy() * vals.numpy(), axis=0)
    np.testing.assert_allclose(resid.numpy(), true, rtol=1e-4, atol=1e-10 * np.abs(ref).max())
    assert true.max() <= 1e-6 * np.abs(ref).max()
    np.testing.assert_allclose(vecs.numpy().T @ vecs.numpy(), np.eye(k), atol=1e-10)


def test_invariant_subspace_stops_early() -> None:
    A = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    v0 = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    res = lanczos(A, 6, v0=v0)
    assert res.invariant and res.steps == 2
    np.testing.assert_allclose(np.sort(res.ritz()[0].numpy()), [1.0, 2.0])


def test_without_reorthogonalisation_extremes_still_converge() -> None:
    A = random_spd_dense(200, 1e3, seed=2)
    res = lanczos(
        A,
        60,
        reorthogonalize="none",
        store_vectors=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.Q is None
    theta = res.ritz()[0].numpy()
    eig = np.linalg.eigvalsh(A)
    assert theta.max() == pytest.approx(eig.max(), rel=1e-8)


def test_lanczos_errors() -> None:
    with pytest.raises(ns.NotSPDError, match="symmetric"):
        lanczos(np.array([[1.0, 2.0], [0.0, 1.0]]), 2)
    with pytest.raises(ValueError, match="num_steps"):
        lanczos(np.eye(3), 4)
    with pytest.raises(ValueError, match="zero"):
        lanczos(np.eye(3), 2, v0=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="which"):
        ritz_pairs(np.eye(3), 1, which="middle")
