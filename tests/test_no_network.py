"""EarSight never talks to the network: real `earsight describe`, `earsight live` (a video file
as the camera, terminal keys) and `trainer/fit.py` (no --download) run under strace, and every
internet socket they open is a failure (AF_UNIX is fine, loopback is fine).

ONNX Runtime 1.32's wheel starts Microsoft's 1DS telemetry with a process: DNS queries for
mobile.events.data.microsoft.com ~9 s after a session opens, and a device id and an event
database under ~/.cache/Microsoft/DeveloperTools as soon as it opens. engine/sidecar.py sets
ORT_DISABLE_TELEMETRY=1 before onnxruntime is imported; these tests are what prove it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace missing (install.sh --dev)"),
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TELEMETRY_DELAY_S = 14  # ORT's uploader resolved its host ~9 s after the session opened
_INET_CALL = re.compile(r"\b(connect|sendto|sendmsg|sendmmsg|bind)\(\d+, .*sa_family=AF_INET6?")
_LOOPBACK = ("127.0.0.1", "::1", "0.0.0.0", "::")


def _strace(args: list[str], out: Path) -> list[str]:
    return ["strace", "-f", "-qq", "-e", "trace=network", "-o", str(out), *args]


def internet_calls(trace: Path) -> list[str]:
    """strace lines where the process family opened or used an AF_INET/AF_INET6 socket to
    anything but loopback (a bare socket(AF_INET…) counts: it is how the DNS lookup began)."""

    def internet(line: str) -> bool:
        opened = "socket(AF_INET" in line and "= -1" not in line
        used = _INET_CALL.search(line) and not any(f'"{a}"' in line for a in _LOOPBACK)
        return bool(opened or used)

    return [line for line in trace.read_text(errors="replace").splitlines() if internet(line)]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _no_ms_cache(home: Path) -> None:
    found = [str(p) for p in home.rglob("*") if "Microsoft" in p.parts]
    assert not found, f"ONNX Runtime telemetry wrote {found[:3]}"


def test_describe_opens_no_internet_socket_and_writes_no_telemetry_files(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    trace = tmp_path / "describe.strace"
    images = sorted(str(p) for p in (ROOT / "assets/samples/mnist").glob("*.png"))
    cmd = [str(BIN / "earsight"), "describe", *images, "--model", "mnist-ad", "--threads", "1"]
    done = subprocess.run(
        _strace(cmd, trace), env=_env(tmp_path, HOME=str(home)), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not internet_calls(trace), internet_calls(trace)[:5]
    _no_ms_cache(home)


def test_live_on_a_video_file_opens_no_internet_socket(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from tests.test_live import NULL_DEVICE, write_digit_video

    video = tmp_path / "digits.avi"
    write_digit_video(video)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "asound.conf").write_text(NULL_DEVICE)
    env = _env(
        tmp_path,
        HOME=str(home),
        ALSA_CONFIG_PATH=str(tmp_path / "asound.conf"),
        EARSIGHT_CONFIG=str(tmp_path / "none.toml"),
    )
    trace = tmp_path / "live.strace"
    cmd = [str(BIN / "earsight"), "live", "--source", str(video), "--loop", "--keys", "terminal"]
    cmd += ["--no-speech", "--threads", "1", "--model", "mnist-ad"]
    master, slave = os.openpty()
    proc = subprocess.Popen(
        _strace(cmd, trace), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 90
        seen = b""
        while b"ready" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stdout.readline()
        assert b"ready" in seen, seen + proc.stderr.read()
        for _ in range(TELEMETRY_DELAY_S):  # a press a second while the uploader would wake
            os.write(master, b" ")
            time.sleep(1.0)
        os.write(master, b"q")  # quit key: strace, not the app, would get a signal
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    assert not internet_calls(trace), internet_calls(trace)[:5]
    _no_ms_cache(home)
    del cv2


def test_training_without_download_opens_no_internet_socket(tmp_path):
    trace = tmp_path / "fit.strace"
    cmd = [str(BIN / "python"), str(ROOT / "trainer/fit.py"), "--dataset", "digits"]
    cmd += ["--limit-train", "120", "--limit-test", "40", "--ae-epochs", "1", "--epochs", "1"]
    cmd += ["--batch-size", "32", "--eval-items", "5", "--threads", "1"]
    cmd += ["--out", str(tmp_path / "run")]
    done = subprocess.run(_strace(cmd, trace), env=_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "report.md").is_file()
    assert not internet_calls(trace), internet_calls(trace)[:5]
