"""Train several operators on the same data with the same budget and tabulate the results:
what ``examples/operators_darcy.py`` and ``examples/operators_burgers.py`` run
(:func:`comparison_parser` and :func:`run_comparison` are their shared command line and body).

Every model is trained by :func:`~neuralsolve.operators.train_operator` with one
:class:`~neuralsolve.optim.TrainerConfig` (same optimizer, learning rate, schedule, epochs,
batch size and seed), so the only difference is the network. A model from another package
(e.g. neuraloperator's FNO) enters the same way, as an ``nn.Module`` factory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuralsolve.checks import check_positive_float
from neuralsolve.fileio import atomic_path
from neuralsolve.report import run_record, write_report

from .training import evaluate, train_operator

__all__ = [
    "aggregate_seeds",
    "compare_operators",
    "comparison_parser",
    "format_table",
    "plot_comparison",
    "positive_float",
    "run_comparison",
]

DEFAULT_LR = 1e-3  # the benchmarks' shared learning rate (``--lr``)

ModelSpec = tuple[str, Mapping[str, Any]] | Callable[[], nn.Module]


def compare_operators(
    models: Mapping[str, ModelSpec],
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    config: Any,
    *,
    eval_data: Mapping[str, torch.utils.data.Dataset] | None = None,
    log: Callable[[str], None] = print,
    seeds: int = 1,
) -> list[dict[str, Any]]:
    """Train each model and evaluate it on ``test`` (and on each of ``eval_data``, e.g. the
    test set at another resolution), with ``seeds`` seeds each.

    Parameters
    ----------
    models : mapping
        Label -> ``(registered name, config fields)`` or a zero-argument factory of an
        ``nn.Module`` (taking and returning ``(batch, channels, *grid)`` tensors).
    train, test : Dataset
    config : TrainerConfig
        Shared by every model (``out_dir`` gets a sub-folder per label, and per seed).
    seeds : int
        Seeds ``config.seed .. config.seed + seeds - 1`` per model (initial weights and batch
        order).

    Returns
    -------
    list of dict
        Per model: ``label``, ``parameters``, ``train_s``, ``s_per_epoch``, ``s_per_step``,
        ``final_loss``, ``test_rel_l2`` (mean over the test samples), ``test_rel_l2_median``,
        ``test_rel_l2_max``, ``ms_per_sample`` (inference), ``losses`` (per step), and
        ``rel_l2_<name>`` for ``eval_data``. With ``seeds > 1`` each number is the mean over
        the seeds, with ``<key>_seed_min`` / ``_seed_max`` / ``_per_seed`` beside it (see
        :func:`aggregate_seeds`).
    """
    rows = []
    for label, spec in models.items():
        for k in range(seeds):
            seed = config.seed + k
            rows.append(_train_row(label, spec, train, test, config, seed, seeds, eval_data, log))
    return aggregate_seeds(rows) if seeds > 1 else rows


def _train_row(
    label: str,
    spec: ModelSpec,
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    config: Any,
    seed: int,
    seeds: int,
    eval_data: Mapping[str, torch.utils.data.Dataset] | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    import warnings

    from neuralsolve.errors import GridTransferWarning

    steps_per_epoch = len(train) // config.batch_size  # type: ignore[arg-type]
    cfg = dataclasses.replace(config, seed=seed)
    if config.out_dir is not None:
        sub = Path(config.out_dir) / label
        cfg = dataclasses.replace(cfg, out_dir=str(sub / f"seed{seed}" if seeds > 1 else sub))
    torch.manual_seed(seed)
    if callable(spec):
        model, options = spec(), None
    else:
        model, options = spec[0], dict(spec[1])
    log(f"training {label} (seed {seed}) ...")
    operator, result = train_operator(model, train, cfg, model_options=options)
    report = evaluate(operator, test, batch_size=config.batch_size, device=config.device)
    epochs = result.steps / max(1, steps_per_epoch)
    row = {
        "label": label,
        "seed": seed,
        "parameters": report["parameters"],
        "train_s": result.seconds,
        "s_per_epoch": result.seconds / max(epochs, 1e-12),
        "s_per_step": result.seconds / max(1, result.steps),
        "lr": cfg.lr,
        "epochs": epochs,
        "final_loss": result.final_loss,
        "test_rel_l2": report["rel_l2_mean"],
        "test_rel_l2_median": report["rel_l2_median"],
        "test_rel_l2_max": report["rel_l2_max"],
        "ms_per_sample": report["ms_per_sample"],
        "losses": result.losses,
        "stop_reason": result.stop_reason,
    }
    for name, data in (eval_data or {}).items():
        try:
            with warnings.catch_warnings():  # measured on purpose: the number says how badly
                warnings.simplefilter("ignore", GridTransferWarning)
                other = evaluate(
                    operator, data, batch_size=config.batch_size, device=config.device,
                    allow_other_grid=True,
                )  # fmt: skip
            row[f"rel_l2_{name}"] = other["rel_l2_mean"]
        except (RuntimeError, ValueError) as exc:  # a model tied to one grid
            row[f"rel_l2_{name}"] = None
            row[f"error_{name}"] = str(exc).splitlines()[0]
    log(
        f"  {label}: test rel. L2 {row['test_rel_l2']:.4f}, {row['s_per_epoch']:.2f} s/epoch, "
        f"{row['parameters']} parameters"
    )
    return row


_SPREAD_KEYS = ("test_rel_l2", "test_rel_l2_median", "test_rel_l2_max", "final_loss",
                "train_s", "s_per_epoch", "s_per_step", "ms_per_sample")  # fmt: skip


def aggregate_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per label from rows of several seeds: each number of ``_SPREAD_KEYS`` and each
    ``rel_l2_*`` becomes the mean over the seeds, with ``<key>_seed_min``, ``<key>_seed_max``
    and ``<key>_per_seed`` (the per-seed values) beside it; ``losses`` are the first seed's, ``seeds``
    lists the seeds. A value that is ``None`` for a seed (a model not evaluated on a grid)
    makes the mean ``None``.

    Examples
    --------
    >>> rows = aggregate_seeds([{"label": "fno", "seed": 0, "test_rel_l2": 0.1},
    ...                         {"label": "fno", "seed": 1, "test_rel_l2": 0.3}])
    >>> rows[0]["test_rel_l2"], rows[0]["test_rel_l2_seed_min"], rows[0]["test_rel_l2_seed_max"]
    (0.2, 0.1, 0.3)
    """
    import math

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    out = []
    for group in groups.values():
        row = dict(group[0])
        row["seeds"] = [r.get("seed") for r in group]
        keys = [k for k in group[0] if k in _SPREAD_KEYS or k.startswith("rel_l2_")]
        for key in keys:
            values = [r.get(key) for r in group]
            finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
            ok = len(finite) == len(values)
            row[key] = sum(finite) / len(finite) if ok else None
            row[f"{key}_seed_min"] = min(finite) if ok else None
            row[f"{key}_seed_max"] = max(finite) if ok else None
            row[f"{key}_per_seed"] = values
        out.append(row)
    return out


