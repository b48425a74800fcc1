"""Data generators for neural operators: answers against independent references (scipy direct
solves of an independently assembled matrix, a finer Burgers run, exact solutions of linear
ODEs, mpmath), reproducibility by sample index, and the registry / file entry point."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from neuralsolve.datasets.generators import (
    GENERATORS,
    OperatorData,
    burgers,
    burgers_initial_condition,
    darcy,
    etdrk4,
    gaussian_random_field,
    generate,
    poisson,
)
from neuralsolve.datasets.generators import burgers_data as gen


def fv_matrix(a: np.ndarray) -> sp.csr_array:
    """The cell-centred 5-point finite-volume matrix of ``-div(a grad u)`` on the unit square
    with ``u = 0`` on the walls, assembled here from the formula (not by the gallery): interior
    faces carry ``2 a_P a_Q / (a_P + a_Q) / h^2`` (harmonic mean), a wall face ``2 a_P / h^2``
    (ghost value at distance ``h / 2``)."""
    n = a.shape[0]
    h2 = 1.0 / n**2
    idx = np.arange(n * n).reshape(n, n)
    diag = np.zeros((n, n))
    rows, cols, vals = [], [], []
    for lo, hi in (
        ((slice(0, -1), slice(None)), (slice(1, None), slice(None))),
        ((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
    ):
        a0, a1 = a[lo], a[hi]
        w = 2 * a0 * a1 / (a0 + a1) / h2
        rows += [idx[lo].ravel(), idx[hi].ravel()]
        cols += [idx[hi].ravel(), idx[lo].ravel()]
        vals += [-w.ravel(), -w.ravel()]
        diag[lo] += w
        diag[hi] += w
    for wall in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        diag[wall] += 2 * a[wall] / h2
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    return sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n,) * 2
    )


def relerr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- random fields
def test_grf_is_the_cosine_expansion_at_cell_centres() -> None:
    # The idctn evaluation against the explicit sum sqrt(lam_k) xi_k phi_k(x_j): both are
    # O(1e-1) sums of at most 20 terms, so they agree to rounding (1e-13 leaves a wide margin).
    n1, n2, tau, alpha = 5, 4, 3.0, 2.0
    psi = gaussian_random_field((n1, n2), np.random.default_rng(1), normalize=False)
    xi = np.random.default_rng(1).standard_normal((n1, n2))
    x, y = (np.arange(n1) + 0.5) / n1, (np.arange(n2) + 0.5) / n2
    ref = np.zeros((n1, n2))
    for k1 in range(n1):
        for k2 in range(n2):
            if k1 == k2 == 0:
                continue
            lam = (np.pi**2 * (k1**2 + k2**2) + tau**2) ** (-alpha)
            c = (1 if k1 == 0 else math.sqrt(2)) * (1 if k2 == 0 else math.sqrt(2))
            ref += (
                math.sqrt(lam)
                * xi[k1, k2]
                * c
                * np.outer(np.cos(np.pi * k1 * x), np.cos(np.pi * k2 * y))
            )
    np.testing.assert_allclose(psi, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_grf_has_zero_grid_mean_and_unit_average_variance() -> None:
    n, count = 16, 400
    fields = np.stack(
        [gaussian_random_field((n, n), np.random.default_rng([3, i])) for i in range(count)]
    )
    # The mean mode is dropped: every sample has zero grid mean up to rounding.
    assert np.abs(fields.mean(axis=(1, 2))).max() < 1e-15
    # Per sample, mean_j psi_j^2 = sum_k lam_k xi_k^2 / sum_k lam_k: mean 1, variance
    # 2 sum lam^2 / (sum lam)^2. Five standard errors of the average over `count` samples.
    k2 = np.add.outer(np.arange(n) ** 2, np.arange(n) ** 2)
    lam = (np.pi**2 * k2 + 9.0) ** -2.0
    lam[0, 0] = 0.0
    std = math.sqrt(2 * (lam**2).sum() / lam.sum() ** 2 / count)
    assert abs((fields**2).mean() - 1.0) < 5 * std


def test_burgers_initial_condition_is_a_zero_mean_trigonometric_polynomial() -> None:
    n = 32
    u0 = burgers_initial_condition(n, np.random.default_rng(0))
    spec = scipy.fft.rfft(u0)
    assert abs(spec[0]) < 1e-12 and abs(spec[n // 2]) < 1e-12
    # the covariance: E |c_m|^2 = n^2 mu_m (both xi and eta), checked on the lowest mode over
    # many draws: the sample mean of an exponential variable, five standard errors
    count = 2000
    c1 = np.array(
        [
            scipy.fft.rfft(burgers_initial_condition(n, np.random.default_rng([1, i])))[1]
            for i in range(count)
        ]
    )
    mu1 = 625.0 * ((2 * np.pi) ** 2 + 25.0) ** -2.0
    ratio = np.mean(np.abs(c1) ** 2) / (n**2 * mu1)
    assert abs(ratio - 1.0) < 5 / math.sqrt(count)


# --------------------------------------------------------------------------- Darcy
def test_darcy_matches_direct_solve_of_independent_assembly() -> None:
    n = 32
    data = darcy(n, 3, seed=4, progress=False)
    assert data.inputs.shape == data.outputs.shape == (3, 1, n, n)
    assert data.inputs.dtype == data.outputs.dtype == np.float64
    assert data.pde == "darcy" and data.grid_kind == "cell"
    np.testing.assert_allclose(data.coordinates["x"], (np.arange(n) + 0.5) / n)
    for s in range(3):
        a = data.inputs[s, 0]
        assert set(np.unique(a)) == {3.0, 12.0}  # both values in every sample
        # the threshold of the documented field
        psi = gaussian_random_field((n, n), np.random.default_rng([4, s]))
        np.testing.assert_array_equal(a, np.where(psi >= 0, 12.0, 3.0))
        # rtol=1e-10 on a system with condition number ~1e3 * (12/3): the error is below 1e-8
        ref = spla.spsolve(fv_matrix(a).tocsc(), np.ones(n * n)).reshape(n, n)
        assert relerr(data.outputs[s, 0], ref) < 1e-8
    assert data.parameters["iterations_max"] >= data.parameters["iterations_mean"] > 0
    assert data.parameters["seed"] == 4 and data.parameters["method"] == "pcg-amg"


def test_darcy_sample_depends_only_on_seed_and_index() -> None:
    full = darcy(16, 3, seed=7, progress=False)
    again = darcy(16, 3, seed=7, progress=False)
    part = darcy(16, 2, seed=7, start=1, progress=False)
    np.testing.assert_array_equal(full.inputs, again.inputs)
    np.testing.assert_array_equal(part.inputs, full.inputs[1:])
    # the same system solved the same way: threaded kernels may round differently from run to
    # run, so the outputs are promised only to the solver's tolerance (rtol=1e-10)
    np.testing.assert_allclose(again.outputs, full.outputs, rtol=1e-9, atol=0)
    np.testing.assert_allclose(part.outputs, full.outputs[1:], rtol=1e-9, atol=0)
    other = darcy(16, 1, seed=8, progress=False)
    assert not np.array_equal(other.inputs[0], full.inputs[0])


def test_darcy_options() -> None:
    data = darcy(8, 1, values=(2.0, 1.0), method="direct", progress=False)
    assert set(np.unique(data.inputs)) == {1.0, 2.0}
    ref = spla.spsolve(fv_matrix(data.inputs[0, 0]).tocsc(), np.ones(64)).reshape(8, 8)
    assert relerr(data.outputs[0, 0], ref) < 1e-10


# --------------------------------------------------------------------------- Poisson
def test_poisson_batched_solve_matches_per_sample_direct_solves() -> None:
    n, k = 24, 5
    data = poisson(n, k, seed=2, progress=False)
    assert data.inputs.shape == data.outputs.shape == (k, 1, n, n)
    assert data.pde == "poisson" and data.grid_kind == "cell"
    A = fv_matrix(np.ones((n, n))).tocsc()
    for s in range(k):
        f = data.inputs[s, 0]
        np.testing.assert_array_equal(
            f, gaussian_random_field((n, n), np.random.default_rng([2, s]))
        )
        ref = spla.spsolve(A, f.ravel()).reshape(n, n)
        # CG to rtol=1e-10 on cond(A) ~ 4 n^2 / pi^2 ~ 250: forward error below 1e-8
        assert relerr(data.outputs[s, 0], ref) < 1e-8
    part = poisson(n, 2, seed=2, start=3, progress=False)
    np.testing.assert_array_equal(part.inputs, data.inputs[3:])
    np.testing.assert_allclose(part.outputs, data.outputs[3:], rtol=1e-9, atol=0)


# --------------------------------------------------------------------------- ETDRK4
def test_etdrk4_coefficients_against_mpmath() -> None:
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    h = 0.3
    zs = [0.0, -1e-9, -1e-4, -0.3, -0.99, -1.0, -1.5, -2.0, -40.0, -1e3]
    L = np.array(zs) / h
    E, E2, Q, f1, f2, f3 = etdrk4._etdrk4_coefficients(L, h)

    def exact(z: float) -> list[float]:
        if z == 0:
            return [1, 1, 0.5 * h, h / 6, h / 6, h / 6]
        z = mp.mpf(z)
        e = mp.exp(z)
        return [
            e,
            mp.exp(z / 2),
            h * (mp.exp(z / 2) - 1) / z,
            h * (-4 - z + e * (4 - 3 * z + z**2)) / z**3,
            h * (2 + z + e * (z - 2)) / z**3,
            h * (-4 - 3 * z - z**2 + e * (4 - z)) / z**3,
        ]

    # The contour means are accurate to a few ulps of the O(1) values on the contour; the
    # coefficients are O(h) or O(h / |z|^2), so an absolute 1e-15 * h is the right scale.
    for i, z in enumerate(zs):
        ref = [float(v) for v in exact(z)]
        got = [E[i], E2[i], Q[i], f1[i], f2[i], f3[i]]
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15 * h, err_msg=f"z = {z}")


def test_etdrk4_heat_equation_is_exact() -> None:
    # u_t = nu u_xx, no nonlinearity: ETDRK4 reduces to multiplication by exp(-nu kappa^2 h),
    # so after any number of steps the answer is exp(-nu kappa^2 t) u_hat to rounding.
    n, nu, t = 64, 0.05, 0.7
    kappa = 2 * np.pi * np.arange(n // 2 + 1)
    L = -nu * kappa**2
    u0 = burgers_initial_condition(n, np.random.default_rng(0))
    v0 = scipy.fft.rfft(u0)[None]
    v = etdrk4.etdrk4_integrate(v0, L, np.zeros_like, t / 35, 35)
    exact = np.exp(-nu * kappa**2 * t) * v0
    assert np.abs(v - exact).max() < 1e-12 * np.abs(v0).max()


def test_etdrk4_is_exact_for_constant_forcing() -> None:
    # v' = L v + c has v(t) = e^{Lt} v0 + (e^{Lt} - 1) / L c: ETDRK4 reproduces it (the weights
    # satisfy f1 + 4 f2 + f3 = h phi_1(hL)), including the L = 0 mode and very stiff modes.
    L = np.array([0.0, -1e-6, -0.5, -30.0, -1e5])
    c = np.array([1.0, -2.0, 0.5, 3.0, 1.0])
    v0 = np.array([[1.0, 1.0, -1.0, 2.0, 0.1]])
    t = 1.3
    v = etdrk4.etdrk4_integrate(v0, L, lambda v: np.broadcast_to(c, v.shape), t / 13, 13)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(L == 0, t, np.expm1(L * t) / L)
    exact = np.exp(L * t) * v0 + phi * c
    np.testing.assert_allclose(v, exact, rtol=1e-12, atol=1e-14)


def test_etdrk4_is_fourth_order() -> None:
    # v' = L v + v^2 / 2 ... use a nonlinearity with a known solution: v' = -v + v^2 (a Bernoulli
    # equation) has v(t) = 1 / (1 + (1/v0 - 1) e^t). Halving the step divides the error by ~16.
    L = np.array([-1.0])
    v0 = np.array([[0.4]])
    t = 2.0
    exact = 1 / (1 + (1 / 0.4 - 1) * math.exp(t))
    errors = [
        abs(etdrk4.etdrk4_integrate(v0, L, lambda v: v * v, t / s, s)[0, 0] - exact)
        for s in (8, 16, 32)
    ]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.7 < p < 4.5 for p in orders), (errors, orders)


# --------------------------------------------------------------------------- Burgers
def test_burgers_nonlinear_term_is_dealiased() -> None:
    n = 16
    x = np.arange(n) / n
    _, nonlinear = gen._burgers_terms(n, 0.1)
    # cos(2 pi 7 x) lies outside the band 3 m < 16: its square (modes 0 and 14, the latter an
    # alias of mode 2 on 16 nodes) must contribute nothing.
    v = scipy.fft.rfft(np.cos(2 * np.pi * 7 * x))[None]
    assert np.abs(nonlinear(v)).max() < 1e-12
    # u = cos 2a + sin 3a (a = 2 pi x): u^2 / 2 = 1/2 + cos(4a) / 4 + (sin 5a + sin a) / 2
    # - cos(6a) / 4, so -(u^2/2)_x has known coefficients; mode 6 (3 * 6 >= 16) is cut.
    u = np.cos(2 * np.pi * 2 * x) + np.sin(2 * np.pi * 3 * x)
    half_sq = (
        0.5
        + 0.25 * np.cos(4 * np.pi * 2 * x)
        + 0.5 * (np.sin(2 * np.pi * 5 * x) + np.sin(2 * np.pi * x))
        - 0.25 * np.cos(4 * np.pi * 3 * x)
    )
    np.testing.assert_allclose(half_sq, u * u / 2, atol=1e-14)
    m = np.arange(n // 2 + 1)
    expected = -2j * np.pi * m * scipy.fft.rfft(half_sq)
    expected[3 * m >= n] = 0
    got = nonlinear(scipy.fft.rfft(u)[None])[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)
    assert np.abs(expected[1]) > 1 and expected[6] == 0


def test_burgers_against_twice_the_resolution_and_half_the_step() -> None:
    n, samples, t_final, dt = 128, 3, 0.5, 2.5e-4
    data = burgers(n, samples, seed=1, t_final=t_final, dt=dt, progress=False)
    assert data.inputs.shape == data.outputs.shape == (samples, 1, n)
    assert data.grid_kind == "node" and data.pde == "burgers"
    np.testing.assert_array_equal(data.coordinates["x"], np.arange(n) / n)
    assert data.parameters["dt"] == dt and data.parameters["steps"] == 2000
    u0 = data.inputs[:, 0]
    # The same initial condition on 2n nodes: zero-pad its spectrum (u0 is a trigonometric
    # polynomial of degree < n/2, so this is exact), and run with half the step.
    fine = np.zeros((samples, n + 1), dtype=complex)
    fine[:, : n // 2 + 1] = 2 * scipy.fft.rfft(u0, axis=-1)
    u0_fine = scipy.fft.irfft(fine, n=2 * n, axis=-1)
    np.testing.assert_allclose(u0_fine[:, ::2], u0, atol=1e-14)
    ref = gen._burgers_solve(u0_fine, 0.1, t_final, 4000)[:, ::2]
    # The difference is the coarse run's ETDRK4 error, O(dt^4), plus its spectral truncation
    # error (the interactions of modes above n/3 that the 2/3 rule drops on the coarse grid),
    # exponentially small for this smooth viscous solution (nu = 0.1, max|u| < 2): measured
    # 4e-10. 1e-8 leaves a margin yet fails for a wrong ETDRK4 weight (1e-4 here) or a
    # lower-order error.
    err = np.abs(data.outputs[:, 0] - ref).max() / np.abs(ref).max()
    assert err < 1e-8, err
    # the solution has moved: the comparison is not of two copies of u0
    assert np.abs(data.outputs[:, 0] - u0).max() > 0.1 * np.abs(u0).max()


def test_burgers_conserves_the_mean_and_dissipates_energy() -> None:
    n = 64
    u = burgers_initial_condition(n, np.random.default_rng(5))[None] + 0.3  # mean 0.3
    energies = [float(np.mean(u**2))]
    for _ in range(10):
        u = gen._burgers_solve(u, 0.02, 0.05, 50)
        energies.append(float(np.mean(u**2)))
        # the kappa = 0 mode is untouched by every stage: exact up to rounding
        assert abs(u.mean() - 0.3) < 1e-12
    assert all(b <= a for a, b in itertools.pairwise(energies)), energies
    assert energies[-1] < 0.9 * energies[0]
    data = burgers(32, 2, t_final=0.1, dt=1e-3, progress=False)
    assert np.abs(data.outputs.mean(axis=-1)).max() < 1e-12


def test_burgers_sample_depends_only_on_seed_and_index() -> None:
    kw = {"t_final": 0.05, "dt": 1e-3, "seed": 3, "progress": False}
    full = burgers(32, 4, **kw)
    part = burgers(32, 2, start=2, **kw)
    np.testing.assert_array_equal(part.inputs, full.inputs[2:])
    # batched FFTs may round differently for a different batch; nothing else differs
    np.testing.assert_allclose(part.outputs, full.outputs[2:], rtol=0, atol=1e-13)


def test_burgers_default_step_and_step_checks() -> None:
    data = burgers(16, 1, t_final=2.5e-3, progress=False)
    assert data.parameters["dt"] == pytest.approx(1e-4) and data.parameters["steps"] == 25
    data = burgers(16, 1, t_final=0.01, dt=0.003, progress=False)
    assert data.parameters["steps"] == 4 and data.parameters["dt"] == pytest.approx(0.0025)
    with pytest.raises(ValueError, match=r"too large for burgers sample .*pass dt <="):
        burgers(64, 1, nu=1e-4, dt=0.5, progress=False)


def test_burgers_reports_a_blow_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(u0: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        raise etdrk4.BlowUp(7, np.array([1]))

    monkeypatch.setattr(gen, "_burgers_solve", explode)
    with pytest.raises(RuntimeError, match=r"burgers samples \[6\] became NaN .* step 7"):
        burgers(16, 2, start=5, t_final=0.01, progress=False)


# --------------------------------------------------------------------------- checks, bars
@pytest.mark.parametrize(
    ("func", "kwargs", "error", "match"),
    [
        (darcy, {"n": 1}, ValueError, "n must be >= 2"),
        (darcy, {"n": 8.0}, TypeError, "n must be an integer"),
        (darcy, {"samples": 0}, ValueError, "samples must be >= 1"),
        (darcy, {"seed": -1}, ValueError, "seed must be >= 0"),
        (darcy, {"rtol": 0.0}, ValueError, "rtol must be a finite positive"),
        (darcy, {"values": (12.0,)}, ValueError, "values must be a pair"),
        (darcy, {"values": (12.0, -3.0)}, ValueError, r"values\[1\] must be"),
        (darcy, {"method": "nope"}, ValueError, "unknown method 'nope'"),
        (darcy, {"progress": "yes"}, TypeError, "progress must be"),
        (poisson, {"samples": True}, TypeError, "samples must be an integer"),
        (poisson, {"alpha": 0.0}, ValueError, "alpha must be"),
        (burgers, {"n": 31}, ValueError, "n must be even"),
        (burgers, {"nu": -0.1}, ValueError, "nu must be a finite positive"),
        (burgers, {"t_final": float("inf")}, ValueError, "t_final must be"),
        (burgers, {"dt": 0.0}, ValueError, "dt must be"),
    ],
)
def test_bad_arguments(func: object, kwargs: dict, error: type, match: str) -> None:
    base = {"n": 16 if func is burgers else 4, "progress": False}
    with pytest.raises(error, match=match):
        func(**{**base, **kwargs})  # type: ignore[operator]


def test_progress_bar_goes_to_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    darcy(4, 2, progress=False)
    assert capsys.readouterr().err == ""
    darcy(4, 2, progress=True)
    assert "darcy" in capsys.readouterr().err
    darcy(4, 2)  # None: stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""


def test_operator_data_checks_shapes() -> None:
    x = {"x": np.arange(4.0)}
    with pytest.raises(ValueError, match="same number of samples"):
        OperatorData(np.zeros((2, 1, 4)), np.zeros((3, 1, 4)), x, "p")
    with pytest.raises(ValueError, match="coordinates have lengths"):
        OperatorData(np.zeros((2, 1, 4)), np.zeros((2, 1, 4)), {"x": np.arange(5.0)}, "p")
    with pytest.raises(ValueError, match="grid_kind"):
        OperatorData(np.zeros((2, 1, 4)), np.zeros((2, 1, 4)), x, "p", grid_kind="edge")
    assert len(OperatorData(np.zeros((2, 1, 4)), np.zeros((2, 2, 4)), x, "p")) == 2


# --------------------------------------------------------------------------- generate()
def test_generate_registry_and_errors() -> None:
    assert set(GENERATORS) == {"darcy", "burgers", "poisson", "navier_stokes"}
    with pytest.raises(ValueError, match="unknown generator 'heat'; available: darcy, burgers"):
        generate("heat")
    with pytest.raises(TypeError, match="unknown option 'nn' for generator 'darcy'; valid"):
        generate("darcy", nn=4)
    data = generate("poisson", n=8, samples=2, seed=1, progress=False)
    assert isinstance(data, OperatorData)
    np.testing.assert_array_equal(data.inputs, poisson(8, 2, seed=1, progress=False).inputs)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        generate("darcy", out="never.h5", chunk=0, n=4)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    with h5py.File(path, "r") as f:
        coords = {k: f["coordinates"][k][()] for k in f["coordinates"]}
        attrs = dict(f.attrs)
        return f["inputs"][()], f["outputs"][()], coords, attrs


def test_generate_to_file_in_chunks_equals_the_in_memory_run(tmp_path: Path) -> None:
    path = generate(
        "darcy",
        out=tmp_path / "d.h5",
        chunk=2,
        dtype="float64",
        n=8,
        samples=5,
        seed=3,
        progress=False,
    )
    assert path == tmp_path / "d.h5"
    ref = darcy(8, 5, seed=3, progress=False)
    x, y, coords, attrs = _read(path)
    np.testing.assert_array_equal(x, ref.inputs)
    np.testing.assert_allclose(y, ref.outputs, rtol=1e-9, atol=0)  # solver tolerance 1e-10
    np.testing.assert_array_equal(coords["x"], ref.coordinates["x"])
    assert attrs["pde"] == "darcy" and attrs["grid_kind"] == "cell"
    params = json.loads(attrs["parameters"])
    assert params["samples"] == 5 and params["start"] == 0 and params["seed"] == 3
    assert params["method"] == "pcg-amg" and "iterations_max" not in params

    # float32 storage, a start offset and a node grid; the last chunk is shorter
    path = generate(
        "burgers",
        out=tmp_path / "b.h5",
        chunk=2,
        n=16,
        samples=3,
        start=4,
        t_final=0.01,
        progress=False,
    )
    ref = burgers(16, 3, start=4, t_final=0.01, progress=False)
    x, y, coords, attrs = _read(path)
    assert x.dtype == np.float32 and attrs["grid_kind"] == "node"
    np.testing.assert_array_equal(x, ref.inputs.astype(np.float32))
    np.testing.assert_allclose(y, ref.outputs, rtol=1e-6, atol=1e-7)  # float32 rounding
    assert json.loads(attrs["parameters"])["start"] == 4

    path = generate("poisson", out=tmp_path / "p.h5", chunk=4, n=8, samples=3, progress=False)
    x, y, _, _ = _read(path)
    ref = poisson(8, 3, progress=False)
    np.testing.assert_array_equal(x, ref.inputs.astype(np.float32))
    np.testing.assert_allclose(y, ref.outputs, rtol=1e-6, atol=1e-9)


def test_generate_leaves_no_file_when_a_chunk_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    def flaky(n: int = 8, samples: int = 1, *, start: int = 0, **kw: object) -> OperatorData:
        if start > 0:
            raise RuntimeError("solver failed")
        return poisson(n, samples, start=start, **kw)  # type: ignore[arg-type]

    monkeypatch.setitem(GENERATORS, "poisson", flaky)
    with pytest.raises(RuntimeError, match="solver failed"):
        generate("poisson", out=tmp_path / "p.h5", chunk=2, n=8, samples=4, progress=False)
    assert list(tmp_path.iterdir()) == []
