"""The one way EarSight turns an image file into pixels: ``describe``, the live folder source and
the datasets (image folders, the CIFAR-10 JPEG zips) all call ``read_image``/``decode_image``.

    pixels = read_image(Path("photo.jpg"))   # uint8 (H, W) grey or (H, W, 3) RGB, upright

It lives in ``trainer`` because the app depends on the trainer and not the other way round (as
``earsight.trainer.data.preprocess.fit_to_input`` does). What it promises, for files nobody vetted:

* only regular files are opened (a FIFO named ``x.jpg`` would block the reader forever,
  ``/dev/zero`` never ends), and at most ``MAX_FILE_BYTES`` are read;
* the pixel count is checked from the header before anything is decoded (``MAX_PIXELS``): a
  small PNG can declare 20000 x 20000 pixels, 2.5 GB once decoded and converted;
* the EXIF orientation is applied (a phone stores a portrait photo sideways and tags it), so every
  entry point sees the picture the way a photo viewer shows it;
* transparency is composited deliberately, see ``composite_alpha``.

Decoding is Pillow's (a matplotlib dependency, so always installed), limited to the formats the
app advertises: it reads the header without decoding, which OpenCV cannot, and applies EXIF
orientation with ``ImageOps.exif_transpose``. Every failure is an ``ImageFileError`` whose
message is one line naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from earsight.errors import EarSightError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 2**20  # a 64-megapixel JPEG is ~20 MB; a 16-bit TIFF of one, ~400 MB
MAX_PIXELS = 2**26  # 67 megapixels: a 64 MP phone photo (9248 x 6936) fits, ~270 MB decoded
# Pillow's plugin names for what IMAGE_SUFFIXES advertise (JPEG also opens MPO, the multi-picture
# JPEG some phones write). Obscure formats stay closed: every extra decoder is attack surface.
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM")
# The file names taken for images wherever a folder is read (describe, the folder camera, teach
# photos, image-folder datasets), compared lower-cased: a phone's IMG_0042.JPG counts. Pillow's
# PPM plugin reads .pgm and .ppm.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
FIX_SIZE = "downscale it (e.g. to 4000 pixels on the long side) or pick another file"
FIX_FORMAT = "use a PNG, JPEG, BMP, TIFF or WebP file"


class ImageFileError(EarSightError):
    """An image file is missing, not a regular file, too large, or not a decodable picture.

    ``str(err)``: ``cannot read image WHERE: REASON — FIX``; ``reason`` alone for callers that
    phrase their own line (the datasets).
    """

    def __init__(
        self, where: object, reason: str, fix: str = "", lead: str = "cannot read image"
    ) -> None:
        self.where = str(where)
        self.reason = reason
        super().__init__(f"{lead} {where}: {reason}", fix)


def read_image(path: Path, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """An image file → uint8 (H, W) grey or (H, W, 3) RGB, upright, alpha composited.

    ImageFileError (one line naming ``path``) when it is missing, not a regular file, larger
    than ``max_bytes`` bytes or ``MAX_PIXELS`` pixels, or not a picture Pillow can decode.
    """
    return decode_image(read_file(path, max_bytes), str(path))


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ImageFileError otherwise.

    The type is checked before opening (opening a device can have effects) and again on the
    open descriptor (the path may have changed in between); O_NONBLOCK keeps a FIFO swapped in
    from blocking the open. A file that grows past the limit while read is refused too.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else err.strerror or err
        raise ImageFileError(path, str(reason)) from err
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path)
        if info.st_size > max_bytes:
            raise _too_big(path, info.st_size, max_bytes)
        try:
            data = fh.read(max_bytes + 1)
        except OSError as err:
            raise ImageFileError(path, str(err.strerror or err)) from err
    if len(data) > max_bytes:
        raise _too_big(path, len(data), max_bytes)
    if not data:
        raise ImageFileError(path, "the file is empty")
    return data


def _not_regular(path: Path) -> ImageFileError:
    return ImageFileError(
        path,
        "not a regular file (a folder, FIFO, socket or device)",
        "give an image file",
    )


def _too_big(path: Path, size: int, limit: int) -> ImageFileError:
    return ImageFileError(
        path,
        f"{size / 2**20:.0f} MiB, more than the {limit // 2**20} MiB an image may have",
        FIX_SIZE,
    )


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes → uint8 (H, W) grey or (H, W, 3) RGB, upright, alpha composited.

    ``where`` names the file in messages. The size is checked from the header first (at most
    ``MAX_PIXELS``); 16-bit images are scaled to 8 bits (65535 → 255), float ones clipped to
    their visible range 0..1; the first frame of a multi-frame file is used.
    """
    with warnings.catch_warnings():  # Pillow's own warnings (bomb, corrupt EXIF) would print
        warnings.filterwarnings("ignore", module="PIL")
        source = _open(data, where)
        try:
            source.load()
            return _to_array(_upright(source, where))
        except Exception as err:  # untrusted bytes fail in many ways; all mean "not a picture"
            log.debug("decoding %s failed: %r", where, err)
            raise _undecodable(where) from err
        finally:
            source.close()


