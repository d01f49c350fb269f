"""AudioOut through ALSA's PulseAudio plugin, on a private PulseAudio daemon (issue 12).

The daemon is this module's own (its own socket; any other PulseAudio running is left alone) and
plays into ``module-pipe-sink`` paced by the system clock, like a sound card: what the FIFO
yields is what a listener would hear, in real time. Skipped where PulseAudio or ALSA's pulse
plugin is not installed (``apt-get install pulseaudio libasound2-plugins``).
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from earsight.app.sound.audio import AudioOptions, AudioOut
from tests.alsa_null import rescan_portaudio

RATE = 48_000
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None
    or not ctypes.util.find_library("portaudio")
    or shutil.which("pulseaudio") is None
    or not list(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")),
    reason="PulseAudio or ALSA's pulse plugin missing (apt-get install pulseaudio "
    "libasound2-plugins)",
)


class Heard:
    """Reads the pipe sink's FIFO (s16le mono at RATE) as it is played."""

    def __init__(self, fifo: Path) -> None:
        self._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.chunks: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                data = b""
            if data:
                self.chunks.append(data)
            else:
                time.sleep(0.002)

    def clear(self) -> None:
        self.chunks.clear()

    def samples(self) -> np.ndarray:
        raw = b"".join(self.chunks)
        return np.frombuffer(raw[: len(raw) // 2 * 2], np.int16).astype(np.float32) / 32768

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        os.close(self._fd)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio daemon with a clocked pipe sink; ALSA's default routed to it."""
    folder = tmp_path_factory.mktemp("pulse")
    fifo, socket = folder / "sink.fifo", folder / "native"
    os.mkfifo(fifo)
    script = folder / "pa.pa"
    script.write_text(
        f"load-module module-pipe-sink sink_name=clocked file={fifo} format=s16le rate={RATE} "
        "channels=1 use_system_clock_for_timing=yes\n"
        "set-default-sink clocked\n"
        f"load-module module-native-protocol-unix socket={socket} auth-anonymous=1\n"
    )
    (folder / "asound.conf").write_text("pcm.!default { type pulse }\n")
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(folder), "PULSE_STATE_PATH": str(folder)}
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(script), "--exit-idle-time=-1", "--daemonize=no"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    heard = Heard(fifo)  # the pipe sink opens the FIFO for writing: read it from the start
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "ALSA_CONFIG_PATH")}
    os.environ["PULSE_SERVER"] = f"unix:{socket}"
    os.environ["ALSA_CONFIG_PATH"] = str(folder / "asound.conf")
    rescan_portaudio()
    try:
        if not socket.exists():
            pytest.skip("the private PulseAudio daemon did not start")
        yield heard
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        rescan_portaudio()
        heard.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(5)


class LateOnce(AudioOut):
    """An AudioOut whose callback can be made late once, as a GIL-hogging or starved CPU does."""

    late_s = 0.0

    def _callback(self, outdata, frames, time_info, status) -> None:
        if self.late_s:
            late, self.late_s = self.late_s, 0.0
            time.sleep(late)
        super()._callback(outdata, frames, time_info, status)


def silent_gaps_ms(x: np.ndarray) -> list[float]:
    """Silent stretches (ms, 1 ms frames) between the first and last audible sample."""
    frames = (np.abs(x[: len(x) // 48 * 48]) > 0.01).reshape(-1, 48).any(axis=1)
    on = np.flatnonzero(frames)
    gaps, run = [], 0
    for loud in frames[on[0] : on[-1] + 1] if len(on) else []:
        if loud:
            if run:
                gaps.append(float(run))
            run = 0
        else:
            run += 1
    return gaps


@pytest.mark.faults
def test_sound_resumes_within_one_buffer_after_an_underrun(pulse):
    audio = LateOnce(AudioOptions(sample_rate=RATE))
    try:
        assert audio.wait_until_flowing(5.0)
        buffer_ms = audio._stream.latency * 1e3
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)
        pulse.clear()
        audio.play(tone, RATE, "tone")
        time.sleep(1.0)
        audio.late_s = 0.3  # the device runs dry: an underrun
        time.sleep(3.0)
        assert audio.underflows >= 1
    finally:
        audio.close()
    gaps = silent_gaps_ms(pulse.samples())
    assert len(gaps) == 1, gaps  # the one underrun, nothing else
    # the 300 ms the callback was late, plus at most one buffer before sound flows again
    assert 300 - buffer_ms <= gaps[0] <= 300 + buffer_ms, (gaps, buffer_ms)
