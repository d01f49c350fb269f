"""The trainer's typed errors: datasets, speech, checkpoints, metrics. Each is an
``EarSightError`` (earsight/errors.py): one line saying what is wrong and what to do."""

from __future__ import annotations

from earsight.errors import EarSightError


class DatasetError(EarSightError):
    """An image dataset is missing, corrupt or in an unexpected format."""


class SpeechError(EarSightError):
    """espeak-ng is missing or could not synthesize a word."""


class CheckpointError(EarSightError):
    """A checkpoint file is missing, corrupt or from an incompatible version."""


class MetricError(EarSightError):
    """An evaluation metric could not be computed (missing package, unusable audio)."""
