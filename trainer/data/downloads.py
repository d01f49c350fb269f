"""The data root's files: official checksums, downloads, and the cache of decoded arrays.

``CHECKSUMS`` maps an official *file name* to its published md5. Any file whose name is in the
table is verified before it is opened and after it is downloaded; a file whose name is not in the
table is trusted as is. Tests that write small files under an official name register those files'
md5s with ``monkeypatch.setitem(CHECKSUMS, name, md5)``: the check itself stays on, no flag turns
it off, and nothing in the loaders' signatures exists only for tests.

``cached_arrays`` stores what a loader decoded as an uncompressed .npz, valid while the source
files keep their size and mtime (decoding the 60k CIFAR-10 JPEGs takes ~7 s, loading ~0.2 s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path

import numpy as np
from tqdm import tqdm

from earsight.trainer.errors import DatasetError

log = logging.getLogger(__name__)

# Published md5s of the official files (MNIST: torchvision's MNIST.resources; CIFAR: the
# Toronto download page; the JPEG zips: /work/shared/data/README.md).
CHECKSUMS: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar10_jpeg_train.zip": "2c58e4a4bd35f1826c828a9eb7977eaa",
    "cifar10_jpeg_test.zip": "3c39aa52005e74f2516904de9f9f94cb",
}

CHUNK_BYTES = 1 << 20  # read/hash granularity: 1 MiB keeps memory flat on 170 MB tarballs
TIMEOUT_S = 30.0  # per socket operation; a stalled mirror fails instead of hanging forever
CACHE_VERSION = 1  # bump when what the cached arrays mean changes, to invalidate old caches
CACHE_MODE = 0o644  # mkstemp makes 0600; decoded public datasets need no privacy
FIX_CORRUPT = "delete it and run with --download, or fetch it again"


def md5sum(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Raise DatasetError if ``path`` has an official name but not the official md5."""
    expected = CHECKSUMS.get(path.name)
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected:
        raise DatasetError(
            f"{path} is corrupt or not the official file (md5 {actual}, expected {expected})",
            FIX_CORRUPT,
        )


def download(urls: Sequence[str], dest: Path) -> Path:
    """Fetch ``dest.name`` from the first of ``urls`` that serves it with the right md5.

    Each URL is a complete file URL (mirrors are tried in order). The bytes go to
    ``dest.part`` and are renamed into place only once verified, so an interrupted or
    corrupt download never leaves a file that looks complete.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for url in urls:
        try:
            _fetch(url, part)
            _check_part(part, dest.name)
        except (OSError, HTTPException, ValueError, _ChecksumMismatch) as err:
            part.unlink(missing_ok=True)
            if isinstance(err, urllib.error.HTTPError):
                err.close()  # it holds the connection open (ResourceWarning otherwise)
            # A bare URLError's str is "<urlopen error ...>"; its reason reads better.
            reason = err.reason if type(err) is urllib.error.URLError else err
            log.warning("download of %s failed: %s", url, reason)
            failures.append(f"{url}: {reason}")
            continue
        os.replace(part, dest)
        log.info("downloaded %s to %s", url, dest)
        return dest
    raise DatasetError(
        f"could not download {'; '.join(failures) or dest.name}",
        f"check the internet connection or place the file at {dest} by hand",
    )


class _ChecksumMismatch(Exception):
    """A download arrived but its md5 is not the published one (try the next mirror)."""


def _check_part(part: Path, name: str) -> None:
    expected = CHECKSUMS.get(name)
    if expected is None:
        log.warning("no published md5 for %s; keeping it unverified", name)
        return
    actual = md5sum(part)
    if actual != expected:
        raise _ChecksumMismatch(f"corrupt download (md5 {actual}, expected {expected})")


def _fetch(url: str, part: Path) -> None:
    """Stream ``url`` into ``part``, with a progress bar when a person is watching."""
    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, part.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
            disable=not sys.stderr.isatty(),  # no bar noise in logs and CI
        )
        received = 0  # counted here: a disabled tqdm does not count
        with bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise ValueError(f"connection closed after {received} of {total} bytes")


def cached_arrays(
    sources: Sequence[Path],
    build: Callable[[], dict[str, np.ndarray]],
    *,
    local: Path | None,
    central: Path,
) -> dict[str, np.ndarray]:
    """``build()``, or the arrays it returned before while ``sources`` are unchanged.

    ``local`` (next to the data, keyed by file names so the folder can move) is used when its
    folder is writable; otherwise ``central`` (keyed by absolute paths). A folder without write
    bits counts as read-only even for root: /work/shared/data is a shared copy. When neither
    can be written the arrays are returned uncached, with a warning.
    """
    keys = {central: _cache_key(sources, absolute=True)}
    if local is not None:
        keys = {local: _cache_key(sources, absolute=False), **keys}
    for path, key in keys.items():
        if (hit := _read_cache(path, key)) is not None:
            log.info("loaded cached arrays from %s", path)
            return hit
    arrays = build()
    target = local if local is not None and _writable(local.parent) else central
    try:
        if not _writable(target.parent):
            raise PermissionError("the folder is read-only")
        _write_cache(target, keys[target], arrays)
    except OSError as err:
        log.warning("not caching decoded images: cannot write %s (%s)", target, err)
    return arrays


def _cache_key(sources: Sequence[Path], *, absolute: bool) -> str:
    entries = []
    for path in sources:
        st = path.stat()
        name = str(path.resolve()) if absolute else path.name
        entries.append([name, st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps([CACHE_VERSION, entries]).encode()).hexdigest()


def _writable(folder: Path) -> bool:
    """Whether ``folder``, or its first existing parent if it is yet to be made, is writable."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    has_write_bit = folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    return bool(has_write_bit) and os.access(folder, os.W_OK)


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return {name: npz[name] for name in npz.files if name != "key"}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        log.warning("ignoring unreadable cache %s (%s)", path, err)
        return None


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write, then rename: a crash mid-write never leaves a truncated cache that looks valid.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.array(key), **arrays)
        os.chmod(tmp, CACHE_MODE)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("cached decoded arrays at %s", path)
