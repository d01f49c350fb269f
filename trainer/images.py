"""Image sources for the audio-description datasets: MNIST, CIFAR-10/100, sklearn digits, a folder.

Every loader returns an ``ImageSet``: uint8 images (N, H, W, C) with C = 1 or 3, int64 labels and
the spoken word for each class. Files are read in their official formats (MNIST idx .gz, CIFAR
"python version" tarballs) plus the CIFAR-10 JPEG zips of the offline copy in /work/shared/data.
Files with an official name are md5-checked before use (see ``trainer.downloads.CHECKSUMS``), and
CIFAR pickles go through an unpickler that can build numpy arrays and nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from trainer import downloads
from trainer.downloads import CHECKSUMS, FIX_CORRUPT, verify
from trainer.errors import DatasetError

__all__ = ["CHECKSUMS", "SOURCES", "ImageSet", "ImageSplit", "default_data_root", "load_images"]

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("mnist", "cifar10", "cifar100", "digits", "folder")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CIFAR10_CLASSES = (  # the official label order (batches.meta)
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
CIFAR_URL_BASE = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR100_TARBALL = "cifar-100-python.tar.gz"
CIFAR10_ZIPS = ("cifar10_jpeg_train.zip", "cifar10_jpeg_test.zip")

MNIST_SIDE_PX = 28
CIFAR_SIDE_PX = 32
IDX_IMAGES_MAGIC = 2051  # idx3: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # idx1: unsigned byte, 1 dimension
DIGITS_MAX_VALUE = 16  # sklearn digits are counts of set pixels in 4x4 blocks: 0..16
TEST_FRACTION = 0.2  # digits and split-less folders: 80 % train / 20 % test
SPLIT_SEED = 0  # fixed so the same files always give the same split
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

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
        return _load_folder(Path(root), cache=cache)
    base = Path(root) if root is not None else default_data_root()
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


# --- CIFAR-10 JPEG zips and image folders -------------------------------------------------------


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
    return _cached(
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
    images = _stack([_decode(p.read_bytes(), str(p)) for p in files], [str(p) for p in files], root)
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
    classes = tuple(_word(w) for w in words)
    return ImageSet(
        "folder",
        classes,
        _split(images[~is_test], labels[~is_test], len(words), root),
        _split(images[is_test], labels[is_test], len(words), root),
    )


def _decode(data: bytes, where: str) -> np.ndarray:
    """Decode an image file's bytes to (H, W, 1) grey or (H, W, 3) RGB uint8."""
    try:
        import cv2
    except ImportError as err:
        raise DatasetError(
            "reading JPEG/PNG images needs OpenCV", "pip install opencv-python-headless"
        ) from err
    # ANYCOLOR keeps grey files single-channel; 16-bit and alpha are reduced to 8-bit grey/RGB.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise DatasetError(f"{where} is not a readable image", "delete or replace that file")
    return image[..., None] if image.ndim == 2 else image[..., ::-1]  # OpenCV decodes to BGR


def _stack(images: Sequence[np.ndarray], names: Sequence[str], where: Path) -> np.ndarray:
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
