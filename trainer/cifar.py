"""CIFAR-10/100 readers: the official "python version" tarballs and the CIFAR-10 JPEG zips.

The tarballs hold Python 2 pickles of (N, 3072) row-major RGB planes; the JPEG zips (the offline
copy in /work/shared/data) hold ``<class>/NNNN.jpg`` entries. Files with an official name are
md5-checked before use. A pickle's globals are callables it may invoke with any arguments
(``os.system``...), so the pickles go through an unpickler that builds numpy arrays and nothing
else, whatever numpy version pickled them.
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

from trainer import downloads
from trainer.downloads import FIX_CORRUPT, verify
from trainer.errors import DatasetError
from trainer.image_folder import _decode, _stack
from trainer.images import (
    FIX_MISSING,
    ImageSet,
    ImageSplit,
    _cached,
    _require,
    _split,
    _text,
    _word,
)

CIFAR10_CLASSES = (  # the official label order (batches.meta)
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR_URL_BASE = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR100_TARBALL = "cifar-100-python.tar.gz"
CIFAR10_ZIPS = ("cifar10_jpeg_train.zip", "cifar10_jpeg_test.zip")

CIFAR_SIDE_PX = 32


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
    return {_text(k): v for k, v in obj.items()}


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
    return _split(np.ascontiguousarray(images), labels, n_classes, where)


def _load_cifar10(folder: Path, *, download: bool, cache: bool) -> ImageSet:
    tarball = folder / CIFAR10_TARBALL
    zips = [folder / z for z in CIFAR10_ZIPS]
    if not tarball.is_file() and not all(z.is_file() for z in zips):
        if not download:
            missing = [tarball] + [z for z in zips if not z.is_file()]
            raise DatasetError(
                f"CIFAR-10 not found: expected {missing[0]} "
                f"(or {' and '.join(str(z) for z in missing[1:])})",
                FIX_MISSING,
            )
        downloads.download([CIFAR_URL_BASE + CIFAR10_TARBALL], tarball)
    if tarball.is_file():  # the official file is lossless; the JPEGs are not
        top = "cifar-10-batches-py/"
        train = [f"{top}data_batch_{i}" for i in range(1, 6)]
        dicts = _read_tar_pickles(tarball, [*train, f"{top}test_batch", f"{top}batches.meta"])
        names = dicts[f"{top}batches.meta"].get("label_names", CIFAR10_CLASSES)
        classes = tuple(_word(n) for n in names)
        return ImageSet(
            "cifar10",
            classes,
            _cifar_split([dicts[m] for m in train], "labels", len(classes), tarball),
            _cifar_split([dicts[f"{top}test_batch"]], "labels", len(classes), tarball),
        )
    return _cached("cifar10", "jpeg", folder, zips, _load_cifar10_zips, enabled=cache)


def _load_cifar100(folder: Path, *, download: bool) -> ImageSet:
    tarball = folder / CIFAR100_TARBALL
    if not tarball.is_file() and download:
        downloads.download([CIFAR_URL_BASE + CIFAR100_TARBALL], tarball)
    _require([tarball], "CIFAR-100")
    top = "cifar-100-python/"
    dicts = _read_tar_pickles(tarball, [f"{top}train", f"{top}test", f"{top}meta"])
    try:
        classes = tuple(_word(n) for n in dicts[f"{top}meta"]["fine_label_names"])
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{tarball} meta has no fine_label_names", FIX_CORRUPT) from err
    return ImageSet(
        "cifar100",
        classes,
        _cifar_split([dicts[f"{top}train"]], "fine_labels", len(classes), tarball),
        _cifar_split([dicts[f"{top}test"]], "fine_labels", len(classes), tarball),
    )


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
            images = [_decode(archive.read(e[2]), f"{path}:{e[2].filename}") for e in entries]
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable zip file ({err})", FIX_CORRUPT) from err
    labels = np.array([e[0] for e in entries], np.int64)
    stacked = _stack(images, [f"{path}:{e[2].filename}" for e in entries], path)
    if stacked.shape[1:] != (CIFAR_SIDE_PX, CIFAR_SIDE_PX, 3):
        raise DatasetError(
            f"{path} images are {stacked.shape[1:]}, expected 32 x 32 RGB", FIX_CORRUPT
        )
    return _split(stacked, labels, len(CIFAR10_CLASSES), path)
