"""The root of EarSight's typed errors, and one line of anyone else's.

Every error a user can cause (a missing file, a corrupt download, a bad argument, a missing
device) is an ``EarSightError`` whose message is one line saying what is wrong and what to do.
CLIs catch it, print that line and exit non-zero, with no traceback. The packages' own kinds
subclass it: trainer/errors.py (datasets, speech, checkpoints, metrics), engine/errors.py
(export, engine build, runtime), and the app's device and config errors.
"""

from __future__ import annotations

FIRST_LINE_CHARS = 160  # a foreign message longer than this is cut: one screen-reader line


class EarSightError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing message: ``what — fix``."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)


class UsageError(EarSightError):
    """Options that cannot work together or on this machine."""


def first_line(err: BaseException, typed: bool = False) -> str:
    """The first line (≤ FIRST_LINE_CHARS) of a foreign library's exception message, or its
    type's name when it has none; ``typed``: ``"Type: first line"``."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    line = lines[0][:FIRST_LINE_CHARS]
    return f"{type(err).__name__}: {line}" if typed else line
