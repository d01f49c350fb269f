"""What every image source returns, and what they share: ``ImageSet`` (uint8 images (N, H, W, C),
C = 1 or 3, int64 labels, the spoken word per class), checked label splits, class words, image
bytes decoded as ``describe`` decodes them, and the .npz cache next to the data.

The sources (trainer/data/images.py: MNIST, sklearn digits, and the dispatcher ``load_images``;
trainer/data/cifar.py; trainer/data/image_folder.py) import this module and nothing of each other's.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earsight import paths
from earsight.trainer.data import downloads
from earsight.trainer.data.downloads import FIX_CORRUPT
from earsight.trainer.data.image_io import ImageFileError, decode_image
from earsight.trainer.errors import DatasetError

TEST_FRACTION = 0.2  # digits and split-less folders: 80 % train / 20 % test
SPLIT_SEED = 0  # fixed so the same files always give the same split

FIX_MISSING = "run with --download, or pass --data-root DIR"


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # (N, H, W, C) uint8, C = 1 (grey) or 3 (RGB)
    labels: np.ndarray  # (N,) int64 in [0, n_classes)


@dataclass(frozen=True)
class ImageSet:
    name: str  # one of SOURCES
    classes: tuple[str, ...]  # the spoken word for each class index
    train: ImageSplit
    test: ImageSplit


# --- cache ---------------------------------------------------------------------------------------


def cached(
    name: str,
    source: str,
    folder: Path,
    files: Sequence[Path],
    build: Callable[[Sequence[Path]], ImageSet],
    *,
    enabled: bool,
) -> ImageSet:
    """``build(files)``, reused from an .npz while ``files`` keep their size and mtime.

    The cache goes next to the data (``folder/.earsight-cache-<source>.npz``), except for a
    user's own image folder, which EarSight does not write into, and read-only data: both keep
    theirs in ``earsight.paths.data_root()/cache``.
    """
    if not enabled:
        return build(files)
    local = folder / f".earsight-cache-{source}.npz" if source != "folder" else None
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    central = paths.data_root() / "cache" / f"{name}-{source}-{tag}.npz"
    arrays = downloads.cached_arrays(
        files, lambda: _to_arrays(build(files)), local=local, central=central
    )
    return ImageSet(
        name,
        tuple(str(c) for c in arrays["classes"]),
        ImageSplit(arrays["train_images"], arrays["train_labels"]),
        ImageSplit(arrays["test_images"], arrays["test_labels"]),
    )


def _to_arrays(images: ImageSet) -> dict[str, np.ndarray]:
    return {
        "classes": np.array(images.classes, dtype=str),
        "train_images": images.train.images,
        "train_labels": images.train.labels,
        "test_images": images.test.images,
        "test_labels": images.test.labels,
    }


# --- helpers -------------------------------------------------------------------------------------


def require(paths: Sequence[Path], what: str) -> None:
    """DatasetError naming the files missing; when they sit one folder up (--data-root named
    the dataset's own folder, DIR/mnist instead of DIR), the fix says which DIR to give."""
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return
    fix = FIX_MISSING
    folder = missing[0].parent  # DIR/<dataset>: the files in DIR itself mean DIR's parent
    if all((folder.parent / p.name).is_file() for p in missing):
        fix = (
            f"pass --data-root {folder.parent.parent} (the folder that holds {folder.parent.name}/)"
        )
    raise DatasetError(f"{what} not found: expected {', '.join(map(str, missing))}", fix)


def checked_split(
    images: np.ndarray, labels: np.ndarray, n_classes: int, where: Path
) -> ImageSplit:
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{where} has {len(images)} images but {labels.size} labels", FIX_CORRUPT
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{where} has labels outside 0..{n_classes - 1}", FIX_CORRUPT)
    return ImageSplit(np.ascontiguousarray(images, dtype=np.uint8), labels)


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def class_word(label_name: Any) -> str:
    """'aquarium_fish' -> 'aquarium fish': the word the app speaks."""
    return text(label_name).replace("_", " ").strip()


# --- image files ---------------------------------------------------------------------------------


def decode_image_bytes(data: bytes, where: str) -> np.ndarray:
    """Decode an image file's bytes to (H, W, 1) grey or (H, W, 3) RGB uint8.

    The decoding ``describe`` and the live folder source use (trainer.data.image_io): EXIF
    orientation
    applied, alpha composited, 16-bit reduced to 8, pixel count checked before decoding, so the
    model trains on the pixels it will be shown.
    """
    try:
        image = decode_image(data, where)
    except ImageFileError as err:
        raise DatasetError(
            f"{where} is not a readable image ({err.reason})", "delete or replace that file"
        ) from err
    return image[..., None] if image.ndim == 2 else image


def stack_images(images: Sequence[np.ndarray], names: Sequence[str], where: Path) -> np.ndarray:
    """Stack equal-sized images, promoting grey to RGB if any image is in colour."""
    sizes = Counter(im.shape[:2] for im in images)
    if len(sizes) > 1:
        bad = next(i for i, im in enumerate(images) if im.shape[:2] != images[0].shape[:2])
        found = ", ".join(f"{w}x{h} ({n} files)" for (h, w), n in sizes.items())
        raise DatasetError(
            f"images in {where} differ in size: {names[bad]} is {_wxh(images[bad])} but "
            f"{names[0]} is {_wxh(images[0])} (width x height found: {found})",
            "resize them all to one size first; EarSight does not resize silently",
        )
    if any(im.shape[2] == 3 for im in images):
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    return np.ascontiguousarray(np.stack(images)) if images else np.zeros((0, 0, 0, 1), np.uint8)


def _wxh(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"
