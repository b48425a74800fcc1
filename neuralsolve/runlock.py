"""One run per directory: an exclusive lock on a run's output directory.

Two training runs writing into one directory interleave their ``metrics.jsonl`` lines,
overwrite each other's checkpoints and report each other's results, all with exit code 0.
:func:`run_lock` makes the second one fail at once with a message naming the first.

The lock is ``<directory>/run.lock``, locked with the operating system's advisory file lock
(``flock``; ``msvcrt.locking`` on Windows) and holding the owner's pid, host, start time and
command as JSON. The operating system releases the lock when its process ends, however it
ends, so a run that was killed leaves no lock that blocks the next one: the next run takes it
over, and says so (:class:`StaleLockWarning`), because the dead run may have left partial
files. A run that ends normally empties the file. The file itself is never deleted (deleting a
locked file would let two processes lock two different files of the same name).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from .errors import NeuralSolveWarning, RunLockedError

__all__ = ["LOCK_NAME", "StaleLockWarning", "rank_zero_lock", "run_lock"]

LOCK_NAME = "run.lock"

# directory -> [file descriptor, depth]: the lock is reentrant within a process (the CLI holds
# it around a whole command, the Trainer again around its fit)
_HELD: dict[Path, list[int]] = {}


class StaleLockWarning(NeuralSolveWarning):
    """A run directory's lock was taken over from a process that ended without releasing it."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - the CI runs on Linux
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read_owner(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    if not raw.strip():
        return {}
    try:
        owner = json.loads(raw)
    except ValueError:
        return {"pid": "unknown (unreadable lock file)"}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "another process (it has not written its pid yet)"
    text = f"process {owner.get('pid')} on host {owner.get('host', '?')}"
    if owner.get("started"):
        text += f", started {owner['started']}"
    if owner.get("command"):
        text += f" ({owner['command']})"
    return text


@contextmanager
def run_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the lock of run directory ``directory`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    directory : str or Path
        The run's output directory.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    RunLockedError
        Another live process holds the lock: the message names it and says what to do.

    Warns
    -----
    StaleLockWarning
        The lock file names a process that ended without releasing it (killed, crashed): its
        lock is taken over.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, run_lock(d) as lock:
    ...     lock.name
    'run.lock'
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    lock = path / LOCK_NAME
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield lock
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            owner = _read_owner(fd)
            raise RunLockedError(
                f"run directory {str(path)!r} is in use by {_describe(owner)}: two runs in one "
                "directory would mix their metrics and checkpoints. Wait for that run to end, "
                f"or give this one another output directory (--out / out_dir). The lock, "
                f"{str(lock)!r}, is released when that process ends."
            )
        previous = _read_owner(fd)
        if previous:
            warnings.warn(
                f"taking over the lock {str(lock)!r} from {_describe(previous)}, which ended "
                "without releasing it (killed or crashed): files it was writing may be partial; "
                "--resume continues from its last checkpoint",
                StaleLockWarning,
                stacklevel=3,
            )
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(owner) + "\n").encode())
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _HELD[key]
        try:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly
            _unlock(fd)
        finally:
            os.close(fd)


def rank_zero_lock(directory: str | Path) -> AbstractContextManager[Any]:
    """:func:`run_lock` in the process that writes a run's files: rank 0 of a ``torchrun``
    launch (``RANK``), or a plain process; a no-op in the other ranks, which write nothing."""
    if int(os.environ.get("RANK", "0")) == 0:
        return run_lock(directory)
    return nullcontext()
