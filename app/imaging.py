"""Fitting a picture to the model's input: centre crop to its aspect ratio, then resize.

Shared by `earsight describe` (image files) and the live loop (camera frames); light on purpose
(numpy + OpenCV only) so the camera path does not pay for SciPy's import.
"""

from __future__ import annotations

import numpy as np


def fit_to_input(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop (H, W[, C]) to the aspect ratio height:width, then resize to it."""
    import cv2

    h, w = pixels.shape[:2]
    if h * width > w * height:  # too tall: crop rows
        crop_h, crop_w = max(1, round(w * height / width)), w
    else:  # too wide (or exact): crop columns
        crop_h, crop_w = h, max(1, round(h * width / height))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    pixels = pixels[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(pixels)
    # INTER_AREA averages every source pixel when shrinking (thin strokes survive, no aliasing);
    # when enlarging it degenerates to nearest neighbour, so use bilinear there.
    shrink = crop_h > height or crop_w > width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)
