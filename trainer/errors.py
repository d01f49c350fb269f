"""Typed errors raised at the project's boundaries.

Every error a user can cause (a missing file, a corrupt download, a bad argument) is an
``EarSightError`` whose message is one line saying what is wrong and what to do. CLIs catch it,
print that line and exit non-zero, with no traceback.
"""

from __future__ import annotations


class EarSightError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing message."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)


class DatasetError(EarSightError):
    """An image dataset is missing, corrupt or in an unexpected format."""


class SpeechError(EarSightError):
    """espeak-ng is missing or could not synthesize a word."""


class CheckpointError(EarSightError):
    """A checkpoint file is missing, corrupt or from an incompatible version."""


class MetricError(EarSightError):
    """An evaluation metric could not be computed (missing package, unusable audio)."""


class UsageError(EarSightError):
    """Options that cannot work together or on this machine."""
