"""Capturing the views of an object to teach: keep sharp, lit, different frames, and say why not.

    result = capture_views(grabber, want=30, seconds=6.0, on_status=voice.say)
    result.frames        # RGB uint8 (H, W, 3) copies, at most ``want``
    result.dark, result.blurred, result.same   # frames turned away, by reason

Like MYCam's feedback to blind photographers, the user hears what is wrong while turning the
object ("too dark", "blurred", "the same view"), at most one message every ``MESSAGE_GAP_S``
so that the advice does not drown the task. Each check is cheap (a 320 px grey copy, < 1 ms).

The thresholds were measured on 31 real photos (skimage.data's astronaut, coffee, chelsea,
rocket, hubble_deep_field, immunohistochemistry; ../shared/photos-dev's 12 CIFAR-class and 13
other photos, 350–1024 px), each also darkened (× 0.15), blurred (Gaussian, σ = 1 % of the long
side, as an out-of-focus webcam), moved (roll by 0.5 % and 10 % of the width, rotated 2°), with
camera-like noise (σ = 5) and re-encoded as JPEG 70 (2026-11-30, OpenCV 4, this machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from earsight.app.camera.sources import import_cv2

log = logging.getLogger(__name__)

# The 95th percentile of luminance (0.299 R + 0.587 G + 0.114 B, 0..255) below which a frame is
# too dark: the bright part of the frame, not its mean, so a well-lit object on a dark cloth
# passes (COIL-100's blue ring on black: mean 39, p95 79). Real photos and COIL-100 views:
# p95 79–233; darkened × 0.15: 11–34.
DARK_P95 = 50.0
# Variance of the Laplacian of the grey frame scaled down so its long side is at most
# WORK_SIDE_PX (the figure does not depend on a large camera's resolution; a small frame is not
# scaled up, which would blur it). Sharp photos: 63–6400 (a banana on a plain white table was
# the lowest), COIL-100's 128 px views ≥ 55; blurred by σ = 1 %: 0.7–5.9. 20 is about their
# geometric middle, a factor of 3 from each.
BLUR_VAR = 20.0
WORK_SIDE_PX = 320
# Mean absolute difference (0..255) of THUMB_PX × THUMB_PX grey thumbnails below which a frame
# is the same view as the last one kept. Noise only (σ = 5) or JPEG re-encoding: ≤ 1.8; moved by
# 0.5 % of the width: 0.5–4.7 (median 3.1); rotated 2°: 1.7–16.7 (median 8.8).
SAME_MAD = 2.5
THUMB_PX = 32
MESSAGE_GAP_S = 2.0  # at most one advice message this often
FRAME_WAIT_S = 0.5  # how long one wait for a new frame lasts (then the deadline is checked)

TOO_DARK = "too dark: turn on a light or move to a brighter place"
BLURRED = "blurred: hold the object still and turn it more slowly"
SAME_VIEW = "the same view: turn the object a little"
NO_FRAMES = "no picture from the camera"

OnStatus = Callable[[str], None]


@dataclass(frozen=True)
class FrameQuality:
    """The measures of one frame; ``problem`` is None for a frame worth keeping."""

    luminance: float  # 95th percentile, 0..255
    sharpness: float  # variance of the Laplacian at most WORK_SIDE_PX
    thumb: np.ndarray = field(repr=False)  # (THUMB_PX, THUMB_PX) float32 grey
    difference: float | None  # mean abs difference to the nearest kept thumbnail; None: first

    @property
    def problem(self) -> str | None:
        if self.luminance < DARK_P95:
            return TOO_DARK
        if self.sharpness < BLUR_VAR:
            return BLURRED
        if self.difference is not None and self.difference < SAME_MAD:
            return SAME_VIEW
        return None


def frame_quality(image: np.ndarray, kept_thumbs: np.ndarray | None = None) -> FrameQuality:
    """Measure an RGB uint8 (H, W, 3) frame against the thumbnails of the frames kept so far,
    (K, THUMB_PX, THUMB_PX) or one (THUMB_PX, THUMB_PX): a video that loops, or an object
    turned back, gives views already kept."""
    cv2 = import_cv2()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    scale = min(1.0, WORK_SIDE_PX / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    work = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)  # area: no aliasing "detail"
    thumb = cv2.resize(grey, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA)
    thumb = thumb.astype(np.float32)
    difference = None
    if kept_thumbs is not None and kept_thumbs.size:
        difference = float(np.abs(thumb - kept_thumbs).mean(axis=(-2, -1)).min())
    return FrameQuality(
        luminance=float(np.percentile(grey, 95)),
        sharpness=float(cv2.Laplacian(work, cv2.CV_64F).var()),
        thumb=thumb,
        difference=difference,
    )


@dataclass(frozen=True)
class CaptureResult:
    frames: list[np.ndarray]  # kept frames, RGB uint8 (H, W, 3), in capture order
    thumbs: list[np.ndarray] = field(repr=False)  # theirs (and earlier turns'), for the next
    seen: int  # frames looked at
    dark: int
    blurred: int
    same: int

    def summary(self) -> str:
        """E.g. ``captured 30 views (4 too dark, 2 blurred, 11 the same)``."""
        reasons = [(self.dark, "too dark"), (self.blurred, "blurred"), (self.same, "the same")]
        turned = ", ".join(f"{n} {why}" for n, why in reasons if n)
        views = f"{len(self.frames)} view{'s' * (len(self.frames) != 1)}"
        return f"captured {views}" + (f" ({turned} left out)" if turned else "")


class _Advice:
    """Says a problem at most once every MESSAGE_GAP_S (the newest problem wins the slot)."""

    def __init__(self, on_status: OnStatus | None) -> None:
        self._on_status = on_status
        self._said_at = -float("inf")

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if self._on_status is None or now - self._said_at < MESSAGE_GAP_S:
            return
        self._said_at = now
        self._on_status(message)


def capture_views(
    grabber: object,
    want: int = 30,
    seconds: float = 6.0,
    on_status: OnStatus | None = None,
    kept_before: list[np.ndarray] | None = None,
) -> CaptureResult:
    """Keep up to ``want`` good, different frames from a started ``FrameGrabber`` in ``seconds``.

    Frames are looked at no more often than ``seconds / want`` apart, so the kept views spread
    over the whole turn of the object rather than bunching in its first second. Returns early
    when ``want`` frames are kept; a camera that gives no frame at all is reported once.
    ``kept_before``: thumbnails of an earlier turn's views (``CaptureResult.thumbs``), which
    count as "the same" too.
    """
    if want < 1 or not seconds > 0:
        raise ValueError(f"want must be ≥ 1 and seconds > 0, got {want}, {seconds}")
    advise = _Advice(on_status)
    gap_s = seconds / want
    deadline = time.perf_counter() + seconds
    kept: list[np.ndarray] = []
    counts = {TOO_DARK: 0, BLURRED: 0, SAME_VIEW: 0}
    thumbs = list(kept_before or [])  # of the kept frames, (THUMB_PX, THUMB_PX) each
    seen, after = 0, time.perf_counter()
    while len(kept) < want and time.perf_counter() < deadline:
        frame = grabber.latest(FRAME_WAIT_S, after=after)  # type: ignore[attr-defined]
        if frame is None:
            continue
        after = frame.t_capture + gap_s
        seen += 1
        quality = frame_quality(frame.image, np.stack(thumbs) if thumbs else None)
        if quality.problem is not None:
            counts[quality.problem] += 1
            advise(quality.problem)
            continue
        kept.append(np.array(frame.image))  # a writable copy: the grabber's frame is shared
        thumbs.append(quality.thumb)
    if seen == 0 and on_status is not None:
        on_status(NO_FRAMES)
    log.debug("capture: %d seen, %d kept, rejected %s", seen, len(kept), counts)
    return CaptureResult(kept, thumbs, seen, counts[TOO_DARK], counts[BLURRED], counts[SAME_VIEW])
