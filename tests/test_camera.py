"""app.camera.grabber with real parts: videos written by OpenCV here, opened and read like a camera.

Each test video frame shows its own number as 8 black/white stripes (bit 0 on the left), which
survive MJPG compression, so a test can tell which frame of the file it was handed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from earsight.app.camera.grabber import (
    STATUS_BACK,
    STATUS_ENDED,
    STATUS_LOST,
    CameraError,
    Frame,
    FrameGrabber,
    GrabberOptions,
    csi_pipeline,
    parse_source,
    prepare,
)
from earsight.errors import UsageError

FPS = 30
SIZE = (160, 120)  # width, height
STRIPE = SIZE[0] // 8


def _picture(number: int) -> np.ndarray:
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    for bit in range(8):
        if number >> bit & 1:
            image[:, bit * STRIPE : (bit + 1) * STRIPE] = 255
    return image


def _number(rgb: np.ndarray) -> int:
    row = rgb[SIZE[1] // 2]
    return sum(1 << bit for bit in range(8) if row[bit * STRIPE + STRIPE // 2, 0] > 127)


def _write_video(path: Path, n_frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(n_frames):
        writer.write(_picture(i))
    writer.release()
    return path


class Statuses:
    """on_status collector that can wait for a message."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, message: str) -> None:
        with self._cond:
            self.seen.append(message)
            self._cond.notify_all()

    def wait_for(self, message: str, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: message in self.seen, timeout_s)


def _stop_quickly(grabber: FrameGrabber) -> None:
    t0 = time.perf_counter()
    grabber.stop()
    assert time.perf_counter() - t0 < 1.0
    assert grabber._thread is not None and not grabber._thread.is_alive()


# --- parse_source ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind", "target", "api"),
    [
        ("0", "camera", 0, "any"),
        ("/dev/video2", "camera", 2, "v4l2"),
        ("v4l2:///dev/video1", "camera", 1, "v4l2"),
        ("rtsp://cam.local:8554/live", "rtsp", "rtsp://cam.local:8554/live", "ffmpeg"),
        ("rtsps://user:pw@10.0.0.2/stream1", "rtsp", "rtsps://user:pw@10.0.0.2/stream1", "ffmpeg"),
    ],
)
def test_parse_camera_and_stream_uris(uri: str, kind: str, target: object, api: str) -> None:
    spec = parse_source(uri)
    assert (spec.kind, spec.target, spec.api, spec.live) == (kind, target, api, True)


def test_parse_csi_gives_the_gstreamer_pipeline() -> None:
    spec = parse_source("csi://1")
    assert (spec.kind, spec.api, spec.live) == ("csi", "gstreamer", True)
    assert spec.target == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1280,height=720,"
        "framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )
    assert parse_source("csi://0").target == csi_pipeline(0)


