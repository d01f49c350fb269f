"""The torch backend: the checkpoint itself in eager mode (the reference every backend matches)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from earsight.engine.backends.base import Backend, RuntimeOptions
from earsight.engine.errors import BackendUnavailable, ModelFileError, OutOfMemory
from earsight.engine.source import ModelSource
from earsight.trainer.checkpoint import load_model
from earsight.trainer.errors import CheckpointError

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
        if source.checkpoint is None:
            recorded = (source.sidecar or {}).get("checkpoint", {}).get("path", "?")
            raise BackendUnavailable(
                f"the torch backend needs the checkpoint {source.path.name} was exported from "
                f"({Path(recorded).name}), and it is not beside the model (shipped models "
                "come as ONNX files only)",
                "use --backend onnx-cpu (or leave --backend out), or --model a training run's .pt",
            )
        if not source.checkpoint_matches_export():
            raise BackendUnavailable(
                f"{source.checkpoint.name} changed since {source.path.name} was exported",
                "re-export, or pass the .pt itself",
            )
        self.device = pick_device(options.device)
        if self.device == "cpu":
            # Process-wide: torch has one intra-op pool. Pinned like ORT's for a fair comparison.
            torch.set_num_threads(options.cpu_threads())
        try:
            # The export's graph may mirror-average (sidecar config): answer the same.
            flip_tta = bool((source.sidecar or {}).get("config", {}).get("flip_tta"))
            self.model, _ = load_model(source.checkpoint, device=self.device, flip_tta=flip_tta)
        except CheckpointError as err:
            raise ModelFileError(err.what, err.fix) from err
        check_finite_weights(self.model, source.checkpoint.name)
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
