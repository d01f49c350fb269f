"""The JSON sidecar that travels with every exported model: ``model.onnx`` → ``model.onnx.json``.

The sidecar is the contract between export and runtime (and the app): what the graph eats and
emits, the spoken vocabulary, the sample rate, the exact ONNX file it describes (sha256), the
checkpoint it came from and how close it is to torch. Schema (``format`` 1)::

    format          1
    model_file      "model.onnx" (name only; the sidecar lives beside it)
    sha256          sha256 of the ONNX file's bytes
    precision       "fp32" | "fp16" | "int8" (fp16 = weights and compute; int8 = the encoder's
                    convolutions, engine/quantize.py; boundaries are unchanged in all three)
    opset           ONNX opset of the default domain
    exporter        e.g. "torch.onnx dynamo (torch 2.13.0)"
    input           {"name": "images", "dtype": "uint8", "layout": "NHWC",
                     "shape": ["batch", H, W, C]}
    outputs         {"waveform": {"dtype": "float32", "shape": ["batch", L_s]},
                     "probs": {"dtype": "float32", "shape": ["batch", K]}}
    input_size      [H, W, C]
    input_crop      share of a picture's shorter side kept (centred) before resizing it to
                    input_size on the host (trainer/data/preprocess.fit_to_input); absent = 1.0
    preprocessing   what the graph does to the pixels (Eq. 1, or a backbone's scaling)
    sample_rate     Hz of "waveform"
    audio_length    L_s, samples
    vocabulary      the spoken word of each class, index = position in "probs"
    preset          MT-Net preset ("paper" | "compact")
    config          MTNetConfig.to_dict()
    checkpoint      {"path": at export time, relative to the sidecar's folder when both are in
                    one tree below the root (else, and in older sidecars, absolute),
                    "name": file name, "sha256": …}
    parity          {"images": N, "waveform_max_abs": …, "probs_max_abs": …, "tolerance": …};
                    int8: {"images", "top1_agreement", "waveform_corr_mean", "waveform_corr_min",
                    "waveform_max_abs", "probs_max_abs", "limits"} on real test images
    max_batch       largest batch the export was declared for

Each field's type and range, as a JSON Schema read_sidecar checks: engine/sidecar_schema.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earsight.engine.errors import ModelFileDamaged, ModelFileError
from earsight.engine.sidecar_schema import (
    BATCH_AXIS,
    INPUT_NAME,
    SIDECAR_FORMAT,
    validate_sidecar,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # no torch import at runtime: the ONNX path runs without torch loaded
    from earsight.trainer.mtnet.config import MTNetConfig

DEFAULT_OPSET = 18  # lowest opset the dynamo exporter implements
DEFAULT_MAX_BATCH = 1024  # upper bound of the symbolic batch axis declared to torch.export
PREPROCESSING = (
    "Eq. 1 per-image standardization inside the graph: (I - mean) / max(std, 1/sqrt(P)) over "
    "all P = H*W*C pixels; feed raw 0..255 pixels, no scaling or mean subtraction outside"
)
BACKBONE_PREPROCESSING = (
    "(I - 127) / 128 inside the graph (the ImageNet backbone's input); feed raw 0..255 RGB "
    "pixels, centre-cropped to input_crop of the shorter side and resized to input_size"
)
_HASH_CHUNK = 1 << 20  # bytes read per step while hashing
ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def disable_onnxruntime_telemetry() -> None:
    """Keep ONNX Runtime offline: EarSight promises never to touch the network.

    The onnxruntime wheel (1.32) starts a Microsoft 1DS telemetry uploader with every process:
    strace shows DNS queries for mobile.events.data.microsoft.com ~9 s after a session opens,
    and a device id and an event database written under ~/.cache/Microsoft/DeveloperTools.
    ``onnxruntime.disable_telemetry_events()`` does not stop it; the environment variable
    ORT_DISABLE_TELEMETRY=1 does (no socket, no files), but only when set before onnxruntime is
    imported. Every ONNX path of the engine imports this module first, so this runs at its
    import; child processes (bench workers) inherit it. A value of 0 set by the user is
    overridden: the promise is not a preference.
    """
    already = os.environ.get(ORT_TELEMETRY_ENV) == "1"  # engine/__init__ sets it first
    os.environ[ORT_TELEMETRY_ENV] = "1"
    if "onnxruntime" in sys.modules and not already:  # too late for this process: say so
        log.warning(
            "onnxruntime was imported before %s was set: its telemetry may run", ORT_TELEMETRY_ENV
        )


disable_onnxruntime_telemetry()

MAX_SIDECAR_BYTES = 16 << 20  # a sidecar is a few kB; its vocabulary at most ~100k words


def sidecar_path(model: Path) -> Path:
    """``model.onnx`` → ``model.onnx.json`` (piper's convention: the name says which model)."""
    return model.with_name(model.name + ".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelContract:
    """What a model eats and emits, from a checkpoint's config or an ONNX sidecar."""

    input_shape: tuple[int, int, int]  # (H, W, C) of one uint8 image
    sample_rate: int  # Hz of the raw waveform
    audio_length: int  # L_s, samples
    labels: tuple[str, ...]  # spoken word per class (may be empty for unlabeled models)
    n_classes: int  # K, width of probs
    precision: str  # "fp32" | "fp16"
    input_crop: float = 1.0  # share of the shorter side kept before resizing (fit_to_input)
    withdrawn: tuple[int, ...] = ()  # classes no longer answered: probability 0 (the runtime)

    @classmethod
    def from_config(cls, cfg: MTNetConfig, precision: str = "fp32") -> ModelContract:
        shape = (cfg.image_size, cfg.image_size, cfg.image_channels)
        labels = tuple(cfg.labels)
        return cls(
            shape,
            cfg.sample_rate,
            cfg.audio_length,
            labels,
            cfg.n_classes,
            precision,
            cfg.input_crop,
        )

    @classmethod
    def from_sidecar(cls, side: dict[str, Any]) -> ModelContract:
        h, w, c = side["input_size"]
        return cls(
            (int(h), int(w), int(c)),
            int(side["sample_rate"]),
            int(side["audio_length"]),
            tuple(side["vocabulary"]),
            int(side["outputs"]["probs"]["shape"][1]),
            str(side["precision"]),
            float(side.get("input_crop", 1.0)),
            tuple(side["vocabulary"].index(w) for w in side.get("withdrawn", ())),
        )


def build_sidecar(
    cfg: MTNetConfig, onnx_path: Path, checkpoint: Path, weights: str = "", **fields: Any
) -> dict[str, Any]:
    """The sidecar dict for an ONNX file just written (``fields``: precision, opset, parity…);
    ``weights``: trainer.checkpoint.weights_sha256 of the model exported."""
    h, w, c = cfg.image_size, cfg.image_size, cfg.image_channels
    return {
        "format": SIDECAR_FORMAT,
        "model_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": [BATCH_AXIS, h, w, c],
        },
        "outputs": {
            "waveform": {"dtype": "float32", "shape": [BATCH_AXIS, cfg.audio_length]},
            "probs": {"dtype": "float32", "shape": [BATCH_AXIS, cfg.n_classes]},
        },
        "input_size": [h, w, c],
        "input_crop": cfg.input_crop,
        "preprocessing": BACKBONE_PREPROCESSING if cfg.backbone else PREPROCESSING,
        "sample_rate": cfg.sample_rate,
        "audio_length": cfg.audio_length,
        "vocabulary": list(cfg.labels),
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "checkpoint": {
            "path": _checkpoint_path(checkpoint, onnx_path),
            "name": checkpoint.name,
            "sha256": sha256_file(checkpoint),
            **({"weights_sha256": weights} if weights else {}),
        },
        **fields,
    }


def _checkpoint_path(checkpoint: Path, onnx_path: Path) -> str:
    """Relative to the sidecar's folder when both are in one tree below the root: that holds in
    a clone or a copied tree and does not publish the exporting machine's layout; else absolute.
    """
    ckpt, folder = checkpoint.resolve(), onnx_path.resolve().parent
    if Path(os.path.commonpath([ckpt, folder])) == Path(ckpt.anchor):
        return str(ckpt)  # only the root in common (/work/… vs /tmp/…): ../../.. says nothing
    return os.path.relpath(ckpt, folder)


def write_sidecar(onnx_path: Path, sidecar: dict[str, Any]) -> Path:
    path = sidecar_path(onnx_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # never a torn sidecar beside a good model
    return path


def restore_fix(onnx_path: Path) -> str:
    """What to do about a bad model file: a shipped one (inside the installed ``earsight.assets``)
    is restored by reinstalling; an export of the user's is exported again."""
    from importlib import resources

    shipped = Path(str(resources.files("earsight.assets"))).resolve()
    if shipped in Path(onnx_path).resolve().parents:
        return "it is a shipped file: reinstall EarSight (./install.sh) to restore it"
    return "re-export it with `earsight export CHECKPOINT -o MODEL.onnx`"


def read_sidecar(onnx_path: Path, verify_sha256: bool = True) -> dict[str, Any]:
    """The sidecar of ``onnx_path``, validated (validate_sidecar); a missing, unreadable,
    out-of-range, inconsistent or mismatched one is a one-line ModelFileError."""
    path = sidecar_path(onnx_path)
    reexport = restore_fix(onnx_path)
    if not path.is_file():
        raise ModelFileError(f"no sidecar {path.name} beside {onnx_path}", reexport)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes (more than {MAX_SIDECAR_BYTES})")
        side = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(side, dict) and side.get("format") not in (None, SIDECAR_FORMAT):
            raise ModelFileError(f"{path} has sidecar format {side.get('format')!r}", reexport)
        validate_sidecar(side)  # every field typed and in range, shapes agree
    except (OSError, ValueError, RecursionError) as err:
        what = f"{path.name} is not a valid model sidecar ({err})"
        raise ModelFileError(what[:300], reexport) from err
    if verify_sha256 and side.get("sha256") != sha256_file(onnx_path):
        raise ModelFileDamaged(
            f"{onnx_path} does not match its sidecar {path.name} (sha256 differs: the file was "
            "replaced or damaged)",
            reexport,
        )
    return side


def first_taught(sidecar: dict[str, Any]) -> int:
    """The class index of a taught model's first taught word: the taught words follow the
    shipped ones, and ``config.taught_words`` counts them (absent: 0, a shipped model)."""
    taught = int((sidecar.get("config") or {}).get("taught_words", 0) or 0)
    return len(sidecar["vocabulary"]) - taught


def taught_words(sidecar: dict[str, Any] | None) -> list[str]:
    """The words a taught model still answers with: its vocabulary from ``first_taught`` on,
    less those ``withdrawn`` (forgotten since it was learned). [] for a shipped model, or None
    (a checkpoint, which has no sidecar)."""
    if sidecar is None:
        return []
    withdrawn = set(sidecar.get("withdrawn", ()))
    return [w for w in sidecar["vocabulary"][first_taught(sidecar) :] if w not in withdrawn]
