"""The ``folder`` image source: a user's own images laid out as ``DIR/<word>/*.jpg|png|bmp``.

With ``train/`` and ``test/`` sub-folders the split is theirs; otherwise a fixed-seed 20 % of each
word's images is the test split. Images are decoded like ``describe`` decodes them
(``earsight.trainer.data.image_io``) and must all be one size (grey is promoted to RGB when any is
in
colour); the decoded arrays are cached under ``earsight.paths.data_root()/cache``, as EarSight does
not write into a user's folder. Decoding and stacking live in
``earsight.trainer.data.image_set``, shared
with the CIFAR-10 JPEG zips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from earsight.trainer.data.image_io import IMAGE_SUFFIXES, ImageFileError, read_file
from earsight.trainer.data.image_set import (
    SPLIT_SEED,
    TEST_FRACTION,
    ImageSet,
    cached,
    checked_split,
    class_word,
    decode_image_bytes,
    stack_images,
)
from earsight.trainer.errors import DatasetError


def _load_folder(root: Path, *, cache: bool) -> ImageSet:
    if not root.is_dir():
        raise DatasetError(
            f"image folder {root} does not exist",
            "pass --data-root DIR with one sub-folder of images per word",
        )
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    files = _list_folder(root / "train" if has_splits else root)
    if has_splits:
        files += _list_folder(root / "test")
    return cached(
        "folder", "folder", root, files, lambda f: _read_folder(root, has_splits, f), enabled=cache
    )


def _list_folder(folder: Path) -> list[Path]:
    """Image files in ``folder/<word>/``, sorted by word then file name."""
    files = [
        p
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
        for p in sorted(d.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    if not files:
        raise DatasetError(
            f"no images found in {folder}",
            "lay it out as DIR/<word>/*.jpg|png|bmp, one sub-folder per word",
        )
    return files


def _read_folder(root: Path, has_splits: bool, files: Sequence[Path]) -> ImageSet:
    if has_splits:
        words = sorted({p.parent.name for p in files if p.parent.parent.name == "train"})
    else:
        words = sorted({p.parent.name for p in files})
    index = {w: i for i, w in enumerate(words)}
    unknown = [p for p in files if p.parent.name not in index]
    if unknown:
        raise DatasetError(
            f"{unknown[0].parent} has no matching folder in {root / 'train'}",
            "every test word needs training images too",
        )
    images = stack_images([_read(p) for p in files], [str(p) for p in files], root)
    labels = np.array([index[p.parent.name] for p in files], np.int64)
    if has_splits:
        is_test = np.array([p.parent.parent.name == "test" for p in files])
    else:
        is_test = np.zeros(len(files), bool)
        for label in range(len(words)):
            members = np.flatnonzero(labels == label)
            n_test = round(TEST_FRACTION * len(members)) if len(members) > 1 else 0
            picks = np.random.default_rng(SPLIT_SEED).permutation(members)[:n_test]
            is_test[picks] = True
    classes = tuple(class_word(w) for w in words)
    return ImageSet(
        "folder",
        classes,
        checked_split(images[~is_test], labels[~is_test], len(words), root),
        checked_split(images[is_test], labels[is_test], len(words), root),
    )


def _read(path: Path) -> np.ndarray:
    """An image file → (H, W, 1) grey or (H, W, 3) RGB uint8 (image_set.decode_image_bytes)."""
    try:
        data = read_file(path)
    except ImageFileError as err:
        raise DatasetError(f"{path} is not a readable image ({err.reason})", err.fix) from err
    return decode_image_bytes(data, str(path))
