"""Tests for trainer.data.images: every source on small official-format files the tests write.

Files written under an official name (e.g. ``train-images-idx3-ubyte.gz``) are registered in
``CHECKSUMS`` with their own md5 through the ``trust`` fixture, so the md5 check stays on.
"""

from __future__ import annotations

import gzip
import http.server
import io
import logging
import os
import pickle
import shutil
import socket
import struct
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from earsight.trainer.data import cifar, downloads, images
from earsight.trainer.data.downloads import CHECKSUMS, md5sum
from earsight.trainer.data.images import ImageSet, load_images
from earsight.trainer.errors import DatasetError

SHARED_DATA = Path(
    os.environ.get("EARSIGHT_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
Trust = Callable[[Path], None]


@pytest.fixture(autouse=True)
def _private_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may write to the user's real data root."""
    monkeypatch.setenv("EARSIGHT_DATA", str(tmp_path / "user-data"))


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Trust:
    """Register a test-written file's md5 under its official name for this test only."""
    return lambda path: monkeypatch.setitem(CHECKSUMS, path.name, md5sum(path))


# --- writers for the official formats -------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, key in zip(MNIST_NAMES, arrays, strict=True):
        write_idx(folder / name, arrays[key], 2051 if "images" in name else 2049)
    return arrays


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` opcodes, like the cPickle that made CIFAR's files.

    Python 3's protocol 2 would write bytes through a ``_codecs.encode`` global, which the
    official files never contain (and the restricted unpickler rightly refuses).
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 1.x, which made the official files, named the array rebuilder numpy.core.*
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cifar_batch(labels: list[int], label_key: str, seed: int) -> dict[str, object]:
    data = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    return {"batch_label": "batch", label_key: labels, "data": data, "filenames": ["x.png"]}


def write_cifar10(folder: Path) -> dict[str, dict[str, object]]:
    top = "cifar-10-batches-py/"
    batches = {f"data_batch_{i}": cifar_batch([i, i + 1, 9], "labels", i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch([3, 0], "labels", 7)
    meta = {"num_cases_per_batch": 3, "label_names": list(cifar.CIFAR10_CLASSES), "num_vis": 3072}
    # Stored out of order, as in the official tarball, which the loader must not depend on.
    members = {top + "readme.html": b"<html></html>", top + "batches.meta": py2_pickle(meta)}
    for name in ("data_batch_4", "test_batch", "data_batch_3", "data_batch_2"):
        members[top + name] = py2_pickle(batches[name])
    members[top + "data_batch_5"] = py2_pickle(batches["data_batch_5"])
    members[top + "data_batch_1"] = py2_pickle(batches["data_batch_1"])
    write_tar(folder / "cifar-10-python.tar.gz", members)
    return batches


CIFAR100_NAMES = ["apple", "aquarium_fish", "maple_tree", "sweet_pepper"]


def write_cifar100(
    folder: Path,
    meta: object = None,
    train_labels: tuple[int, ...] = (0, 1, 2, 3, 1),
    test_labels: tuple[int, ...] = (3, 1),
) -> None:
    top = "cifar-100-python/"
    coarse = {0: 0, 1: 0, 2: 1, 3: 1}  # fruit, fish, tree, pepper → two superclasses
    train = cifar_batch(list(train_labels), "fine_labels", 1)
    train["coarse_labels"] = [coarse[i] for i in train_labels]
    test = cifar_batch(list(test_labels), "fine_labels", 2)
    test["coarse_labels"] = [coarse[i] for i in test_labels]
    if meta is None:
        meta = {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": ["fruit", "fish"]}
    members = {top + "meta": py2_pickle(meta), top + "test": py2_pickle(test)}
    members[top + "train"] = py2_pickle(train)
    write_tar(folder / "cifar-100-python.tar.gz", members)


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = rgb[::-1]  # OpenCV encodes BGR
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def write_jpeg_zip(path: Path, entries: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def write_cifar10_zips(folder: Path) -> None:
    # Red encodes the file number, so order within a class is visible in the pixels; names are
    # written unpadded and shuffled to show the sort is numeric (2 before 10), not textual.
    train = {f"truck/{n}.jpg": jpeg((20 * n, 0, 200)) for n in (10, 2, 7)}
    train |= {f"airplane/{n}.jpg": jpeg((20 * n, 200, 0)) for n in (3, 1)}
    write_jpeg_zip(folder / "cifar10_jpeg_train.zip", train)
    write_jpeg_zip(folder / "cifar10_jpeg_test.zip", {"cat/0.jpg": jpeg((255, 0, 0))})


# --- basics -----------------------------------------------------------------------------------


def test_unknown_source_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match="unknown image source 'imagenet'"):
        load_images("imagenet")


# --- MNIST --------------------------------------------------------------------------------------


def test_mnist_shapes_labels_words(tmp_path: Path, trust: Trust) -> None:
    arrays = write_mnist(tmp_path / "mnist")
    for name in MNIST_NAMES:
        trust(tmp_path / "mnist" / name)
    data = load_images("mnist", tmp_path)
    assert data.name == "mnist"
    assert data.classes == images.DIGIT_WORDS
    assert data.classes[:3] == ("zero", "one", "two") and data.classes[9] == "nine"
    assert data.train.images.shape == (12, 28, 28, 1) and data.train.images.dtype == np.uint8
    assert data.test.images.shape == (5, 28, 28, 1)
    assert data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.images[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(data.test.labels, arrays["test_labels"])


def test_mnist_missing_files_names_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_images("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz") in message
    assert "run with --download, or pass --data-root DIR" in message
    assert "\n" not in message


def test_mnist_md5_mismatch_is_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist")  # official names, not trusted: official md5s apply
    with pytest.raises(DatasetError, match=r"corrupt or not the official file \(md5 [0-9a-f]{32}"):
        load_images("mnist", tmp_path)


def test_mnist_truncated_gzip(tmp_path: Path, trust: Trust) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    for name in MNIST_NAMES:
        trust(tmp_path / "mnist" / name)
    with pytest.raises(DatasetError, match="not a readable gzip file"):
        load_images("mnist", tmp_path)


@pytest.mark.parametrize(
    ("magic", "shape", "extra", "match"),
    [
        (2049, (12, 28, 28), b"", r"not an idx file \(magic 2049, expected 2051\)"),
        (2051, (12, 28, 28), b"\0", "bytes but its header"),
        (2051, (12, 27, 28), b"", "do not match"),
    ],
)
def test_mnist_bad_header(
    tmp_path: Path, trust: Trust, magic: int, shape: tuple[int, ...], extra: bytes, match: str
) -> None:
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    header = struct.pack(">4I", magic, *shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + bytes(int(np.prod(shape))) + extra)
    for name in MNIST_NAMES:
        trust(tmp_path / "mnist" / name)
    with pytest.raises(DatasetError, match=match):
        load_images("mnist", tmp_path)


@pytest.mark.skipif(
    not (SHARED_DATA / "mnist").is_dir(),
    reason=f"no shared MNIST copy at {SHARED_DATA}/mnist (set EARSIGHT_SHARED_DATA)",
)
def test_real_mnist_from_shared_data() -> None:
    for name in MNIST_NAMES:
        assert md5sum(SHARED_DATA / "mnist" / name) == CHECKSUMS[name]
    data = load_images("mnist", SHARED_DATA)
    assert data.train.images.shape == (60000, 28, 28, 1)
    assert data.test.images.shape == (10000, 28, 28, 1)
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(data.train.labels).tolist() == train_counts
    assert np.bincount(data.test.labels).tolist() == test_counts
    assert data.train.labels[:5].tolist() == [5, 0, 4, 1, 9]


# --- CIFAR python tarballs ----------------------------------------------------------------------


def test_cifar10_tarball(tmp_path: Path, trust: Trust) -> None:
    batches = write_cifar10(tmp_path / "cifar10")
    trust(tmp_path / "cifar10" / "cifar-10-python.tar.gz")
    data = load_images("cifar10", tmp_path)
    assert data.classes == cifar.CIFAR10_CLASSES
    assert data.train.images.shape == (15, 32, 32, 3) and data.test.images.shape == (2, 32, 32, 3)
    assert data.train.labels.tolist() == [1, 2, 9, 2, 3, 9, 3, 4, 9, 4, 5, 9, 5, 6, 9]
    # Row-major planes: byte 0 is R of pixel (0,0), 1024 is its G, 2048 its B; 33 is R of (1,1).
    row = batches["test_batch"]["data"][1]
    assert data.test.images[1, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert data.test.images[1, 1, 1, 0] == row[33]


def test_cifar10_prefers_tarball_over_jpeg_zips(tmp_path: Path, trust: Trust) -> None:
    write_cifar10(tmp_path / "cifar10")
    write_cifar10_zips(tmp_path / "cifar10")
    for name in ("cifar-10-python.tar.gz", *cifar.CIFAR10_ZIPS):
        trust(tmp_path / "cifar10" / name)
    assert load_images("cifar10", tmp_path).train.images.shape[0] == 15


def test_cifar100_fine_labels_and_words(tmp_path: Path, trust: Trust) -> None:
    write_cifar100(tmp_path / "cifar100")
    trust(tmp_path / "cifar100" / "cifar-100-python.tar.gz")
    data = load_images("cifar100", tmp_path)
    assert data.classes == ("apple", "aquarium fish", "maple tree", "sweet pepper")
    assert data.train.labels.tolist() == [0, 1, 2, 3, 1]
    assert data.test.labels.tolist() == [3, 1]
    assert data.train.images.shape == (5, 32, 32, 3)


def _extract(tarball: Path, into: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Extract like `tar xzf` (what torchvision and others leave behind); trust its members."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(into, filter="data")
        names = [m.name for m in tar.getmembers() if m.isfile()]
    for name in names:
        monkeypatch.setitem(cifar.EXTRACTED_MD5, name, md5sum(into / name))
    return into


@pytest.mark.faults
@pytest.mark.parametrize("layout", ["next to the tarball", "data root", "is the data root"])
def test_extracted_cifar_folders_are_accepted(
    tmp_path: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    kinds = (
        ("cifar10", write_cifar10, cifar.CIFAR10_TARBALL, cifar.CIFAR10_DIR),
        ("cifar100", write_cifar100, cifar.CIFAR100_TARBALL, cifar.CIFAR100_DIR),
    )
    for name, writer, tarball, _ in kinds:
        writer(tmp_path / "official" / name)
        trust(tmp_path / "official" / name / tarball)
    for name, _, tarball, top in kinds:
        official = load_images(name, tmp_path / "official")
        root = tmp_path / layout.replace(" ", "-") / name
        into = {"next to the tarball": root / name, "data root": root, "is the data root": root}
        _extract(tmp_path / "official" / name / tarball, into[layout], monkeypatch)
        data_root = root / top if layout == "is the data root" else root
        _assert_same(load_images(name, data_root, cache=False), official)


@pytest.mark.faults
def test_extracted_cifar_folder_incomplete_or_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar10(tmp_path / "official")
    top = _extract(tmp_path / "official" / "cifar-10-python.tar.gz", tmp_path, monkeypatch)
    extracted = top / cifar.CIFAR10_DIR
    (extracted / "data_batch_3").write_bytes(b"not the official file")
    with pytest.raises(DatasetError, match=r"data_batch_3 is corrupt or not the official file"):
        load_images("cifar10", tmp_path)
    (extracted / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py has no file data_batch_3"):
        load_images("cifar10", tmp_path)
    shutil.rmtree(extracted)
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found.*cifar-10-batches-py"):
        load_images("cifar10", tmp_path)


def test_cifar_md5_mismatch(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "cifar100")
    with pytest.raises(DatasetError) as err:
        load_images("cifar100", tmp_path)
    assert "expected eb9058c3a382ffc7106e4002c42a8d85" in str(err.value)
    assert "delete it and run with --download, or fetch it again" in str(err.value)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, trust: Trust) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(control), protocol=2))
    assert control.exists(), "the payload should work when unpickled without restrictions"
    marker = tmp_path / "pwned"
    write_cifar100(tmp_path / "cifar100", meta={"fine_label_names": Evil(marker)})
    trust(tmp_path / "cifar100" / "cifar-100-python.tar.gz")
    with pytest.raises(DatasetError, match=r"refusing to load global (posix|os)\.system"):
        load_images("cifar100", tmp_path)
    assert not marker.exists()


def test_python3_bytes_global_is_refused(tmp_path: Path, trust: Trust) -> None:
    # Only numpy's array rebuilders are allowed; even the harmless _codecs.encode is not.
    folder = tmp_path / "cifar100"
    write_cifar100(folder)
    top = "cifar-100-python/"
    meta = pickle.dumps({b"fine_label_names": [b"apple"]}, protocol=2)
    with tarfile.open(folder / "cifar-100-python.tar.gz", "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    write_tar(folder / "cifar-100-python.tar.gz", members | {top + "meta": meta})
    trust(folder / "cifar-100-python.tar.gz")
    with pytest.raises(DatasetError, match=r"refusing to load global _codecs\.encode"):
        load_images("cifar100", tmp_path)


def test_cifar_tarball_missing_member_and_garbage(tmp_path: Path, trust: Trust) -> None:
    path = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
    write_tar(path, {"cifar-100-python/train": b"x"})
    trust(path)
    with pytest.raises(DatasetError, match="corrupt or unsafe"):
        load_images("cifar100", tmp_path)
    write_tar(path, {})
    trust(path)
    with pytest.raises(DatasetError, match="has no file cifar-100-python/"):
        load_images("cifar100", tmp_path)
    path.write_bytes(b"not a tarball")
    trust(path)
    with pytest.raises(DatasetError, match=r"not a readable tar\.gz"):
        load_images("cifar100", tmp_path)


# --- CIFAR-10 JPEG zips and the cache ------------------------------------------------------------


def test_cifar10_jpeg_zips_order_and_colours(tmp_path: Path, trust: Trust) -> None:
    write_cifar10_zips(tmp_path / "cifar10")
    for name in cifar.CIFAR10_ZIPS:
        trust(tmp_path / "cifar10" / name)
    data = load_images("cifar10", tmp_path, cache=False)
    assert data.classes == cifar.CIFAR10_CLASSES
    assert data.train.images.shape == (5, 32, 32, 3) and data.test.images.shape == (1, 32, 32, 3)
    assert data.train.labels.tolist() == [0, 0, 9, 9, 9]  # airplane before truck
    red = data.train.images[:, 16, 16, 0].astype(int)
    np.testing.assert_allclose(red, [20, 60, 40, 140, 200], atol=4)  # 1, 3 | 2, 7, 10
    np.testing.assert_allclose(data.test.images[0, 16, 16], [255, 0, 0], atol=4)  # RGB, not BGR
    assert data.test.labels.tolist() == [3]
    assert not list(tmp_path.rglob("*.npz"))


def test_cifar10_missing_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_images("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar10" / "cifar-10-python.tar.gz") in message
    assert str(tmp_path / "cifar10" / "cifar10_jpeg_test.zip") in message
    assert "--download" in message


def test_cifar10_bad_zip(tmp_path: Path, trust: Trust) -> None:
    write_cifar10_zips(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar10_jpeg_test.zip").write_bytes(b"PK garbage")
    for name in cifar.CIFAR10_ZIPS:
        trust(tmp_path / "cifar10" / name)
    with pytest.raises(DatasetError, match="not a readable zip file"):
        load_images("cifar10", tmp_path)


def test_cifar10_zip_with_undecodable_jpeg(tmp_path: Path, trust: Trust) -> None:
    write_cifar10_zips(tmp_path / "cifar10")
    write_jpeg_zip(tmp_path / "cifar10" / "cifar10_jpeg_test.zip", {"dog/0.jpg": b"nope"})
    for name in cifar.CIFAR10_ZIPS:
        trust(tmp_path / "cifar10" / name)
    with pytest.raises(DatasetError, match=r"dog/0\.jpg is not a readable image"):
        load_images("cifar10", tmp_path, cache=False)


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = cifar._read_jpeg_zip
    monkeypatch.setattr(cifar, "_read_jpeg_zip", lambda p: calls.append(p) or real(p))
    return calls


def _assert_same(a: ImageSet, b: ImageSet) -> None:
    assert a.classes == b.classes
    for split_a, split_b in ((a.train, b.train), (a.test, b.test)):
        np.testing.assert_array_equal(split_a.images, split_b.images)
        np.testing.assert_array_equal(split_a.labels, split_b.labels)
        assert split_a.images.dtype == split_b.images.dtype == np.uint8
        assert split_a.labels.dtype == split_b.labels.dtype == np.int64


def test_cache_hit_returns_identical_arrays(
    tmp_path: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar10"
    write_cifar10_zips(folder)
    for name in cifar.CIFAR10_ZIPS:
        trust(folder / name)
    first = load_images("cifar10", tmp_path)
    assert (folder / ".earsight-cache-jpeg.npz").is_file()
    calls = _forbid_decoding(monkeypatch)
    _assert_same(load_images("cifar10", tmp_path), first)
    assert calls == []
    os.utime(folder / "cifar10_jpeg_test.zip", ns=(1, 1))  # changed mtime: cache is stale
    _assert_same(load_images("cifar10", tmp_path), first)
    assert len(calls) == 2


def test_cache_for_read_only_root_goes_to_user_data(
    tmp_path: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shared" / "cifar10"
    write_cifar10_zips(folder)
    for name in cifar.CIFAR10_ZIPS:
        trust(folder / name)
    folder.chmod(0o555)  # no write bits: respected even when the tests run as root
    try:
        first = load_images("cifar10", tmp_path / "shared")
        assert not (folder / ".earsight-cache-jpeg.npz").exists()
        cached = list((tmp_path / "user-data" / "cache").glob("cifar10-jpeg-*.npz"))
        assert len(cached) == 1
        calls = _forbid_decoding(monkeypatch)
        _assert_same(load_images("cifar10", tmp_path / "shared"), first)
        assert calls == []
    finally:
        folder.chmod(0o755)


def test_cache_skipped_with_warning_when_nowhere_writable(
    tmp_path: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "cifar10"
    write_cifar10_zips(folder)
    for name in cifar.CIFAR10_ZIPS:
        trust(folder / name)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    monkeypatch.setenv("EARSIGHT_DATA", str(locked / "data"))
    folder.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING):
            data = load_images("cifar10", tmp_path)
    finally:
        folder.chmod(0o755)
    assert data.train.images.shape == (5, 32, 32, 3)
    assert "not caching" in caplog.text
    assert not list(tmp_path.rglob("*.npz"))


# --- sklearn digits ------------------------------------------------------------------------------


def test_digits_split_is_deterministic_and_stratified() -> None:
    data = load_images("digits")
    assert data.classes[0] == "zero" and data.classes[9] == "nine"
    assert data.train.images.shape == (1437, 8, 8, 1) and data.test.images.shape == (360, 8, 8, 1)
    assert data.train.images.dtype == np.uint8 and data.train.images.max() == 255
    total = Counter(data.train.labels.tolist()) + Counter(data.test.labels.tolist())
    for label, n_test in Counter(data.test.labels.tolist()).items():
        assert abs(n_test - 0.2 * total[label]) <= 1
    _assert_same(load_images("digits"), data)


# --- folder --------------------------------------------------------------------------------------


def write_png(path: Path, value: int, size: tuple[int, int] = (8, 6), colour: bool = False) -> None:
    shape = (size[1], size[0], 3) if colour else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, np.full(shape, value, np.uint8))
    assert ok
    path.write_bytes(encoded.tobytes())


def test_folder_classes_words_and_split(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for word, base in (("hot_dog", 10), ("cat", 100), ("ant", 200)):
        for i in range(5):
            write_png(root / word / f"{i}.png", base + i)
    (root / "cat" / "notes.txt").write_text("not an image")
    data = load_images("folder", root)
    assert data.classes == ("ant", "cat", "hot dog")
    assert data.train.images.shape == (12, 6, 8, 1) and data.test.images.shape == (3, 6, 8, 1)
    assert sorted(data.test.labels.tolist()) == [0, 1, 2]
    assert data.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    bases = np.array([200, 100, 10])[data.test.labels]
    assert np.all((data.test.images[:, 0, 0, 0] - bases) < 5)  # pixels follow their labels
    _assert_same(load_images("folder", root, cache=False), data)
    assert not list(root.rglob("*.npz")), "EarSight must not write into the user's folder"


def test_folder_train_test_subfolders_and_colour(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_png(root / "train" / "cup" / "a.png", 1, colour=True)
    write_png(root / "train" / "cup" / "b.bmp", 2)
    write_png(root / "train" / "pen" / "a.png", 3)
    write_png(root / "test" / "pen" / "z.png", 4)
    data = load_images("folder", root)
    assert data.classes == ("cup", "pen")
    assert data.train.images.shape == (3, 6, 8, 3)  # one colour image makes all RGB
    assert data.test.labels.tolist() == [1]


def test_folder_mismatched_sizes_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_png(root / "cat" / "a.png", 1)
    write_png(root / "cat" / "b.png", 1)
    write_png(root / "dog" / "odd.png", 1, size=(9, 6))
    with pytest.raises(DatasetError) as err:
        load_images("folder", root)
    message = str(err.value)
    assert str(root / "dog" / "odd.png") in message and "is 9x6" in message
    assert "8x6 (2 files)" in message and "9x6 (1 files)" in message
    assert "does not resize silently" in message


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="needs a folder"):
        load_images("folder")
    with pytest.raises(DatasetError, match="does not exist"):
        load_images("folder", tmp_path / "nowhere")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        load_images("folder", tmp_path / "empty")
    (tmp_path / "empty" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match=r"broken\.jpg is not a readable image"):
        load_images("folder", tmp_path / "empty")


# --- downloads -----------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, and its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_mnist_over_http_with_mirror_fallback(
    tmp_path: Path, http_root: tuple[Path, str], trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = http_root
    arrays = write_mnist(served / "mnist")
    for name in MNIST_NAMES:
        trust(served / "mnist" / name)
    monkeypatch.setattr(images, "MNIST_MIRRORS", (f"{base}/missing/", f"{base}/mnist/"))
    data = load_images("mnist", tmp_path / "root", download=True)
    np.testing.assert_array_equal(data.train.images[..., 0], arrays["train_images"])
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(MNIST_NAMES)


def test_download_checksum_failure_leaves_nothing(
    tmp_path: Path, http_root: tuple[Path, str], trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base = http_root
    write_mnist(served / "mnist")
    for name in MNIST_NAMES:
        trust(served / "mnist" / name)
    monkeypatch.setitem(CHECKSUMS, "t10k-images-idx3-ubyte.gz", "0" * 32)
    monkeypatch.setattr(images, "MNIST_MIRRORS", (f"{base}/mnist/",))
    with pytest.raises(DatasetError) as err:
        load_images("mnist", tmp_path / "root", download=True)
    assert f"expected {'0' * 32}" in str(err.value)
    assert "place the file at" in str(err.value)
    folder = tmp_path / "root" / "mnist"
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(folder.glob("*.part"))


def test_download_network_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(cifar, "CIFAR_URL_BASE", f"http://127.0.0.1:{port}/")
    with pytest.raises(DatasetError) as err:
        load_images("cifar10", tmp_path, download=True)
    message = str(err.value)
    assert message.startswith(f"could not download http://127.0.0.1:{port}/cifar-10-python")
    assert f"place the file at {tmp_path / 'cifar10' / 'cifar-10-python.tar.gz'}" in message


def test_download_cifar100_from_file_url(
    tmp_path: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "mirror"
    write_cifar100(source)
    trust(source / "cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR_URL_BASE", source.as_uri() + "/")
    data = load_images("cifar100", tmp_path / "root", download=True)
    assert data.classes[1] == "aquarium fish"
    assert downloads.md5sum(tmp_path / "root" / "cifar100" / "cifar-100-python.tar.gz") == md5sum(
        source / "cifar-100-python.tar.gz"
    )


def test_a_data_root_naming_the_dataset_folder_itself_names_its_parent(tmp_path):
    (tmp_path / "mnist").mkdir()
    for split in ("train", "t10k"):  # the files straight in DIR/mnist: --data-root DIR/mnist
        for kind in ("images-idx3", "labels-idx1"):
            (tmp_path / "mnist" / f"{split}-{kind}-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match=f"pass --data-root {tmp_path} \\(the folder that holds"):
        load_images("mnist", tmp_path / "mnist")
