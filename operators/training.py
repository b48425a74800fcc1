"""Training and evaluating neural operators on HDF5 datasets, through the one
:class:`~neuralsolve.optim.Trainer`.

A trained operator is a :class:`NormalizedOperator`: the network between per-channel input and
output normalisers (fitted on the training split, stored as buffers, so they ride in every
checkpoint). The loss is the mean relative L2 error per sample on de-normalised outputs, as in
the FNO and LSM papers; T1 can compute it on DCT coefficients instead (``loss="spectral"``).
Checkpoints carry ``metadata`` with the model's name and config and the data it was trained
on (file, layout, resolution, split indices), so :func:`load_operator` rebuilds the model and
:func:`evaluate` finds the test split without being told.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuralsolve.checkpoint import load_checkpoint, load_module_state, save_checkpoint
from neuralsolve.checks import check_choice
from neuralsolve.errors import DataFormatError
from neuralsolve.fileio import atomic_path

from .base import MODELS, config_dict, create
from .defaults import GRID_BOUND_TRANSFER, resolve_options, wraparound
from .t1 import T1, spectral_relative_l2

__all__ = [
    "NormalizedOperator",
    "evaluate",
    "load_operator",
    "plot_predictions",
    "relative_l2",
    "train_operator",
]


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample relative L2 error ``||pred - target|| / ||target||``, shape ``(batch,)``."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1).clamp_min(torch.finfo(target.dtype).tiny)


class NormalizedOperator(nn.Module):
    """``u = out_norm.decode(net(in_norm.encode(a)))``.

    ``forward(a)`` predicts; ``forward(a, target)`` returns the per-sample relative L2 error
    (computed on DCT coefficients for a T1 net when ``loss == "spectral"``), so a data-parallel
    wrapper sees the loss computed inside its forward.
    """

    def __init__(
        self, net: nn.Module, input_norm: nn.Module, output_norm: nn.Module, *, loss: str = "l2"
    ) -> None:
        super().__init__()
        check_choice("loss", loss, ("l2", "spectral"))
        if loss == "spectral" and not isinstance(net, T1):
            raise ValueError(
                f"loss='spectral' needs a T1 model (it is computed on DCT coefficients), "
                f"got {type(net).__name__}"
            )
        self.net, self.input_norm, self.output_norm, self.loss = net, input_norm, output_norm, loss

    def forward(
        self, a: torch.Tensor, target: torch.Tensor | None = None, **options: Any
    ) -> torch.Tensor:
        z = self.input_norm.encode(a)
        if target is not None and self.loss == "spectral":
            return spectral_relative_l2(
                self.net,  # type: ignore[arg-type]
                z,
                target,
                scale=self.output_norm.std,
                shift=self.output_norm.mean,
            )[None]
        u = self.output_norm.decode(self.net(z, **options))
        return u if target is None else relative_l2(u, target)


def _fit_normalizers(train: Any, normalize: bool) -> tuple[nn.Module, nn.Module]:
    from neuralsolve.datasets.operator_data import Normalizer

    x, y = train[0]
    if not normalize:
        return Normalizer.identity(x.shape[0]), Normalizer.identity(y.shape[0])
    return Normalizer.fit(train, "input"), Normalizer.fit(train, "output")


def _data_record(dataset: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key in ("layout", "input_step", "output_step"):
        if hasattr(dataset, key):
            record[key] = getattr(dataset, key)
    if hasattr(dataset, "path"):
        record["path"] = str(Path(dataset.path).resolve())
    if hasattr(dataset, "grid"):
        record["grid"] = list(dataset.grid)
    return record


def train_operator(
    model: str | nn.Module,
    train: torch.utils.data.Dataset,
    config: Any,
    *,
    val: torch.utils.data.Dataset | None = None,
    model_options: dict[str, Any] | None = None,
    loss: str = "l2",
    normalize: bool = True,
    splits: dict[str, Sequence[int]] | None = None,
    resume: bool | str | Path = False,
    log: Callable[[str], None] | None = None,
) -> tuple[NormalizedOperator, Any]:
    """Train a neural operator on ``(input, output)`` samples.

    Parameters
    ----------
    model : str or nn.Module
        A registered name (``"fno"``, ``"deeponet"``, ``"lsm"``, ``"t1"``; channels and ``dim``
        are taken from the data) or a model made by :func:`create`.
    train : Dataset
        Yields ``(a, u)`` with shapes ``(C_in, *grid)``, ``(C_out, *grid)``, e.g.
        :class:`neuralsolve.datasets.H5Dataset`.
    config : neuralsolve.optim.TrainerConfig
        Optimizer, learning rate, schedule, epochs, batch size, device, seed, ``out_dir``...
    val : Dataset, optional
        Evaluated every ``config.eval_every`` steps (and at the end); its mean relative L2
        (``val_rel_l2``) picks ``best.pt``. Without it ``best.pt`` is the final model.
    model_options : dict, optional
        Config fields for a model given by name. Fields left out that depend on the grid
        (FNO's and T1's modes, LSM's levels, patch and width, DeepONet's sensors, T1's
        resolution) are derived from the training grid, and FNO's padding from whether the
        first (up to 64) training inputs wrap around, by
        :func:`~neuralsolve.operators.defaults.resolve_options`; a given field that cannot work
        on the grid raises a ``ValueError`` saying what would.
    loss : {"l2", "spectral"}
        Relative L2 in physical space, or on DCT coefficients (T1 only; same value by
        Parseval, without the inverse transform).
    normalize : bool
        Fit per-channel normalisers on ``train`` (identity when False).
    splits : dict, optional
        Index lists stored in the checkpoint (``neuralsolve eval`` uses ``"test"``).
    resume : bool or path
        As :meth:`Trainer.fit`.
    log : callable, optional
        Receives one line with the resolved model config and training settings before
        training starts (the CLI prints it); also recorded in the checkpoint's
        ``metadata["resolved"]``.

    Returns
    -------
    (NormalizedOperator, TrainResult)
        The operator carries ``metadata`` (what its checkpoint records).
    """
    from neuralsolve.optim import Trainer

    a0, u0 = train[0]
    grid = tuple(a0.shape[1:])
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; available: {', '.join(sorted(MODELS))}")
        # whether the problem is periodic, from the first training inputs (FNO's padding)
        inputs = torch.stack([train[i][0] for i in range(min(len(train), 64))])  # type: ignore[arg-type]
        options, derived = resolve_options(
            model, grid, model_options or {}, periodic=wraparound(inputs)
        )
        options.setdefault("in_channels", int(a0.shape[0]))
        options.setdefault("out_channels", int(u0.shape[0]))
        options.setdefault("dim", len(grid))
        torch.manual_seed(config.seed)  # the initial weights follow the run's seed
        net = create(model, **options)
    elif model_options:
        raise ValueError("model_options apply only to a model given by name")
    else:
        net, derived = model, {}
    input_norm, output_norm = _fit_normalizers(train, normalize)
    operator = NormalizedOperator(net, input_norm, output_norm, loss=loss)
    metadata = {
        "operator": config_dict(net),
        "loss": loss,
        "data": _data_record(train),
        "splits": {k: [int(i) for i in v] for k, v in (splits or {}).items()},
        "resolved": _resolved_record(net, grid, model_options or {}, derived, config),
    }
    if log is not None:
        log(format_resolved(metadata["resolved"]))

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        a, u = batch
        return m(a, u).mean()

    eval_fn = None
    if val is not None and len(val) > 0:  # type: ignore[arg-type]

        def eval_fn(m: nn.Module) -> dict[str, float]:
            errors = _errors(m, val, batch_size=config.batch_size, device=config.device)
            return {"val_rel_l2": float(np.mean(errors))}

    _check_resumable(resume, config, metadata["operator"])
    trainer = Trainer(operator, loss_fn, config, data=train, eval_fn=eval_fn, metadata=metadata)
    result = trainer.fit(resume=resume)
    if eval_fn is None and trainer.out_dir is not None and trainer.is_main:
        save_checkpoint(
            trainer.out_dir / "best.pt",
            {"model": operator.state_dict(), "step": trainer.step, "metadata": metadata},
            kind="model",
        )
    operator.eval()
    operator.metadata = metadata  # type: ignore[assignment]
    return operator, result


_TRAINER_FIELDS = ("optimizer", "lr", "batch_size", "epochs", "schedule", "seed", "dtype")


def _resolved_record(
    net: nn.Module,
    grid: tuple[int, ...],
    given: dict[str, Any],
    derived: dict[str, str],
    config: Any,
) -> dict[str, Any]:
    """What the run trains with: the model's full config, which fields were derived from the
    grid and why, and the Trainer settings that shape the result."""
    info = config_dict(net)
    return {
        "model": info.get("name") or info.get("class"),
        "grid": list(grid),
        "config": info.get("config"),
        "given": {k: given[k] for k in sorted(given)},
        "derived": derived,
        "trainer": {k: getattr(config, k) for k in _TRAINER_FIELDS if hasattr(config, k)}
        | {"weight_decay": (getattr(config, "optimizer_options", None) or {}).get("weight_decay")},
    }


def format_resolved(record: dict[str, Any]) -> str:
    """One line per part of a resolved-config record (``metadata["resolved"]``)."""
    config = record.get("config") or {}
    skip = {"in_channels", "out_channels", "dim"}
    fields = ", ".join(
        f"{k}={_short(v)}" + ("*" if k in record.get("derived", {}) else "")
        for k, v in config.items()
        if k not in skip
    )
    trainer = ", ".join(f"{k}={_short(v)}" for k, v in record.get("trainer", {}).items())
    grid = " x ".join(map(str, record.get("grid", [])))
    lines = [f"{record.get('model')} on a {grid} grid: {fields}"]
    if record.get("derived"):
        lines.append(
            "  * derived: " + "; ".join(f"{k}: {why}" for k, why in record["derived"].items())
        )
    lines.append(f"  training: {trainer}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple) and len(set(value)) == 1:
        return repr(value[0])
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _check_resumable(resume: bool | str | Path, config: Any, operator: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another model or model config, naming both."""
    if resume is False:
        return
    if isinstance(resume, bool):
        if not getattr(config, "out_dir", None):
            return  # the Trainer says what is missing
        path = Path(config.out_dir) / "last.pt"
    else:
        path = Path(resume)
    if not path.exists():
        return
    saved = (load_checkpoint(path).get("metadata") or {}).get("operator")
    if not isinstance(saved, dict) or saved == operator:
        return
    if saved.get("name") != operator.get("name"):
        diff = f"it trains {saved.get('name')!r}, this run builds {operator.get('name')!r}"
    else:
        a, b = saved.get("config") or {}, operator.get("config") or {}
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        diff = f"its {saved.get('name')} config differs in " + ", ".join(
            f"{k} ({a.get(k)!r} there, {b.get(k)!r} here)" for k in keys
        )
    raise ValueError(
        f"cannot resume from {str(path)!r}: {diff}; resume with the checkpoint's model and "
        "options (--model, --set), or start a new run in another directory (--out)"
    )


