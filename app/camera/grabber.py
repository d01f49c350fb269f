"""Camera sources for ``earsight live``: a URI → SourceSpec, a grabber keeping the freshest frame.

    spec = parse_source("/dev/video0")   # 0, csi://0, rtsp://host/path, clip.avi, a folder, file://…
    with FrameGrabber(spec, on_status=say) as grabber:   # "camera lost" / "camera back"
        frame = grabber.latest(timeout_s=0.5)             # RGB uint8, None while the camera is lost
        pixels = prepare(frame.image, (28, 28), channels=1)

The jetson-inference pattern "capture → infer → speak": a daemon thread reads continuously and
keeps only the newest frame, so a key press gets what the camera sees now, never a frame that sat
in a driver or decoder buffer. Video files and image folders are paced at their frame rate so
they behave like a camera (a demo or a test sees time pass). When reads fail (camera unplugged,
stream dropped, file removed) the thread says "camera lost" once, retries every ``retry_s``,
reminds ("still no camera, retrying") every ``remind_s`` and says "camera back" when frames flow
again; callers never block on it. With ``wait=True`` a camera or stream that cannot be opened at
start (a wearable boots before its USB camera, an RTSP server still starting) is waited for the
same way ("no camera yet, retrying" … "camera found") instead of being an error.

OpenCV is the [app] extra and is imported on first use, so parsing a URI stays light.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from earsight.app.camera.sources import (
    CameraError,
    Capture,
    SourceSpec,
    csi_pipeline,
    import_cv2,
    never_opens,
    open_capture,
    open_error,
    parse_source,
    read_capture,
)
from earsight.errors import UsageError
from earsight.trainer.data.preprocess import fit_to_input

# Re-exported: callers import the source names from here, as before the split.
__all__ = [
    "FALLBACK_FPS",
    "FOLDER_FPS",
    "MAX_AGE_S",
    "REMIND_S",
    "RETRY_S",
    "STATUS_BACK",
    "STATUS_ENDED",
    "STATUS_FOUND",
    "STATUS_LOST",
    "STATUS_STILL",
    "STATUS_WAITING",
    "STOP_JOIN_S",
    "CameraError",
    "Frame",
    "FrameGrabber",
    "GrabberOptions",
    "SourceSpec",
    "csi_pipeline",
    "parse_source",
    "prepare",
]

log = logging.getLogger(__name__)

STATUS_LOST = "camera lost"
STATUS_BACK = "camera back"
STATUS_ENDED = "video ended (--loop plays it again)"  # a file opened without loop=True ended
STATUS_WAITING = "no camera yet, retrying"  # wait=True and the camera is not there at start
STATUS_FOUND = "camera found"  # its first frame after waiting
STATUS_STILL = "still no camera, retrying"  # every remind_s while lost or waiting
RETRY_S = 1.0  # time between reopen attempts while the camera is lost
REMIND_S = 5.0  # while there is no camera, say so again this often
MAX_AGE_S = 1.0  # latest() never returns a frame captured longer ago than this
STOP_JOIN_S = 1.0  # stop() waits this long for the reader thread
FOLDER_FPS = 1.0  # image folders are a slideshow: one image per second unless options.fps
FALLBACK_FPS = 30.0  # video files whose header gives no usable frame rate


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame: RGB uint8 (H, W, 3), read-only."""

    image: np.ndarray
    index: int  # 0, 1, 2, … in capture order since start() (loops and reconnects included)
    t_capture: float  # time.perf_counter() when the frame was read


