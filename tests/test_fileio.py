"""Atomic writes under faults: a killed writer's temporary is cleaned up by the next write, a
failed write raises FileWriteError naming the file and keeps the earlier one, and the HDF5
writers survive a full disk instead of crashing the process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from neuralsolve.errors import FileWriteError
from neuralsolve.fileio import STALE_AGE_S, atomic_path, h5_writer

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    killed = _run(
        f"""
        import os, numpy as np
        from neuralsolve.fileio import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            np.save(open(tmp, "wb"), np.zeros(1000))
            os._exit(9)  # killed in the middle of the write: no cleanup runs
        """,
        tmp_path,
    )
    assert killed.returncode == 9, killed.stderr
    left = _temporaries(tmp_path)
    assert len(left) == 1 and not target.exists()
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ones(3))
    assert _temporaries(tmp_path) == [], "the killed write's temporary was not removed"
    np.testing.assert_array_equal(np.load(target), np.ones(3))


def test_temporaries_of_live_writers_and_other_targets_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    other = tmp_path / f".y.npy.{'h'}-1-abc.tmp.npy"  # another target's temporary
    other.write_bytes(b"")
    with atomic_path(target) as outer:
        outer.write_bytes(b"outer")
        with atomic_path(target) as inner, open(inner, "wb") as fh:  # a second live writer
            np.save(fh, np.ones(2))
        assert outer.exists(), "the temporary of a writer still running was removed"
    assert target.read_bytes() == b"outer" and other.exists()


def test_old_temporaries_without_a_process_id_are_removed_after_a_day(tmp_path: Path) -> None:
    target = tmp_path / "x.h5"
    old = tmp_path / ".x.h5.k2j3h4g5.tmp.h5"  # the name an older version gave
    new = tmp_path / ".x.h5.q9w8e7r6.tmp.h5"
    for p in (old, new):
        p.write_bytes(b"partial")
    stamp = time.time() - STALE_AGE_S - 60
    os.utime(old, (stamp, stamp))
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert not old.exists() and new.exists()


def test_a_directory_in_the_way_is_a_named_write_error(tmp_path: Path) -> None:
    (tmp_path / "out.npy").mkdir()
    with pytest.raises(FileWriteError, match=r"out\.npy.*is a directory.*not a directory") as info:
        with atomic_path(tmp_path / "out.npy") as tmp:
            tmp.write_bytes(b"x")
    assert info.value.errno == errno.EISDIR
    assert (tmp_path / "out.npy").is_dir() and _temporaries(tmp_path) == []


def test_an_unwritable_directory_is_a_named_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root ignores directory permissions, so the refusal is simulated where it happens
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(FileWriteError, match=r"x\.npy.*Permission denied.*writable directory"):
        with atomic_path(tmp_path / "x.npy"):
            pass


def test_a_full_disk_keeps_the_earlier_file(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    np.save(target, np.ones(3))
    with pytest.raises(FileWriteError, match=r"x\.npy.*No space left.*free some space") as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"part")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize(
    "write",
    [
        "write_solution('x.h5', np.ones(20000))",
        "write_system('x.h5', sp.eye_array(20000, format='csr'))",
        "write_dataset('x.h5', np.ones((8, 64, 64)), np.ones((8, 64, 64)), pde='t')",
    ],
)
def test_hdf5_writers_survive_a_full_disk(tmp_path: Path, write: str) -> None:
    """The HDF5 library crashed the process (SIGSEGV at exit) after a failed write."""
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("needs RLIMIT_FSIZE")
    done = _run(
        f"""
        import resource, signal, sys
        import numpy as np, scipy.sparse as sp
        from neuralsolve.datasets import write_solution, write_system
        from neuralsolve.datasets.hdf5_writer import write_dataset
        from neuralsolve.errors import FileWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        try:
            {write}
        except FileWriteError as exc:
            print("refused:", exc)
            sys.exit(3)
        """,
        tmp_path,
    )
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    assert "could not write 'x.h5'" in done.stdout
    assert not (tmp_path / "x.h5").exists() and _temporaries(tmp_path) == []


def test_h5_writer_reports_the_recorded_error(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.h5") as tmp, h5_writer(tmp) as f:
        f.create_dataset("x", data=np.arange(3.0))
    import h5py

    with h5py.File(tmp_path / "a.h5") as f:
        np.testing.assert_array_equal(f["x"][()], np.arange(3.0))