def format_table(
    rows: list[dict[str, Any]], extra: Sequence[str] = (), *, spread: bool = False
) -> str:
    """A Markdown table of the rows (columns: label, test error, parameters, times).

    With ``spread`` (rows from :func:`aggregate_seeds`) the errors are written as
    ``mean (min-max)`` over the seeds, and the time per step is added.
    """

    def cell(r: dict[str, Any], key: str, fmt: str = ".4f") -> str:
        value = r.get(key)
        if value is None:
            return "-"
        text = format(value, fmt)
        if spread and r.get(f"{key}_seed_min") is not None and len(r.get("seeds", [])) > 1:
            text += f" ({r[f'{key}_seed_min']:{fmt}}-{r[f'{key}_seed_max']:{fmt}})"
        return text

    if spread:
        head = ["model", "seeds", "test rel. L2 mean (min-max over seeds)", "max over samples",
                *[f"at {k.removeprefix('rel_l2_')}" for k in extra], "parameters", "s / step",
                "s / epoch", "lr"]  # fmt: skip
    else:
        head = ["model", "test rel. L2 (mean)", "median", "max", *extra, "parameters",
                "s / epoch", "inference ms / sample"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if spread:
            cells = [
                r["label"],
                str(len(r.get("seeds", [r.get("seed")]))),
                cell(r, "test_rel_l2"),
                cell(r, "test_rel_l2_max"),
                *[cell(r, k) for k in extra],
                f"{r['parameters']:,}",
                f"{r['s_per_step']:.3f}",
                f"{r['s_per_epoch']:.2f}",
                "-" if r.get("lr") is None else f"{r['lr']:g}",
            ]
        else:
            cells = [
                r["label"],
                f"{r['test_rel_l2']:.4f}",
                f"{r['test_rel_l2_median']:.4f}",
                f"{r['test_rel_l2_max']:.4f}",
                *[("-" if r.get(k) is None else f"{r[k]:.4f}") for k in extra],
                f"{r['parameters']:,}",
                f"{r['s_per_epoch']:.2f}",
                f"{r['ms_per_sample']:.3f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(path: str | Path, rows: list[dict[str, Any]], title: str) -> Path:
    """Training loss against epochs and against seconds, and test error against time per
    epoch, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in rows:
        losses = r["losses"]
        steps = len(losses)
        epochs = [(i + 1) * r["epochs"] / steps for i in range(steps)]
        seconds = [(i + 1) * r["train_s"] / steps for i in range(steps)]
        (line,) = axes[0].semilogy(epochs, losses, label=r["label"], lw=1)
        axes[1].semilogy(seconds, losses, color=line.get_color(), lw=1)
        axes[2].scatter(r["s_per_epoch"], r["test_rel_l2"], color=line.get_color(), s=40)
        if r.get("test_rel_l2_seed_min") is not None:  # the min-max over seeds
            low = r["test_rel_l2"] - r["test_rel_l2_seed_min"]
            high = r["test_rel_l2_seed_max"] - r["test_rel_l2"]
            axes[2].errorbar(r["s_per_epoch"], r["test_rel_l2"], yerr=[[low], [high]],
                             color=line.get_color(), capsize=3)  # fmt: skip
        axes[2].annotate(r["label"], (r["s_per_epoch"], r["test_rel_l2"]), fontsize=8)
    axes[0].set(xlabel="epoch", ylabel="training loss (relative L2)", title=title)
    axes[1].set(xlabel="seconds", ylabel="training loss")
    axes[2].set(xlabel="seconds per epoch", ylabel="test relative L2 (min-max over seeds)", xscale="log",
                yscale="log", title="error vs cost")  # fmt: skip
    for axis in (axes[2].xaxis, axes[2].yaxis):  # plain numbers at 1, 2, 5 x 10^k
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def quick_run() -> bool:
    """``NEURALSOLVE_QUICK=1`` asks the benchmarks for a small smoke run."""
    return bool(os.environ.get("NEURALSOLVE_QUICK"))


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0, else a usage error that quotes the text."""
    try:
        return check_positive_float("the value", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None


def comparison_parser(
    doc: str, *, n: int, quick_n: int, epochs: int, quick_epochs: int = 2
) -> argparse.ArgumentParser:
    """The command line of an operator benchmark: grid, sample counts, epochs, optimizer and
    lr, threads, output folder and a model subset; the defaults shrink under
    ``NEURALSOLVE_QUICK=1`` (grid ``quick_n``, 40 / 10 samples, ``quick_epochs``)."""
    from neuralsolve.optim import available

    quick = quick_run()
    parser = argparse.ArgumentParser(
        description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=quick_n if quick else n, help="grid points per axis"
    )
    parser.add_argument("--train", type=int, default=40 if quick else 1000, help="training samples")
    parser.add_argument("--test", type=int, default=10 if quick else 200, help="test samples")
    parser.add_argument(
        "--epochs", type=int, default=quick_epochs if quick else epochs, help="same for every model"
    )
    parser.add_argument(
        "--optimizer", default="adamw", choices=[o for o in available() if o != "lbfgs"],
        help="optimizer, the same for every model ('muon' orthogonalises FNO's and T1's "
        "per-mode weights matrix by matrix; its lr is that of the matrices)",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=positive_float, default=DEFAULT_LR,
        help="learning rate, the same for every model",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=1 if quick else 3,
        help="seeds per model (0, 1, ...); the table gives the mean and min-max over them",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--out", default="bench-out/operators", help="output folder (data cached there)"
    )
    parser.add_argument("--models", help="comma-separated subset (default: all)")
    parser.add_argument(
        "--data", help="train and test on this HDF5 file (ours or PDEBench) instead of generated "
        "data: the first --train samples train, the next --test test",
    )  # fmt: skip
    parser.add_argument(
        "--test-from", type=int, default=None, metavar="INDEX",
        help="with --data: the test samples start at this index (default: right after the "
        "training samples; -1 for the file's last --test samples, the split of `neuralsolve "
        "train operator --val 0`)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=None, help="(default: 20; 10 under NEURALSOLVE_QUICK)"
    )
    return parser


def comparison_split(
    size: int, train: int, test: int, test_from: int | None = None
) -> tuple[range, range]:
    """The training and test indices of a benchmark run on a file of ``size`` samples.

    Parameters
    ----------
    size
        Samples in the file.
    train, test
        How many samples train and test; training takes the first ``train``.
    test_from
        The first test index: ``None`` right after the training samples, ``-1`` the file's last
        ``test`` samples (what ``neuralsolve train operator --val 0`` tests on).

    Returns
    -------
    tuple of range
        ``(train_indices, test_indices)``.

    Raises
    ------
    ValueError
        If the test samples overlap the training samples or run past the file.
    """
    start = train if test_from is None else size - test if test_from == -1 else test_from
    if start < train:
        raise ValueError(
            f"the test samples from index {start} overlap the {train} training samples "
            f"(0-{train - 1}): --test-from must be at least {train}"
        )
    if start + test > size:
        raise ValueError(
            f"{test} test samples from index {start} run past the file's {size} samples"
        )
    return range(train), range(start, start + test)


def run_comparison(
    problem: str,
    specs: Mapping[str, ModelSpec],
    args: argparse.Namespace,
    *,
    title: str,
    half_grid: bool = False,
    generator_options: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Generate (or reuse) ``problem``'s data with the project's generator, train every model
    of ``specs`` with the benchmarks' shared budget (``args.optimizer`` (default AdamW), lr
    ``args.lr`` (default 1e-3), weight decay 1e-4, cosine, batch 20, seed 0), and write
    ``operators_<problem>.json`` / ``.png`` / ``.md`` to ``args.out``. ``half_grid`` also
    scores each model on the test set sub-sampled to half the grid. ``generator_options``
    (numbers, e.g. ``{"t_final": 10}``) go to the generator and name the data and output files
    (``_t_final10``). Prints the table and the target ratios (our FNO / neuraloperator's, LSM /
    FNO, T1 / FNO), and fails if a model learned nothing (test error >= 1)."""
    from neuralsolve.datasets import H5Dataset
    from neuralsolve.datasets.generators import generate
    from neuralsolve.optim import TrainerConfig

    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - set(specs))
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; available: {', '.join(specs)}")
        specs = {k: v for k, v in specs.items() if k in wanted}
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    samples = args.train + args.test
    options = dict(generator_options or {})
    variant = "".join(f"_{key}{value:g}" for key, value in sorted(options.items()))
    if getattr(args, "data", None):
        data = Path(args.data)
    else:
        data = out / f"{problem}{args.n}_{samples}{variant}.h5"
        if not data.exists():
            generate(problem, n=args.n, samples=samples, seed=0, out=data, **options)
    test_from = getattr(args, "test_from", None)
    if test_from is not None and not getattr(args, "data", None):
        raise SystemExit("--test-from picks test samples in a --data file")
    size = len(H5Dataset(data)) if test_from is not None else samples
    train_idx, test_idx = comparison_split(size, args.train, args.test, test_from)
    train = H5Dataset(data, train_idx)
    test = H5Dataset(data, test_idx)
    eval_data = {}
    if half_grid:
        grid = test[0][0].shape[1:]
        eval_data["half_grid"] = H5Dataset(data, test_idx, resolution=grid[0] // 2)
    config = TrainerConfig(
        optimizer=args.optimizer, optimizer_options={"weight_decay": 1e-4}, lr=args.lr,
        schedule="cosine", epochs=args.epochs, seed=0,
        batch_size=args.batch_size or (10 if quick_run() else 20),
        progress=None, log_every=10,
    )  # fmt: skip
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, got {args.seeds}")
    rows = compare_operators(specs, train, test, config, eval_data=eval_data, seeds=args.seeds)
    meta = {"problem": title, "train": args.train, "test": args.test, "epochs": args.epochs,
            "seeds": args.seeds, "test_indices": [test_idx.start, test_idx.stop - 1],
            "data": str(data), "generator_options": options,
            "trainer": dict(vars(config))}  # fmt: skip
    stem = f"operators_{problem}{variant}"
    stem += f"_{args.models.replace(',', '_')}" if args.models else ""
    if args.optimizer != "adamw":
        stem += f"_{args.optimizer}"
    if args.lr != DEFAULT_LR:
        stem += f"_lr{args.lr:g}"
    if getattr(args, "data", None):
        stem += f"_{Path(args.data).stem}"
    record = run_record(device=config.device)
    write_report(out / f"{stem}.json", {"meta": {**record, **meta}, "results": rows})
    plot_comparison(out / f"{stem}.png", rows, f"{title}: {args.optimizer}, lr {args.lr:g}")
    table = format_table(rows, extra=[f"rel_l2_{k}" for k in eval_data], spread=args.seeds > 1)
    with atomic_path(out / f"{stem}.md") as tmp:
        tmp.write_text(table + "\n")
    print(table)
    by = {r["label"]: r for r in rows}
    if {"fno", "neuralop-fno"} <= by.keys():
        ratio = by["fno"]["test_rel_l2"] / by["neuralop-fno"]["test_rel_l2"]
        print(f"our FNO / neuraloperator FNO error: {ratio:.3f}")
    if {"fno", "lsm"} <= by.keys():
        print(f"LSM / FNO error: {by['lsm']['test_rel_l2'] / by['fno']['test_rel_l2']:.3f}")
    if {"fno", "t1"} <= by.keys():
        print(
            f"T1 / FNO error: {by['t1']['test_rel_l2'] / by['fno']['test_rel_l2']:.3f}, "
            f"FNO / T1 time per epoch: {by['fno']['s_per_epoch'] / by['t1']['s_per_epoch']:.2f}"
        )
    # the check: every model learned something (all errors finite and below predicting 0)
    bad = {r["label"]: r["test_rel_l2"] for r in rows if not r["test_rel_l2"] < 1.0}
    if bad:
        raise SystemExit(f"these models learned nothing (test rel. L2 >= 1 or NaN): {bad}")
    print("ok")
    return rows
