"""Durable file writes for the teach store: on return, bytes are on the disk, not in a cache.

    write_new(folder / "0001.jpg", data)      # O_EXCL: never overwrites; fsynced
    replace_file(folder / "word.json", data)  # temp in the same folder, fsync, rename, fsync dir
    fsync_dir(folder)                         # a rename or new name survives a power cut

Errors (a full disk: OSError ENOSPC) propagate unchanged after removing what was half written;
callers turn them into one line. trainer/checkpoint.py does the same for torch payloads.
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_PREFIX = ".tmp-"  # hidden: readers of a folder skip names starting with "."


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync; a failure removes it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)  # ENOSPC can surface only here on some filesystems (delayed allocation)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so the names created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Atomically replace (or create) ``path``: readers see the old bytes or the new, whole."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    tmp.unlink(missing_ok=True)  # a leftover of this pid's earlier crash
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