def load_operator(path: str | Path, *, map_location: Any = "cpu") -> NormalizedOperator:
    """Rebuild a trained operator from a checkpoint written by :func:`train_operator`
    (``best.pt`` or ``last.pt``), in eval mode.

    Raises
    ------
    DataFormatError
        The file is not a neuralsolve checkpoint, or not one of a neural operator.
    """
    from neuralsolve.datasets.operator_data import Normalizer

    record = load_checkpoint(path, map_location=map_location)
    info = (record.get("metadata") or {}).get("operator")
    if isinstance(info, dict) and info.get("name") is None and "class" in info:
        raise DataFormatError(
            f"{str(path)!r} holds a {info['class']} model, not one of neuralsolve's: rebuild it "
            "yourself and load record['model'] into NormalizedOperator"
        )
    if not isinstance(info, dict) or "name" not in info:
        raise DataFormatError(
            f"{str(path)!r} is a {record.get('kind')!r} checkpoint without 'metadata/operator': "
            "it was not written by train_operator / `neuralsolve train operator`"
        )
    try:
        net = create(info["name"], **dict(info.get("config") or {}))
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"{str(path)!r} records a {info['name']!r} config that cannot build the model: {exc}"
        ) from None
    state = record.get("model")
    norms = ("input_norm.mean", "output_norm.mean")
    if not isinstance(state, dict) or not all(
        isinstance(state.get(k), torch.Tensor) for k in norms
    ):
        raise DataFormatError(
            f"{str(path)!r} has no normalizer weights {list(norms)} under 'model': it was not "
            "written by train_operator, or was edited"
        )
    operator = NormalizedOperator(
        net,
        Normalizer.identity(int(state["input_norm.mean"].shape[0])),
        Normalizer.identity(int(state["output_norm.mean"].shape[0])),
        loss=record["metadata"].get("loss", "l2"),
    )
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    load_module_state(operator.to(dtype=dtype), state, path=path)
    operator.metadata = record["metadata"]  # type: ignore[assignment]
    return operator.eval()


