"""Camera sources: a URI → SourceSpec, and opening it as a capture OpenCV (or a folder) reads.

    spec = parse_source("/dev/video0")   # 0, csi://0, rtsp://host/path, clip.avi, a folder, file://…
    cap = open_capture(spec)             # None when it cannot open now; open_error(spec) says why

Cameras may also be named by their stable udev links (``/dev/v4l/by-id/usb-…-video-index0``,
``/dev/v4l/by-path/…``) or any other device path; such a link is resolved each time the camera
is opened, since it only exists while the camera is plugged in.

OpenCV is the [app] extra and is imported on first use, so parsing a URI stays light. FFmpeg's
and the decoders' own log lines (``[tcp @ 0x…] Connection refused``) would go straight to the
process's stderr, between the lines a screen reader reads: import_cv2 silences them (the
failure itself is still reported, once, in our words). Set OPENCV_FFMPEG_LOGLEVEL=24 (and
OPENCV_LOG_LEVEL=WARNING) to see them when debugging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from earsight.errors import EarSightError, UsageError
from earsight.trainer.data.image_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

STREAM_TIMEOUT_MS = 5000  # RTSP open/read give up after 5 s instead of FFmpeg's 30 s
# TCP: lost UDP packets smear whole frames; nobuffer/low_delay: no decoder-side frame queue.
RTSP_FFMPEG_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"
CSI_WIDTH, CSI_HEIGHT, CSI_FPS = 1280, 720, 30  # a mode every Jetson CSI sensor (IMX219/477) has
SOURCE_HINT = (
    "give 0, /dev/video0, csi://0, rtsp://host/path, a video file, an image file or an image folder"
)
# Defaults for OpenCV's logging, set before its FFmpeg backend starts (it reads them then):
# -8 = AV_LOG_QUIET. A value already in the environment wins.
QUIET_ENV = {"OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR"}


class CameraError(EarSightError):
    """A camera source is unknown, missing or cannot be opened."""


@dataclass(frozen=True)
class SourceSpec:
    """What to open: ``target`` goes to cv2.VideoCapture with the ``api`` backend."""

    uri: str  # as the user gave it, for messages
    kind: str  # "camera" | "csi" | "rtsp" | "file" | "folder" | "image" (one still photo)
    target: int | str  # device index, GStreamer pipeline, URL or path
    api: str  # "any" | "v4l2" | "gstreamer" | "ffmpeg" | "folder"
    loop: bool = False  # video files: start again at the end (folders always cycle)

    @property
    def live(self) -> bool:
        """A camera or stream (read as fast as it delivers) rather than a file to pace."""
        return self.kind in ("camera", "csi", "rtsp")

    def describe(self) -> str:
        """What was tried, for messages: ``V4L2 camera 0``, ``video file clip.avi``, …"""
        names = {
            "camera": f"camera {self.target} ({self.api.upper()})",
            "csi": f"Jetson CSI camera {self.uri} (GStreamer nvarguscamerasrc)",
            "rtsp": f"stream {self.target} (FFmpeg)",
            "file": f"video file {self.target}",
            "folder": f"image folder {self.target}",
            "image": f"image file {self.target}",
        }
        return names[self.kind]


def csi_pipeline(sensor_id: int, width: int = CSI_WIDTH, height: int = CSI_HEIGHT) -> str:
    """The GStreamer pipeline for a Jetson CSI sensor, BGR frames into OpenCV's appsink."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={CSI_FPS}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"  # the appsink keeps 1 frame and drops older ones
    )


def parse_source(uri: str, *, loop: bool = False) -> SourceSpec:
    """A jetson-inference style URI → SourceSpec; CameraError (one line) when it cannot be one.

    Files and folders must exist now (a typo should fail at once); camera devices are checked
    when opened, since they come and go.
    """
    text = uri.strip()
    if not text:
        raise CameraError("no camera source given", SOURCE_HINT)
    if text.isdigit():
        return SourceSpec(uri, "camera", int(text), "any")
    if m := re.fullmatch(r"(?:v4l2://)?/dev/video(\d+)", text):
        return SourceSpec(uri, "camera", int(m[1]), "v4l2")
    if (m := re.fullmatch(r"(?:v4l2://)?(/dev/\S+)", text)) and _device_path(Path(m[1])):
        return SourceSpec(uri, "camera", m[1], "v4l2")
    if m := re.fullmatch(r"csi://(\d+)", text):
        return SourceSpec(uri, "csi", csi_pipeline(int(m[1])), "gstreamer")
    if re.match(r"rtsps?://\S+", text):
        return SourceSpec(uri, "rtsp", text, "ffmpeg")
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif m := re.match(r"([a-z][a-z0-9+.-]*)://", text):
        raise CameraError(f"camera source {uri!r}: unknown scheme {m[1]}://", SOURCE_HINT)
    path = Path(text).expanduser()
    if path.is_dir():
        if not folder_images(path):
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise CameraError(f"camera source {uri!r}: no images ({suffixes}) in folder {path}")
        return SourceSpec(uri, "folder", str(path), "folder", loop=True)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:  # a still: every press sees it
        return SourceSpec(uri, "image", str(path), "folder", loop=True)
    if path.is_file():
        return SourceSpec(uri, "file", str(path), "any", loop=loop)
    raise CameraError(
        f"camera source {uri!r}: not a camera index or URI, and no such file or folder {path}",
        SOURCE_HINT,
    )


