"""What a model path points at: an ONNX export (with its sidecar) and/or a torch checkpoint.

Every backend starts from a ``ModelSource``: ONNX backends need ``onnx``, the torch backend needs
``checkpoint`` (given directly, or the one the sidecar records, or a file of that name beside the
ONNX). Problems with the files themselves are ``ModelFileError``s, raised before any backend is
tried, so a corrupt model never silently falls through to another backend.

Importing this module does not import torch (ONNX-only deployments never load it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelFileError
from engine.sidecar import ModelContract, read_sidecar, sha256_file
from trainer.errors import CheckpointError

log = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class ModelSource:
    path: Path  # what the caller passed
    onnx: Path | None  # the ONNX file, if the model is an export
    checkpoint: Path | None  # a torch checkpoint for the same weights, if one can be found
    contract: ModelContract
    sidecar: dict[str, Any] | None  # None for a bare checkpoint

    def checkpoint_matches_export(self) -> bool:
        """True unless the sidecar records a checkpoint hash and the file's hash differs."""
        if self.sidecar is None or self.checkpoint is None:
            return True
        recorded = self.sidecar.get("checkpoint", {}).get("sha256")
        return recorded is None or recorded == sha256_file(self.checkpoint)


def resolve_model(path: Path | str, verify_sha256: bool = True) -> ModelSource:
    """Classify and validate ``path``; every problem is a one-line ModelFileError."""
    path = Path(path).expanduser()
    hint = "pass a .onnx written by `earsight export` (with its .onnx.json) or a .pt checkpoint"
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}", hint)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        side = read_sidecar(path, verify_sha256=verify_sha256)
        contract = ModelContract.from_sidecar(side)
        return ModelSource(path, path, _sidecar_checkpoint(path, side), contract, side)
    if suffix in CHECKPOINT_SUFFIXES:
        from trainer.checkpoint import read_checkpoint  # torch: only for checkpoints
        from trainer.model import MTNetConfig

        try:
            cfg = MTNetConfig.from_dict(read_checkpoint(path)["config"])
        except CheckpointError as err:
            raise ModelFileError(err.what, err.fix) from err
        return ModelSource(path, None, path, ModelContract.from_config(cfg), None)
    raise ModelFileError(f"{path.name}: unknown model type {suffix or '(no suffix)'}", hint)


def _sidecar_checkpoint(onnx: Path, side: dict[str, Any]) -> Path | None:
    """The exported checkpoint: where it was at export time, else a file of its name beside."""
    recorded = side.get("checkpoint") or {}
    candidates = []
    if recorded.get("path"):
        candidates.append(Path(recorded["path"]))
    if recorded.get("name"):
        candidates.append(onnx.parent / recorded["name"])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
