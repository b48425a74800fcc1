"""Train several operators on the same data with the same budget and tabulate the results:
what ``examples/operators_darcy.py`` and ``examples/operators_burgers.py`` run.

Every model is trained by :func:`~neuralsolve.operators.train_operator` with one
:class:`~neuralsolve.optim.TrainerConfig` (same optimizer, learning rate, schedule, epochs,
batch size and seed), so the only difference is the network. A model from another package
(e.g. neuraloperator's FNO) enters the same way, as an ``nn.Module`` factory.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuralsolve._version import __version__
from neuralsolve.fileio import atomic_path

from .training import evaluate, train_operator

__all__ = ["compare_operators", "format_table", "plot_comparison", "write_report"]

ModelSpec = tuple[str, Mapping[str, Any]] | Callable[[], nn.Module]


def compare_operators(
    models: Mapping[str, ModelSpec],
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    config: Any,
    *,
    eval_data: Mapping[str, torch.utils.data.Dataset] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train each model and evaluate it on ``test`` (and on each of ``eval_data``, e.g. the
    test set at another resolution).

    Parameters
    ----------
    models : mapping
        Label -> ``(registered name, config fields)`` or a zero-argument factory of an
        ``nn.Module`` (taking and returning ``(batch, channels, *grid)`` tensors).
    train, test : Dataset
    config : TrainerConfig
        Shared by every model (``out_dir`` gets a sub-folder per label).

    Returns
    -------
    list of dict
        Per model: ``label``, ``parameters``, ``train_s``, ``s_per_epoch``, ``final_loss``,
        ``test_rel_l2`` (mean), ``test_rel_l2_median``, ``test_rel_l2_max``, ``ms_per_sample``
        (inference), ``losses`` (per step), and ``rel_l2_<name>`` for ``eval_data``.
    """
    rows = []
    steps_per_epoch = len(train) // config.batch_size  # type: ignore[arg-type]
    for label, spec in models.items():
        cfg = config
        if config.out_dir is not None:
            cfg = dataclasses.replace(config, out_dir=str(Path(config.out_dir) / label))
        torch.manual_seed(config.seed)
        if callable(spec):
            model, options = spec(), None
        else:
            model, options = spec[0], dict(spec[1])
        log(f"training {label} ...")
        operator, result = train_operator(model, train, cfg, model_options=options)
        report = evaluate(operator, test, batch_size=config.batch_size, device=config.device)
        epochs = result.steps / max(1, steps_per_epoch)
        row = {
            "label": label,
            "parameters": report["parameters"],
            "train_s": result.seconds,
            "s_per_epoch": result.seconds / max(epochs, 1e-12),
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
                other = evaluate(operator, data, batch_size=config.batch_size, device=config.device)
                row[f"rel_l2_{name}"] = other["rel_l2_mean"]
            except (RuntimeError, ValueError) as exc:  # a model tied to one grid
                row[f"rel_l2_{name}"] = None
                row[f"error_{name}"] = str(exc).splitlines()[0]
        log(
            f"  {label}: test rel. L2 {row['test_rel_l2']:.4f}, {row['s_per_epoch']:.2f} s/epoch, "
            f"{row['parameters']} parameters"
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], extra: list[str] = ()) -> str:  # type: ignore[assignment]
    """A Markdown table of the rows (columns: label, test error, parameters, times)."""
    head = ["model", "test rel. L2 (mean)", "median", "max", *extra, "parameters", "s / epoch",
            "inference ms / sample"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
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


def write_report(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """JSON ``{"meta": ..., "results": rows}``, written atomically."""
    meta = {
        "neuralsolve_version": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        **meta,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=str) + "\n")
    return path


def plot_comparison(path: str | Path, rows: list[dict[str, Any]], title: str) -> Path:
    """Training loss against epochs and against seconds, and test error against time per
    epoch, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in rows:
        losses = r["losses"]
        steps = len(losses)
        epochs = [(i + 1) * r["epochs"] / steps for i in range(steps)]
        seconds = [(i + 1) * r["train_s"] / steps for i in range(steps)]
        (line,) = axes[0].semilogy(epochs, losses, label=r["label"], lw=1)
        axes[1].semilogy(seconds, losses, color=line.get_color(), lw=1)
        axes[2].scatter(r["s_per_epoch"], r["test_rel_l2"], color=line.get_color(), s=40)
        axes[2].annotate(r["label"], (r["s_per_epoch"], r["test_rel_l2"]), fontsize=8)
    axes[0].set(xlabel="epoch", ylabel="training loss (relative L2)", title=title)
    axes[1].set(xlabel="seconds", ylabel="training loss")
    axes[2].set(xlabel="seconds per epoch", ylabel="test relative L2", xscale="log",
                yscale="log", title="error vs cost")  # fmt: skip
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
