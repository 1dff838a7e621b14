"""Atomic file writes and inter-process locks: the helpers every module that writes a file uses.

A file is written to a temporary name beside its target and renamed onto it only when the write
succeeded, so a failed or interrupted run never leaves half a file nor replaces a good one, and a
reader in another process sees either the old file or the new one, never a partial one.

Writers of one entry that several processes may want at once (a decoded split, synthetic files, a
download, a training run) serialise on a lock file (:func:`file_lock`): the first writes, the
others wait and then find the entry made. A writer killed mid-write leaves at most a temporary
file, which the next holder of the lock removes (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes files private; results are meant to be read
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically and return the path."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str = "", wait_message: bool = True) -> Iterator[Path]:
    """Hold an inter-process lock on ``path`` (a lock file) for the block.

    Writers of one entry that other processes may read (a cache entry, a download, a run of the run
    store) take the entry's lock, look again whether another process finished the entry while they
    waited, and only then write. The lock is an OS file lock (``filelock``), so the kernel releases
    it when its holder dies: a killed writer never leaves a lock that blocks the next process.

    Args:
        path: The lock file (created, with its folder, when missing; never removed: removing a lock
            file another process is about to open would let two processes hold "the" lock).
        what: What is being written, for the one line printed when this process has to wait.
        wait_message: Print that line (to stderr) when the lock is held by another process.

    Yields:
        ``path``.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait_message:
            print(f"[reslab] waiting for another process that is writing {what or path.name} "
                  f"(lock {path})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield path
    finally:
        lock.release()


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left beside ``path`` when a writer was killed.

    Call it only while holding the lock of ``path`` (:func:`file_lock`): then no live writer of
    ``path`` can own one of them.

    Returns:
        The files removed.
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
