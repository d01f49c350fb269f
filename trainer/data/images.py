"""Image sources for the audio-description datasets: MNIST, CIFAR-10/100, sklearn digits, a folder.

Every loader returns an ``ImageSet``: uint8 images (N, H, W, C) with C = 1 or 3, int64 labels and
the spoken word for each class. Files are read in their official formats (MNIST idx .gz, CIFAR
"python version" tarballs) plus the CIFAR-10 JPEG zips of the offline copy in /work/shared/data.
Files with an official name are md5-checked before use (see ``trainer.data.downloads.CHECKSUMS``),
and
CIFAR pickles go through an unpickler that can build numpy arrays and nothing else.

This module holds the public API (``load_images``) and the MNIST and sklearn digits loaders. The
CIFAR readers live in ``trainer.data.cifar``, the image-folder source in
``trainer.data.image_folder``, and
what every source shares (``ImageSet``, label checks, the .npz cache) in ``trainer.data.image_set``.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np

from earsight import paths
from earsight.trainer.data import downloads
from earsight.trainer.data.cifar import _load_cifar10, _load_cifar100
from earsight.trainer.data.downloads import CHECKSUMS, FIX_CORRUPT, verify
from earsight.trainer.data.image_folder import _load_folder
from earsight.trainer.data.image_set import (
    SPLIT_SEED,
    TEST_FRACTION,
    ImageSet,
    ImageSplit,
    checked_split,
    require,
)
from earsight.trainer.errors import DatasetError

__all__ = ["CHECKSUMS", "SOURCES", "ImageSet", "ImageSplit", "load_images"]

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("mnist", "cifar10", "cifar100", "digits", "folder")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MNIST_SIDE_PX = 28
IDX_IMAGES_MAGIC = 2051  # idx3: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # idx1: unsigned byte, 1 dimension
DIGITS_MAX_VALUE = 16  # sklearn digits are counts of set pixels in 4x4 blocks: 0..16


def load_images(
    name: str, root: Path | None = None, *, download: bool = False, cache: bool = True
) -> ImageSet:
    """Load image source ``name`` (one of ``SOURCES``) from ``root``.

    ``root`` defaults to ``earsight.paths.data_root()``; for ``folder`` it is the image folder
    itself. ``download`` fetches missing official files; ``cache`` stores slow-to-decode sources
    (JPEG zips, folders) as an .npz next to them, or under ``data_root()/cache`` when that
    place is read-only.
    """
    if name not in SOURCES:
        raise DatasetError(f"unknown image source {name!r}", f"use one of {', '.join(SOURCES)}")
    if name == "digits":
        return _load_digits()
    if name == "folder":
        if root is None:
            raise DatasetError("the folder source needs a folder", "pass --data-root DIR")
        return _load_folder(Path(root), cache=cache)
    base = Path(root) if root is not None else paths.data_root()
    if name == "mnist":
        return _load_mnist(base / "mnist", download=download)
    if name == "cifar10":
        return _load_cifar10(base / "cifar10", download=download, cache=cache)
    return _load_cifar100(base / "cifar100", download=download)


# --- MNIST ------------------------------------------------------------------------------------


def _load_mnist(folder: Path, *, download: bool) -> ImageSet:
    names = [
        f"{split}-{kind}-ubyte.gz"
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    ]
    paths = [folder / n for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing and download:
        for path in missing:
            downloads.download([mirror + path.name for mirror in MNIST_MIRRORS], path)
    require(paths, "MNIST")
    splits = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        images = _read_idx(images_path, IDX_IMAGES_MAGIC)
        labels = _read_idx(labels_path, IDX_LABELS_MAGIC)
        if images.shape[1:] != (MNIST_SIDE_PX, MNIST_SIDE_PX) or len(images) != len(labels):
            raise DatasetError(
                f"{images_path} and {labels_path} do not match: images {images.shape}, "
                f"{len(labels)} labels (expected N x 28 x 28 and N labels)",
                FIX_CORRUPT,
            )
        splits.append(checked_split(images[..., None], labels, len(DIGIT_WORDS), images_path))
    return ImageSet("mnist", DIGIT_WORDS, splits[0], splits[1])


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an idx file (big-endian int32 magic, dims, then unsigned bytes), validating sizes."""
    verify(path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable gzip file ({err})", FIX_CORRUPT) from err
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic or len(raw) < header:
        raise DatasetError(
            f"{path} is not an idx file (magic {found}, expected {magic})", FIX_CORRUPT
        )
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, ndim + 1))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} has {len(raw)} bytes but its header {dims} needs {expected}", FIX_CORRUPT
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


# --- sklearn digits ------------------------------------------------------------------------------


def _load_digits() -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    scaled = np.rint(bunch.images * (255.0 / DIGITS_MAX_VALUE)).clip(0, 255)
    images = scaled.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    where = Path("sklearn.datasets.load_digits")
    return ImageSet(
        "digits",
        DIGIT_WORDS,
        checked_split(x_train, y_train, len(DIGIT_WORDS), where),
        checked_split(x_test, y_test, len(DIGIT_WORDS), where),
    )
