"""COIL-100's objects off their black turntable: each view pasted on a crop of a real photo.

The teach benchmark's harder scene (``python -m earsight.trainer.teach.bench --backgrounds``):
a user teaches a thing where they hold it (one place: the same background behind every taught
view) and asks about it elsewhere (another background each time). On COIL's black every pixel
that differs is the object's; here a feature that keys on the background — the colour cue
(trainer/mtnet/colour.py) could — teaches the place, not the thing, and the benchmark shows it.

The photos: scikit-image's bundled real photographs and scikit-learn's two sample images
(no downloads), random square crops of at least 128 px resized to COIL's 128 px. The object's
mask: pixels brighter than BLACK_LEVEL in any channel, closed, holes filled, opened; dark parts
of an object that touch its outline show the background through (a harder test, not an easier).
"""

from __future__ import annotations

import numpy as np

from earsight.errors import UsageError

BLACK_LEVEL = 30  # COIL-100's background is near black (JPEG noise up to ~20)
# scikit-image's real photographs (no drawings, no microscopy of cells on white)
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera")


def background_photos() -> list[np.ndarray]:
    """The offline photos (H, W, 3) uint8 the scenes are cut from; UsageError without
    scikit-image (a dev dependency: ``./install.sh --dev``)."""
    try:
        import skimage.data as skdata
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise UsageError(
            "--backgrounds needs scikit-image's sample photos", "run ./install.sh --dev"
        ) from err
    photos = [np.asarray(getattr(skdata, name)()) for name in SKIMAGE_PHOTOS]
    photos += list(load_sample_images().images)
    return [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for p in photos]


def object_masks(images: np.ndarray) -> np.ndarray:
    """COIL views (N, H, W, 3) uint8 on black → the objects' masks (N, H, W) bool."""
    from scipy import ndimage

    masks = images.max(axis=3) > BLACK_LEVEL
    out = np.empty_like(masks)
    for i, m in enumerate(masks):
        m = ndimage.binary_fill_holes(ndimage.binary_closing(m, iterations=2))
        out[i] = ndimage.binary_opening(m, iterations=1)
    return out


def _crop(photo: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of ``photo`` (at least ``side`` px) resized to side × side."""
    from PIL import Image

    h, w = photo.shape[:2]
    s = int(rng.integers(side, min(h, w) + 1))
    top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    square = Image.fromarray(np.ascontiguousarray(photo[top : top + s, left : left + s]))
    return np.asarray(square.resize((side, side), Image.Resampling.BILINEAR))


def on_backgrounds(
    images: np.ndarray, objects: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COIL views (N, H, W, 3) of ``objects`` (N,) → two scenes of them, both (N, H, W, 3):
    *home*, every view of an object on that object's one crop (where it is taught), and
    *elsewhere*, each view on its own crop of a photo other than its object's home photo;
    and the homes bare (O, H, W, 3), one per object in ``np.unique(objects)`` order (the
    place without the thing: it must be "not sure")."""
    photos, rng = background_photos(), np.random.default_rng(seed)
    side, masks = images.shape[1], object_masks(images)[..., None]  # (N, H, W, 1)
    home, elsewhere = np.empty_like(images), np.empty_like(images)
    kinds = np.unique(objects)
    bare = np.empty((len(kinds), *images.shape[1:]), images.dtype)
    for i, obj in enumerate(kinds):
        rows = np.flatnonzero(objects == obj)
        k = int(rng.integers(len(photos)))
        backdrop = bare[i] = _crop(photos[k], side, rng)
        others = [j for j in range(len(photos)) if j != k]
        home[rows] = np.where(masks[rows], images[rows], backdrop)
        for r in rows:
            away = _crop(photos[int(rng.choice(others))], side, rng)
            elsewhere[r] = np.where(masks[r], images[r], away)
    return home, elsewhere, bare
