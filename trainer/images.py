"""Image sources for the audio-description datasets: MNIST, CIFAR-10/100, sklearn digits, a folder.

Every loader returns an ``ImageSet``: uint8 images (N, H, W, C) with C = 1 or 3, int64 labels and
the spoken word for each class. Files are read in their official formats (MNIST idx .gz, CIFAR
"python version" tarballs) plus the CIFAR-10 JPEG zips of the offline copy in /work/shared/data.
Files with an official name are md5-checked before use (see ``trainer.downloads.CHECKSUMS``), and
CIFAR pickles go through an unpickler that can build numpy arrays and nothing else.

This module holds the public API, the MNIST and sklearn digits loaders and the helpers every
source shares (label checks, the .npz cache). The CIFAR readers live in ``trainer.cifar`` and the
image-folder source in ``trainer.image_folder``; both import this module, so ``load_images``
imports them only when asked for their sources.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import downloads
from trainer.downloads import CHECKSUMS, FIX_CORRUPT, verify
from trainer.errors import DatasetError

__all__ = ["CHECKSUMS", "SOURCES", "ImageSet", "ImageSplit", "default_data_root", "load_images"]

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


def default_data_root() -> Path:
    """$EARSIGHT_DATA if set, else the per-user cache dir's ``data`` folder."""
    env = os.environ.get("EARSIGHT_DATA")
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is a dependency, but a bare checkout still works
        return Path.home() / ".cache" / "earsight" / "data"
    return Path(user_cache_dir("earsight")) / "data"


def load_images(
    name: str, root: Path | None = None, *, download: bool = False, cache: bool = True
) -> ImageSet:
    """Load image source ``name`` (one of ``SOURCES``) from ``root``.

    ``root`` defaults to ``default_data_root()``; for ``folder`` it is the image folder itself.
    ``download`` fetches missing official files; ``cache`` stores slow-to-decode sources (JPEG
    zips, folders) as an .npz next to them, or under ``default_data_root()/cache`` when that
    place is read-only.
    """
    if name not in SOURCES:
        raise DatasetError(f"unknown image source {name!r}", f"use one of {', '.join(SOURCES)}")
    if name == "digits":
        return _load_digits()
    if name == "folder":
        if root is None:
            raise DatasetError("the folder source needs a folder", "pass --data-root DIR")
        from trainer.image_folder import _load_folder  # lazy: that module imports this one

        return _load_folder(Path(root), cache=cache)
    base = Path(root) if root is not None else default_data_root()
    if name == "mnist":
        return _load_mnist(base / "mnist", download=download)
    from trainer.cifar import _load_cifar10, _load_cifar100  # lazy: that module imports this one

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
    _require(paths, "MNIST")
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
        splits.append(_split(images[..., None], labels, len(DIGIT_WORDS), images_path))
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
        _split(x_train, y_train, len(DIGIT_WORDS), where),
        _split(x_test, y_test, len(DIGIT_WORDS), where),
    )


# --- cache ---------------------------------------------------------------------------------------


def _cached(
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
    theirs in ``default_data_root()/cache``.
    """
    if not enabled:
        return build(files)
    local = folder / f".earsight-cache-{source}.npz" if source != "folder" else None
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    central = default_data_root() / "cache" / f"{name}-{source}-{tag}.npz"
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


def _require(paths: Sequence[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{what} not found: expected {', '.join(map(str, missing))}", FIX_MISSING
        )


def _split(images: np.ndarray, labels: np.ndarray, n_classes: int, where: Path) -> ImageSplit:
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{where} has {len(images)} images but {labels.size} labels", FIX_CORRUPT
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{where} has labels outside 0..{n_classes - 1}", FIX_CORRUPT)
    return ImageSplit(np.ascontiguousarray(images, dtype=np.uint8), labels)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _word(label_name: Any) -> str:
    """'aquarium_fish' -> 'aquarium fish': the word the app speaks."""
    return _text(label_name).replace("_", " ").strip()
