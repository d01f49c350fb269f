"""CIFAR-10/100 readers: the official "python version" tarballs (or the ``cifar-10-batches-py/``
and ``cifar-100-python/`` folders they extract to) and the CIFAR-10 JPEG zips.

The tarballs hold Python 2 pickles of (N, 3072) row-major RGB planes; the JPEG zips (the offline
copy in /work/shared/data) hold ``<class>/NNNN.jpg`` entries. Files with an official name, and
the extracted pickles, are md5-checked before use. A pickle's globals are callables it may invoke
with any arguments (``os.system``...), so the pickles go through an unpickler that builds numpy
arrays and nothing else, whatever numpy version pickled them.
"""

from __future__ import annotations

import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from earsight.trainer.data import downloads
from earsight.trainer.data.downloads import FIX_CORRUPT, verify
from earsight.trainer.data.image_set import (
    FIX_MISSING,
    ImageSet,
    ImageSplit,
    cached,
    checked_split,
    class_word,
    decode_image_bytes,
    stack_images,
    text,
)
from earsight.trainer.errors import DatasetError

CIFAR10_CLASSES = (  # the official label order (batches.meta)
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR_URL_BASE = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR100_TARBALL = "cifar-100-python.tar.gz"
CIFAR10_ZIPS = ("cifar10_jpeg_train.zip", "cifar10_jpeg_test.zip")

CIFAR_SIDE_PX = 32

# What the tarballs extract to (and other tools, torchvision among them, leave behind).
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_MEMBERS = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CIFAR100_MEMBERS = ("train", "test", "meta")
# md5 of the official tarballs' members, as torchvision checks its extracted copies.
EXTRACTED_MD5 = {
    f"{CIFAR10_DIR}/data_batch_1": "c99cafc152244af753f735de768cd75f",
    f"{CIFAR10_DIR}/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    f"{CIFAR10_DIR}/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    f"{CIFAR10_DIR}/data_batch_4": "634d18415352ddfa80567beed471001a",
    f"{CIFAR10_DIR}/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    f"{CIFAR10_DIR}/test_batch": "40351d587109b95175f43aff81a1287e",
    f"{CIFAR10_DIR}/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    f"{CIFAR100_DIR}/train": "16019d7e3df5f24257cddd939b257f8d",
    f"{CIFAR100_DIR}/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    f"{CIFAR100_DIR}/meta": "7973b15100ade9c7d40fb424638fde48",
}


# --- CIFAR python tarballs ----------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, numbers and numpy arrays; refuses every other global.

    A pickle's globals are callables it may invoke with any arguments (``os.system``...), so only
    the three numpy arrays are built from are allowed, whatever numpy version pickled them.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
        ("numpy._core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_tar_pickles(path: Path, members: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Unpickle ``members`` of a CIFAR tarball into dicts with str keys."""
    verify(path)
    out: dict[str, dict[str, Any]] = {}
    try:
        # Stream mode: one pass over the gzip, whatever order the members are stored in.
        with tarfile.open(path, "r|gz") as tar:
            for info in tar:
                if info.name in members and (fh := tar.extractfile(info)) is not None:
                    out[info.name] = _unpickle_batch(fh, f"{path}:{info.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable tar.gz file ({err})", FIX_CORRUPT) from err
    missing = [m for m in members if m not in out]
    if missing:
        raise DatasetError(f"{path} has no file {missing[0]}", FIX_CORRUPT)
    return out


def _unpickle_batch(fh: IO[bytes], where: str) -> dict[str, Any]:
    try:
        # encoding="bytes": the official pickles come from Python 2, whose str become bytes.
        obj = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        raise  # the archive itself is broken: reported by the caller
    except Exception as err:  # untrusted bytes can fail in any way; all of them mean "bad file"
        raise DatasetError(f"{where} is corrupt or unsafe ({err})", FIX_CORRUPT) from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} is not a CIFAR batch (a {type(obj).__name__})", FIX_CORRUPT)
    return {text(k): v for k, v in obj.items()}


def _cifar_split(
    batches: Sequence[dict[str, Any]], label_key: str, n_classes: int, where: Path
) -> ImageSplit:
    """Stack batches of (N, 3072) row-major RGB planes into (N, 32, 32, 3)."""
    try:
        data = np.concatenate([np.asarray(b["data"], np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetError(f"{where} has a malformed batch ({err!r})", FIX_CORRUPT) from err
    side = CIFAR_SIDE_PX
    if data.ndim != 2 or data.shape[1] != 3 * side * side:
        raise DatasetError(
            f"{where} has data of shape {data.shape}, expected (N, 3072)", FIX_CORRUPT
        )
    images = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return checked_split(np.ascontiguousarray(images), labels, n_classes, where)


def _load_cifar10(folder: Path, *, download: bool, cache: bool) -> ImageSet:
    tarball = folder / CIFAR10_TARBALL
    zips = [folder / z for z in CIFAR10_ZIPS]
    members = [f"{CIFAR10_DIR}/{m}" for m in CIFAR10_MEMBERS]
    extracted = None if tarball.is_file() else _extracted(folder, CIFAR10_DIR, members)
    if not tarball.is_file() and extracted is None and not all(z.is_file() for z in zips):
        if not download:
            missing = [z for z in zips if not z.is_file()]
            raise DatasetError(
                f"CIFAR-10 not found: expected {tarball} (or the folder {folder / CIFAR10_DIR} "
                f"it extracts to, or {' and '.join(str(z) for z in missing)})",
                FIX_MISSING,
            )
        downloads.download([CIFAR_URL_BASE + CIFAR10_TARBALL], tarball)
    # The official pickles are lossless; the JPEGs are not.
    if tarball.is_file():
        dicts, where = _read_tar_pickles(tarball, members), tarball
    elif extracted is not None:
        dicts, where = _read_dir_pickles(extracted, members), extracted / CIFAR10_DIR
    else:
        return cached("cifar10", "jpeg", folder, zips, _load_cifar10_zips, enabled=cache)
    names = dicts[members[-1]].get("label_names", CIFAR10_CLASSES)  # batches.meta
    classes = tuple(class_word(n) for n in names)
    return ImageSet(
        "cifar10",
        classes,
        _cifar_split([dicts[m] for m in members[:5]], "labels", len(classes), where),
        _cifar_split([dicts[members[5]]], "labels", len(classes), where),
    )


def _load_cifar100(folder: Path, *, download: bool) -> ImageSet:
    tarball = folder / CIFAR100_TARBALL
    members = [f"{CIFAR100_DIR}/{m}" for m in CIFAR100_MEMBERS]
    extracted = None if tarball.is_file() else _extracted(folder, CIFAR100_DIR, members)
    if not tarball.is_file() and extracted is None:
        if download:
            downloads.download([CIFAR_URL_BASE + CIFAR100_TARBALL], tarball)
        else:
            raise DatasetError(
                f"CIFAR-100 not found: expected {tarball} (or the folder "
                f"{folder / CIFAR100_DIR} it extracts to)",
                FIX_MISSING,
            )
    if extracted is not None:
        dicts, where = _read_dir_pickles(extracted, members), extracted / CIFAR100_DIR
    else:
        dicts, where = _read_tar_pickles(tarball, members), tarball
    train, test, meta = (dicts[m] for m in members)
    try:
        classes = tuple(class_word(n) for n in meta["fine_label_names"])
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{where} meta has no fine_label_names", FIX_CORRUPT) from err
    return ImageSet(
        "cifar100",
        classes,
        _cifar_split([train], "fine_labels", len(classes), where),
        _cifar_split([test], "fine_labels", len(classes), where),
    )


# --- extracted tarballs -------------------------------------------------------------------------


def _extracted(folder: Path, top: str, members: Sequence[str]) -> Path | None:
    """Where a tarball's ``top/`` folder was extracted (the folder holding ``top``), or None.

    Looked for next to the tarball's own place (``folder/top``), in the data root
    (``folder/../top``, torchvision's layout) and as the data root itself. A ``top`` folder that
    lacks a member is an error, not "not found": it was extracted, but not completely.
    """
    for candidate in (folder / top, folder.parent / top, folder.parent):
        if candidate.name != top or not candidate.is_dir():
            continue
        missing = [m for m in members if not (candidate.parent / m).is_file()]
        if missing:
            raise DatasetError(
                f"{candidate} has no file {Path(missing[0]).name}",
                f"extract {top}/ again from the official tarball, or delete it and {FIX_MISSING}",
            )
        return candidate.parent
    return None


def _read_dir_pickles(root: Path, members: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Unpickle ``root/<member>`` files (an extracted tarball) like ``_read_tar_pickles``.

    Each file is md5-checked against the official tarball's member (``EXTRACTED_MD5``) first.
    """
    out: dict[str, dict[str, Any]] = {}
    for member in members:
        path = root / member
        expected = EXTRACTED_MD5.get(member)
        if expected is not None and (actual := downloads.md5sum(path)) != expected:
            raise DatasetError(
                f"{path} is corrupt or not the official file (md5 {actual}, expected {expected})",
                FIX_CORRUPT,
            )
        try:
            with path.open("rb") as fh:
                out[member] = _unpickle_batch(fh, str(path))
        except (OSError, EOFError) as err:
            raise DatasetError(f"{path} is not readable ({err})", FIX_CORRUPT) from err
    return out


# --- CIFAR-10 JPEG zips -------------------------------------------------------------------------


def _load_cifar10_zips(zips: Sequence[Path]) -> ImageSet:
    splits = [_read_jpeg_zip(path) for path in zips]
    return ImageSet("cifar10", CIFAR10_CLASSES, splits[0], splits[1])


def _read_jpeg_zip(path: Path) -> ImageSplit:
    """Decode ``<class>/NNNN.jpg`` entries, ordered by class index then file number."""
    verify(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = []
            for info in archive.infolist():
                if info.is_dir():
                    continue
                cls, _, stem = info.filename.removesuffix(".jpg").partition("/")
                if cls not in CIFAR10_CLASSES or not stem.isdigit():
                    raise DatasetError(
                        f"{path} has an unexpected entry {info.filename}",
                        "expected <class>/NNNN.jpg entries only",
                    )
                entries.append((CIFAR10_CLASSES.index(cls), int(stem), info))
            entries.sort(key=lambda e: e[:2])
            images = [
                decode_image_bytes(archive.read(e[2]), f"{path}:{e[2].filename}") for e in entries
            ]
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable zip file ({err})", FIX_CORRUPT) from err
    labels = np.array([e[0] for e in entries], np.int64)
    stacked = stack_images(images, [f"{path}:{e[2].filename}" for e in entries], path)
    if stacked.shape[1:] != (CIFAR_SIDE_PX, CIFAR_SIDE_PX, 3):
        raise DatasetError(
            f"{path} images are {stacked.shape[1:]}, expected 32 x 32 RGB", FIX_CORRUPT
        )
    return checked_split(stacked, labels, len(CIFAR10_CLASSES), path)
