"""One run record and one report writer for every benchmark and training record.

:func:`run_record` describes where and how a run happened (versions, CPU, threads, device,
command line, time), the same keys everywhere, with no call to git. :func:`write_report` writes
a report as strict JSON, atomically (CONVENTIONS 9).

The benchmark (``neuralsolve bench``), the operator comparison and DCDM training records build
their reports as ``{"meta": {**run_record(...), ...}, "results": [...]}`` and write them with
``write_report(path, report)``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .fileio import atomic_path

__all__ = ["cpu_name", "device_name", "run_record", "to_json", "write_report"]


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name``; else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    """``"cpu"``, or a CUDA device with its model: ``"cuda:0 (NVIDIA H200)"``."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def run_record(
    *, device: torch.device | str = "cpu", command: Sequence[str] | str | None = None
) -> dict[str, Any]:
    """Where and how this run happens, for a report's ``"meta"``.

    Parameters
    ----------
    device : torch.device or str
        The device the run computes on (recorded with its model for CUDA).
    command : sequence of str or str, optional
        The command line to record; default ``sys.argv``.

    Returns
    -------
    dict
        ``neuralsolve``, ``python``, ``torch``, ``numpy``, ``scipy``, ``pyamg`` (versions;
        ``None`` for a package that is not installed), ``platform``, ``machine``, ``cpu``,
        ``cores``, ``threads`` (torch's intra-op threads now: call it after setting them),
        ``device``, ``date`` (UTC, ISO 8601, seconds) and ``command``.
    """
    if command is None:
        command = sys.argv
    return {
        "neuralsolve": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "pyamg": _version("pyamg"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device_name(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if isinstance(command, str) else " ".join(command),
    }


def to_json(obj: Any) -> Any:
    """``obj`` with only JSON types: NaN and infinities become ``None`` (metrics of a failed
    run may be NaN; strict JSON has no NaN), numpy and torch scalars and arrays become numbers
    and lists, tuples lists, paths and other objects their ``str``."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic | torch.Tensor):
        return to_json(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json(dataclasses.asdict(obj))
    return str(obj)


def write_report(path: str | Path, report: Mapping[str, Any], *, indent: int = 1) -> Path:
    """Write ``report`` as strict JSON (see :func:`to_json`) to ``path``, atomically.

    Parameters
    ----------
    path : str or Path
        The file to write; it appears complete or not at all.
    report : mapping
        Usually ``{"meta": {**run_record(), ...}, "results": [...]}``.
    indent : int
        JSON indentation.

    Returns
    -------
    Path
    """
    path = Path(path)
    text = json.dumps(to_json(report), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path
