"""The built-in PDE problems, each a factory of keyword parameters returning a `PDEProblem`.

Every manufactured solution's forcing is derived by hand below (and checked in the tests by
evaluating the residual of the exact solution through autograd). Notation: ``r^2 = |x - c|^2``,
``d`` the dimension. For a Gaussian ``g = exp(-k |x - c|^2)``::

    grad g = -2k (x - c) g,        lap g = (4 k^2 r^2 - 2 d k) g.

Sources: the peak, two-peak and d-dimensional problems are those of the DAS code
(MJfadeaway/DAS, ``pde_model.py``), which the AAS paper reuses; the high-frequency Poisson and
steady Allen-Cahn cases are the GP-HM benchmarks (xuangu-fang/Gaussian-Process-Slover-for-
High-Freq-PDE, ``equation_dict``), with the IDs of the team's notes (P1-P5, Q1-Q2, A1-A2,
AC2); viscous Burgers is the Raissi et al. (2019) / DeepXDE problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from neuralsolve.checks import check_choice, check_int, check_positive_float
from neuralsolve.domain import Box

from .derivatives import Derivatives
from .problem import PDEProblem

__all__ = [
    "ALLEN_CAHN_CASES",
    "FREQUENCIES",
    "POISSON1D_CASES",
    "POISSON2D_CASES",
    "allen_cahn",
    "burgers",
    "exp_nd",
    "peak2d",
    "poisson1d_hf",
    "poisson2d_hf",
    "two_peak2d",
]

Fn1 = Callable[[torch.Tensor], torch.Tensor]


def _gaussian(
    x: torch.Tensor, center: tuple[float, ...], k: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g, r^2)`` with ``g = exp(-k |x - c|^2)``, both ``(n,)``."""
    c = torch.tensor(center, dtype=x.dtype, device=x.device)
    r2 = (x - c).square().sum(dim=1)
    return torch.exp(-k * r2), r2


def _check_center(name: str, center: object, d: int) -> tuple[float, ...]:
    try:
        c = tuple(float(v) for v in center)  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {d} numbers, got {center!r}") from None
    if len(c) != d or not all(math.isfinite(v) for v in c):
        raise ValueError(f"{name} must be {d} finite numbers, got {center!r}")
    return c


# -- the peak problems (DAS / AAS) ------------------------------------------------------------
def peak2d(*, k: float = 1000.0, center: tuple[float, float] = (0.5, 0.5)) -> PDEProblem:
    """-lap u = f on [-1,1]^2, u = exp(-k|x-c|^2) (a sharp peak at c = (1/2, 1/2), k = 1000).

    ``f = -lap u = (4k - 4k^2 |x - c|^2) u`` (the Gaussian Laplacian with ``d = 2``); Dirichlet
    data from ``u``. Residual ``r = -lap u - f``.
    """
    k = check_positive_float("k", k)
    c = _check_center("center", center, 2)

    def exact(x: torch.Tensor) -> torch.Tensor:
        return _gaussian(x, c, k)[0]

    def forcing(x: torch.Tensor) -> torch.Tensor:
        g, r2 = _gaussian(x, c, k)
        return (4 * k - 4 * k**2 * r2) * g

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        return -D.laplacian - forcing(x)

    return PDEProblem(
        name="peak2d",
        domain=Box.cube(2, -1.0, 1.0),
        equation=equation,
        exact=exact,
        forcing=forcing,
        params={"k": k, "center": c},
        doc="-lap u = f on [-1,1]^2, u = exp(-1000|x-(1/2,1/2)|^2) (DAS/AAS peak)",
    )


