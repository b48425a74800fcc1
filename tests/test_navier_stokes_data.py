"""The Navier-Stokes generator against independent references: the initial vorticity against its
explicit Fourier sum, the nonlinear term against a hand computation, an exact solution, the
invariants of the inviscid truncated system, and a run at twice the resolution and half the
step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft

from neuralsolve.datasets.generators import (
    GENERATORS,
    etdrk4,
    generate,
    navier_stokes,
    vorticity_initial_condition,
)
from neuralsolve.datasets.generators import navier_stokes_data as ns


def nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n) / n
    return np.meshgrid(x, x, indexing="ij")


def upsample(w: np.ndarray, factor: int = 2) -> np.ndarray:
    """A trigonometric polynomial of degree < n/2 per axis on ``factor`` times the nodes: its
    spectrum zero-padded (exact)."""
    n = w.shape[-1]
    m = factor * n
    hat = np.fft.fft2(w)
    fine = np.zeros((*w.shape[:-2], m, m), dtype=complex)
    idx = np.r_[0 : n // 2, m - n // 2 : m]
    src = np.r_[0 : n // 2, n - n // 2 : n]
    fine[..., idx[:, None], idx[None, :]] = hat[..., src[:, None], src[None, :]]
    return np.real(np.fft.ifft2(fine)) * factor**2


# --------------------------------------------------------------------------- initial vorticity
def test_vorticity_initial_condition_is_its_fourier_sum() -> None:
    n, sigma, tau, alpha = 6, 2.0, 3.0, 1.5
    w = vorticity_initial_condition(n, np.random.default_rng(4), sigma=sigma, tau=tau, alpha=alpha)
    xi, eta = np.random.default_rng(4).standard_normal((2, n, n))
    X, Y = nodes(n)
    ref = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            mx, my = (i + n // 2) % n - n // 2, (j + n // 2) % n - n // 2  # FFT order
            if (mx == 0 and my == 0) or abs(mx) == n // 2 or abs(my) == n // 2:
                continue
            a = sigma * (4 * np.pi**2 * (mx**2 + my**2) + tau**2) ** (-alpha / 2)
            theta = 2 * np.pi * (mx * X + my * Y)
            ref += a * (xi[i, j] * np.cos(theta) - eta[i, j] * np.sin(theta))
    # two O(1e-2) sums of 24 terms: equal to rounding
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-14)


def test_vorticity_initial_condition_mean_and_variance() -> None:
    # zero mean on the grid exactly; the sample variance over 400 fields against sigma^2 *
    # sum(lambda_k): each field has ~60 effective degrees of freedom, so the estimate's relative
    # standard error is ~1%, and 5% is a 5-sigma bound.
    n = 16
    w = np.stack(
        [vorticity_initial_condition(n, np.random.default_rng([1, i])) for i in range(400)]
    )
    assert np.abs(w.mean(axis=(1, 2))).max() < 1e-15
    m = np.fft.fftfreq(n, 1 / n)
    lam = (4 * np.pi**2 * (m[:, None] ** 2 + m[None, :] ** 2) + 49.0) ** -2.5
    lam[0, 0] = 0
    lam[np.abs(m) == n // 2, :] = 0
    lam[:, np.abs(m) == n // 2] = 0
    expected = 2 * 7.0**3 * lam.sum()
    assert abs(w.var() / expected - 1) < 0.05, (w.var(), expected)


# --------------------------------------------------------------------------- the equation
def test_nonlinear_term_against_a_hand_computation() -> None:
    # w = sin(2 pi x) + cos(4 pi y): psi = sin(2 pi x) / (4 pi^2) + cos(4 pi y) / (16 pi^2),
    # u = psi_y = -sin(4 pi y) / (4 pi), v = -psi_x = -cos(2 pi x) / (2 pi), so
    # u w_x + v w_y = -cos(2 pi x) sin(4 pi y) / 2 + 2 cos(2 pi x) sin(4 pi y).
    n = 16
    X, Y = nodes(n)
    w = np.sin(2 * np.pi * X) + np.cos(4 * np.pi * Y)
    advection = 1.5 * np.cos(2 * np.pi * X) * np.sin(4 * np.pi * Y)
    forcing = ns.fno_forcing(n, 0.3)
    L, nonlinear, _ = ns._navier_stokes_terms(n, 0.01, forcing, 1e-3)
    got = nonlinear(scipy.fft.rfft2(w)[None].reshape(1, -1)).reshape(n, n // 2 + 1)
    np.testing.assert_allclose(got, scipy.fft.rfft2(forcing - advection), rtol=0, atol=1e-11)
    mx, my, _ = ns._modes(n)
    np.testing.assert_allclose(L, (-0.01 * 4 * np.pi**2 * (mx**2 + my**2)).ravel())


def test_nonlinear_term_is_dealiased() -> None:
    # modes with 3 |m| >= n interact with nothing: on 16 nodes, cos(2 pi 6 x) cos(2 pi 6 y)
    # with a low mode would alias onto kept modes if it were not cut.
    n = 16
    X, Y = nodes(n)
    high = np.cos(2 * np.pi * 6 * X) * np.cos(2 * np.pi * 6 * Y)
    low = np.sin(2 * np.pi * X)
    _, nonlinear, _ = ns._navier_stokes_terms(n, 0.01, np.zeros((n, n)), 1e-3)

    def tendency(w: np.ndarray) -> np.ndarray:
        return nonlinear(scipy.fft.rfft2(w)[None].reshape(1, -1))

    np.testing.assert_allclose(tendency(high + low), tendency(low), rtol=0, atol=1e-12)


def test_exact_solution_in_one_eigenspace_with_the_forcing() -> None:
    # cos(2 pi (x - y)), sin(2 pi (x + y)) and the forcing all satisfy -lap = 8 pi^2, so
    # u.grad w = 0 and w(t) = e^{-nu kappa t} w0 + (1 - e^{-nu kappa t}) / (nu kappa) f.
    n, nu, t = 16, 0.05, 3.0
    X, Y = nodes(n)
    w0 = 0.7 * np.cos(2 * np.pi * (X - Y)) - 0.4 * np.sin(2 * np.pi * (X + Y))
    f = ns.fno_forcing(n, 0.1)
    decay = math.exp(-nu * 8 * np.pi**2 * t)
    exact = decay * w0 + (1 - decay) / (nu * 8 * np.pi**2) * f
    got, state = ns._navier_stokes_solve(w0[None], nu, f, t, 60)
    np.testing.assert_allclose(got[0], exact, rtol=0, atol=1e-13)
    assert state["cfl"] > 0  # the flow moves, though it does not advect its own vorticity


def test_inviscid_truncated_system_conserves_energy_and_enstrophy() -> None:
    # With nu = 0 and f = 0, the Galerkin system on the kept modes conserves the energy
    # sum |w_k|^2 / |k|^2 and the enstrophy sum |w_k|^2; ETDRK4 adds an O(dt^4) drift.
    # A sign error in either velocity component, or aliasing, breaks this at O(1e-2).
    n = 24
    rng = np.random.default_rng(7)
    w0 = vorticity_initial_condition(n, rng, sigma=60.0, tau=3.0, alpha=2.0)
    hat = np.fft.fft2(w0)
    m = np.abs(np.fft.fftfreq(n, 1 / n))
    hat[(3 * m[:, None] >= n) | (3 * m[None, :] >= n)] = 0  # keep the band only
    w0 = np.real(np.fft.ifft2(hat))

    def invariants(w: np.ndarray) -> tuple[float, float]:
        p = np.abs(np.fft.fft2(w)) ** 2
        k2 = m[:, None] ** 2 + m[None, :] ** 2
        return float((p[k2 > 0] / k2[k2 > 0]).sum()), float(p.sum())

    w, state = ns._navier_stokes_solve(w0[None], 0.0, np.zeros((n, n)), 1.0, 400)
    e0, z0 = invariants(w0)
    e1, z1 = invariants(w[0])
    assert abs(e1 / e0 - 1) < 1e-9 and abs(z1 / z0 - 1) < 1e-9, (e1 / e0 - 1, z1 / z0 - 1)
    assert np.linalg.norm(w[0] - w0) > 0.1 * np.linalg.norm(w0)  # the vorticity has moved
    assert state["cfl"] < ns.NS_MAX_CFL


def test_against_twice_the_resolution_and_half_the_step() -> None:
    n, samples, t_final = 48, 2, 2.0
    data = navier_stokes(n, samples, seed=2, t_final=t_final, nu=1e-3, progress=False)
    assert data.inputs.shape == data.outputs.shape == (samples, 1, n, n)
    assert data.grid_kind == "node" and data.pde == "navier_stokes"
    np.testing.assert_array_equal(data.coordinates["y"], np.arange(n) / n)
    assert data.parameters["steps"] == 100 and data.parameters["dt"] == pytest.approx(0.02)
    w0 = data.inputs[:, 0]
    fine = upsample(w0)
    np.testing.assert_allclose(fine[:, ::2, ::2], w0, atol=1e-14)
    ref, _ = ns._navier_stokes_solve(fine, 1e-3, ns.fno_forcing(2 * n), t_final, 200)
    ref = ref[:, ::2, ::2]
    # the coarse run's ETDRK4 error (8e-10 against the same grid at half the step) and the
    # interactions the coarse 2/3 rule drops (modes 16..23 of the fine grid): measured 2.9e-8
    # (3e-5 at n = 32, where the dropped modes hold more). A wrong ETDRK4 weight or a
    # lower-order error would be far larger.
    err = np.abs(data.outputs[:, 0] - ref).max() / np.abs(ref).max()
    assert err < 2e-7, err
    assert np.abs(data.outputs[:, 0] - w0).max() > 0.1 * np.abs(w0).max()
    # the resolution check the generator records: 1.4e-8 of the enstrophy in the outer band
    assert 0 < data.parameters["spectral_tail_max"] < 1e-6


def test_sample_depends_only_on_seed_and_index() -> None:
    kw = {"t_final": 0.2, "seed": 3, "progress": False}
    full = navier_stokes(16, 4, **kw)
    part = navier_stokes(16, 2, start=2, **kw)
    np.testing.assert_array_equal(part.inputs, full.inputs[2:])
    np.testing.assert_allclose(part.outputs, full.outputs[2:], rtol=0, atol=1e-13)


def test_registered_and_written_by_generate(tmp_path) -> None:
    assert GENERATORS["navier_stokes"] is navier_stokes
    path = generate(
        "navier_stokes", out=tmp_path / "ns.h5", n=8, samples=3, chunk=2, t_final=0.1,
        progress=False,
    )  # fmt: skip
    from neuralsolve.datasets import H5Dataset

    data = H5Dataset(path)
    assert len(data) == 3
    a, u = data[2]
    ref = navier_stokes(8, 1, start=2, t_final=0.1, progress=False)
    np.testing.assert_allclose(a.numpy(), ref.inputs[0], rtol=1e-6)
    np.testing.assert_allclose(u.numpy(), ref.outputs[0], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 15}, ValueError, "n must be even"),
        ({"nu": 0.0}, ValueError, "nu must be a finite positive"),
        ({"forcing": -0.1}, ValueError, "forcing must be a finite non-negative"),
        ({"dt": float("nan")}, ValueError, "dt must be"),
        ({"sigma": "big"}, TypeError, "sigma must be a real number"),
        ({"samples": 0}, ValueError, "samples must be >= 1"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        navier_stokes(**{"n": 8, "t_final": 0.1, "progress": False, **kwargs})


def test_too_large_a_step_is_refused_with_a_step_that_passes() -> None:
    with pytest.raises(RuntimeError, match=r"CFL number .* reached .* pass dt <= ") as info:
        navier_stokes(32, 1, t_final=2.0, dt=1.0, sigma=300.0, progress=False)
    safe = float(str(info.value).rsplit("dt <= ", 1)[1])
    data = navier_stokes(32, 1, t_final=2.0, dt=safe, sigma=300.0, progress=False)
    assert data.parameters["advective_cfl_max"] < ns.NS_MAX_CFL


def test_blow_up_names_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise etdrk4.BlowUp(3, np.array([0]))

    monkeypatch.setattr(ns, "_navier_stokes_solve", explode)
    with pytest.raises(RuntimeError, match=r"navier_stokes samples \[4\] became NaN .* step 3"):
        navier_stokes(8, 1, start=4, t_final=0.1, progress=False)
