"""Atomic file writes: a file is written under a temporary name beside its target and renamed
into place, so a reader never sees half a file and an interrupted write loses nothing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (same directory and suffix as ``path``); on success it replaces
    ``path`` atomically, on an exception it is removed and ``path`` is left untouched.

    Examples
    --------
    >>> import numpy as np
    >>> with atomic_path("x.npy") as tmp:  # doctest: +SKIP
    ...     np.save(tmp, np.zeros(3))
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
