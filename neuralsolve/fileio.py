"""Atomic file writes: a file is written under a temporary name beside its target and renamed
into place, so a reader never sees half a file and an interrupted write loses nothing.

A temporary is named ``.<target name>.<host>-<pid>-<random>.tmp<suffix>``. A process killed in
the middle of a write leaves its temporary behind; the next write of the same target removes
it (the writer's process no longer exists on this host, or the file is older than
:data:`STALE_AGE_S`). A write that fails (read-only directory, full disk, a directory in the
way) raises :class:`~neuralsolve.errors.FileWriteError` naming the target, and leaves the
earlier file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FileWriteError

__all__ = [
    "STALE_AGE_S",
    "atomic_path",
    "check_writable",
    "h5_writer",
    "remove_stale_temporaries",
]

STALE_AGE_S = 24 * 3600.0
"""A temporary this old (seconds) is stale whoever wrote it (another host, an older layout)."""

_TAG = re.compile(r"^(?P<host>[A-Za-z0-9_]*)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a pid we cannot ask about): keep its file
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that killed writes of ``path`` left beside it.

    A temporary is stale when the process named in it no longer runs on this host, or when it
    is older than :data:`STALE_AGE_S` (written on another host, or by an older version whose
    names carry no process id). Temporaries of live writers are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(path)
    head, tail = f".{target.name}.", f".tmp{target.suffix}"
    host, now, removed = _host(), time.time(), []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(head) and name.endswith(tail)) or len(name) <= len(head + tail):
            continue
        tag = name[len(head) : -len(tail)]
        match = _TAG.match(tag)
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AGE_S
        except OSError:
            continue
        dead = match is not None and match["host"] == host and not _alive(int(match["pid"]))
        if (dead or old) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _write_error(target: Path, exc: OSError, doing: str) -> FileWriteError:
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EDQUOT: "free some space or write elsewhere",
        errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
        errno.EACCES: "choose a writable directory",
        errno.EPERM: "choose a writable directory",
        errno.EROFS: "the file system is read-only: choose another directory",
        errno.EISDIR: "give a file name, not a directory",
    }.get(exc.errno or -1, "check the path and the disk")
    return FileWriteError(
        exc.errno,
        f"could not write {str(target)!r} ({doing}: {reason}): {hint}; "
        "an earlier file at that path is unchanged",
        str(target),
    )


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before hours of work, when ``path`` cannot be written: it is a directory,
    or its nearest existing directory is not writable (or not a directory).

    Raises
    ------
    FileWriteError
        Naming ``path`` and the cause.
    """
    target = Path(path)
    if target.is_dir():
        raise _write_error(target, IsADirectoryError(errno.EISDIR, "is a directory"), "target")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _write_error(
            target, NotADirectoryError(errno.ENOTDIR, f"{str(parent)!r} is not a directory"), "path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _write_error(
            target, PermissionError(errno.EACCES, f"{str(parent)!r} is not writable"), "directory"
        )
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (same directory and suffix as ``path``); on success it replaces
    ``path`` atomically, on an exception it is removed and ``path`` is left untouched.

    Stale temporaries of earlier, killed writes of ``path`` are removed first
    (:func:`remove_stale_temporaries`).

    Raises
    ------
    FileWriteError
        ``path`` is a directory, its directory cannot be created or written, or the write
        failed with an ``OSError`` (a full disk): the message names ``path`` and the cause.

    Examples
    --------
    >>> import numpy as np
    >>> with atomic_path("x.npy") as tmp:  # doctest: +SKIP
    ...     np.save(tmp, np.zeros(3))
    """
    target = Path(path)
    if target.is_dir():
        raise _write_error(target, IsADirectoryError(errno.EISDIR, "is a directory"), "target")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.{_host()}-{os.getpid()}-",
            suffix=f".tmp{target.suffix}",
            dir=target.parent,
        )
        os.close(fd)
    except OSError as exc:
        raise _write_error(target, exc, "creating a temporary file beside it") from exc
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except FileWriteError:
            raise
        except OSError as exc:
            raise _write_error(target, exc, "writing") from exc
        try:
            # mkstemp creates the file private (0600); give it the mode a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(target, exc, "renaming the temporary file into place") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class _GuardedFile(io.RawIOBase):
    """A file whose first failing write is recorded instead of reaching the caller.

    The HDF5 library does not recover from a failed write: the file cannot be closed, and the
    process crashes at exit when HDF5 tries again (seen with a full disk). Behind this guard
    HDF5 always closes cleanly; the recorded error is raised afterwards.
    """

    def __init__(self, fh: Any) -> None:
        super().__init__()
        self._fh = fh
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, b: Any) -> int:
        return self._fh.readinto(b)

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        if self.error is None:
            try:
                written = self._fh.write(b)
                if written is not None and written < n:
                    raise OSError(errno.ENOSPC, "short write: no space left on device?")
                return n
            except OSError as exc:
                self.error = exc
        self._fh.seek(n, os.SEEK_CUR)
        return n

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = exc

    def check(self) -> None:
        """Raise the recorded write error, if any."""
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def h5_writer(tmp: str | os.PathLike[str]) -> Iterator[Any]:
    """An ``h5py.File`` open for writing at ``tmp`` (a path from :func:`atomic_path`) that
    survives write failures: the file closes cleanly and the ``OSError`` (``ENOSPC`` ...) is
    raised when the block ends, or earlier from ``check()`` on the yielded file's ``guard``.

    Examples
    --------
    >>> with atomic_path("x.h5") as tmp, h5_writer(tmp) as f:  # doctest: +SKIP
    ...     f.create_dataset("x", data=[1.0, 2.0])
    """
    import h5py

    with open(tmp, "w+b", buffering=0) as fh:
        guard = _GuardedFile(fh)
        f = h5py.File(guard, "w")
        f.guard = guard  # type: ignore[attr-defined]
        try:
            yield f
        finally:
            f.close()
        guard.check()
