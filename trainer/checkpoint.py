"""Checkpoints: the model's config travels with its weights, so nothing downstream needs flags.

A checkpoint is a dict saved with ``torch.save``:
    format        CHECKPOINT_FORMAT (int), bumped on incompatible changes
    config        MTNetConfig.to_dict()
    dataset       DatasetSpec.to_dict()
    train         TrainOptions.to_dict()
    model         state_dict of MTNet
    phi_a         (n_classes, n_voices, D_a) audio semantic features of the training clips
    progress      {"stage": 1|2, "epoch": completed epochs of that stage, "history": [...]}
    optimizer     optimizer state (resume only; stripped from best.pt)
Files are written to a temporary name and renamed, so a kill mid-write never leaves a torn file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from trainer.errors import CheckpointError
from trainer.model import MTNet, MTNetConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST_NAME = "last.pt"  # every epoch, for --resume
BEST_NAME = "best.pt"  # best validation score, weights only


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint dict; every failure is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}", "pass the .pt file fit.py wrote")
    try:
        # weights_only: a checkpoint is data; it never gets to run code on load.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for torn or foreign files
        raise CheckpointError(
            f"{path} is not a readable EarSight checkpoint ({type(err).__name__})",
            "re-run training or use --resume from the run's last.pt",
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an EarSight checkpoint of format {CHECKPOINT_FORMAT}",
            "train it again with this version of trainer/fit.py",
        )
    return ckpt


def load_model(path: Path | str, device: str | torch.device = "cpu") -> tuple[MTNet, dict]:
    """MTNet in eval mode, built from the checkpoint's own config, and the checkpoint dict."""
    ckpt = read_checkpoint(path)
    model = MTNet(MTNetConfig.from_dict(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not match the stored config", "the file is damaged; retrain"
        ) from err
    return model.to(device).eval(), ckpt
