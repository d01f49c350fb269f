"""What a model path points at: an ONNX export (with its sidecar) and/or a torch checkpoint.

    source = read_model("cifar10-ad.onnx")   # one pass: sidecar, checksum, checkpoint, int8 variant
    source.onnx, source.checkpoint, source.contract.labels, source.int8

Every backend starts from the ``ModelSource`` that ``read_model`` builds in one pass over the
files: ONNX backends need ``onnx``, the torch backend needs ``checkpoint`` (given directly, or the
one the sidecar records, or a file of that name beside the ONNX), and ONNX Runtime CPU runs
``int8``, the int8 export of the same weights beside an ONNX (``name.int8.onnx``), when there is
a usable one. Problems with the files themselves are ``ModelFileError``s, raised before any
backend is tried, so a corrupt model never silently falls through to another backend.

Importing this module does not import torch (ONNX-only deployments never load it).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earsight.engine.errors import ModelFileDamaged, ModelFileError
from earsight.engine.sidecar import ModelContract, read_sidecar, sha256_file
from earsight.trainer.errors import CheckpointError

log = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pt", ".pth")
INT8_SUFFIX = ".int8.onnx"  # cifar10-ad.onnx → cifar10-ad.int8.onnx: its CPU variant


@dataclass(frozen=True)
class ModelSource:
    path: Path  # what the caller passed
    onnx: Path | None  # the ONNX file, if the model is an export
    checkpoint: Path | None  # a torch checkpoint for the same weights, if one can be found
    contract: ModelContract
    sidecar: dict[str, Any] | None  # None for a bare checkpoint
    int8: ModelSource | None = None  # the same weights' int8 export beside it (ONNX Runtime CPU)

    def checkpoint_matches_export(self) -> bool:
        """True unless the sidecar records a checkpoint hash and the file's hash differs."""
        if self.sidecar is None or self.checkpoint is None:
            return True
        recorded = self.sidecar.get("checkpoint", {}).get("sha256")
        return recorded is None or recorded == sha256_file(self.checkpoint)


def read_model(path: Path | str, verify_sha256: bool = True, int8: bool = True) -> ModelSource:
    """Classify and validate ``path`` and what belongs to it, each file read once.

    An ONNX export's sidecar is read and checked against the schema and (``verify_sha256``) its
    file's sha256; its checkpoint is located; with ``int8``, a ``name.int8.onnx`` beside it is
    read the same way and kept as ``source.int8`` when it holds the same weights (else ignored
    with a warning: see ``_int8_beside``). Every problem with ``path`` itself is a one-line
    ModelFileError.
    """
    path = Path(path).expanduser()
    try:
        source = _read_one(path, verify_sha256)
    except ModelFileDamaged as err:
        intact = _int8_instead_of_damaged(path, verify_sha256) if int8 else None
        if intact is None:
            raise
        log.warning("%s; running its int8 variant %s instead", err, intact.onnx.name)
        return intact
    if int8 and source.onnx is not None and source.contract.precision != "int8":
        return dataclasses.replace(source, int8=_int8_beside(source, verify_sha256))
    return source


def _read_one(path: Path, verify_sha256: bool) -> ModelSource:
    hint = "pass a .onnx written by `earsight export` (with its .onnx.json) or a .pt checkpoint"
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}", hint)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        side = read_sidecar(path, verify_sha256=verify_sha256)
        contract = ModelContract.from_sidecar(side)
        return ModelSource(path, path, _sidecar_checkpoint(path, side), contract, side)
    if suffix in CHECKPOINT_SUFFIXES:
        from earsight.trainer.checkpoint import read_checkpoint  # torch: only for checkpoints
        from earsight.trainer.mtnet.config import MTNetConfig

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
        candidates.append(onnx.parent / recorded["path"])  # an absolute path stays absolute
    if recorded.get("name"):
        candidates.append(onnx.parent / recorded["name"])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def int8_variant_path(onnx: Path) -> Path:
    """``cifar10-ad.onnx`` → ``cifar10-ad.int8.onnx`` (where its CPU variant would be)."""
    return onnx.with_name(onnx.stem + INT8_SUFFIX)


def _int8_beside(source: ModelSource, verify_sha256: bool) -> ModelSource | None:
    """The int8 export of the same weights beside ``source``'s ONNX, or None.

    "Same weights" means both sidecars record the same weights (or checkpoint) sha256 and the
    same config (mirror averaging included): a stale, foreign or corrupt ``.int8.onnx`` is
    ignored with a warning, never run in the model's place.
    """
    path = int8_variant_path(source.onnx)
    if not path.is_file() or source.sidecar is None:
        return None
    try:
        variant = _read_one(path, verify_sha256)
    except ModelFileError as err:
        log.warning("ignoring the int8 variant %s: %s", path.name, err)
        return None
    mine, theirs = source.sidecar, variant.sidecar or {}
    if not _same_export(mine, theirs):
        log.warning(
            "ignoring %s: not an export of the same weights as %s (re-export it with "
            "`earsight export --int8`)",
            path.name,
            source.onnx.name,
        )
        return None
    return variant


def _int8_instead_of_damaged(path: Path, verify_sha256: bool) -> ModelSource | None:
    """The intact int8 variant of the same weights beside a damaged ``path``, or None: a model
    whose fp16 file broke still runs (on every backend, as int8) instead of not at all."""
    variant_path = int8_variant_path(path)
    if not variant_path.is_file():
        return None
    try:
        variant = _read_one(variant_path, verify_sha256)
        damaged_side = read_sidecar(path, verify_sha256=False)  # its record of the weights
    except ModelFileError:
        return None
    return variant if _same_export(damaged_side, variant.sidecar or {}) else None


def _same_export(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two sidecars record exports of the same weights with the same config."""
    same = _same_weights(a.get("checkpoint", {}), b.get("checkpoint", {}))
    return same and _same_config(a.get("config") or {}, b.get("config") or {})


def _same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Both sidecars' ``checkpoint`` records: the same weights (``weights_sha256``, since
    2026-12-01: a run's best.pt and its slim copy agree), else the same checkpoint file."""
    if a.get("weights_sha256") and b.get("weights_sha256"):
        return a["weights_sha256"] == b["weights_sha256"]
    return a.get("sha256") is not None and a.get("sha256") == b.get("sha256")


def _same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal configs, where a field only one sidecar has must be off (False, 0, None) there.

    A field one sidecar lacks was added to MTNetConfig after that export, and fields added since
    default to off (``flip_tta``): an older fp16 export and a new int8 one of the same weights
    still pair up, an averaging one and a non-averaging one do not.
    """
    return all(
        a[key] == b[key] if key in a and key in b else not (a.get(key) or b.get(key))
        for key in a.keys() | b.keys()
    )