@dataclass(frozen=True)
class GrabberOptions:
    retry_s: float = RETRY_S
    max_age_s: float = MAX_AGE_S
    fps: float | None = None  # pace files/folders at this rate; None: the file's own, FOLDER_FPS
    remind_s: float = REMIND_S  # repeat "still no camera" this often while there is none
    wait: bool = False  # a camera/stream absent at start is waited for, not an error

    def __post_init__(self) -> None:
        for name in ("retry_s", "max_age_s", "fps", "remind_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # also rejects NaN
                raise UsageError(f"camera option {name} must be positive, got {value}")


def _to_rgb(image: np.ndarray) -> np.ndarray:
    cv2 = import_cv2()
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


# --- grabber ----------------------------------------------------------------------------------


class FrameGrabber:
    """A daemon thread reading a source continuously; latest() is the freshest frame or None.

    ``on_status`` is called from the reader thread with STATUS_LOST, STATUS_BACK or
    STATUS_ENDED; keep it quick (it delays the next read). Without it, statuses are logged.
    """

    def __init__(
        self,
        source: SourceSpec | str,
        options: GrabberOptions | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = parse_source(source) if isinstance(source, str) else source
        self.options = options or GrabberOptions()
        self._on_status = on_status
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bgr: np.ndarray | None = None  # newest frame as read; converted in latest()
        self._t_capture = 0.0
        self._count = 0
        self._rgb: Frame | None = None  # latest() result for the newest frame, converted once
        self._lost = False
        self._said_at = 0.0  # monotonic time of the last lost/waiting/still status
        self._period_s = 0.0  # pacing for files and folders; 0: read as fast as frames come
        self._next_t = 0.0

    def start(self) -> FrameGrabber:
        """Open the source and start reading; CameraError if it cannot be opened now.

        With ``options.wait`` a camera or stream that is not there yet is not an error: the
        reader thread keeps trying (``lost`` is True and statuses say so until it comes).
        """
        if self._thread is not None:
            raise RuntimeError("FrameGrabber.start() called twice")
        cap = open_capture(self.spec)
        if cap is None and not (self.options.wait and self.spec.live):
            raise open_error(self.spec)
        if cap is None and (permanent := never_opens(self.spec)) is not None:
            raise permanent  # waiting would say "still no camera" forever
        if cap is None:
            log.warning(
                "cannot open %s yet; retrying every %g s",
                self.spec.describe(),
                self.options.retry_s,
            )
            self._set_lost(STATUS_WAITING)
        elif not self.spec.live:
            self._period_s = 1.0 / self._pace_fps(cap)
        self._thread = threading.Thread(target=self._run, args=(cap,), name="camera", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and release the camera; returns within STOP_JOIN_S."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():  # blocked inside a driver read: it exits after it
                log.warning("camera thread still in a read after %.1f s; leaving it", STOP_JOIN_S)

    def __enter__(self) -> FrameGrabber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def lost(self) -> bool:
        return self._lost

    def latest(self, timeout_s: float = 0.0, *, after: float | None = None) -> Frame | None:
        """The newest frame, waiting up to ``timeout_s`` for one; None while lost or stale.

        ``after`` (a perf_counter time, e.g. the key press) asks for a frame captured after it.
        """
        deadline = time.perf_counter() + timeout_s
        with self._cond:
            while not self._usable(after):
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            bgr, index, t = self._bgr, self._count - 1, self._t_capture
            if self._rgb is not None and self._rgb.index == index:
                return self._rgb
        assert bgr is not None  # _usable() checked it
        rgb = _to_rgb(bgr)  # outside the lock: the reader thread never waits for a caller
        rgb.setflags(write=False)  # shared by every caller until the next frame
        frame = Frame(rgb, index, t)
        with self._cond:
            if self._count - 1 == index:
                self._rgb = frame
        return frame

    def _usable(self, after: float | None) -> bool:
        if self._bgr is None or (after is not None and self._t_capture < after):
            return False
        # A slideshow's frame legitimately lives one period: do not call it stale.
        max_age = max(self.options.max_age_s, 2.0 * self._period_s)
        return time.perf_counter() - self._t_capture <= max_age

    def _pace_fps(self, cap: Any) -> float:
        if self.options.fps is not None:
            return self.options.fps
        if self.spec.kind in ("folder", "image"):
            return FOLDER_FPS
        fps = float(cap.get(import_cv2().CAP_PROP_FPS))
        return fps if 1.0 <= fps <= 240.0 else FALLBACK_FPS  # headers can hold 0 or 90000

    def _run(self, cap: Capture | None) -> None:
        fails = 0  # consecutive failed opens/reads since the last good frame
        try:
            while not self._stop.is_set():
                if cap is None:
                    cap = open_capture(self.spec)
                    if cap is None:
                        fails += 1
                        self._set_lost()
                        self._remind()
                        self._stop.wait(self.options.retry_s)
                        continue
                ok, image = read_capture(cap)
                if ok and image is not None and image.size:
                    fails = 0
                    self._publish(image)
                    self._pace()
                    continue
                cap.release()
                cap = None
                if self.spec.kind == "file" and not self.spec.loop:
                    self._status(STATUS_ENDED)
                    return
                # One failure is a file's end (loop: reopen at once) or a hiccup; a second in a
                # row, with no frame between, means the source is gone.
                fails += 1
                if fails >= 2:
                    self._set_lost()
                    self._remind()
                    self._stop.wait(self.options.retry_s)
        finally:
            if cap is not None:
                cap.release()

    def _publish(self, image: np.ndarray) -> None:
        now = time.perf_counter()
        with self._cond:
            self._bgr, self._t_capture = image, now
            self._count += 1
            first = self._count == 1
            self._cond.notify_all()
        if self._lost:
            self._lost = False
            self._status(STATUS_FOUND if first else STATUS_BACK)

    def _pace(self) -> None:
        """Files and folders: sleep until the next frame is due, as a camera would."""
        if not self._period_s:
            return
        now = time.perf_counter()
        self._next_t += self._period_s
        if self._next_t < now - self._period_s:  # fell behind (first frame, reopen): no burst
            self._next_t = now + self._period_s
        self._stop.wait(max(0.0, self._next_t - now))

    def _set_lost(self, status: str = STATUS_LOST) -> None:
        if self._lost:
            return
        self._lost = True
        with self._cond:
            self._bgr = self._rgb = None  # never hand out a frame from before the loss
        self._said_at = time.monotonic()
        self._status(status)

    def _remind(self) -> None:
        """While lost: say so again every ``remind_s`` (a silent wait sounds like a hang)."""
        if self._lost and time.monotonic() - self._said_at >= self.options.remind_s:
            self._said_at = time.monotonic()
            self._status(STATUS_STILL)

    def _status(self, message: str) -> None:
        if self._on_status is None:
            log.warning("%s: %s", message, self.spec.describe())
            return
        try:
            self._on_status(message)
        except Exception:  # the app's callback must not kill the reader
            log.exception("camera status callback failed")


# --- model input ------------------------------------------------------------------------------


def prepare(
    image: np.ndarray, size: tuple[int, int], channels: int, crop: float = 1.0
) -> np.ndarray:
    """RGB uint8 (H, W, 3) → uint8 (h, w, channels): centre crop, resize, grey if asked.

    The crop is the largest centred region with the aspect ratio h:w (a square for the square
    inputs MT-Net takes), so the subject in the middle of the view is not squashed, scaled by
    ``crop`` (the model's input_crop: ImageNet backbones keep res/(res+32) of it). Grey is
    luminance (0.299 R + 0.587 G + 0.114 B), the same weights MNIST-style grey images have.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"prepare() takes RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    cv2 = import_cv2()
    height, width = size
    pixels = fit_to_input(image, height, width, crop)
    if channels == 1:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)  # grey of 3 pixels, not 3× the work
    return np.ascontiguousarray(pixels).reshape(height, width, channels)
