"""The taught photos' pooled backbone features, cached between learns (issue #13: "cached
backbone features", seconds for the classifier part).

    cache = PhotoFeatureCache.open(out_dir / CACHE_NAME, base_path)
    rows = word_rows(store.photos(word), base, cache, say)   # (N, 2, D): each photo, its mirror
    cache.save()

Every `earsight teach` learns all taught words again. The backbone pass over every photo and
its mirror (~0.1 s each on 2 cores at 160 px) was redone each time, so teaching a tenth word
waited for the nine before it. Rows are keyed by the sha256 of the photo file's bytes, so a
photo replaced, renamed or added by hand is recomputed exactly when its content changes, and
the whole cache by the teach base's sha256 (another base: other features). A cache that cannot
be read is recomputed, never trusted in part. Shapes: D = 1280 (+ bins³ colour cells).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_NAME = "photo-features.npz"  # in the taught model's folder (.model/), beside taught.onnx
BASE_KEY = "base_sha256"  # the npz entry naming the teach base the rows came from
Say = Callable[[str], None]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class PhotoFeatureCache:
    """sha256 of a photo file → its rows (2, D) float32: the photo's pooled features, then its
    mirror's. ``save`` keeps only the rows used since ``open`` (forgotten photos drop out)."""

    path: Path
    base_sha256: str
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    computed: int = 0  # photos whose rows were computed (not found) since open

    @classmethod
    def open(cls, path: Path, base_path: Path) -> PhotoFeatureCache:
        """The cache at ``path`` for the base at ``base_path``; empty when it is missing, for
        another base, or unreadable (logged: it is only a cache)."""
        cache = cls(path, file_sha256(base_path))
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved[BASE_KEY]) != cache.base_sha256:
                    return cache
                cache.rows = {k: saved[k] for k in saved.files if k != BASE_KEY}
        except FileNotFoundError:
            pass
        except Exception as err:  # truncated, hand-edited, another format: recomputed
            log.warning("photo feature cache %s not used (%s); computing the rows again", path, err)
        return cache

    def save(self) -> None:
        """Atomically write the rows used since ``open`` (durable.replace_file)."""
        from earsight.trainer.durable import replace_file

        kept = {k: self.rows[k] for k in sorted(self.used)}
        buffer = io.BytesIO()
        np.savez(buffer, **{BASE_KEY: np.array(self.base_sha256)}, **kept)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, buffer.getvalue())


def word_rows(paths: Sequence[Path], base, cache: PhotoFeatureCache, say: Say) -> np.ndarray:
    """A word's photo files → (N, 2, D) float32 rows of the N readable ones, in ``paths``' order:
    each photo's pooled features and its mirror's, as ``learn.photo_features`` gives them.
    Photos not in ``cache`` are read and run through the backbone together; a file that cannot
    be read (cut short, not a picture) is said and skipped, not the whole learn lost."""
    from earsight.trainer.teach.learn import photo_features

    keys = [file_sha256(p) for p in paths]
    missing = {p: k for p, k in zip(paths, keys, strict=True) if k not in cache.rows}
    readable = _read_photos(list(missing), say)
    if readable:
        rows = photo_features(base, [image for _, image in readable], mirrored=True)
        n = len(readable)  # rows: the n photos, then their n mirrors
        for i, (path, _) in enumerate(readable):
            cache.rows[missing[path]] = np.stack([rows[i], rows[n + i]])
        cache.computed += n
    found = [k for k in keys if k in cache.rows]
    cache.used.update(found)
    if not found:
        return np.zeros((0, 2, 0), np.float32)
    return np.stack([cache.rows[k] for k in found])


def _read_photos(paths: Sequence[Path], say: Say) -> list[tuple[Path, np.ndarray]]:
    """Photo files → (path, RGB uint8 (H, W, 3)) of those that can be read; grey → RGB."""
    from earsight.trainer.data.image_io import ImageFileError, read_image

    photos = []
    for path in paths:
        try:
            image = read_image(path)
        except ImageFileError as err:
            say(f"skipped: {err}")
            continue
        photos.append((path, np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image))
    return photos