def test_parse_files_and_folders(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.avi", 2)
    assert parse_source(str(video)).kind == "file"
    assert parse_source(str(video)).loop is False
    spec = parse_source(f"file://{video}", loop=True)
    assert (spec.kind, spec.target, spec.loop, spec.live) == ("file", str(video), True, False)
    cv2.imwrite(str(tmp_path / "a.png"), _picture(1))
    assert parse_source(str(tmp_path)).kind == "folder"


@pytest.mark.parametrize("uri", ["", "missing.avi", "file:///no/such/dir/clip.mp4", "ftp://x/y"])
def test_parse_bad_sources_fail_in_one_line(uri: str, tmp_path: Path) -> None:
    with pytest.raises(CameraError) as err:
        parse_source(uri if "://" in uri or not uri else str(tmp_path / uri))
    assert "\n" not in str(err.value)
    assert "/dev/video0" in str(err.value) or "ftp" in str(err.value)  # says what to give


def test_parse_empty_folder_fails(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(CameraError, match="no images"):
        parse_source(str(tmp_path))


def test_missing_camera_fails_at_start_in_one_line() -> None:
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    with pytest.raises(CameraError) as err:
        FrameGrabber("/dev/video9").start()
    assert "\n" not in str(err.value) and "camera 9" in str(err.value)


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        GrabberOptions(retry_s=0)
    with pytest.raises(UsageError):
        GrabberOptions(fps=float("nan"))


# --- FrameGrabber ---------------------------------------------------------------------------


def test_latest_is_the_freshest_frame_not_the_first_buffered(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.avi", 3 * FPS)
    with FrameGrabber(parse_source(str(video))) as grabber:
        first = grabber.latest(timeout_s=1.0)
        assert isinstance(first, Frame)
        assert first.image.shape == (SIZE[1], SIZE[0], 3) and first.image.dtype == np.uint8
        assert not first.image.flags.writeable
        indices = [first.index]
        for _ in range(5):
            frame = grabber.latest(timeout_s=1.0, after=time.perf_counter())
            assert frame is not None
            indices.append(frame.index)
        assert indices == sorted(set(indices))  # strictly increasing: each call a newer frame
        time.sleep(0.5)
        frame = grabber.latest()
        assert frame is not None
        expected = (time.perf_counter() - first.t_capture) * FPS + first.index
        assert abs(frame.index - expected) <= 5, (frame.index, expected)
        assert _number(frame.image) == frame.index  # it really is that frame of the file
        assert time.perf_counter() - frame.t_capture < 0.2
        _stop_quickly(grabber)


def test_loop_wraps_and_a_plain_file_ends(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.avi", 20)
    statuses = Statuses()
    seen: list[tuple[int, int]] = []
    with FrameGrabber(parse_source(str(video), loop=True), on_status=statuses) as grabber:
        deadline = time.perf_counter() + 1.2  # 20 frames at 30 fps: one loop is 0.67 s
        while time.perf_counter() < deadline:
            frame = grabber.latest(timeout_s=0.5, after=time.perf_counter())
            assert frame is not None
            seen.append((frame.index, _number(frame.image)))
    assert max(index for index, _ in seen) >= 25
    assert all(number == index % 20 for index, number in seen), seen
    assert statuses.seen == []

    short = _write_video(tmp_path / "short.avi", 6)
    ended = Statuses()
    grabber = FrameGrabber(parse_source(str(short)), GrabberOptions(max_age_s=0.2), ended)
    with grabber:
        assert ended.wait_for(STATUS_ENDED, 2.0)
        time.sleep(0.3)
        assert grabber.latest() is None  # the last frame is too old to describe


def test_image_folder_cycles_in_natural_order(tmp_path: Path) -> None:
    for number, name in [(1, "img1.png"), (2, "img2.png"), (3, "img10.png")]:
        cv2.imwrite(str(tmp_path / name), _picture(number))
    (tmp_path / "readme.txt").write_text("not an image")
    numbers: list[int] = []
    with FrameGrabber(parse_source(str(tmp_path)), GrabberOptions(fps=20)) as grabber:
        deadline = time.perf_counter() + 0.6
        while time.perf_counter() < deadline:
            frame = grabber.latest(timeout_s=0.5, after=time.perf_counter())
            assert frame is not None
            assert _number(frame.image) == frame.index % 3 + 1, (frame.index, numbers)
            numbers.append(_number(frame.image))
    assert len(numbers) >= 6 and set(numbers) == {1, 2, 3}


def test_a_single_image_file_is_a_still_camera_every_press_sees(tmp_path: Path) -> None:
    # `live --source photo.jpg`: not a one-frame video that "ends" after its first frame
    cv2.imwrite(str(tmp_path / "photo.png"), _picture(2))
    spec = parse_source(str(tmp_path / "photo.png"))
    assert (spec.kind, spec.live) == ("image", False) and "image file" in spec.describe()
    with FrameGrabber(spec, GrabberOptions(fps=20)) as grabber:
        for _ in range(4):  # later presses still get the picture
            frame = grabber.latest(timeout_s=1.0, after=time.perf_counter())
            assert frame is not None and _number(frame.image) == 2


def test_camera_lost_then_back(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.avi", 15)  # 0.5 s per loop: the next reopen is soon
    away = tmp_path / "unplugged.avi"
    statuses = Statuses()
    opts = GrabberOptions(retry_s=0.2, max_age_s=0.5)
    with FrameGrabber(parse_source(str(video), loop=True), opts, statuses) as grabber:
        before = grabber.latest(timeout_s=1.0)
        assert before is not None
        video.rename(away)
        assert statuses.wait_for(STATUS_LOST, 3.0)
        assert grabber.lost
        t0 = time.perf_counter()
        assert grabber.latest(timeout_s=0.3) is None  # and the call did not block longer
        assert time.perf_counter() - t0 < 0.5
        time.sleep(0.8)  # ≥ 3 failed retries
        assert statuses.seen == [STATUS_LOST]  # said once, not at every retry
        away.rename(video)
        assert statuses.wait_for(STATUS_BACK, 3.0)
        frame = grabber.latest(timeout_s=1.0)
        assert frame is not None and not grabber.lost
        assert frame.index > before.index and frame.t_capture > t0
        _stop_quickly(grabber)
    assert statuses.seen == [STATUS_LOST, STATUS_BACK]


# --- prepare --------------------------------------------------------------------------------


def test_prepare_centre_crops_resizes_and_greys() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, :80] = (255, 0, 0)  # red margins: outside the centred 480×480 square
    image[:, -80:] = (255, 0, 0)
    image[:, 80:-80] = (0, 255, 0)  # green inside
    grey = prepare(image, (28, 28), 1)
    assert grey.shape == (28, 28, 1) and grey.dtype == np.uint8
    assert np.all(grey == 150)  # luminance of pure green: 0.587 × 255, no red bleeding in
    rgb = prepare(image, (32, 32), 3)
    assert rgb.shape == (32, 32, 3)
    assert np.all(rgb == (0, 255, 0))
    small = prepare(image[200:210, 300:310], (28, 28), 3)  # enlarging works too
    assert small.shape == (28, 28, 3)


def test_prepare_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        prepare(np.zeros((10, 10), np.uint8), (28, 28), 1)
    with pytest.raises(ValueError):
        prepare(np.zeros((10, 10, 3), np.uint8), (28, 28), 2)


def test_without_wait_a_missing_stable_camera_name_fails_at_start() -> None:
    """`doctor` opens without wait=True: a camera that is not there is its FAIL line."""
    with pytest.raises(CameraError) as err:
        FrameGrabber("/dev/v4l/by-id/usb-none-video-index0").start()
    assert "\n" not in str(err.value) and "no such camera" in str(err.value)