@torch.no_grad()
def _errors(
    model: nn.Module, data: Any, *, batch_size: int, device: Any, timing: list[float] | None = None
) -> np.ndarray:
    errors = []
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    dtype = next(model.parameters()).dtype
    for a, u in loader:
        a = a.to(device=device, dtype=dtype)
        u = u.to(device=device, dtype=dtype)
        if timing is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        pred = model(a)
        if timing is not None:
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            timing.append(time.perf_counter() - t0)
        errors.append(relative_l2(pred, u).double().cpu().numpy())
    return np.concatenate(errors)


def evaluate(
    model: str | Path | nn.Module,
    data: torch.utils.data.Dataset,
    *,
    batch_size: int = 32,
    device: Any = "cpu",
    allow_other_grid: bool = False,
) -> dict[str, Any]:
    """Relative L2 error per sample and inference throughput.

    Parameters
    ----------
    model : path or nn.Module
        A checkpoint of :func:`train_operator`, or the operator it returned.
    data : Dataset
        ``(a, u)`` samples.
    batch_size : int
    device : torch device
    allow_other_grid : bool
        Evaluate a model that is tied to its training grid (LSM) on another grid anyway, with
        a :class:`~neuralsolve.errors.GridTransferWarning` giving the measured transfer
        error. Without it such an evaluation raises.

    Returns
    -------
    dict
        ``rel_l2_mean``, ``rel_l2_median``, ``rel_l2_max``, ``samples``, ``grid``,
        ``inference_s`` (model time only, data loading excluded), ``ms_per_sample``,
        ``samples_per_s``, ``parameters``, ``errors`` (the per-sample list).
    """
    operator = load_operator(model) if isinstance(model, str | Path) else model
    a0, _ = data[0]
    _check_grid_transfer(operator, tuple(a0.shape[1:]), allow_other_grid)
    operator = operator.to(device).eval()
    timing: list[float] = []
    errors = _errors(operator, data, batch_size=batch_size, device=device, timing=timing)
    seconds = float(sum(timing))
    return {
        "rel_l2_mean": float(errors.mean()),
        "rel_l2_median": float(np.median(errors)),
        "rel_l2_max": float(errors.max()),
        "samples": int(errors.size),
        "grid": list(a0.shape[1:]),
        "inference_s": seconds,
        "ms_per_sample": 1e3 * seconds / errors.size,
        "samples_per_s": errors.size / seconds if seconds > 0 else math.inf,
        # a complex weight counts as two real numbers (neuraloperator keeps complex weights)
        "parameters": sum(p.numel() * (2 if p.is_complex() else 1) for p in operator.parameters()),
        "errors": errors.tolist(),
    }


