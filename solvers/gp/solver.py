"""GP-HM: a PDE solved by a Gaussian process whose unknowns are the solution values on a grid.

Fang, Cooley, Long, Li, Kirby & Zhe, "Solving High Frequency and Multi-Scale PDEs with
Gaussian Processes", ICLR 2024 (arXiv 2311.04465).

Model
-----
The solution has a GP prior with a product kernel ``k(x, x') = prod_k k_k(x_k - x'_k)``
(:mod:`.kernels`: spectral or Student-t mixtures, or the SE / Matern baselines). On a tensor
grid ``X`` of ``n_1 x ... x n_d`` nodes its covariance is ``K = K_1 (x) ... (x) K_d``
(:mod:`.kron`; a jitter is added to each factor). The free parameters are the values ``u`` of
the solution at the nodes, the kernel parameters and two noise precisions ``tau`` and ``v``.
The solution anywhere is the conditional mean ``f(x) = k(x, X) K^{-1} u``, so its derivatives
at the nodes come from kernel-derivative matrices:

.. math::

    \\partial_{x_k}^2 f(X) = (K_1 \\otimes \\cdots \\otimes K_k'' K_k^{-1} \\otimes \\cdots) \\,
    K^{-1} u = (I \\otimes \\cdots \\otimes K_k'' K_k^{-1} \\otimes \\cdots \\otimes I)\\, u,

with ``K_k''_{ij} = d^2 k_k / dx^2 (x_i - x_j)`` (and ``K_k'`` for first derivatives); in 2-D
``U_xx = K_1'' K_1^{-1} U`` and ``U_yy = U (K_2'' K_2^{-1})^T``. The problem's own residual
``R(u)`` (its ``equation``, shared with the PINN) is evaluated at every node from these
derivatives. The loss is the negative log joint probability

.. math::

    \\mathcal{L} = \\tfrac12 \\log|K| + \\tfrac12 u^T K^{-1} u
        - \\lambda \\big[\\tfrac{N_b}{2} \\log\\tau - \\tfrac{\\tau}{2} \\|u_b - g\\|^2\\big]
        - \\big[\\tfrac{N_c}{2} \\log v - \\tfrac{v}{2} \\|R(u)\\|^2\\big],

``u_b`` the values at the ``N_b`` boundary nodes, ``g`` the Dirichlet data there, ``N_c`` the
number of nodes, ``lambda = 200`` (the authors' ``llk_weight``). ``log|K|`` and the quadratic
form use the Kronecker identities: ``log|K| = sum_k (N / n_k) log|K_k|`` and, in 2-D,
``u^T K^{-1} u = tr(U^T K_1^{-1} U K_2^{-1})``; no ``N x N`` matrix is formed, so a step costs
``O(N^{1 + 1/d} d)`` after the per-axis ``O(n_k^3)`` factorisations. On a uniform grid each
kernel matrix is Toeplitz and is evaluated at the ``2 n_k - 1`` offsets only.

Training runs through :class:`~neuralsolve.optim.Trainer` (any ``neuralsolve.optim``
optimizer; the paper uses Adam, lr 1e-2, full batch) with checkpoints and exact resume.

For a linear PDE (``R(u) = M u + r_0``) and fixed kernel parameters and precisions, the loss is
quadratic in ``u`` and :meth:`GPSolver.solve_map` sets ``u`` to its minimiser, the solution of

.. math::

    (K^{-1} + \\lambda\\tau B^T B + v M^T M) u = \\lambda\\tau B^T g - v M^T r_0

(``B`` picks the boundary nodes): QR least squares on the stacked square roots in 1-D,
conjugate gradients with Kronecker matrix-free products in 2-D (slow to converge at low noise).
:meth:`GPSolver.solve_collocation` is the noise-free limit with the residual on the interior
nodes, solved by fast diagonalisation in 2-D. On the GP-HM benchmarks these closed forms, with
the *initial* kernel, reach 1e-5-1e-4 in seconds, where Adam on the full model needs many
thousands of steps (docs/benchmarks/gp_hm.md).

On a uniform grid with a linear residual of second derivatives only, :meth:`GPSolver.loss`
goes through :func:`.fused.kron_core` (2-D) or :func:`.fused.kron_core_1d` (1-D): a
hand-written backward that reads the Toeplitz kernels' gradients off FFT correlations.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from neuralsolve.checks import check_choice, check_int, check_positive_float
from neuralsolve.derivatives import Derivatives
from neuralsolve.errors import GridStructureError, NonFiniteError
from neuralsolve.fileio import atomic_path
from neuralsolve.linop import CallableOperator, torch_dtype
from neuralsolve.optim import Trainer, TrainerConfig, TrainResult

from ..gridpde import (
    check_grid_problem,
    check_resolution,
    error_axes,
    evaluate_field,
    linearize,
    problem_frequency,
    problem_name,
)
from .fused import kron_core, kron_core_1d
from .kernels import KERNELS, Kernel1d
from .kron import kron_apply, spd_inverse_logdet

__all__ = ["GPModel", "GPSolver"]

#: grid points per wavelength a GP-HM grid needs at the least (Nyquist)
POINTS_PER_WAVELENGTH = 2.0


class _LazyDerivatives(Derivatives):
    """:class:`~neuralsolve.derivatives.Derivatives` whose gradient and second derivatives are computed when the
    equation first reads them (a Poisson residual never pays for the gradient)."""

    def __init__(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        grad_fn: Callable[[], torch.Tensor],
        hess_fn: Callable[[], torch.Tensor],
    ) -> None:
        # a frozen dataclass: the fields are set as its own __init__ does
        fields = {"x": x, "u": u, "second_axes": tuple(range(x.shape[1]))}
        fields |= {"_grad_fn": grad_fn, "_hess_fn": hess_fn, "_grad": None, "_hess": None}
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property  # type: ignore[override]
    def grad(self) -> torch.Tensor:
        if self._grad is None:
            object.__setattr__(self, "_grad", self._grad_fn())
        return self._grad

    @property  # type: ignore[override]
    def hess_diag(self) -> torch.Tensor:
        if self._hess is None:
            object.__setattr__(self, "_hess", self._hess_fn())
        return self._hess


class GPModel(torch.nn.Module):
    """The trainable state of GP-HM: grid values ``u``, one kernel per axis, ``log_tau`` and
    ``log_v`` (the boundary and residual noise precisions in the log domain)."""

    def __init__(self, shape: tuple[int, ...], kernels: Sequence[Kernel1d]) -> None:
        super().__init__()
        dtype = kernels[0].log_w.dtype
        self.u = torch.nn.Parameter(torch.zeros(shape, dtype=dtype))
        self.kernels = torch.nn.ModuleList(kernels)
        self.log_tau = torch.nn.Parameter(torch.zeros((), dtype=dtype))
        self.log_v = torch.nn.Parameter(torch.zeros((), dtype=dtype))


class _Factors:
    """Per-axis matrices of one evaluation: ``log|K|``, the inverses ``A_k``,
    ``K_k'`` and ``K_k''`` (built lazily), for fixed kernel parameters."""

    def __init__(self, solver: GPSolver, model: GPModel) -> None:
        self.solver, self.model = solver, model
        self.inv: list[torch.Tensor] = []
        logdets = []
        for k in range(solver.dim):
            K = solver._kernel_matrix(model.kernels[k], k, 0)
            K = K + solver.jitter * torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
            A, logdet = spd_inverse_logdet(K)
            self.inv.append(A)
            logdets.append(logdet)
        N = math.prod(solver.shape)
        # log|K_1 (x) ... (x) K_d| = sum_k (N / n_k) log|K_k|
        self.logdet = sum((N // n) * ld for n, ld in zip(solver.shape, logdets, strict=True))
        self._deriv: dict[tuple[int, int], torch.Tensor] = {}

    def derivative(self, axis: int, order: int) -> torch.Tensor:
        """``K_axis^{(order)}`` (derivative in the first argument)."""
        key = (axis, order)
        if key not in self._deriv:
            self._deriv[key] = self.solver._kernel_matrix(self.model.kernels[axis], axis, order)
        return self._deriv[key]


class GPSolver:
    """GP-HM (module notes): a Gaussian process with spectral-mixture kernels solving a PDE on
    a tensor grid.

    Parameters
    ----------
    problem : PDEProblem
        A steady 1-D or 2-D problem of :mod:`neuralsolve.datasets.pde` (``poisson1d-hf``,
        ``poisson2d-hf``, ``allen-cahn``, ...), or anything with the same ``name``,
        ``domain``, ``equation``, ``boundary_values`` (and ``exact`` for :meth:`error`).
    n : int or tuple of int
        Grid points per axis (uniform, boundary included). The paper: 400 (900 for P2 and P4).
    points : Tensor, optional
        ``(n, d)`` collocation points instead of ``n``; they must form a tensor grid (every
        combination of the distinct coordinates of each axis, in ``indexing="ij"`` order), or a
        :class:`~neuralsolve.errors.GridStructureError` says so before any work.
    kernel : {"stm", "sm", "se", "matern"}
        GP-HM-StM (Matern-5/2 x cos, default), GP-HM-GM (SE x cos), or the baselines.
    Q : int
        Mixture components per axis (>= 1; 30 in the paper).
    freq_scale : float, optional
        The initial frequencies are ``linspace(0, 1, Q) freq_scale`` (cycles per unit length);
        default ``1.25 frequency / (2 pi)`` when the problem states its angular frequency, else
        20.
    log_ls : float
        The initial inverse length scale of every component, in the log domain (0 in the
        paper: ``exp(-d^2)``, smooth over the whole box). On fine grids of multiscale problems
        a kernel a few grid spacings wide conditions the closed form better: P4 at 900 points
        gives rel. L2 5.8e-5 with ``log_ls=10`` against 2.3e-3 with 0; on P1 the same value
        fails, so it is a per-problem choice.
    boundary_weight : float
        ``lambda`` (200 in the paper).
    jitter : float
        Added to each kernel factor's diagonal (1e-6).
    frequency : float, optional
        The solution's highest angular frequency; default the problem's
        ``params["frequency"]``. A grid with fewer than 2 points per wavelength is refused.
    dtype : {"float64", "float32"}
    device : str or torch.device
    seed : int
        Seeds the training run (the initialisation is deterministic).

    Examples
    --------
    >>> import neuralsolve as ns
    >>> prob = ns.datasets.pde.make("poisson1d-hf", case="P1")
    >>> gp = ns.solvers.GPSolver(prob, n=400, kernel="stm", Q=30)
    >>> result = gp.fit(steps=20_000, optimizer="adam", lr=1e-2)  # doctest: +SKIP
    >>> gp.error()  # doctest: +SKIP
    """

    def __init__(
        self,
        problem: Any,
        n: int | tuple[int, ...] | None = 400,
        *,
        points: torch.Tensor | None = None,
        kernel: str = "stm",
        Q: int = 30,
        freq_scale: float | None = None,
        log_ls: float = 0.0,
        boundary_weight: float = 200.0,
        jitter: float = 1e-6,
        frequency: float | None = None,
        dtype: str = "float64",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        who = "GPSolver"
        check_grid_problem(problem, who)
        self.problem = problem
        d = problem.domain.dim
        self.dtype = torch_dtype(dtype)
        self.device = torch.device(device)
        self.kernel_name = check_choice("kernel", kernel, KERNELS)
        if isinstance(Q, bool) or not isinstance(Q, int) or Q < 1:
            raise ValueError(
                f"{who}: Q (mixture components per axis) must be an integer >= 1, got {Q!r}: "
                "the paper uses Q = 30"
            )
        self.Q = Q
        self.boundary_weight = check_positive_float("boundary_weight", boundary_weight)
        self.jitter = check_positive_float("jitter", jitter)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.frequency = problem_frequency(problem, frequency)
        if points is not None:
            self.axes = _grid_axes(points, d, problem)
        else:
            if n is None:
                raise ValueError(f"{who}: give n (points per axis) or points")
            sizes = (n,) * d if isinstance(n, int) and not isinstance(n, bool) else tuple(n)
            if len(sizes) != d:
                raise ValueError(f"{who}: n has {len(sizes)} entries for a {d}-D problem")
            sizes = tuple(check_int("n", v, minimum=3) for v in sizes)
            lo, hi = problem.domain.lower, problem.domain.upper
            self.axes = [
                torch.linspace(lo[k], hi[k], sizes[k], dtype=torch.float64) for k in range(d)
            ]
        self.shape = tuple(len(a) for a in self.axes)
        check_resolution(
            who,
            problem,
            tuple(m - 1 for m in self.shape),
            self.frequency,
            POINTS_PER_WAVELENGTH,
            "grid intervals",
            offset=1,
        )
        self.uniform = [_uniform_step(a) for a in self.axes]
        if freq_scale is None:
            freq_scale = 20.0 if not self.frequency else 1.25 * self.frequency / (2 * math.pi)
        self.freq_scale = check_positive_float("freq_scale", freq_scale)
        if isinstance(log_ls, bool) or not isinstance(log_ls, (int, float)):
            raise TypeError(f"{who}: log_ls must be a float, got {type(log_ls).__name__}")
        if not math.isfinite(log_ls):
            raise ValueError(f"{who}: log_ls must be finite, got {log_ls!r}")
        self.log_ls = float(log_ls)
        kernels = [
            KERNELS[self.kernel_name](
                Q, freq_scale=self.freq_scale, log_ls=self.log_ls, dtype=self.dtype
            )
            for _ in range(d)
        ]
        self.model = GPModel(self.shape, kernels).to(device=self.device)
        # the grid, the boundary nodes and the data there
        axes = [a.to(self.dtype) for a in self.axes]
        mesh = torch.meshgrid(*axes, indexing="ij")
        self.points = torch.stack([m.reshape(-1) for m in mesh], dim=1).to(self.device)
        mask = torch.zeros(self.shape, dtype=torch.bool)
        for k in range(d):
            idx = [slice(None)] * d
            idx[k] = 0
            mask[tuple(idx)] = True
            idx[k] = -1
            mask[tuple(idx)] = True
        self.boundary_mask = mask.reshape(-1).to(self.device)
        g = evaluate_field(
            problem.boundary_values,
            self.points[self.boundary_mask].to(torch.float64),
            f"problem {problem_name(problem)} boundary values",
        )
        self.boundary_values = g.to(self.dtype)
        self._affine = self._detect_affine()
        self.result: TrainResult | None = None
        self.history: dict[str, Any] = {}

    # ------------------------------------------------------------------ structure
    @property
    def dim(self) -> int:
        return len(self.shape)

    def _kernel_matrix(self, kernel: Kernel1d, axis: int, order: int) -> torch.Tensor:
        """``k^{(order)}(x_i - x_j)`` on axis ``axis``: Toeplitz on a uniform axis."""
        h = self.uniform[axis]
        if h is not None:
            return kernel.toeplitz(self.shape[axis], h, order)
        x = self.axes[axis].to(dtype=self.dtype, device=self.device)
        return kernel.matrix(x, order=(order, 0))

    def _detect_affine(self) -> tuple[torch.Tensor, ...] | None:
        """``(r0, a, b, c)`` when the residual is affine in ``(u, grad, hess)`` with fixed
        coefficients (a linear PDE): ``R = r0 + a u + sum b_k u_k + sum c_k u_kk``. Probed at
        two random states, then checked at a third; ``None`` for a nonlinear equation."""
        x = self.points.to(torch.float64)
        n, d = x.shape
        gen = torch.Generator().manual_seed(1234)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64)

        states = [(rand(n), rand(n, d), rand(n, d)) for _ in range(3)]
        lin = [linearize(self.problem, x, *s) for s in states[:2]]
        for p, q in zip(lin[0][1:], lin[1][1:], strict=True):
            if not torch.equal(p, q):
                return None
        r, a, b, c = lin[0]
        u, g, h = states[0]
        r0 = r - a * u - (b * g).sum(1) - (c * h).sum(1)
        u, g, h = states[2]
        r2 = linearize(self.problem, x, u, g, h)[0]
        pred = r0 + a * u + (b * g).sum(1) + (c * h).sum(1)
        if not torch.allclose(pred, r2, rtol=1e-10, atol=1e-10 * float(r2.abs().max())):
            return None
        used = (bool(b.abs().max() > 0), bool(c.abs().max() > 0))
        out = tuple(t.to(dtype=self.dtype, device=self.device) for t in (r0, a, b, c))
        self._affine_uses = used
        return out

    # ------------------------------------------------------------------ the model's pieces
    def grid_derivatives(
        self, U: torch.Tensor, F: _Factors, partial: Sequence[torch.Tensor] | None = None
    ) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
        """Two callables giving the conditional mean's gradient and second derivatives at the
        nodes, ``(N, d)`` each (module notes): ``K_k^{(order)}`` applied along axis ``k`` of
        ``P_k = K_k^{-1}`` along axis ``k`` of ``U`` (``partial``, when already computed)."""
        P = [_apply_axis(F.inv[k], U, k) for k in range(self.dim)] if partial is None else partial

        def along(order: int) -> torch.Tensor:
            cols = [
                _apply_axis(F.derivative(k, order), P[k], k).reshape(-1) for k in range(self.dim)
            ]
            return torch.stack(cols, dim=1)

        return (lambda: along(1)), (lambda: along(2))

    def residual_from(
        self,
        model: GPModel,
        F: _Factors | None = None,
        partial: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``R(u)`` ``(N,)``: the problem's residual of the conditional mean at the nodes."""
        F = _Factors(self, model) if F is None else F
        U = model.u
        grad_fn, hess_fn = self.grid_derivatives(U, F, partial)
        if self._affine is not None:
            r0, a, b, c = self._affine
            r = r0 + a * U.reshape(-1)
            uses_grad, uses_hess = self._affine_uses
            if uses_grad:
                r = r + (b * grad_fn()).sum(1)
            if uses_hess:
                r = r + (c * hess_fn()).sum(1)
            return r
        D = _LazyDerivatives(self.points, U.reshape(-1), grad_fn, hess_fn)
        r = self.problem.equation(self.points, D)
        if not isinstance(r, torch.Tensor) or r.shape != (self.points.shape[0],):
            raise ValueError(
                f"problem {problem_name(self.problem)}: its equation returned "
                f"{getattr(r, 'shape', type(r).__name__)}; expected ({self.points.shape[0]},)"
            )
        return r

    def residual(self) -> torch.Tensor:
        """The residual of the current conditional mean at the nodes, ``(N,)`` (no grad)."""
        with torch.no_grad():
            return self.residual_from(self.model)

    @property
    def fused(self) -> bool:
        """Whether :meth:`loss` takes the fused path (:func:`.fused.kron_core`,
        :func:`.fused.kron_core_1d`): a uniform grid and a linear residual without first
        derivatives (Poisson, Helmholtz)."""
        return (
            self.dim in (1, 2)
            and all(h is not None for h in self.uniform)
            and self._affine is not None
            and not self._affine_uses[0]
        )

    def loss(self, model: GPModel, _batch: Any = None) -> torch.Tensor:
        """The negative log joint (module notes)."""
        U = model.u
        if self.fused:
            logdet, quad, R = self._fused_residual(model)
        else:
            F = _Factors(self, model)
            # P_k = K_k^{-1} along axis k of U: the quadratic form and the derivatives reuse it
            P = [_apply_axis(F.inv[k], U, k) for k in range(self.dim)]
            if self.dim == 1:
                quad = (U * P[0]).sum()
            else:  # tr(U^T K_1^{-1} U K_2^{-1}) = sum((K_1^{-1} U) * (U K_2^{-1}))
                quad = (P[0] * P[1]).sum()
            logdet = F.logdet
            R = self.residual_from(model, F, P).reshape(-1)
        gap = U.reshape(-1).index_select(0, self._boundary_index) - self.boundary_values
        Nb, Nc = gap.numel(), R.numel()
        tau, v = torch.exp(model.log_tau), torch.exp(model.log_v)
        boundary = self.boundary_weight * (
            0.5 * Nb * model.log_tau - 0.5 * tau * torch.dot(gap, gap)
        )
        pde = 0.5 * Nc * model.log_v - 0.5 * v * torch.dot(R, R)
        return 0.5 * logdet + 0.5 * quad - boundary - pde

    def _fused_residual(self, model: GPModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log|K|, u^T K^{-1} u, R)`` on the fused path (:attr:`fused`), with ``R`` flat and
        built in as few operations as the coefficients allow (a constant coefficient is a
        scalar, a zero one is skipped)."""
        U = model.u
        r0, a, c = self._fused_coefficients
        if self.dim == 1:
            kernel, n, h = model.kernels[0], self.shape[0], self.uniform[0]
            logdet, quad, H = kron_core_1d(*kernel.toeplitz_pair(n, h), U, self.jitter)
            derivatives = [H]
        else:
            vals = [
                values
                for k in range(2)
                for values in model.kernels[k].toeplitz_pair(self.shape[k], self.uniform[k])
            ]
            logdet, quad, Hx, Hy = kron_core(*vals, U, self.jitter)
            derivatives = [Hx, Hy]
        R = r0.clone()  # then updated in place: one n-sized block, not one per term
        for coefficient, field in zip([a, *c], [U, *derivatives], strict=True):
            if coefficient is None:
                continue
            if isinstance(coefficient, float):
                R = R.add_(field.reshape(-1), alpha=coefficient)
            else:
                R = R.addcmul_(coefficient, field.reshape(-1))
        return logdet, quad, R

    @functools.cached_property
    def _fused_coefficients(self) -> tuple[torch.Tensor, Any, list[Any]]:
        """``(r0, a, [c_1, .., c_d])`` of the affine residual, each coefficient ``None`` when
        zero, a float when constant over the nodes, else a flat tensor."""
        r0, a, _, c = self._affine  # type: ignore[misc]

        def compact(t: torch.Tensor) -> Any:
            if not bool((t != t[0]).any()):
                return None if float(t[0]) == 0.0 else float(t[0])
            return t

        return r0, compact(a), [compact(c[:, k].contiguous()) for k in range(self.dim)]

    @functools.cached_property
    def _boundary_index(self) -> torch.Tensor:
        """The flat indices of the boundary nodes (:attr:`boundary_mask`)."""
        return torch.nonzero(self.boundary_mask).reshape(-1)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        steps: int = 10_000,
        *,
        optimizer: str = "adam",
        lr: float = 1e-2,
        schedule: str = "constant",
        optimizer_options: dict[str, Any] | None = None,
        out_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        checkpoint_every: int = 0,
        log_every: int = 100,
        progress: bool | None = None,
    ) -> TrainResult:
        """Minimise the negative log joint over ``u``, the kernel parameters and the
        precisions, through :class:`~neuralsolve.optim.Trainer`.

        Parameters
        ----------
        steps : int
        optimizer : str
            Any ``neuralsolve.optim`` optimizer (default ``"adam"``, as the paper).
        lr : float
            Default 1e-2 (the paper).
        schedule : str
            ``"constant"`` (default), ``"cosine"``, ``"linear"``, ``"wsd"``.
        optimizer_options : dict, optional
        out_dir : path, optional
            ``last.pt`` checkpoints and ``metrics.jsonl``; needed for ``resume``.
        resume : bool or path
            Continue a killed run exactly.
        checkpoint_every, log_every : int
        progress : bool, optional

        Returns
        -------
        TrainResult

        Notes
        -----
        On Linux with glibc, call :func:`neuralsolve.allocator.keep_freed_memory` once before
        a long fit on a large 2-D grid: a 400 x 400 step then takes about 16 ms on two cores
        instead of 20-21 ms (``docs/benchmarks/gp_hm.md``). ``neuralsolve train gp`` does so;
        the package never changes the allocator on its own.
        """
        config = TrainerConfig.full_batch(
            steps=steps,
            device=self.device,
            dtype=self.dtype,
            out_dir=out_dir,
            optimizer=optimizer,
            optimizer_options=optimizer_options,
            lr=lr,
            schedule=schedule,
            seed=self.seed,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )
        trainer = Trainer(
            self.model,
            self.loss,
            config,
            metadata={
                "problem": str(getattr(self.problem, "name", "")),
                "params": {k: v for k, v in getattr(self.problem, "params", {}).items()},
                "kernel": self.kernel_name,
                "Q": self.Q,
                "shape": list(self.shape),
            },
        )
        self.result = trainer.fit(resume=resume)
        return self.result

    # ------------------------------------------------------------------ closed form (linear)
    def solve_map(
        self,
        *,
        sweeps: int = 1,
        update_precisions: bool = True,
        precision: float | None = None,
        rtol: float = 1e-10,
        max_iters: int = 20_000,
    ) -> dict[str, Any]:
        """The closed-form update of the grid values for fixed kernel parameters (linear PDEs;
        module notes), optionally alternated with the closed-form precisions.

        Each sweep sets ``u`` to the minimiser of the loss for the current kernel parameters
        and precisions, then (``update_precisions``) ``tau`` and ``v`` to their maximisers for
        that ``u``: ``tau = N_b / ||u_b - g||^2``, ``v = N_c / ||R(u)||^2`` (coordinate descent
        on the loss; each step lowers it).

        Parameters
        ----------
        sweeps : int
        update_precisions : bool
        precision : float, optional
            Fix both precisions to this value first (``tau = v = precision``) and keep them:
            the low-noise limit, where the MAP ``u`` is a kernel collocation solution
            (``1e8``-``1e9`` on the GP-HM benchmarks). Implies ``update_precisions=False``.
        rtol, max_iters
            The 2-D conjugate-gradient solve's tolerance and iteration cap.

        Returns
        -------
        dict
            ``seconds``, ``method`` (``"dense solve"`` in 1-D, ``"cg"`` in 2-D),
            ``iterations`` (CG, summed over sweeps), ``converged``, ``loss`` after each sweep.

        Raises
        ------
        ValueError
            The problem's residual is not affine in ``u`` (a nonlinear PDE): train with
            :meth:`fit` instead.
        """
        if self._affine is None:
            raise ValueError(
                f"solve_map needs a linear PDE; problem {problem_name(self.problem)}'s residual "
                "is nonlinear in u: use fit()"
            )
        sweeps = check_int("sweeps", sweeps, minimum=1)
        if precision is not None:
            precision = check_positive_float("precision", precision)
            update_precisions = False
            with torch.no_grad():
                self.model.log_tau.fill_(math.log(precision))
                self.model.log_v.fill_(math.log(precision))
        t0 = time.perf_counter()
        info: dict[str, Any] = {"iterations": 0, "converged": True, "loss": []}
        for _ in range(sweeps):
            one = self._map_once(rtol, max_iters)
            info["method"] = one["method"]
            info["iterations"] += one["iterations"]
            info["converged"] = info["converged"] and one["converged"]
            with torch.no_grad():
                model = self.model
                if update_precisions:
                    gap = model.u.reshape(-1)[self.boundary_mask] - self.boundary_values
                    R = self.residual_from(model)
                    tiny = torch.finfo(self.dtype).tiny
                    tau = gap.numel() / max(float(gap.square().sum()), tiny)
                    v = R.numel() / max(float(R.square().sum()), tiny)
                    model.log_tau.fill_(min(math.log(tau), 60.0))
                    model.log_v.fill_(min(math.log(v), 60.0))
                info["loss"].append(float(self.loss(model)))
        info["seconds"] = time.perf_counter() - t0
        return info

    def solve_collocation(self) -> dict[str, Any]:
        """The noise-free limit on the interior: ``u = g`` on the boundary nodes and the residual
        of the conditional mean zero at every interior node (linear PDEs with constant
        coefficients and no first derivatives, e.g. Poisson), for the current kernel.

        This is the limit ``tau, v -> infinity`` of the MAP grid values when the residual is
        imposed at the interior nodes only (the prior then only picks among exact solutions,
        and the square system has one). The operator is a Kronecker sum of the per-axis
        interior blocks of ``D_k = c_k K_k'' K_k^{-1}``, solved by fast diagonalisation
        (``D_k = P_k diag(lambda_k) P_k^{-1}``): ``O(sum_k n_k^3)``, never the
        ``N x N`` matrix. The paper's loss also puts the residual on the boundary nodes;
        :meth:`solve_map` (1-D) keeps it.

        Returns
        -------
        dict
            ``seconds`` and ``method``.

        Raises
        ------
        ValueError
            A nonlinear problem, variable coefficients or first-derivative terms.
        """
        if self._affine is None:
            raise ValueError(
                f"solve_collocation needs a linear PDE; problem {problem_name(self.problem)}'s "
                "residual is nonlinear in u: use fit()"
            )
        r0, a, b, c = self._affine
        scale = float(c.abs().max())
        if (
            float(b.abs().max()) > 0
            or any(float((c[:, k] - c[0, k]).abs().max()) > 1e-12 * scale for k in range(self.dim))
            or float((a - a[0]).abs().max()) > 1e-12 * max(scale, 1.0)
        ):
            raise ValueError(
                f"solve_collocation needs constant coefficients and no first derivatives; "
                f"problem {problem_name(self.problem)} has others: use solve_map (1-D) or fit()"
            )
        t0 = time.perf_counter()
        with torch.no_grad():
            F = _Factors(self, self.model)
            ops = [float(c[0, k]) * (F.derivative(k, 2) @ F.inv[k]) for k in range(self.dim)]
            U = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
            Uf = U.reshape(-1)
            Uf[self.boundary_mask] = self.boundary_values
            # the residual of the boundary values alone (interior zero), on the interior
            R = r0 + a * Uf
            for k in range(self.dim):
                R = R + _apply_axis(ops[k], U, k).reshape(-1)
            inner = (slice(1, -1),) * self.dim
            rhs = -R.reshape(self.shape)[inner]
            a0 = float(a[0])
            if self.dim == 1:
                A = ops[0][1:-1, 1:-1] + a0 * torch.eye(self.shape[0] - 2, dtype=self.dtype)
                U[1:-1] = torch.linalg.solve(A, rhs)
            else:
                lams, Ps, Pinvs = [], [], []
                for k in range(self.dim):
                    lam, P = torch.linalg.eig(ops[k][1:-1, 1:-1])
                    lams.append(lam)
                    Ps.append(P)
                    Pinvs.append(torch.linalg.inv(P))
                W = kron_apply(Pinvs, rhs.to(torch.complex128))
                denom = lams[0].reshape(-1, 1) + lams[1].reshape(1, -1) + a0
                if bool((denom.abs() == 0).any()):
                    raise ValueError("the collocation operator is singular on this grid")
                V = kron_apply(Ps, W / denom)
                U[inner] = V.real.to(self.dtype)
            self.model.u.copy_(U)
        method = "dense solve" if self.dim == 1 else "fast diagonalisation"
        return {"method": method, "seconds": time.perf_counter() - t0}

    def _map_once(self, rtol: float, max_iters: int) -> dict[str, Any]:
        """One closed-form ``u`` update (see :meth:`solve_map`)."""
        model = self.model
        r0, a, b, c = self._affine  # type: ignore[misc]
        with torch.no_grad():
            F = _Factors(self, model)
            mats = []  # the per-axis pieces of M = a I + sum_k b_k D1_k + c_k D2_k
            for k in range(self.dim):
                D1 = F.derivative(k, 1) @ F.inv[k]
                D2 = F.derivative(k, 2) @ F.inv[k]
                mats.append((D1, D2))
            lt = self.boundary_weight * float(torch.exp(model.log_tau))
            v = float(torch.exp(model.log_v))
            B = self.boundary_mask.to(self.dtype)
            gfull = torch.zeros(self.points.shape[0], dtype=self.dtype, device=self.device)
            gfull[self.boundary_mask] = self.boundary_values

            def M(x: torch.Tensor) -> torch.Tensor:
                X = x.reshape(self.shape)
                y = a * x
                for k, (D1, D2) in enumerate(mats):
                    y = y + b[:, k] * _apply_axis(D1, X, k).reshape(-1)
                    y = y + c[:, k] * _apply_axis(D2, X, k).reshape(-1)
                return y

            def MT(y: torch.Tensor) -> torch.Tensor:
                out = torch.zeros_like(y)
                for k, (D1, D2) in enumerate(mats):
                    out = out + _apply_axis(D1.T, (b[:, k] * y).reshape(self.shape), k).reshape(-1)
                    out = out + _apply_axis(D2.T, (c[:, k] * y).reshape(self.shape), k).reshape(-1)
                return out + a * y

            rhs = lt * B * gfull - v * MT(r0)
            info: dict[str, Any]
            if self.dim == 1:
                # least squares on [L^{-1}; sqrt(W) C] u = [0; sqrt(W) d] (K = L L^T, C the
                # boundary and residual rows): the normal equations' matrix without squaring
                # its condition number, which grows with the precisions
                Mm = torch.diag(a) + b[:, :1] * mats[0][0] + c[:, :1] * mats[0][1]
                n = Mm.shape[0]
                Kj = self._kernel_matrix(model.kernels[0], 0, 0)
                Kj = Kj + self.jitter * torch.eye(n, dtype=Kj.dtype, device=Kj.device)
                L = torch.linalg.cholesky(Kj)
                Linv = torch.linalg.solve_triangular(L, torch.eye(n, dtype=L.dtype), upper=False)
                Bm = torch.eye(n, dtype=L.dtype)[self.boundary_mask]
                A = torch.cat([Linv, math.sqrt(lt) * Bm, math.sqrt(v) * Mm])
                y = torch.cat(
                    [
                        torch.zeros(n, dtype=L.dtype),
                        math.sqrt(lt) * self.boundary_values,
                        -math.sqrt(v) * r0,
                    ]
                )
                Qm, Rm = torch.linalg.qr(A)
                u = torch.linalg.solve_triangular(Rm, (Qm.T @ y)[:, None], upper=True)[:, 0]
                info = {"method": "least squares (QR)", "iterations": 0, "converged": True}
            else:
                from ..krylov import CG

                def H(x: torch.Tensor) -> torch.Tensor:
                    X = x.reshape(self.shape)
                    Kinv = kron_apply(F.inv, X).reshape(-1)
                    return Kinv + lt * B * x + v * MT(M(x))

                op = CallableOperator(
                    H,
                    (rhs.numel(), rhs.numel()),
                    dtype=self.dtype,
                    device=self.device,
                    symmetric=True,
                    positive_definite=True,
                )
                res = CG(rtol=rtol, max_iters=max_iters).solve(
                    op, rhs, x0=model.u.detach().reshape(-1)
                )
                u = torch.as_tensor(res.x)
                info = {
                    "method": "cg",
                    "iterations": int(res.iterations),
                    "converged": bool(res.converged),
                }
            model.u.copy_(u.reshape(self.shape))
        return info

    # ------------------------------------------------------------------ prediction
    def _weights(self) -> tuple[_Factors, torch.Tensor]:
        """The factors and ``alpha = K^{-1} u`` as an array."""
        F = _Factors(self, self.model)
        return F, kron_apply(F.inv, self.model.u)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The conditional mean ``k(x, X) K^{-1} u`` at points ``x`` ``(m, d)`` anywhere in the
        box, ``(m,)`` (no gradient)."""
        self.problem.domain.check_points(x)
        x = x.to(dtype=self.dtype, device=self.device)
        with torch.no_grad():
            _F, alpha = self._weights()
            grid = [a.to(dtype=self.dtype, device=self.device) for a in self.axes]
            out = []
            for chunk in torch.split(x, 8192):
                Ks = [self.model.kernels[k].matrix(chunk[:, k], grid[k]) for k in range(self.dim)]
                if self.dim == 1:
                    out.append(Ks[0] @ alpha)
                else:
                    out.append(((Ks[0] @ alpha) * Ks[1]).sum(dim=1))
            return torch.cat(out)

    def predict_grid(self, *axes: torch.Tensor) -> torch.Tensor:
        """The conditional mean on the tensor grid of ``axes``: ``K_*1 K_1^{-1} U K_2^{-1}
        K_*2^T`` in 2-D, shape ``(len(axes[0]), ...)``."""
        if len(axes) != self.dim:
            raise ValueError(f"predict_grid needs {self.dim} axes, got {len(axes)}")
        with torch.no_grad():
            _F, alpha = self._weights()
            grid = [a.to(dtype=self.dtype, device=self.device) for a in self.axes]
            Ks = [
                self.model.kernels[k].matrix(ax.to(dtype=self.dtype, device=self.device), grid[k])
                for k, ax in enumerate(axes)
            ]
            return kron_apply(Ks, alpha)

    def error(self, grid: int | None = None) -> float:
        """Relative L2 error against the exact solution on a uniform grid of ``grid`` points
        per axis (default: at least 10 points per wavelength of the stated frequency, and at
        least 2001 in 1-D, 201 in 2-D): the final state, never a best-of over checkpoints."""
        axes = error_axes(self.problem, grid, self.frequency)
        approx = self.predict_grid(*axes).reshape(-1).to(torch.float64)
        mesh = torch.meshgrid(*axes, indexing="ij")
        X = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        exact = evaluate_field(self.problem.exact, X, f"problem {problem_name(self.problem)}")
        return float(torch.linalg.vector_norm(approx - exact) / torch.linalg.vector_norm(exact))

    def plot(self, path: str | Path, *, grid: int | None = None) -> Path:
        """The solution and its pointwise error (1-D: curves; 2-D: images) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        axes = error_axes(self.problem, grid, self.frequency)
        if self.dim == 2:
            axes = [a[:: max(1, len(a) // 400)] for a in axes]
        u = self.predict_grid(*axes).to(torch.float64)
        mesh = torch.meshgrid(*axes, indexing="ij")
        X = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        exact = self.problem.exact(X).reshape(u.shape)
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        if self.dim == 1:
            ax[0].plot(axes[0], u, label="GP-HM")
            ax[0].plot(axes[0], exact, "--", label="exact")
            ax[0].legend()
            ax[1].semilogy(axes[0], (u - exact).abs().clamp_min(1e-300))
        else:
            ext = (axes[0][0], axes[0][-1], axes[1][0], axes[1][-1])
            im = ax[0].imshow(u.T, origin="lower", extent=ext)
            fig.colorbar(im, ax=ax[0])
            im = ax[1].imshow((u - exact).abs().T, origin="lower", extent=ext)
            fig.colorbar(im, ax=ax[1])
        ax[0].set_title(f"GP-HM ({self.kernel_name}) on {problem_name(self.problem)}")
        ax[1].set_title("|error|")
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path

    def __repr__(self) -> str:
        return (
            f"GPSolver(problem={problem_name(self.problem)}, shape={self.shape}, "
            f"kernel={self.kernel_name!r}, Q={self.Q})"
        )


def _apply_axis(M: torch.Tensor, U: torch.Tensor, axis: int) -> torch.Tensor:
    """``M`` applied along ``axis`` of ``U``."""
    if U.ndim == 1:
        return M @ U
    if U.ndim == 2:
        return M @ U if axis == 0 else U @ M.T
    return torch.movedim(torch.tensordot(M, U, dims=([1], [axis])), 0, axis)


def _uniform_step(axis: torch.Tensor) -> float | None:
    """The spacing of a uniform axis (to 1e-10 relative), else ``None``."""
    h = axis.diff()
    step = float(h.mean())
    return step if float((h - step).abs().max()) <= 1e-10 * abs(step) else None


def _grid_axes(points: Any, d: int, problem: Any) -> list[torch.Tensor]:
    """The axes of a tensor grid given as ``(n, d)`` points in ``indexing="ij"`` order, or a
    :class:`GridStructureError` (the Kronecker path needs a tensor grid)."""
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != d:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"GPSolver: points must be an (n, {d}) tensor, got {got}")
    if not bool(torch.isfinite(points).all()):
        raise NonFiniteError("GPSolver: points hold NaN or infinite values")
    problem.domain.check_points(points.to(torch.float64))
    P = points.to(torch.float64)
    axes = [torch.unique(P[:, k]) for k in range(d)]
    sizes = [len(a) for a in axes]
    mesh = torch.meshgrid(*axes, indexing="ij")
    grid = torch.stack([m.reshape(-1) for m in mesh], dim=1)
    if grid.shape != P.shape or not torch.equal(grid, P):
        raise GridStructureError(
            f"GPSolver: the {P.shape[0]} points are not a tensor grid in indexing='ij' order "
            f"(their distinct coordinates per axis, {sizes}, make {math.prod(sizes)} "
            "combinations): the Kronecker algebra needs every combination of per-axis "
            "coordinates; pass n= for a uniform grid or build the points with torch.meshgrid"
        )
    for k, a in enumerate(axes):
        if len(a) < 3:
            raise ValueError(f"GPSolver: axis {k} of the grid has {len(a)} points; need >= 3")
    return axes
