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
    inference_only  True in a slim checkpoint: the audio autoencoder's parts that only
                  training uses are left out (a quarter of the size; cannot --resume)
Files are written to a temporary name and renamed, so a kill mid-write never leaves a torn file.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python trainer/checkpoint.py` runs as its console script, so that a runtime-only install
    # (no torch) gets one line naming what to install instead of a traceback
    from earsight.commands import slim

    slim()  # exits

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from earsight.console import plain_text_streams
from earsight.errors import UsageError, first_line
from earsight.trainer.data.augment import trained_with_flips
from earsight.trainer.errors import CheckpointError
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST_NAME = "last.pt"  # every epoch, for --resume
BEST_NAME = "best.pt"  # best validation score, weights only


FULL_DISK_BYTES = 16 * 2**20  # less free space than this after a failed write: the disk is full


def save_checkpoint(path: Path, payload: dict[str, Any], fix: str | None = None) -> None:
    """Write ``payload`` to ``path`` atomically and durably: a temporary file, fsync, rename,
    fsync of the folder. On any OSError (disk full, quota, I/O error, read-only) the partial
    temporary file is deleted, the previous ``path`` is untouched and a one-line
    CheckpointError says what happened, with ``fix`` (the caller's next step) as its fix.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as err:  # torch wraps a failed write in RuntimeError
        reason = _why_not_saved(err, path.parent)  # before the partial file frees the disk
        tmp.unlink(missing_ok=True)
        kept = " (the previous one is kept)" if path.is_file() else ""
        raise CheckpointError(
            f"could not save {path}{kept}: {reason}",
            fix or "free disk space, or save to another folder",
        ) from None
    except BaseException:  # Ctrl-C or SIGTERM mid-write: no half-written .tmp left behind
        tmp.unlink(missing_ok=True)
        raise


def _why_not_saved(err: BaseException, folder: Path) -> str:
    """The OS's reason, or "no space left on the device" for torch's own wording of it
    ("[enforce fail at inline_container.cc] unexpected pos …")."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    try:
        full = shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        full = False
    return "no space left on the device" if full else first_line(err)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable: fsync the directory entry (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unreadable(path: Path) -> CheckpointError:
    """Why torch.load failed, in words: an ONNX model, a torn checkpoint (a zip torch
    writes, cut short), or some other file."""
    if path.suffix == ".onnx":
        return CheckpointError(
            f"{path} is an ONNX model, not a checkpoint",
            "pass the training run's .pt (its sidecar names it under checkpoint)",
        )
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as err:  # unreadable (permissions): torch.load failed on that too
        return CheckpointError(f"cannot read {path}: {err.strerror}", "check its permissions")
    if head.startswith(b"PK"):  # torch.save's zip container
        return CheckpointError(
            f"{path} is a damaged checkpoint (cut short or overwritten)",
            "use the run's other checkpoint (best.pt or last.pt), or --resume from last.pt",
        )
    return CheckpointError(
        f"{path} is not a checkpoint (not a file trainer/fit.py writes)",
        "pass the best.pt or last.pt of a training run",
    )


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint dict; every failure is a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():  # a run folder: its best.pt is what the user means, nearly always
        best = path / BEST_NAME
        fix = (
            f"pass {best}" if best.is_file() else "pass the best.pt or last.pt inside a run folder"
        )
        raise CheckpointError(f"{path} is a folder, not a checkpoint", fix)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}", "pass the .pt file fit.py wrote")
    try:
        # weights_only: a checkpoint is data; it never gets to run code on load.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for torn or foreign files
        raise _unreadable(path) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an EarSight checkpoint of format {CHECKPOINT_FORMAT}",
            "train it again with this version of trainer/fit.py",
        )
    return ckpt


def training_only_prefixes(cfg: MTNetConfig) -> tuple[str, ...]:
    """State-dict prefixes that inference never reads: the audio encoder (stage 1 / Φ^A), and
    the audio decoder unless it *is* the generator (Table 3's autoencoder ablation)."""
    prefixes = ("audio_autoencoder.encoder.",)
    if cfg.generator == "gated":
        prefixes += ("audio_autoencoder.decoder.",)
    if cfg.backbone:  # the ImageNet classifier came with the weights; MT-Net never reads it
        prefixes += ("image_encoder.backbone._fc.",)
    return prefixes


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the weights inference reads, each rounded to fp16 (hex): equal for a run's
    best.pt and its slim copy (trainer/checkpoint.py slim), which differ as files. The exports'
    sidecars record it, so an int8 variant of the same weights is recognised whichever file
    it was exported from (engine/source.py)."""
    import hashlib

    digest = hashlib.sha256()
    skip = training_only_prefixes(model.cfg)
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(skip) or not tensor.is_floating_point():
            continue  # BatchNorm's step counters and training-only parts: not the answer
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_model(
    path: Path | str, device: str | torch.device = "cpu", flip_tta: bool = False
) -> tuple[MTNet, dict]:
    """MTNet in eval mode, built from the checkpoint's own config, and the checkpoint dict.

    ``flip_tta``: answer with test-time mirror averaging (``MTNetConfig.flip_tta``); a UsageError
    for a model not trained on mirrored images (a mirrored digit is another picture). A config
    that already says flip_tta (a taught model, trainer/teach/fit.py) was made to answer so.
    """
    ckpt = read_checkpoint(path)
    if "pooled" in ckpt and "is_check" in ckpt:  # trainer/teach/base.save_teach_base's file
        raise CheckpointError(
            f"{path} is a teach base (what `earsight teach` learns on), not a model",
            "use a shipped model name, an exported .onnx, or a training run's best.pt",
        )
    cfg = MTNetConfig.from_dict(ckpt["config"])
    if flip_tta and not cfg.flip_tta:
        if not trained_with_flips(ckpt):
            raise UsageError(
                f"--flip-tta: {Path(path).name} was not trained on mirrored images "
                "(a mirrored digit is not the same digit)",
                "drop --flip-tta for this model",
            )
        cfg = dataclasses.replace(cfg, flip_tta=True)
    model = MTNet(cfg)
    # A slim checkpoint may lack exactly the training-only weights; a full one lacks nothing.
    allowed = training_only_prefixes(model.cfg) if ckpt.get("inference_only") else ()
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as err:  # a tensor of the wrong shape
        missing, unexpected = [f"({err})"], []
    if unexpected or any(not key.startswith(allowed) for key in missing):
        raise CheckpointError(
            f"{path}: weights do not match the stored config", "the file is damaged; retrain"
        )
    return model.to(device).eval(), ckpt


def save_inference_checkpoint(src: Path | str, dst: Path | str) -> Path:
    """A slim copy of ``src`` for evaluation and export only (no optimizer, no audio encoder).

    From a last.pt trained with ``--ema`` it keeps the weight average, as best.pt does.
    """
    ckpt = read_checkpoint(src)
    drop = training_only_prefixes(MTNetConfig.from_dict(ckpt["config"]))
    ckpt.pop("optimizer", None)
    average = ckpt.pop("average", None)
    if average is not None:
        ckpt["model"] = average["model"]
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith(drop)}
    ckpt["inference_only"] = True
    save_checkpoint(Path(dst), {k: v for k, v in ckpt.items() if k != "format"})
    return Path(dst)


def main(argv: list[str] | None = None) -> int:
    plain_text_streams()  # `python trainer/….py` on an ASCII terminal: stand-ins, no traceback
    import sys

    from earsight.arguments import OneLineParser

    parser = OneLineParser(  # prog: checkpoint.py or earsight-slim, as it was run
        description="Write a slim copy of a checkpoint for evaluation/export."
    )
    parser.add_argument("source", type=Path, help="a .pt written by trainer/fit.py")
    parser.add_argument("dest", type=Path, help="where the slim .pt goes")
    args = parser.parse_args(argv)
    try:
        out = save_inference_checkpoint(args.source, args.dest)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mib = out.stat().st_size / 2**20
    print(f"wrote {out} ({mib:.1f} MiB, inference only)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
