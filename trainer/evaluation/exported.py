"""Scoring an exported model with the trainer's metrics (``trainer/evaluate.py --onnx``): is the
file an export of the checkpoint's model, and its predictions through ONNX Runtime."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from earsight.errors import UsageError
from earsight.trainer.data.dataset import ADDataset
from earsight.trainer.data.preprocess import fit_batch
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)


def check_export_of(onnx: Path, checkpoint: Path, model: MTNet, data: ADDataset) -> dict:
    """The sidecar of ``onnx``; UsageError when it is not an export of a model like
    ``checkpoint``'s (another vocabulary, preset or input): its scores would sit in the table
    under the wrong row. A same-shaped export of other weights (another sha256) is a warning."""
    from earsight.engine.sidecar import read_sidecar, sha256_file

    side = read_sidecar(onnx, verify_sha256=False)
    theirs = (tuple(side["vocabulary"]), side["preset"], tuple(side["input_size"]))
    cfg = model.cfg
    ours = (tuple(data.classes), cfg.preset, (cfg.image_size, cfg.image_size, cfg.image_channels))
    if theirs != ours:
        raise UsageError(
            f"--onnx {onnx.name} is an export of another model ({theirs[1]}, "
            f"{len(theirs[0])} words, input {'x'.join(map(str, theirs[2]))}) than "
            f"{checkpoint.name} ({ours[1]}, {len(ours[0])} words, "
            f"input {'x'.join(map(str, ours[2]))})",
            "pass the checkpoint it was exported from",
        )
    recorded = side.get("checkpoint", {}).get("sha256")
    if recorded and recorded != sha256_file(checkpoint):
        log.warning(
            "%s was exported from %s, not from this %s: scoring it against this run's data",
            onnx.name,
            side["checkpoint"].get("name", "another file"),
            checkpoint.name,
        )
    return side


def onnx_predictor(
    onnx_path: Path | str, batch: int, threads: int | None = None
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The exported model through ONNX Runtime (raw output, before post-processing), as a
    predictor of evaluate_split: images (N, H, W, C) uint8 → (waves (N, L), probs (N, K)),
    ``batch`` images per run."""
    from earsight.engine.runtime import RuntimeOptions, load  # the engine is optional for training

    options = RuntimeOptions(threads=threads, cpu_int8=False)  # score exactly the file given
    runtime = load(onnx_path, backend="onnx-cpu", options=options)
    size, _, channels = runtime.info.input_shape  # thumbnails whole, as in training

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batches = (
            fit_batch(images[i : i + batch], size, 1.0, channels)
            for i in range(0, len(images), batch)
        )
        outs = [runtime.infer(b) for b in batches]
        return np.concatenate([w for w, _ in outs]), np.concatenate([p for _, p in outs])

    return predict
