"""Checkpoints: written atomically, read with ``torch.load(..., weights_only=True)`` only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (nothing that needs code to
unpickle), tagged with ``format`` and the package version that wrote it. A file from someone
else therefore cannot run code when loaded; a file that is not a neuralsolve checkpoint, is
truncated, or whose bytes changed since it was written (every member of torch's zip archive is
checked against its stored CRC-32 before loading; torch's reader does not check them) raises
:class:`~neuralsolve.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .errors import DataFormatError, NeuralSolveWarning
from .fileio import atomic_path

__all__ = [
    "FORMAT",
    "VersionMismatchWarning",
    "load_checkpoint",
    "load_module_state",
    "save_checkpoint",
]

FORMAT = "neuralsolve-checkpoint"
LAYOUT_VERSION = 1


class VersionMismatchWarning(NeuralSolveWarning):
    """A checkpoint written by another neuralsolve version was loaded."""


def load_module_state(
    module: torch.nn.Module, state: Any, *, path: str | Path, what: str = "model"
) -> None:
    """``module.load_state_dict(state)``, with a mismatch reported as the file's problem.

    torch raises a ``RuntimeError`` (a long list of missing keys and size mismatches) when the
    weights do not fit the module: a checkpoint whose config was edited, a run resumed with
    another model. This names the file and says what to do.

    Raises
    ------
    DataFormatError
        ``state`` is not a dict of tensors, or does not fit ``module`` (the first differences
        are listed).
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataFormatError(f"{str(path)!r}: the {what} weights are not a dict of tensors")
    mine = module.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(mine[k].shape)}"
        for k in sorted(set(mine) & set(state))
        if state[k].shape != mine[k].shape
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape (file vs model)", mismatched),
    ):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise DataFormatError(
            f"the {what} weights in {str(path)!r} do not fit the {what} built from its "
            f"settings ({'; '.join(problems)}): the checkpoint belongs to another model or "
            "configuration, or was edited"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise DataFormatError(
            f"the {what} weights in {str(path)!r} could not be loaded: {str(exc).splitlines()[0]}"
        ) from None


def save_checkpoint(path: str | Path, payload: dict[str, Any], *, kind: str) -> Path:
    """Write ``payload`` (plus ``format``, ``kind``, ``version``) to ``path`` atomically.

    ``kind`` says what the checkpoint holds (``"trainer"``, ``"model"``, ...); loaders check it.
    """
    record = {
        "format": FORMAT,
        "layout": LAYOUT_VERSION,
        "kind": kind,
        "neuralsolve_version": __version__,
        **payload,
    }
    path = Path(path)
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(True)  # load_checkpoint checks them: always write them
    try:
        with atomic_path(path) as tmp:
            torch.save(record, tmp)
    finally:
        torch.serialization.set_crc32_options(crc)
    return path


def load_checkpoint(
    path: str | Path, *, kind: str | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check that it is one of ours.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        Truncated or not a torch file, corrupt (a member's bytes do not match its CRC-32),
        needs code to unpickle (refused), is not a neuralsolve checkpoint, or holds another
        ``kind``.

    Warns
    -----
    VersionMismatchWarning
        When another neuralsolve version wrote it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive since torch 1.6
        raise DataFormatError(
            f"{str(path)!r} is not a readable torch checkpoint (expected the zip archive torch.save "
            "writes; the file is truncated, corrupt or of another format)"
        )
    _verify_checksums(path)
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataFormatError(
            f"{str(path)!r} holds objects that need code to load; it was refused because checkpoints are "
            f"read with weights_only=True ({str(exc).splitlines()[0]})"
        ) from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        zipfile.BadZipFile,
        io.UnsupportedOperation,
        ValueError,
    ) as exc:
        raise DataFormatError(
            f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): {exc}"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataFormatError(
            f"{str(path)!r} is not a neuralsolve checkpoint: missing key 'format' = {FORMAT!r}"
        )
    if kind is not None and record.get("kind") != kind:
        raise DataFormatError(
            f"{str(path)!r} is a {record.get('kind')!r} checkpoint, expected {kind!r}"
        )
    written = record.get("neuralsolve_version")
    if written != __version__:
        warnings.warn(
            f"{str(path)!r} was written by neuralsolve {written}; this is {__version__}",
            VersionMismatchWarning,
            stacklevel=2,
        )
    return record


def _verify_checksums(path: Path) -> None:
    """Check every member of the zip archive against its stored CRC-32 (``torch.save`` writes
    them; ``torch.load`` does not check them, so flipped bytes in a tensor load silently)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise DataFormatError(
            f"{str(path)!r} is not a readable torch checkpoint (corrupt zip archive: {exc})"
        ) from None
    if bad is not None:
        bad = bad.split("/", 1)[-1]  # torch roots the archive at the (temporary) file's stem
        raise DataFormatError(
            f"{str(path)!r} is corrupt: the bytes of its member {bad!r} do not match the checksum "
            "(CRC-32) stored when it was written (a disk, copy or transfer error). Use another "
            "copy or an earlier checkpoint (last.pt / best.pt)"
        )
