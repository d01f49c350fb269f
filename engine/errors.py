"""Typed errors of the engine: export, engine build, runtime backends and their inputs.

Each is an ``EarSightError``: ``str(err)`` is one line saying what is wrong and what to do, which
the CLI prints as ``error: …`` without a traceback.
"""

from __future__ import annotations

from earsight.errors import EarSightError


class EngineError(EarSightError):
    """Base class of every engine error."""


class ExportError(EngineError):
    """The ONNX export failed, the checker rejected the graph, or parity with torch is too poor."""


class ModelFileError(EngineError):
    """A model file (.onnx, its sidecar, a .pt checkpoint, an engine plan) is missing or bad."""


class ModelFileDamaged(ModelFileError):
    """An ONNX file whose sha256 is not its sidecar's: replaced or damaged after export."""


class InputError(EngineError):
    """Images handed to the runtime have the wrong dtype or shape."""


class BackendUnavailable(EngineError):
    """A backend cannot run here (not installed, no GPU, no cached engine): auto falls back."""


class BackendFailed(BackendUnavailable):
    """A backend is installed but failed to start (auto falls back, logged as a warning)."""


class EngineBuildError(EngineError):
    """TensorRT could not parse the ONNX or build an engine from it."""


class OutOfMemory(EngineError):
    """The accelerator ran out of memory for this batch."""
