"""The convergence benchmark: every method on the same problems, one table, JSON and a plot.

Each (problem, method) pair is solved through :func:`neuralsolve.solve` with the same stopping
rule. For each it records iterations, set-up and solve seconds, the true relative residual
``||b - A x|| / ||b||`` recomputed in float64 from the assembled matrix, the peak resident
memory while the method ran, and the residual history (for the plot). Reference solvers
(scipy, pyamg) are timed without per-iteration residuals and their history is recorded in a
second, untimed run.

Timing on a shared machine is noisy: compare ratios taken in one run (the table's last column
is the solve time relative to ``scipy-cg`` on the same problem), and use ``repeat`` to report
the median of several solves (the set-up time is the first, cold, run's: it includes
compilation and hierarchy construction).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checks import check_choice, check_int
from .fileio import atomic_path
from .report import run_record

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_PROBLEMS",
    "BenchConfig",
    "format_table",
    "plot_report",
    "run_benchmark",
]

DEFAULT_PROBLEMS: tuple[tuple[str, int], ...] = (
    ("poisson3d", 32),
    ("poisson3d", 64),
    ("neumann3d", 64),
)
DEFAULT_METHODS: tuple[str, ...] = (
    "cg",
    "cg-fused",
    "pcg-jacobi",
    "pcg-ic",
    "pcg-amg",
    "cg-deflated",
    "dcdm-deflated",
    "scipy-cg",
    "pyamg-sa",
    "pyamg-rs",
    "direct",
)
REFERENCE_METHODS = ("scipy-cg", "pyamg-sa", "pyamg-rs", "direct")


@dataclass(frozen=True)
class BenchConfig:
    """What to run.

    Attributes
    ----------
    problems : sequence of (str, int or None)
        Gallery problem names with cells per axis, or system/mesh file paths with ``None``.
    methods : sequence of str
        Method names (see ``neuralsolve.available_methods()``).
    rtol : float
        Relative tolerance of every solve.
    rhs : int
        Right-hand sides per problem (``> 1`` runs a batched solve; references solve the columns
        one after another).
    device, dtype : str
        Where and in what precision the torch methods run.
    threads : int, optional
        ``torch.set_num_threads`` for the run (default: torch's own choice), reported in meta.
    repeat : int
        Solves per method; ``solve_s`` is their median.
    direct_max_unknowns : int
        ``direct`` is skipped (with the reason recorded) above this many unknowns: sparse LU
        fill grows fast in 3-D (64^3 took 507 s and 21 GB on the development machine).
    sequential : bool
        With ``rhs > 1``: also solve the columns one at a time and report ``sequential_s``
        (the sum of their solve times) and ``batch_speedup = sequential_s / solve_s``.
    """

    problems: Sequence[tuple[str, int | None]] = DEFAULT_PROBLEMS
    methods: Sequence[str] = DEFAULT_METHODS
    rtol: float = 1e-6
    rhs: int = 1
    device: str = "cpu"
    dtype: str = "float64"
    threads: int | None = None
    repeat: int = 1
    seed: int = 0
    max_iters: int | None = None
    direct_max_unknowns: int = 120_000
    sequential: bool = False
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .solvers import METHODS

        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(
                f"unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}"
            )
        if not self.methods:
            raise ValueError("no methods to run")
        stray = sorted(set(self.options) - set(self.methods))
        if stray:
            raise ValueError(
                f"options given for method(s) {', '.join(stray)} that are not being run "
                f"(methods: {', '.join(self.methods)})"
            )
        if not self.problems:
            raise ValueError("no problems to run")
        if self.rhs < 1 or self.repeat < 1:
            raise ValueError(
                f"rhs and repeat must be >= 1, got rhs={self.rhs}, repeat={self.repeat}"
            )
        check_int("threads", self.threads, minimum=1, allow_none=True)
        check_choice("dtype", self.dtype, ("float32", "float64"))


class PeakMemory:
    """Peak resident memory above the level at entry, in MB: sampled from /proc every 2 ms on
    Linux CPUs; ``torch.cuda.max_memory_allocated`` on CUDA; ``None`` where neither exists."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        base = self._rss()
        if base is None:
            return self
        self._base = self._max = base

        def sample() -> None:
            while not self._stop.wait(0.002):
                now = self._rss()
                if now is not None and now > self._max:
                    self._max = now

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 1e6
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = self._rss()
            self._max = max(self._max, now or 0)
            self.peak_mb = (self._max - self._base) / 1e6


def _release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that the resident size at a
    method's start does not hide memory it reuses from an earlier method."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _meta(config: BenchConfig) -> dict[str, Any]:
    """The run record (:func:`neuralsolve.report.run_record`) and the benchmark's config."""
    return {
        **run_record(device=config.device),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
    }


def _load(name: str, n: int | None, config: BenchConfig) -> tuple[Any, Any, Any, str, int]:
    """(operator for the solves, right-hand side(s), float64 CSR, label, unknowns)."""
    from .datasets import load_problem, make_problem

    dtype = getattr(torch, config.dtype)
    if n is not None:
        prob = make_problem(name, n, seed=config.seed)
        matrix = prob.matrix
        b = prob.b if config.rhs == 1 else prob.random_rhs(config.rhs, seed=config.seed)
        prob = prob.to(device=config.device, dtype=dtype)
        return prob.A, b.to(device=config.device, dtype=dtype), matrix, name, prob.n
    import scipy.sparse as sp

    from .linop import as_operator

    A, b, _ = load_problem(name)
    matrix = sp.csr_array(A.to_scipy() if hasattr(A, "to_scipy") else A, dtype=np.float64)
    nn = matrix.shape[0]
    if config.rhs > 1:
        b = np.random.default_rng(config.seed).standard_normal((nn, config.rhs))
    elif b is None:
        b = matrix @ np.ones(nn)  # exact solution of ones
    op = as_operator(matrix, dtype=dtype, device=config.device)
    return (
        op,
        torch.as_tensor(np.asarray(b), dtype=dtype, device=config.device),
        matrix,
        Path(name).name,
        nn,
    )


def _one(method: str, A: Any, b: torch.Tensor, matrix: Any, config: BenchConfig) -> dict[str, Any]:
    from .solvers import solve

    # --set METHOD.max_iters=N (or rtol) overrides the run's value for that method alone
    options = {"rtol": config.rtol, "max_iters": config.max_iters, **config.options.get(method, {})}
    if method in REFERENCE_METHODS and method != "direct":
        options.setdefault("history", "rerun")
    runs, first = [], None
    peak = PeakMemory(torch.device(config.device))
    for rep in range(config.repeat):
        if rep == 0:
            with peak:
                res = solve(A, b, method=method, **options)
            first = res
        else:
            res = solve(A, b, method=method, **options)
        runs.append(float(res.stats["solve_s"]))
    assert first is not None
    sequential = None
    if config.sequential and b.ndim == 2 and b.shape[1] > 1:
        singles = [
            solve(A, b[:, j].contiguous(), method=method, **options) for j in range(b.shape[1])
        ]
        sequential = sum(float(s.stats["solve_s"]) for s in singles)
    b64 = b.detach().cpu().double().numpy()
    x64 = (first.x.detach().cpu().numpy() if isinstance(first.x, torch.Tensor) else first.x).astype(
        np.float64
    )
    r = b64 - matrix @ x64
    bn = np.linalg.norm(b64, axis=0)
    rel = np.linalg.norm(r, axis=0) / np.where(bn > 0, bn, 1)
    norms = np.asarray(first.residual_norms, dtype=np.float64)
    extra = {
        k: v
        for k, v in first.stats.items()
        if k not in ("method", "setup_s", "solve_s", "rel_residual", "elapsed")
        and isinstance(v, int | float | str | bool | type(None))
    }
    return {
        "converged": bool(first.converged),
        "status": first.status.value,
        "iterations": int(first.iterations),
        "setup_s": float(first.stats["setup_s"]),
        "solve_s": float(statistics.median(runs)),
        "solve_s_runs": runs,
        "rel_residual": float(np.max(rel)),
        "residual_norms": norms.tolist(),
        "elapsed": [float(t) for t in first.stats.get("elapsed", [])],
        "peak_mb": None if peak.peak_mb is None else round(peak.peak_mb, 1),
        "stats": extra,
        **(
            {}
            if sequential is None
            else {
                "sequential_s": sequential,
                "batch_speedup": sequential / max(statistics.median(runs), 1e-12),
            }
        ),
    }


def run_benchmark(
    config: BenchConfig,
    *,
    progress: bool | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"meta": {...}, "results": [...]}`` (the JSON schema).

    ``progress`` shows a progress bar on stderr (``None``: only on a terminal);
    ``on_result`` is called with each result as it completes.
    """
    from tqdm.auto import tqdm

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    report: dict[str, Any] = {"meta": _meta(config), "results": []}
    total = len(config.problems) * len(config.methods)
    bar = tqdm(
        total=total,
        desc="bench",
        unit="solve",
        file=sys.stderr,
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
    )
    try:
        for name, n in config.problems:
            bar.set_description(f"building {name}{'' if n is None else f'-{n}'}")
            A, b, matrix, label, unknowns = _load(name, n, config)
            for method in config.methods:
                bar.set_description(f"{label}{'' if n is None else f'-{n}'} {method}")
                entry: dict[str, Any] = {
                    "problem": label,
                    "n": n,
                    "unknowns": unknowns,
                    "method": method,
                }
                if method == "direct" and unknowns > config.direct_max_unknowns:
                    entry.update(
                        skipped=(
                            f"{unknowns} unknowns > direct_max_unknowns={config.direct_max_unknowns} "
                            "(sparse LU fill grows fast in 3-D)"
                        )
                    )
                else:
                    t0 = time.perf_counter()
                    try:
                        entry.update(_one(method, A, b, matrix, config))
                    except (ValueError, TypeError, RuntimeError, MemoryError) as exc:
                        entry.update(
                            error=f"{type(exc).__name__}: {exc}", wall_s=time.perf_counter() - t0
                        )
                report["results"].append(entry)
                if on_result is not None:
                    on_result(entry)
                bar.update(1)
    finally:
        bar.close()
    return report


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def network_note(result: dict[str, Any]) -> str:
    """One line on a learned method's network: calls, seconds per call, share of the solve."""
    stats = result["stats"]
    calls, seconds = int(stats["network_calls"]), float(stats.get("network_s", 0.0))
    where = "" if stats.get("network_level") is None else f", level {stats['network_level']}"
    share = seconds / result["solve_s"] if result.get("solve_s") else float("nan")
    label = result["problem"] + ("" if result["n"] is None else f"-{result['n']}")
    return (
        f"  {result['method']} on {label}: network {calls} calls, "
        f"{1e3 * seconds / calls:.0f} ms per call, {share:.0%} of the solve s{where}"
    )


def format_table(report: dict[str, Any]) -> str:
    """The results as an aligned text table (one row per problem and method)."""
    results = report["results"]
    scipy_time = {
        (r["problem"], r["n"]): r["solve_s"]
        for r in results
        if r["method"] == "scipy-cg" and "solve_s" in r
    }
    batched = any("batch_speedup" in r for r in results)
    header = [
        "problem",
        "unknowns",
        "method",
        "status",
        "iters",
        "setup s",
        "solve s",
        "rel resid",
        "peak MB",
    ]
    header += ["vs scipy-cg"] + (["sequential s", "batch speedup"] if batched else [])
    rows = []
    for r in results:
        row = [
            r["problem"] + ("" if r["n"] is None else f"-{r['n']}"),
            str(r["unknowns"]),
            r["method"],
        ]
        if "skipped" in r or "error" in r:
            rows.append(
                row + ["skipped" if "skipped" in r else "error"] + ["-"] * (len(header) - 4)
            )
            continue
        ref = scipy_time.get((r["problem"], r["n"]))
        row += [
            "ok" if r["converged"] else r["status"],
            str(r["iterations"]),
            _fmt(r["setup_s"], ".3f"),
            _fmt(r["solve_s"], ".3f"),
            _fmt(r["rel_residual"], ".1e"),
            _fmt(r["peak_mb"], ".0f"),
            f"{r['solve_s'] / ref:.2f}x" if ref else "-",
        ]
        if batched:
            speedup = r.get("batch_speedup")
            row += [
                _fmt(r.get("sequential_s"), ".3f"),
                "-" if speedup is None else f"{speedup:.2f}x",
            ]
        rows.append(row)
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    notes = [
        f"  {r['method']} on {r['problem']}: {r.get('skipped') or r.get('error')}"
        for r in results
        if "skipped" in r or "error" in r
    ]
    notes += [network_note(r) for r in results if (r.get("stats") or {}).get("network_calls")]
    meta = report["meta"]
    config = meta["config"]
    footer = (
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['cpu']}; "
        f"rtol {config['rtol']}, dtype {config['dtype']}"
    )
    return "\n".join(lines + (["", *notes] if notes else []) + ["", footer])


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """A PNG with, per problem, the relative residual against iterations and against seconds
    (set-up + solve), one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in report["results"]:
        groups.setdefault((r["problem"], r["n"]), []).append(r)
    fig = Figure(figsize=(12, 3.6 * len(groups)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    rtol = report["meta"]["config"]["rtol"]
    for row, ((problem, n), results) in enumerate(groups.items()):
        ax_it, ax_t = axes[row]
        for r in results:
            if "residual_norms" not in r or not r["residual_norms"]:
                continue
            norms = np.asarray(r["residual_norms"], dtype=np.float64)
            if norms.ndim == 2:
                norms = norms / np.maximum(norms[0], 1e-300)
                rel = norms.max(axis=1)
            else:
                rel = norms / max(norms[0], 1e-300)
            its = np.arange(len(rel))
            (line,) = ax_it.semilogy(
                its, rel, label=r["method"], marker="." if len(rel) < 30 else None
            )
            elapsed = (
                np.asarray(r["elapsed"][: len(rel)])
                if r["elapsed"]
                else its * r["solve_s"] / max(1, len(rel) - 1)
            )
            seconds = np.maximum(r["setup_s"] + elapsed, 1e-5)
            ax_t.loglog(
                seconds,
                rel,
                color=line.get_color(),
                label=r["method"],
                marker="." if len(rel) < 30 else None,
            )
        title = (
            f"{problem}"
            + ("" if n is None else f"-{n}")
            + f" ({results[0]['unknowns']:,} unknowns)"
        )
        for ax, xlabel in ((ax_it, "iteration"), (ax_t, "seconds (set-up + solve)")):
            ax.axhline(rtol, color="gray", linestyle="--", linewidth=0.8)
            ax.set_ylim(bottom=rtol * 1e-2, top=2.0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("||b - A x|| / ||b||")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        ax_it.legend(fontsize=8, ncol=2)
    meta = report["meta"]
    fig.suptitle(
        f"neuralsolve {meta['neuralsolve']} | torch {meta['torch']} | {meta['threads']} threads | {meta['cpu']}",
        fontsize=9,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
