"""One-dimensional stationary kernels of GP-HM, with analytic derivatives.

Fang, Cooley, Long, Li, Kirby & Zhe, "Solving High Frequency and Multi-Scale PDEs with
Gaussian Processes", ICLR 2024 (arXiv 2311.04465). Per input dimension the covariance is a
function of ``d = x - x'``,

.. math::

    k(d) = \\sum_{q=1}^{Q} w_q \\, \\psi(d; \\rho_q) \\, \\cos(2 \\pi \\mu_q d),

a mixture whose spectral density is a sum of shifted copies of ``psi``'s (Bochner's theorem):

* :class:`SpectralMixture` (GP-HM-GM): ``psi = exp(-alpha d^2)``, ``alpha = e^{log_ls}``, a
  Gaussian-mixture spectrum (Wilson & Adams, ICML 2013);
* :class:`StudentTMixture` (GP-HM-StM): ``psi`` the Matern-5/2 kernel
  ``(1 + s|d| + s^2 d^2 / 3) e^{-s|d|}``, ``s = sqrt(5) e^{log_ls}``, a Student-t mixture
  spectrum;
* the baselines :class:`SquaredExponential` and :class:`Matern52`: the same sums without the
  cosine (GP-SE, GP-Matern).

The weights are learned in the log domain (``log_w``; the paper's Jeffreys prior
``p(w) ~ 1/w`` makes the ``log_w`` gradient prune components). Initialisation as in the
authors' code: ``log_w = log(1/Q)``, ``log_ls = 0``, ``mu = linspace(0, 1, Q) freq_scale``.

Derivatives. With ``d = x - x'``, ``d^i/dx^i d^j/dx'^j k = (-1)^j k^{(i+j)}(d)``; the PDE
solver needs ``K`` (order 0), ``K'`` and ``K''`` (the kernel-derivative matrices of the
conditional mean's derivatives). :meth:`Kernel1d.forward` gives ``k^{(n)}(d)`` in closed form by
Leibniz's rule on ``psi * cos``:

``(psi c)^{(n)} = sum_k C(n, k) psi^{(k)} c^{(n-k)}``, ``c^{(m)}(d) = w^m cos(w d + m pi/2)``,
``w = 2 pi mu``;

SE: ``psi' = -2 alpha d psi``, ``psi'' = (4 alpha^2 d^2 - 2 alpha) psi``,
``psi''' = (12 alpha^2 d - 8 alpha^3 d^3) psi``,
``psi'''' = (16 alpha^4 d^4 - 48 alpha^3 d^2 + 12 alpha^2) psi``;

Matern-5/2 (``e = e^{-s|d|}``): ``psi' = -(s^2/3) d (1 + s|d|) e``,
``psi'' = -(s^2/3)(1 + s|d| - s^2 d^2) e``; :meth:`Kernel1d.forward` stops there (the
second derivative is all GP-HM needs), so orders above 2 are refused.

The values with their parameter gradients in closed form. :meth:`Kernel1d.toeplitz_pair` gives
``k`` and ``k''`` at the ``2n - 1`` offsets of a uniform grid in one pass, with a hand-written
backward (autograd through :meth:`Kernel1d.forward` takes some 150 small operations per axis).
Both are even in ``d``, so they are evaluated at ``d = m h``, ``m = 0..n-1``, and mirrored. With
``c = cos(omega d)``, ``s = sin(omega d)``, ``omega = 2 pi mu``, each component contributes

``e_0 = psi c``, ``e_2 = psi'' c - 2 omega psi' s - omega^2 psi c``

(``e_0 = psi``, ``e_2 = psi''`` without the cosine), ``k = sum_q w_q e_0``,
``k'' = sum_q w_q e_2``, and for incoming gradients ``g_0``, ``g_2`` (folded onto ``m >= 0``):

* ``d/d log_w_q = w_q sum_m (g_0 e_0 + g_2 e_2)``;
* ``d/d omega_q = w_q sum_m (g_0 de_0 + g_2 de_2)`` with ``de_0 = -d psi s`` and
  ``de_2 = -d psi'' s - 2 psi' s - 2 omega d psi' c - 2 omega psi c + omega^2 d psi s``;
* ``d/d log_ls_q``: both shape functions are scale families, ``psi(d) = f(sigma d)``, so
  ``d psi^(k) / d log sigma = k psi^(k) + d psi^(k+1)``, with ``sigma = sqrt(alpha) =
  e^{log_ls / 2}`` for SE and ``sigma = s = sqrt(5) e^{log_ls}`` for Matern-5/2 (a factor
  ``beta = 1/2`` or ``1`` on top). This needs the third derivative; for Matern-5/2 at
  ``d >= 0`` it is ``(s^4 d / 3)(3 - s d) e^{-s d}``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neuralsolve.checks import check_int, check_positive_float

__all__ = [
    "KERNELS",
    "Kernel1d",
    "Matern52",
    "SpectralMixture",
    "SquaredExponential",
    "StudentTMixture",
    "make_kernel",
]

F64 = torch.float64


class Kernel1d(torch.nn.Module):
    """A sum of ``Q`` stationary components on one axis: ``k(d) = sum_q w_q phi_q(d)``.

    Parameters
    ----------
    Q : int
        Number of components (at least 1).
    freq_scale : float
        The frequencies start at ``mu = linspace(0, 1, Q) freq_scale`` (cycles per unit
        length; mixtures only).
    log_ls : float
        Initial ``log_ls`` of every component (an inverse length scale in the log domain).
    dtype : torch.dtype

    Attributes
    ----------
    log_w, log_ls : Parameter, (Q,)
    mu : Parameter, (Q,)
        Mixtures only.
    """

    has_cos: bool = True
    max_order: int = 4

    def __init__(
        self,
        Q: int = 30,
        *,
        freq_scale: float = 20.0,
        log_ls: float = 0.0,
        dtype: torch.dtype = F64,
    ) -> None:
        super().__init__()
        if isinstance(Q, bool) or not isinstance(Q, int) or Q < 1:
            raise ValueError(
                f"{type(self).__name__}: Q (the number of mixture components) must be an "
                f"integer >= 1, got {Q!r}: GP-HM uses Q = 30"
            )
        self.Q = Q
        freq_scale = check_positive_float("freq_scale", freq_scale)
        self.log_w = torch.nn.Parameter(torch.full((Q,), math.log(1.0 / Q), dtype=dtype))
        self.log_ls = torch.nn.Parameter(torch.full((Q,), float(log_ls), dtype=dtype))
        if self.has_cos:
            self.mu = torch.nn.Parameter(torch.linspace(0, 1, Q, dtype=dtype) * freq_scale)

    # -- the shape function psi and its derivatives ------------------------------------------
    def _psi(self, d: torch.Tensor, order: int) -> list[torch.Tensor]:
        """``[psi, psi', ..., psi^(order)]`` for every component, each ``(Q, *d.shape)``."""
        raise NotImplementedError

    def forward(self, d: torch.Tensor, order: int = 0) -> torch.Tensor:
        """``k^{(order)}(d)``: the ``order``-th derivative in ``d`` at every entry of ``d``."""
        order = check_int("order", order, minimum=0, maximum=self.max_order)
        dq = d.unsqueeze(0)  # (1, ...)
        shape = (self.Q,) + (1,) * d.ndim
        psi = self._psi(dq, order)
        if self.has_cos:
            om = (2 * math.pi * self.mu).reshape(shape)
            total = torch.zeros_like(psi[0])
            for k in range(order + 1):
                m = order - k
                c = om**m * torch.cos(om * dq + m * math.pi / 2)
                total = total + math.comb(order, k) * psi[k] * c
        else:
            total = psi[order]
        w = torch.exp(self.log_w).reshape(shape)
        return (w * total).sum(dim=0)

    def matrix(
        self, x1: torch.Tensor, x2: torch.Tensor | None = None, *, order: tuple[int, int] = (0, 0)
    ) -> torch.Tensor:
        """``d^i/dx^i d^j/dx'^j k(x1_a, x2_b)`` ``(n1, n2)`` with ``(i, j) = order``:
        ``(-1)^j k^{(i+j)}(x1_a - x2_b)``."""
        x2 = x1 if x2 is None else x2
        i, j = order
        D = x1.reshape(-1, 1) - x2.reshape(1, -1)
        return (-1) ** j * self.forward(D, i + j)

    def toeplitz(self, n: int, h: float, order: int = 0) -> torch.Tensor:
        """``k^{(order)}(x_a - x_b)`` ``(n, n)`` on a uniform grid of spacing ``h``: the kernel
        is evaluated at the ``2n - 1`` offsets only and gathered (a stationary kernel on a
        uniform grid is a Toeplitz matrix)."""
        vals = self.toeplitz_values(n, h, order)  # (2n - 1,)
        idx = torch.arange(n, device=vals.device)
        return vals[idx[:, None] - idx[None, :] + (n - 1)]

    def toeplitz_values(self, n: int, h: float, order: int = 0) -> torch.Tensor:
        """``k^{(order)}(m h)`` for ``m = -(n-1)..n-1``: the ``2n - 1`` values of the Toeplitz
        matrix :meth:`toeplitz` (entry ``(i, j)`` is value ``i - j + n - 1``)."""
        m = torch.arange(-(n - 1), n, dtype=self.log_w.dtype, device=self.log_w.device)
        return self.forward(m * h, order)

    def toeplitz_pair(self, n: int, h: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(toeplitz_values(n, h, 0), toeplitz_values(n, h, 2))`` in one pass, with the
        closed-form backward of the module notes (the kernel values of a GP-HM step)."""
        mu = self.mu if self.has_cos else None
        return _ToeplitzPair.apply(self.log_w, self.log_ls, mu, self, n, float(h))

    # -- for toeplitz_pair: the shape function and three derivatives at d >= 0 --------------
    #: ``d log sigma / d log_ls`` of the scale family ``psi(d) = f(sigma d)``
    scale_rate: float = 1.0

    def _psi_upto3(self, d: torch.Tensor) -> list[torch.Tensor]:
        """``psi`` and its first three derivatives at the offsets ``d >= 0`` ``(1, m)``, each
        ``(Q, m)``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"Q={self.Q}"


class SpectralMixture(Kernel1d):
    """GP-HM-GM: ``sum_q w_q exp(-alpha_q d^2) cos(2 pi mu_q d)``, ``alpha_q = e^{log_ls_q}``
    (module notes)."""

    def _psi(self, d: torch.Tensor, order: int) -> list[torch.Tensor]:
        shape = (self.Q,) + (1,) * (d.ndim - 1)
        a = torch.exp(self.log_ls).reshape(shape)
        d2 = d * d
        p = torch.exp(-a * d2)
        out = [p]
        if order >= 1:
            out.append(-2 * a * d * p)
        if order >= 2:
            out.append((4 * a**2 * d2 - 2 * a) * p)
        if order >= 3:
            out.append((12 * a**2 * d - 8 * a**3 * d2 * d) * p)
        if order >= 4:
            out.append((16 * a**4 * d2 * d2 - 48 * a**3 * d2 + 12 * a**2) * p)
        return out

    scale_rate = 0.5

    def _psi_upto3(self, d: torch.Tensor) -> list[torch.Tensor]:
        return self._psi(d, 3)


class SquaredExponential(SpectralMixture):
    """GP-SE: ``sum_q w_q exp(-alpha_q d^2)`` (no cosine)."""

    has_cos = False


class StudentTMixture(Kernel1d):
    """GP-HM-StM: ``sum_q w_q M52(d; s_q) cos(2 pi mu_q d)``, ``s_q = sqrt(5) e^{log_ls_q}``
    (module notes); twice differentiable."""

    max_order = 2

    def _psi(self, d: torch.Tensor, order: int) -> list[torch.Tensor]:
        shape = (self.Q,) + (1,) * (d.ndim - 1)
        s = math.sqrt(5.0) * torch.exp(self.log_ls).reshape(shape)
        r = d.abs()
        e = torch.exp(-s * r)
        out = [(1 + s * r + s**2 * d * d / 3) * e]
        if order >= 1:
            out.append(-(s**2 / 3) * d * (1 + s * r) * e)
        if order >= 2:
            out.append(-(s**2 / 3) * (1 + s * r - s**2 * d * d) * e)
        return out

    def _psi_upto3(self, d: torch.Tensor) -> list[torch.Tensor]:
        out = self._psi(d, 2)
        s = math.sqrt(5.0) * torch.exp(self.log_ls).reshape(self.Q, 1)
        t = s * d  # s |d| with d >= 0
        out.append(s**3 * t * (3 - t) * torch.exp(-t) / 3)  # (s^4 d / 3)(3 - s d) e^{-s d}
        return out


class Matern52(StudentTMixture):
    """GP-Matern: ``sum_q w_q M52(d; s_q)`` (no cosine)."""

    has_cos = False


class _ToeplitzPair(torch.autograd.Function):
    """``(k, k'')`` at the ``2n - 1`` offsets ``m h`` of a uniform grid, with the closed-form
    parameter gradients of the module notes."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        log_w: torch.Tensor,
        log_ls: torch.Tensor,
        mu: torch.Tensor | None,
        kernel: Kernel1d,
        n: int,
        h: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.arange(n, dtype=log_w.dtype, device=log_w.device).mul_(h).unsqueeze(0)
        psi = kernel._psi_upto3(d)
        w = torch.exp(log_w)
        if mu is None:
            e0, e2 = psi[0], psi[2]
            trig: tuple[torch.Tensor, ...] = ()
        else:
            om = (2 * math.pi) * mu.reshape(-1, 1)
            c, s = torch.cos(om * d), torch.sin(om * d)
            e0 = psi[0] * c
            e2 = (psi[2] - om * om * psi[0]) * c - 2 * om * psi[1] * s
            trig = (om, c, s)
        ctx.scale_rate = kernel.scale_rate
        ctx.save_for_backward(d, w, e0, e2, *psi, *trig)
        return _mirror(w @ e0), _mirror(w @ e2)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, g0: torch.Tensor, g2: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        d, w, e0, e2, p0, p1, p2, p3, *trig = ctx.saved_tensors
        g0, g2 = _fold(g0), _fold(g2)
        grad_log_w = w * (e0 @ g0 + e2 @ g2)
        # d psi^(k) / d log_ls = beta (k psi^(k) + d psi^(k+1))
        dp0, dp1, dp2 = d * p1, p1 + d * p2, 2 * p2 + d * p3
        beta_w = ctx.scale_rate * w
        if not trig:
            return grad_log_w, beta_w * (dp0 @ g0 + dp2 @ g2), None, None, None, None
        om, c, s = trig
        de0_ls = dp0 * c
        de2_ls = (dp2 - om * om * dp0) * c - 2 * om * dp1 * s
        grad_log_ls = beta_w * (de0_ls @ g0 + de2_ls @ g2)
        de0_om = -d * p0 * s
        de2_om = (om * om * d * p0 - d * p2 - 2 * p1) * s - 2 * om * (d * p1 + p0) * c
        grad_mu = (2 * math.pi) * w * (de0_om @ g0 + de2_om @ g2)
        return grad_log_w, grad_log_ls, grad_mu, None, None, None


def _mirror(half: torch.Tensor) -> torch.Tensor:
    """The ``2n - 1`` values of an even function at ``m = -(n-1)..n-1`` from those at
    ``m = 0..n-1``."""
    return torch.cat([half[1:].flip(0), half])


def _fold(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_mirror`: ``g[m] + g[-m]`` for ``m > 0``, ``g[0]`` at 0."""
    n = (g.shape[0] + 1) // 2
    out = g[n - 1 :].clone()
    out[1:] += g[: n - 1].flip(0)
    return out


KERNELS: dict[str, type[Kernel1d]] = {
    "sm": SpectralMixture,
    "stm": StudentTMixture,
    "se": SquaredExponential,
    "matern": Matern52,
}
"""Kernels by name: ``sm`` (GP-HM-GM), ``stm`` (GP-HM-StM), ``se``, ``matern``."""


def make_kernel(name: str, Q: int = 30, **options: object) -> Kernel1d:
    """A kernel by name (:data:`KERNELS`) with ``Q`` components."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; available: {', '.join(KERNELS)}")
    return KERNELS[name](Q, **options)  # type: ignore[arg-type]
