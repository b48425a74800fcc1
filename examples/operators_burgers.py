"""Neural operators side by side on 1-D viscous Burgers (the FNO paper's setting): the map
``u(x, 0) -> u(x, 1)`` for ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit interval,
``nu = 0.1``, initial conditions ``N(0, 625 (-Delta + 25 I)^-2)``; data from our
pseudo-spectral ETDRK4 generator (cached). FNO, DeepONet, LSM and T1 (the FFT variant: the
problem is periodic) with the same budget; neuraloperator's FNO too when installed.

Run: python examples/operators_burgers.py [--n 256] [--train 1000] [--test 200] [--epochs 20]
[--optimizer adamw] [--lr 1e-3] (NEURALSOLVE_QUICK=1 for a small smoke run).
Writes operators_burgers.json / .png / .md (an optimizer other than AdamW adds its name).
"""

from __future__ import annotations

from neuralsolve.operators.comparison import comparison_parser, run_comparison


def models(n: int) -> dict:
    specs = {
        "fno": ("fno", {"modes": 16, "width": 64, "layers": 4}),
        "deeponet": ("deeponet", {"width": 128, "basis": 128, "trunk_features": 4}),
        # circular convolutions: the problem is periodic (zero padding: 0.17 rel. L2, 20 epochs)
        "lsm": ("lsm", {"width": 32, "patch": max(1, n // 64), "periodic": True}),
        "t1": ("t1", {"transform": "fft", "modes": min(16, n // 2), "width": 64, "layers": 4}),
    }
    try:
        from neuralop.models import FNO as NeuralopFNO
    except ImportError:
        print("neuraloperator not installed: its FNO is left out")
    else:
        specs["neuralop-fno"] = lambda: NeuralopFNO(
            n_modes=(32,), in_channels=1, out_channels=1, hidden_channels=64, n_layers=4
        )
    return specs


def main() -> None:
    args = comparison_parser(__doc__, n=256, quick_n=64, epochs=20).parse_args()
    run_comparison("burgers", models(args.n), args, title=f"Burgers n={args.n}, nu=0.1")


if __name__ == "__main__":
    main()