def two_peak2d(
    *,
    k: float = 1000.0,
    centers: tuple[tuple[float, float], ...] = ((0.5, 0.5), (-0.5, -0.5)),
) -> PDEProblem:
    """lap u - div(u grad(x^2+y^2)) = f on [-1,1]^2, u = sum_j exp(-k|x-c_j|^2), c = ±(1/2,1/2).

    With ``grad(x^2 + y^2) = 2x``: ``div(2 u x) = 2 x . grad u + 2 d u`` (``d = 2``), so the
    operator is ``L u = lap u - 2 x . grad u - 4 u``. For each Gaussian ``g_j``:
    ``L g_j = (4k^2 r_j^2 - 4k + 4k x.(x - c_j) - 4) g_j``, and ``f = sum_j L g_j``.
    Dirichlet data from ``u``. Residual ``r = L u - f``.
    """
    k = check_positive_float("k", k)
    try:
        cs = tuple(_check_center("centers[i]", c, 2) for c in centers)
    except TypeError:
        raise TypeError(f"centers must be a sequence of points (x, y), got {centers!r}") from None
    if not cs:
        raise ValueError("centers must hold at least one point")

    def exact(x: torch.Tensor) -> torch.Tensor:
        return sum((_gaussian(x, c, k)[0] for c in cs), torch.zeros_like(x[:, 0]))

    def forcing(x: torch.Tensor) -> torch.Tensor:
        f = torch.zeros_like(x[:, 0])
        for c in cs:
            g, r2 = _gaussian(x, c, k)
            xc = (x * (x - torch.tensor(c, dtype=x.dtype, device=x.device))).sum(dim=1)
            f = f + (4 * k**2 * r2 - 4 * k + 4 * k * xc - 4) * g
        return f

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        assert D.grad is not None
        Lu = D.laplacian - 2 * (x * D.grad).sum(dim=1) - 4 * D.u
        return Lu - forcing(x)

    return PDEProblem(
        name="two-peak2d",
        domain=Box.cube(2, -1.0, 1.0),
        equation=equation,
        exact=exact,
        forcing=forcing,
        params={"k": k, "centers": cs},
        doc="lap u - div(u grad(x^2+y^2)) = f on [-1,1]^2, two peaks exp(-1000|x∓(1/2,1/2)|^2) "
        "(DAS/AAS)",
    )


def exp_nd(*, d: int = 5, k: float = 10.0) -> PDEProblem:
    """-lap u = f on [-1,1]^d (d = 2..10), u = exp(-k|x|^2) with k = 10.

    ``f = (2 d k - 4 k^2 |x|^2) u``, i.e. ``(20 d - 400 |x|^2) u`` for ``k = 10`` (the DAS
    d-dimensional problem). Dirichlet data from ``u``. Residual ``r = -lap u - f``.
    """
    d = check_int("d", d, minimum=2, maximum=10)
    k = check_positive_float("k", k)
    c = (0.0,) * d

    def exact(x: torch.Tensor) -> torch.Tensor:
        return _gaussian(x, c, k)[0]

    def forcing(x: torch.Tensor) -> torch.Tensor:
        g, r2 = _gaussian(x, c, k)
        return (2 * d * k - 4 * k**2 * r2) * g

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        return -D.laplacian - forcing(x)

    return PDEProblem(
        name="exp-nd",
        domain=Box.cube(d, -1.0, 1.0),
        equation=equation,
        exact=exact,
        forcing=forcing,
        params={"d": d, "k": k},
        focus=(c, 1.0 / math.sqrt(2 * k)),  # u itself is N(0, 1 / (2k)) up to a constant
        doc="-lap u = f on [-1,1]^d (d = 2..10, default 5), u = exp(-10|x|^2), "
        "f = (20d - 400|x|^2) u",
    )


# -- GP-HM high-frequency Poisson and steady Allen-Cahn ---------------------------------------
# Each 1-D profile is (v, v'') as functions of one coordinate, v'' derived by hand.
TWO_PI = 2 * math.pi