def trained_grid(operator: nn.Module) -> tuple[str | None, tuple[int, ...] | None]:
    """The registered name of ``operator``'s network and the grid it was trained on, from the
    ``metadata`` that :func:`train_operator` and :func:`load_operator` attach (``None`` where
    unknown)."""
    meta = getattr(operator, "metadata", None) or {}
    name = (meta.get("operator") or {}).get("name")
    grid = (meta.get("resolved") or {}).get("grid") or (meta.get("data") or {}).get("grid")
    return name, (tuple(int(n) for n in grid) if grid else None)


def _check_grid_transfer(operator: nn.Module, grid: tuple[int, ...], allow: bool) -> None:
    name, trained = trained_grid(operator)
    if name not in GRID_BOUND_TRANSFER or trained is None or tuple(grid) == trained:
        return
    text = (
        f"{name} was trained on a {' x '.join(map(str, trained))} grid and is evaluated on "
        f"{' x '.join(map(str, grid))}, and it does not transfer across resolutions: "
        f"{GRID_BOUND_TRANSFER[name]}"
    )
    if not allow:
        raise ValueError(
            f"{text}. Evaluate it on its training grid (--resolution "
            f"{trained[0]}), use a resolution-invariant model (fno, t1), or pass "
            "allow_other_grid=True (--allow-other-grid) to evaluate anyway"
        )
    from neuralsolve.errors import GridTransferWarning

    warnings.warn(text, GridTransferWarning, stacklevel=3)


@torch.no_grad()
def plot_predictions(
    model: nn.Module, data: torch.utils.data.Dataset, path: str | Path, *, samples: int = 3
) -> Path:
    """A PNG with, for the first ``samples`` samples, the input, the truth, the prediction and
    the error (images on 2-D grids, curves on 1-D grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(samples, len(data))  # type: ignore[arg-type]
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    fig, axes = plt.subplots(count, 4, figsize=(13, 3.0 * count), squeeze=False)
    for row in range(count):
        a, u = data[row]
        pred = model(a[None].to(device=device, dtype=dtype))[0].cpu().to(u.dtype)
        err = float(relative_l2(pred[None], u[None]))
        panels = [
            ("input", a[0]),
            ("truth", u[0]),
            ("prediction", pred[0]),
            ("error", pred[0] - u[0]),
        ]
        for col, (title, field) in enumerate(panels):
            ax = axes[row, col]
            values = field.numpy()
            if values.ndim == 1:
                ax.plot(np.linspace(0, 1, values.size), values)
                if title == "prediction":
                    ax.plot(np.linspace(0, 1, values.size), u[0].numpy(), "k--", lw=0.8)
            else:
                image = values if values.ndim == 2 else values[..., values.shape[-1] // 2]
                im = ax.imshow(
                    image.T, origin="lower", cmap="RdBu_r" if title == "error" else "viridis"
                )
                fig.colorbar(im, ax=ax, fraction=0.046)
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(
                f"sample {row}: {title}" + (f" (rel. L2 {err:.2e})" if title == "error" else "")
            )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
