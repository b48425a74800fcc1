"""keep_freed_memory: takes effect on glibc, refuses bad input, and changes no result."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from neuralsolve.allocator import keep_freed_memory


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "64"])
def test_bad_trim_is_refused(bad):
    with pytest.raises(ValueError, match="trim_mb"):
        keep_freed_memory(bad)


def test_takes_effect_on_glibc_in_a_fresh_process():
    # a process setting: run it in a child, not in the test process
    code = (
        "from neuralsolve.allocator import keep_freed_memory\n"
        "import torch\n"
        "print(keep_freed_memory(64))\n"
        "x = torch.ones(4_000_000, dtype=torch.float64)\n"  # 32 MB, still allocates fine
        "print(float(x.sum()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out == [str(glibc), "4000000.0"]
