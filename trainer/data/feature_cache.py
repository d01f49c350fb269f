"""The frozen backbone's activations, computed once per dataset split and kept on disk.

Training MT-Net on an ImageNet backbone (``MTNetConfig.backbone``) on a 2-core CPU is practical
only because the frozen early blocks run once per image, not once per epoch: ~45 images/s at
224 px here, ~20 min for CIFAR-10's 60,000 images, then every epoch reads the cache.

A cache is one file of float16 activations (N, C, h, w) written in chunks, and a small JSON
beside it saying how many images are done, so a killed run resumes where it stopped. The key
covers everything that changes the numbers: the images' bytes, the backbone and its weights,
where it is cut, the input size and crop, and whether the images were mirrored. Filling a cache
holds ``<folder>/fill.lock`` (filelock): a second process wanting the same activations (a benchmark
beside a training run, two test workers) waits, then reads what the first wrote.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from earsight import paths
from earsight.errors import UsageError
from earsight.locks import exclusive
from earsight.trainer.data.preprocess import fit_batch
from earsight.trainer.mtnet.backbone import EfficientNetLite, preprocess
from earsight.trainer.training.plumbing import progress_bar

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the computation changes: older caches are then not found
CHUNK_IMAGES = 256  # images per forward pass and per progress save
# A process holding a cache's lock is computing it: ~45 images/s here, 20 min for CIFAR-10.
LOCK_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class CacheKey:
    backbone: str
    weights_sha256: str
    cut: int  # EfficientNetLite.trunk's cut: the input of block ``cut``, or pooled features
    resolution: int  # px
    crop: float
    mirrored: bool
    images_sha256: str

    def folder_name(self) -> str:
        text = json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{self.backbone}-cut{self.cut}-{self.resolution}px-{digest}"


def images_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def cached_activations(
    net: EfficientNetLite,
    images: np.ndarray,
    *,
    cut: int,
    resolution: int,
    crop: float = 1.0,
    mirrored: bool = False,
    root: Path | None = None,
    label: str = "features",
) -> np.ndarray:
    """Activations of ``images`` (N, H, W, C) uint8, fitted to ``resolution`` px (centre
    ``crop``), at the backbone's ``cut`` (EfficientNetLite.trunk).

    Returns a read-only float16 memory map (N, C, h, w). Computes what is missing (progress bar,
    resumable), reuses a finished cache. UsageError when the cache folder cannot be written.
    """
    res = resolution
    key = CacheKey(
        net.spec.name, net.spec.weights_sha256, cut, res, crop, mirrored, images_digest(images)
    )
    folder = (root or paths.cache_dir("features")) / key.folder_name()
    shape = _activation_shape(net, cut, res, len(images))
    data_path, done_path = folder / "activations.f16", folder / "done.json"
    if _done_count(done_path, shape) < shape[0]:
        try:
            _fill_locked(
                net, images, (cut, res, crop, mirrored), data_path, done_path, shape, label
            )
        except OSError as err:
            raise UsageError(
                f"cannot write the feature cache in {folder}: {err.strerror or err}",
                "free disk space or set EARSIGHT_CACHE to a writable folder",
            ) from err
    return np.memmap(data_path, dtype=np.float16, mode="r", shape=shape)


def _fill_locked(net, images, job, data_path: Path, done_path: Path, shape, label: str) -> None:
    """Compute what is missing under the cache's lock; the count is read again once held,
    so a process that waited for another one's fill computes nothing."""
    folder = data_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    busy = UsageError(
        f"another process has held the feature cache {folder} for {LOCK_TIMEOUT_S} s",
        "stop the other training run or set EARSIGHT_CACHE to another folder",
    )
    with exclusive(folder / "fill.lock", LOCK_TIMEOUT_S, busy):
        done = _done_count(done_path, shape)
        if done < shape[0]:
            _fill(net, images, job, data_path, done_path, shape, done, label)


def _activation_shape(net: EfficientNetLite, cut: int, res: int, n: int) -> tuple[int, ...]:
    with torch.no_grad():  # one real image's worth: the weights live on the CPU, not on meta
        out = _forward(net.eval(), torch.zeros(1, 3, res, res), cut)
    return (n, *out.shape[1:])


def _forward(net: EfficientNetLite, x: torch.Tensor, cut: int) -> torch.Tensor:
    return net.trunk(x, cut)


def _done_count(done_path: Path, shape: tuple[int, ...]) -> int:
    try:
        record = json.loads(done_path.read_text())
    except (OSError, ValueError):
        return 0
    return int(record.get("done", 0)) if record.get("shape") == list(shape) else 0


@torch.no_grad()
def _fill(net, images, job, data_path, done_path, shape, done, label) -> None:
    cut, res, crop, mirrored = job
    mode = "r+" if data_path.is_file() and done > 0 else "w+"
    out = np.memmap(data_path, dtype=np.float16, mode=mode, shape=shape)
    net.eval()
    n = shape[0]
    n_chunks = -(-(n - done) // CHUNK_IMAGES)
    log.info("caching %s: %d of %d images to compute (%s)", label, n - done, n, data_path.parent)
    with progress_bar(n_chunks, f"caching {label}") as bar:
        for start in range(done, n, CHUNK_IMAGES):
            batch = fit_batch(images[start : start + CHUNK_IMAGES], res, crop, channels=3)
            x = torch.from_numpy(batch).permute(0, 3, 1, 2)  # (B, 3, res, res) uint8
            if mirrored:
                x = x.flip(-1)
            x = preprocess(x).contiguous(memory_format=torch.channels_last)
            out[start : start + len(batch)] = _forward(net, x, cut).float().numpy()
            out.flush()
            done = start + len(batch)
            _write_done(done_path, done, shape)
            bar.update()
    del out


def _write_done(done_path: Path, done: int, shape: tuple[int, ...]) -> None:
    tmp = done_path.with_name(done_path.name + ".tmp")
    tmp.write_text(json.dumps({"done": done, "shape": list(shape)}))
    os.replace(tmp, done_path)
