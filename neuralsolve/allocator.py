"""Keep freed memory in the process instead of handing it back to the system (glibc only).

A training step on a large grid allocates and frees dozens of temporaries of a few megabytes
each. glibc's ``malloc`` serves blocks that large from ``mmap`` or from the top of its heap,
and when they are freed it returns the pages to the kernel (``munmap``, or a heap trim once
more than ``M_TRIM_THRESHOLD`` bytes are free at the top). The next step asks for the same
sizes again, and every page of them comes back through a page fault and is zeroed by the
kernel. For the 2-D GP-HM step on a 400 x 400 grid that is about a quarter of the step
(``docs/benchmarks/gp_hm.md``).

:func:`keep_freed_memory` raises the two thresholds with ``mallopt`` (the documented tunables
``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``, the same as the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``), so freed blocks are reused by the
next allocation. The cost: the process keeps up to ``trim_mb`` megabytes of freed memory that
other processes cannot use, and the thresholds no longer adapt on their own. It is a process
setting, so the package never calls it on import; ``neuralsolve train gp`` calls it, and a
library user can.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest M_MMAP_THRESHOLD on 64-bit systems


def keep_freed_memory(trim_mb: int = 1024) -> bool:
    """Let glibc keep freed blocks of up to 32 MB, and up to ``trim_mb`` MB of free heap.

    Parameters
    ----------
    trim_mb : int
        Free memory at the top of the heap beyond which glibc returns it to the system.

    Returns
    -------
    bool
        Whether the setting took effect: ``False`` where the C library is not glibc
        (macOS, Windows, musl), where nothing changes.
    """
    if isinstance(trim_mb, bool) or not isinstance(trim_mb, int) or trim_mb < 1:
        raise ValueError(f"trim_mb must be a positive integer (megabytes), got {trim_mb!r}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = min(trim_mb * 1024 * 1024, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim)
    )
