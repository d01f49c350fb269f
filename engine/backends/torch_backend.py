"""The torch backend: the checkpoint itself in eager mode (the reference every backend matches)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from earsight.engine.backends.base import Backend, RuntimeOptions
from earsight.engine.errors import BackendUnavailable, ModelFileError, OutOfMemory
from earsight.engine.source import INT8_SUFFIX, ModelSource
from earsight.errors import UsageError
from earsight.trainer.checkpoint import load_model, weights_sha256
from earsight.trainer.errors import CheckpointError
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(
            "torch sees no CUDA GPU", "use --device cpu, or install the CUDA build of torch"
        )
    return requested


def check_finite_weights(model: torch.nn.Module, name: str) -> None:
    """ModelFileError naming the first parameter or buffer holding NaN/±inf (diverged training)."""
    for key, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(
                f"{name} has non-finite weights (NaN or inf in {key}): its training diverged",
                "retrain with a lower --lr",
            )


class TorchBackend(Backend):
    """Eager fp32 MT-Net from a .pt checkpoint (given, or the one an ONNX sidecar records)."""

    name = "torch"

    def __init__(self, source: ModelSource, options: RuntimeOptions) -> None:
        self.device = pick_device(options.device)
        if self.device == "cpu":
            # Process-wide: torch has one intra-op pool. Pinned like ORT's for a fair comparison.
            torch.set_num_threads(options.cpu_threads())
        # The export's graph may mirror-average (sidecar config): answer the same.
        flip_tta = bool((source.sidecar or {}).get("config", {}).get("flip_tta"))
        self.model, self.weights_file = reference_model(source, flip_tta)
        self.model.to(self.device)
        check_finite_weights(self.model, self.weights_file.name)
        self.precision = "fp32"
        self.providers = (f"torch {torch.__version__}",)
        if self.device.startswith("cuda"):
            self.device = f"{self.device} ({torch.cuda.get_device_name(self.device)})"

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        device = next(self.model.parameters()).device
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
        try:
            wave, probs = self.model(x)
        except torch.cuda.OutOfMemoryError as err:
            raise OutOfMemory(
                f"torch ran out of GPU memory at batch {len(images)}", "use a smaller batch"
            ) from err
        return wave.float().cpu().numpy(), probs.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def teach_base_beside(onnx: Path) -> Path | None:
    """``cifar10-ad-lite0[.int8].onnx`` → ``cifar10-ad-lite0.teach.pt`` beside it, if there: a
    shipped model's full weights (fp16-stored; trainer/teach/base.py), as no checkpoint ships."""
    stem = onnx.name.removesuffix(INT8_SUFFIX).removesuffix(".onnx")
    path = onnx.with_name(f"{stem}.teach.pt")
    return path if path.is_file() else None


def reference_model(source: ModelSource, flip_tta: bool) -> tuple[MTNet, Path]:
    """The eager fp32 model of ``source``'s weights (eval, CPU) and the file it came from.

    An export's recorded checkpoint is used when its file hash is the recorded one, or else
    when its weights hash (trainer.checkpoint.weights_sha256: fp16-rounded) is: a checkpoint
    rebuilt from the same weights differs as a file only. A shipped model has no checkpoint;
    its teach base holds the same weights and is used when their hash is the sidecar's.
    Raises BackendUnavailable when neither holds the exported weights, ModelFileError for an
    unreadable file.
    """
    recorded = (source.sidecar or {}).get("checkpoint", {})
    if source.checkpoint is not None:
        model = _load(source.checkpoint, flip_tta)
        if source.checkpoint_matches_export() or _same_weights(model, recorded):
            return model, source.checkpoint
        raise BackendUnavailable(
            f"{source.checkpoint.name} changed since {source.path.name} was exported",
            "re-export, or pass the .pt itself",
        )
    base = teach_base_beside(source.onnx) if source.onnx is not None else None
    if base is not None and recorded.get("weights_sha256"):
        model = _from_teach_base(base, flip_tta)
        if _same_weights(model, recorded):
            log.info(
                "torch: %s's weights from %s (the same weights hash)", source.path.name, base.name
            )
            return model, base
    raise BackendUnavailable(
        f"the torch backend needs the checkpoint {source.path.name} was exported from "
        f"({Path(recorded.get('path', '?')).name}) or a teach base of its weights, and neither "
        "is beside the model (shipped models come as ONNX files only)",
        "use --backend onnx-cpu (or leave --backend out), or --model a training run's .pt",
    )


def _load(checkpoint: Path, flip_tta: bool) -> MTNet:
    try:
        return load_model(checkpoint, flip_tta=flip_tta)[0]
    except CheckpointError as err:
        raise ModelFileError(err.what, err.fix) from err


def _from_teach_base(path: Path, flip_tta: bool) -> MTNet:
    from earsight.trainer.teach.base import load_teach_base  # torch-only, as this module

    try:
        model = load_teach_base(path).model
    except UsageError as err:
        raise ModelFileError(err.what, err.fix) from err
    if model.cfg.flip_tta != flip_tta:  # answer as the export does
        state = model.state_dict()
        model = MTNet(dataclasses.replace(model.cfg, flip_tta=flip_tta))
        model.load_state_dict(state)
    return model.eval()


def _same_weights(model: MTNet, recorded: dict) -> bool:
    wanted = recorded.get("weights_sha256")
    return bool(wanted) and weights_sha256(model) == wanted
