"""One process at a time: a lock file (filelock) held around a change, with a deadline.

    with exclusive(root / ".lock", 30.0, StoreError("another teach is changing …", "wait")):
        ...   # nobody else holds root/.lock here

Used by the teach store (two ``earsight teach`` at once take turns) and the backbone feature
cache (two trainings filling the same cache). The lock is advisory and works across processes
on one machine; a process that dies releases it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from earsight.errors import EarSightError


@contextlib.contextmanager
def exclusive(lock_file: Path, timeout_s: float, busy: EarSightError) -> Iterator[None]:
    """Hold ``lock_file`` for the ``with`` block; raise ``busy`` (a one-line error saying who
    holds it and what to do) when another process has held it for ``timeout_s`` seconds."""
    import filelock  # light, but only the commands that change shared folders need it

    try:
        with filelock.FileLock(str(lock_file), timeout=timeout_s):
            yield
    except filelock.Timeout as err:
        raise busy from err