def _upright(image: Any, where: str) -> Any:
    """The image turned the way its EXIF orientation says (a no-op without one)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception as err:  # a broken EXIF block does not spoil the pixels
        log.warning("%s: ignoring its unreadable EXIF orientation (%s)", where, err)
        return image


def _open(data: bytes, where: str) -> Any:
    """Pillow's lazy open (header only) with the pixel count checked before any decoding."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # Pillow warns above 89 MP
    except Image.DecompressionBombError as err:  # above 179 MP Pillow refuses by itself
        raise ImageFileError(
            where, f"more than {MAX_PIXELS / 1e6:.0f} megapixels", FIX_SIZE
        ) from err
    except Exception as err:
        log.debug("opening %s failed: %r", where, err)
        raise _undecodable(where) from err
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        image.close()
        raise ImageFileError(
            where,
            f"{width}x{height} pixels, more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixels an image may have",
            FIX_SIZE,
        )
    return image


def _undecodable(where: str) -> ImageFileError:
    return ImageFileError(
        where,
        "not a picture EarSight can decode (corrupt or unsupported)",
        FIX_FORMAT,
    )


def _to_array(image: Any) -> np.ndarray:
    """A loaded PIL image in any mode → uint8 (H, W) grey or (H, W, 3) RGB."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":  # 16-bit PNG/TIFF (I: 32-bit ints, same scale)
        values = np.asarray(image).astype(np.float64)
        return np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
    if mode == "F":  # float TIFF: 0..1 is the visible range
        values = np.nan_to_num(np.asarray(image, np.float64))
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    grey = mode in ("1", "L", "LA", "La") or (mode in ("P", "PA") and _grey_palette(image))
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("LA" if grey else "RGBA"))
        return composite_alpha(rgba[..., :-1], rgba[..., -1])
    return np.asarray(image.convert("L" if grey else "RGB")).copy()


def _grey_palette(image: Any) -> bool:
    palette = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)
    return bool(palette.size) and bool((palette == palette[:, :1]).all())


def composite_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) straight-alpha colour + (H, W) alpha → (H, W) grey (C=1) or (H, W, 3).

    Composited over plain black or plain white, whichever differs more from the alpha-weighted
    mean brightness of the visible pixels. Dropping alpha would show the colour stored under
    transparent pixels, often the same as the shape's (an icon or a glyph whose shape is carried
    only by its alpha), and the model would confidently name a blank. A fixed background fails
    the same way for one polarity: white erases a white icon, black a black one. The contrasting
    one keeps the shape the alpha draws visible whatever its colour: a light glyph lands on black
    (the MNIST polarity), a dark one on white (as on a page). Pixels are never inverted. A fully
    transparent image becomes plain black.
    """
    a = alpha.astype(np.float32)[..., None] / 255.0
    fg = colour.astype(np.float32)
    weight = float(a.sum())
    brightness = float((fg * a).sum() / (weight * fg.shape[-1])) if weight > 0 else 255.0
    background = 0.0 if brightness >= 127.5 else 255.0
    out = np.round(fg * a + background * (1.0 - a)).astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out