def _sin100(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(100 * s)


def _sin100_dd(s: torch.Tensor) -> torch.Tensor:
    return -1e4 * torch.sin(100 * s)


def _xsin200(s: torch.Tensor) -> torch.Tensor:
    return s * torch.sin(200 * s)


def _xsin200_dd(s: torch.Tensor) -> torch.Tensor:
    # (s sin 200s)'' = 400 cos 200s - 40000 s sin 200s
    return 400 * torch.cos(200 * s) - 4e4 * s * torch.sin(200 * s)


def _sin6cos100(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(6 * s) * torch.cos(100 * s)


def _sin6cos100_dd(s: torch.Tensor) -> torch.Tensor:
    # (sin 6s cos 100s)'' = -(36 + 10^4) sin 6s cos 100s - 1200 cos 6s sin 100s
    return -10036 * torch.sin(6 * s) * torch.cos(100 * s) - 1200 * torch.cos(6 * s) * torch.sin(
        100 * s
    )


def _multiscale(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(s) + 0.1 * torch.sin(20 * s) + 0.05 * torch.sin(100 * s)


def _multiscale_dd(s: torch.Tensor) -> torch.Tensor:
    return -torch.sin(s) - 40 * torch.sin(20 * s) - 500 * torch.sin(100 * s)


def _sin500quad(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(500 * s) - 2 * (s - 0.5).square()


def _sin500quad_dd(s: torch.Tensor) -> torch.Tensor:
    return -2.5e5 * torch.sin(500 * s) - 4


def _sin6cos20(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(6 * s) * torch.cos(20 * s)


def _sin6cos20_dd(s: torch.Tensor) -> torch.Tensor:
    # (sin 6s cos 20s)'' = -(36 + 400) sin 6s cos 20s - 240 cos 6s sin 20s
    return -436 * torch.sin(6 * s) * torch.cos(20 * s) - 240 * torch.cos(6 * s) * torch.sin(20 * s)


def _ac2(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(s) + 0.1 * torch.sin(20 * s) + torch.cos(100 * s)


def _ac2_dd(s: torch.Tensor) -> torch.Tensor:
    return -torch.sin(s) - 40 * torch.sin(20 * s) - 1e4 * torch.cos(100 * s)


#: the highest angular frequency of each case's solution (what a grid must resolve)
FREQUENCIES: dict[str, float] = {
    "P1": 100.0,
    "P2": 200.0,
    "P3": 106.0,
    "P4": 100.0,
    "P5": 500.0,
    "Q1": 100.0,
    "Q2": 26.0,
    "A1": 100.0,
    "A2": 106.0,
    "AC2": 100.0,
}

# case -> (v, v'', interval, formula)
POISSON1D_CASES: dict[str, tuple[Fn1, Fn1, tuple[float, float], str]] = {
    "P1": (_sin100, _sin100_dd, (0.0, TWO_PI), "sin(100x) on [0, 2pi]"),
    "P2": (_xsin200, _xsin200_dd, (0.0, TWO_PI), "x sin(200x) on [0, 2pi]"),
    "P3": (_sin6cos100, _sin6cos100_dd, (0.0, TWO_PI), "sin(6x) cos(100x) on [0, 2pi]"),
    "P4": (
        _multiscale,
        _multiscale_dd,
        (0.0, 1.0),
        "sin x + 0.1 sin 20x + 0.05 sin 100x on [0, 1]",
    ),
    "P5": (_sin500quad, _sin500quad_dd, (0.0, 1.0), "sin(500x) - 2(x - 1/2)^2 on [0, 1]"),
}
"""The GP-HM 1-D Poisson cases ``u'' = f``: ``(v, v'', (a, b), formula)``."""

# case -> (v, v'', interval, form, formula): form "sum" u = v(x) + v(y), "product" v(x) v(y)
POISSON2D_CASES: dict[str, tuple[Fn1, Fn1, tuple[float, float], str, str]] = {
    "Q1": (_sin100, _sin100_dd, (0.0, TWO_PI), "product", "sin(100x) sin(100y) on [0, 2pi]^2"),
    "Q2": (
        _sin6cos20,
        _sin6cos20_dd,
        (0.0, TWO_PI),
        "sum",
        "sin(6x) cos(20x) + sin(6y) cos(20y) on [0, 2pi]^2",
    ),
}
"""The GP-HM 2-D Poisson cases ``lap u = f``."""

ALLEN_CAHN_CASES: dict[str, tuple[Fn1, Fn1, tuple[float, float], int, str]] = {
    "A1": (_sin100, _sin100_dd, (0.0, TWO_PI), 1, "sin(100x) on [0, 2pi]"),
    "A2": (_sin6cos100, _sin6cos100_dd, (0.0, TWO_PI), 1, "sin(6x) cos(100x) on [0, 2pi]"),
    "AC2": (
        _ac2,
        _ac2_dd,
        (0.0, 1.0),
        2,
        "v(x) v(y), v(s) = sin s + 0.1 sin 20s + cos 100s, on [0, 1]^2",
    ),
}
"""The GP-HM steady Allen-Cahn cases ``lap u + u(u^2 - 1) = f``: ``(v, v'', (a, b), d, formula)``
with ``u = v(x)`` in 1-D and ``u = v(x) v(y)`` in 2-D."""


def _separable(v: Fn1, vdd: Fn1, d: int, form: str) -> tuple[Fn1, Fn1]:
    """``(u, lap u)`` for ``u = v(x_1)`` (d = 1), ``v(x) v(y)`` or ``v(x) + v(y)`` (d = 2)."""
    if d == 1:
        return (lambda x: v(x[:, 0])), (lambda x: vdd(x[:, 0]))
    if form == "sum":
        return (lambda x: v(x[:, 0]) + v(x[:, 1])), (lambda x: vdd(x[:, 0]) + vdd(x[:, 1]))
    # lap(v(x) v(y)) = v''(x) v(y) + v(x) v''(y)
    return (lambda x: v(x[:, 0]) * v(x[:, 1])), (
        lambda x: vdd(x[:, 0]) * v(x[:, 1]) + v(x[:, 0]) * vdd(x[:, 1])
    )


def _poisson_hf(name: str, case: str, d: int, form: str, entry: tuple) -> PDEProblem:
    v, vdd, (a, b), formula = entry[0], entry[1], entry[2], entry[-1]
    exact, lap_exact = _separable(v, vdd, d, form)

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        return D.laplacian - lap_exact(x)

    op = "u''" if d == 1 else "lap u"
    return PDEProblem(
        name=name,
        domain=Box.cube(d, a, b),
        equation=equation,
        exact=exact,
        forcing=lap_exact,
        params={"case": case, "frequency": FREQUENCIES[case]},
        doc=f"{op} = f, u = {formula} (GP-HM case {case})",
    )


def poisson1d_hf(*, case: str = "P1") -> PDEProblem:
    """u'' = f with the GP-HM high-frequency solutions (``case`` P1-P5, default P1 sin(100x)).

    ========  =================================  ==========  ======================================
    case      u                                  domain      f = u''
    ========  =================================  ==========  ======================================
    P1        sin(100x)                          [0, 2pi]    -10^4 sin(100x)
    P2        x sin(200x)                        [0, 2pi]    400 cos 200x - 4e4 x sin 200x
    P3        sin(6x) cos(100x)                  [0, 2pi]    -10036 sin6x cos100x - 1200 cos6x sin100x
    P4        sin x + 0.1 sin20x + 0.05 sin100x  [0, 1]      -sin x - 40 sin 20x - 500 sin 100x
    P5        sin(500x) - 2(x - 1/2)^2           [0, 1]      -2.5e5 sin(500x) - 4
    ========  =================================  ==========  ======================================

    P4 follows the GP-HM code (``0.05 sin 100x``; its comments say ``cos``). Dirichlet data
    (the two end points) from ``u``. Residual ``r = u'' - f``.
    """
    case = check_choice("case", case, POISSON1D_CASES)
    return _poisson_hf("poisson1d-hf", case, 1, "", POISSON1D_CASES[case])


def poisson2d_hf(*, case: str = "Q1") -> PDEProblem:
    """lap u = f with the GP-HM 2-D high-frequency solutions (``case`` Q1 or Q2), on [0, 2pi]^2.

    Q1: ``u = sin(100x) sin(100y)``, ``f = -2 10^4 u``. Q2: ``u = w(x) + w(y)``,
    ``w(s) = sin 6s cos 20s``, ``f = w''(x) + w''(y)``, ``w'' = -436 sin6s cos20s - 240 cos6s
    sin20s``. Dirichlet data from ``u``. Residual ``r = lap u - f``.
    """
    case = check_choice("case", case, POISSON2D_CASES)
    entry = POISSON2D_CASES[case]
    return _poisson_hf("poisson2d-hf", case, 2, entry[3], entry)


def allen_cahn(*, case: str = "AC2") -> PDEProblem:
    """Steady Allen-Cahn lap u + u(u^2 - 1) = f with a manufactured solution (GP-HM cases).

    The exact solution is chosen, as in GP-HM, to be a high-frequency one and ``f`` is
    ``lap u + u^3 - u`` of it: A1 ``u = sin(100x)`` and A2 ``u = sin(6x) cos(100x)`` on
    ``[0, 2pi]`` (1-D, ``u'' + u(u^2 - 1) = f``); AC2 (the default, 2-D) ``u = v(x) v(y)``,
    ``v(s) = sin s + 0.1 sin 20s + cos 100s``, on ``[0, 1]^2``, with
    ``lap u = v''(x) v(y) + v(x) v''(y)``, ``v'' = -sin s - 40 sin 20s - 10^4 cos 100s``.
    Dirichlet data from ``u``. Residual ``r = lap u + u^3 - u - f`` (nonlinear in ``u``).
    """
    case = check_choice("case", case, ALLEN_CAHN_CASES)
    v, vdd, (a, b), d, formula = ALLEN_CAHN_CASES[case]
    exact, lap_exact = _separable(v, vdd, d, "product")

    def forcing(x: torch.Tensor) -> torch.Tensor:
        u = exact(x)
        return lap_exact(x) + u**3 - u

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        return D.laplacian + D.u**3 - D.u - forcing(x)

    op = "u''" if d == 1 else "lap u"
    return PDEProblem(
        name="allen-cahn",
        domain=Box.cube(d, a, b),
        equation=equation,
        exact=exact,
        forcing=forcing,
        params={"case": case, "frequency": FREQUENCIES[case]},
        doc=f"steady Allen-Cahn {op} + u(u^2-1) = f, u = {formula} (GP-HM case {case}; "
        "default AC2)",
    )


# -- viscous Burgers --------------------------------------------------------------------------
def burgers(*, nu: float = 0.01 / math.pi) -> PDEProblem:
    """Viscous Burgers u_t + u u_x = nu u_xx, x in [-1, 1], t in [0, 1], nu = 0.01/pi.

    Initial condition ``u(x, 0) = -sin(pi x)``, boundary ``u(-1, t) = u(1, t) = 0``. Points are
    ``(x, t)``: time is the last coordinate of the box ``[-1, 1] x [0, 1]``. No closed-form
    solution (``exact=None``; the Cole-Hopf integral or a spectral solver gives a reference).
    A shock-like layer forms at ``x = 0`` around ``t = 0.3``. Residual
    ``r = u_t + u u_x - nu u_xx``.
    """
    nu = check_positive_float("nu", nu)

    def equation(x: torch.Tensor, D: Derivatives) -> torch.Tensor:
        assert D.grad is not None and D.hess_diag is not None
        return D.grad[:, 1] + D.u * D.grad[:, 0] - nu * D.hess_diag[:, 0]

    def initial(x: torch.Tensor) -> torch.Tensor:
        return -torch.sin(math.pi * x[:, 0])

    def dirichlet(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, 0])

    return PDEProblem(
        name="burgers",
        domain=Box((-1.0, 0.0), (1.0, 1.0)),
        equation=equation,
        dirichlet=dirichlet,
        initial=initial,
        time_dependent=True,
        params={"nu": nu},
        doc="viscous Burgers u_t + u u_x = (0.01/pi) u_xx on [-1,1] x [0,1], u(x,0) = -sin(pi x), "
        "u(±1,t) = 0 (no closed form)",
    )