def _device_path(path: Path) -> bool:
    """A camera device name: under /dev and not an existing regular file or folder.

    Stable names (/dev/v4l/by-id/…) are links that exist only while the camera is plugged in,
    so a name that does not exist yet is taken as a camera to wait for.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return True  # not there (yet): a camera that comes later
    return stat.S_ISCHR(mode)


def camera_target(spec: SourceSpec) -> int | str | None:
    """What OpenCV opens for a camera now: an index, a device path, or None if it is absent."""
    if isinstance(spec.target, int):
        if sys.platform == "linux" and not Path(f"/dev/video{spec.target}").exists():
            return None
        return spec.target
    path = Path(spec.target)
    if not path.exists():  # a dangling by-id link: the camera is unplugged
        return None
    real = os.path.realpath(path)  # /dev/v4l/by-id/… → /dev/video2: OpenCV opens it by index
    m = re.fullmatch(r"/dev/video(\d+)", real)
    return int(m[1]) if m else real


# --- opening ----------------------------------------------------------------------------------


class Capture(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


@contextlib.contextmanager
def _ffmpeg_options(options: str | None) -> Iterator[None]:
    """OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS when a capture opens: set the stream options
    for that one open only. Left in the environment, "fflags;nobuffer|flags;low_delay" changed
    how every later video *file* of the process decoded (frames out of step with their index).
    A value the user set wins and stays."""
    name = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    if options is None or name in os.environ:
        yield
        return
    os.environ[name] = options
    try:
        yield
    finally:
        os.environ.pop(name, None)


def import_cv2() -> Any:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import cv2  # imported when a capture opens: parsing a URI must not need it
    except ImportError as err:
        raise UsageError(
            "OpenCV is not installed", "pip install opencv-python-headless (or ./install.sh)"
        ) from err
    return cv2


def _natural_key(path: Path) -> list[int | str]:
    """img2.png before img10.png."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name.lower())]


def folder_images(folder: Path) -> list[Path]:
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    except OSError:
        return []
    return sorted(files, key=_natural_key)


class FolderCapture:
    """An image folder read like a video: each read() is the next image, cycling."""

    def __init__(self, images: list[Path]) -> None:
        self._images = images
        self._next = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next decodable image as a (H, W, 3) BGR frame, like a camera's; (False, None)
        when none decodes. Decoded as ``describe`` decodes (trainer.data.image_io: regular files
        only, size capped, EXIF orientation applied, alpha composited)."""
        from earsight.trainer.data.image_io import ImageFileError, read_image

        for _ in range(len(self._images)):  # skip unreadable files; fail if none decodes
            path = self._images[self._next]
            self._next = (self._next + 1) % len(self._images)
            try:
                pixels = read_image(path)
            except ImageFileError as err:
                log.debug("folder source: skipping %s", err)
                continue
            rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
            return True, np.ascontiguousarray(rgb[..., ::-1])
        return False, None

    def release(self) -> None:
        pass


def open_capture(spec: SourceSpec) -> Capture | None:
    """Open the source, or None. Missing files/devices are checked first: OpenCV would print."""
    if spec.kind == "folder":
        images = folder_images(Path(str(spec.target)))
        return FolderCapture(images) if images else None
    if spec.kind == "image":
        path = Path(str(spec.target))
        if not path.is_file():
            return None
        capture = FolderCapture([path])  # cycles: the probe read leaves it at the start
        ok, _ = capture.read()  # a damaged or non-image file: an error now, not "camera lost"
        return capture if ok else None
    if spec.kind == "file" and not Path(str(spec.target)).is_file():
        return None
    target = spec.target
    if spec.kind == "camera":
        target = camera_target(spec)
        if target is None:
            return None
    cv2 = import_cv2()
    api = {"any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER}
    params: list[int] = []
    if spec.kind == "rtsp":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
    quiet = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        with _ffmpeg_options(RTSP_FFMPEG_OPTIONS if spec.kind == "rtsp" else None):
            cap = cv2.VideoCapture(target, api.get(spec.api, cv2.CAP_FFMPEG), params)
    except cv2.error as err:  # e.g. a GStreamer pipeline that does not parse on this machine
        log.debug("opening %s failed: %s", spec.describe(), err)
        return None
    finally:
        cv2.utils.logging.setLogLevel(quiet)
    if not cap.isOpened():
        cap.release()
        return None
    if spec.live:  # 1 buffered frame: what read() returns is (nearly) what the sensor sees now
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def read_capture(cap: Capture) -> tuple[bool, np.ndarray | None]:
    try:
        return cap.read()
    except Exception as err:  # cv2.error from a driver is a failed read like any other
        log.debug("camera read failed: %s", err)
        return False, None


def open_error(spec: SourceSpec) -> CameraError:
    what = f"cannot open {spec.describe()}"
    if spec.kind == "camera":
        return CameraError(f"{what}: no such camera", "plug one in (see `ls /dev/video*`)")
    if spec.kind == "csi" and not re.search(
        r"GStreamer:\s+YES", import_cv2().getBuildInformation()
    ):
        return CameraError(f"{what}: this OpenCV has no GStreamer", "use the JetPack OpenCV")
    if spec.kind == "file":
        return CameraError(f"{what}: not a video OpenCV can decode", "try an MJPG/H.264 file")
    if spec.kind == "image":
        return CameraError(f"{what}: not an image OpenCV can decode", "try a JPEG or PNG file")
    return CameraError(what, "check the cable/address, then try again")


def never_opens(spec: SourceSpec) -> CameraError | None:
    """The error for a source this machine can never open, however long it waits (a CSI
    camera with an OpenCV built without GStreamer); None when waiting may help."""
    if spec.kind != "csi":
        return None
    error = open_error(spec)
    return error if "no GStreamer" in error.what else None
