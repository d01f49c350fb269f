"""Fitting a picture to the model's input: centre crop, then resize (one path for every entry).

``earsight describe`` (image files), the live loop (camera frames), training (dataset images) and
evaluation all call ``fit_to_input``, so a model sees the same framing wherever a picture comes
from. Light on purpose (numpy + OpenCV only) so the camera path does not pay for SciPy's import.
"""

from __future__ import annotations

import numpy as np


def fit_to_input(pixels: np.ndarray, height: int, width: int, crop: float = 1.0) -> np.ndarray:
    """(H, W[, C]) uint8 → (height, width[, C]) uint8.

    Centre-crop the largest region of aspect height:width, scaled by ``crop`` (1.0 keeps the
    whole region; the ImageNet backbones' evaluation keeps res/(res+32) of the shorter side,
    trainer/mtnet/backbone.py), then resize. ValueError when ``crop`` is not in (0, 1].
    """
    import cv2

    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    h, w = pixels.shape[:2]
    if h * width > w * height:  # too tall: crop rows
        crop_h, crop_w = w * height / width, w
    else:  # too wide (or exact): crop columns
        crop_h, crop_w = h, h * width / height
    crop_h, crop_w = max(1, round(crop_h * crop)), max(1, round(crop_w * crop))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    pixels = pixels[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(pixels)
    # INTER_AREA averages every source pixel when shrinking (thin strokes survive, no aliasing);
    # when enlarging it degenerates to nearest neighbour, so use bilinear there.
    shrink = crop_h > height or crop_w > width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def fit_batch(
    images: np.ndarray, size: int, crop: float = 1.0, channels: int | None = None
) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, size, size, channels) uint8, each image through
    ``fit_to_input``; grey images (C = 1) are repeated to RGB when ``channels`` is 3."""
    n, _, _, c = images.shape
    if c == 1 and channels == 3:
        images = np.repeat(images, 3, axis=3)
        c = 3
    if images.shape[1:3] == (size, size) and crop == 1.0:
        return images
    out = np.empty((n, size, size, c), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = fit_to_input(image, size, size, crop).reshape(size, size, c)
    return out
