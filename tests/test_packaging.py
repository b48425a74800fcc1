"""The built wheel installs into a fresh environment and every sub-package imports from it
(a missing package-dir mapping in pyproject.toml would fail here)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = [
    "neuralsolve",
    "neuralsolve.linop",
    "neuralsolve.solvers",
    "neuralsolve.solvers.pinn",
    "neuralsolve.operators",
    "neuralsolve.datasets",
    "neuralsolve.datasets.pde",
    "neuralsolve.optim",
]


@pytest.mark.slow
def test_wheel_installs_and_imports_every_subpackage(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("neuralsolve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Everything installs under neuralsolve/: no top-level `datasets` or `optim` module.
    assert all(n.startswith(("neuralsolve/", "neuralsolve-")) for n in names), names
    for pkg in SUBPACKAGES:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names
    for dim in (2, 3):  # the shipped DCDM models and their training records
        assert f"neuralsolve/solvers/models/dcdm{dim}d.pt" in names
        assert f"neuralsolve/solvers/models/dcdm{dim}d.json" in names

    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    # The fresh environment borrows the heavy dependencies (torch, scipy, ...) from this one
    # through a .pth path entry, which does not run this environment's editable-install hook.
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    code = (
        "import importlib, pathlib, sys\n"
        f"mods = [importlib.import_module(m) for m in {SUBPACKAGES!r}]\n"
        "import neuralsolve.cli, neuralsolve.bench\n"
        f"assert pathlib.Path(mods[0].__file__).is_relative_to(pathlib.Path({str(env)!r})), mods[0].__file__\n"
        "import neuralsolve as ns\n"
        "p = ns.datasets.poisson((8, 8))\n"
        "assert ns.solve(p.A, p.b).converged\n"
        "assert ns.solve(p.A, p.b, method='dcdm').stats['model'] == 'shipped:dcdm2d.pt'\n"
        "print(ns.__version__)\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.strip()
    cli = subprocess.run(
        [str(env / "bin" / "neuralsolve"), "--version"], check=True, capture_output=True, text=True
    )
    assert cli.stdout.startswith("neuralsolve ")
