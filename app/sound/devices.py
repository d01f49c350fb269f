"""What both audio outputs (AudioOut, WavSink) share: the errors, PortAudio's device names
(listed, checked), the hook types and sounds as mono float32."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from earsight.errors import EarSightError, first_line

log = logging.getLogger(__name__)

SCAN_PROBE_TIMEOUT_S = 20.0  # a child importing sounddevice: Python start + PortAudio's scan
_scan_lock = threading.Lock()
_scan_problem: list[str | None] = []  # [] = not probed yet; [None] = it survived; [why] = not

FirstBufferHook = Callable[[float], None]  # called with time.perf_counter() of the first buffer
TeeHook = Callable[[np.ndarray], None]  # gets a copy of every sound played


class AudioUnavailable(EarSightError):
    """No audio output device could be opened."""


class UnknownAudioDevice(AudioUnavailable):
    """The output device the user named (--audio-device) is not there."""


def as_mono(wave: np.ndarray) -> np.ndarray:
    """(L,) or (L, C) → a contiguous float32 copy (L,) in [-1, 1] the caller cannot change."""
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected (L,) or (L, channels) audio, got shape {x.shape}")
    return np.clip(x, -1.0, 1.0)  # a new array, also when nothing is clipped


def device_arg(device: str | int | None) -> str | int | None:
    # "3" from a config file or flag means device index 3, not a device whose name contains "3"
    return int(device) if isinstance(device, str) and device.strip().isdigit() else device


def list_devices(sd: Any, kind: str) -> list[str]:
    """``"0 default"``, ``"3 USB Audio"``, …: every ``kind`` ("output" or "input") device
    PortAudio lists; [] when it cannot scan."""
    try:
        devices = sd.query_devices()
    except Exception as err:  # PortAudio could not scan: there is nothing to list
        log.debug("audio: listing %s devices failed: %s", kind, err)
        return []
    return [f"{d['index']} {d['name']}" for d in devices if d[f"max_{kind}_channels"] > 0]


def output_devices(sd: Any) -> list[str]:
    """Every output device PortAudio lists (``list_devices``)."""
    return list_devices(sd, "output")


def check_output_device(sd: Any, device: str | int) -> None:
    """UnknownAudioDevice (naming the devices there are) when ``device`` matches no output."""
    try:
        sd.query_devices(device, kind="output")
        return
    except (sd.PortAudioError, ValueError) as err:
        reason = first_line(err)
    names = output_devices(sd)
    there = f"output devices: {'; '.join(names)}" if names else "there are no output devices"
    raise UnknownAudioDevice(
        f"no audio output device {device!r} ({reason}); {there}",
        "pass one of them with --audio-device NAME or INDEX, or leave it out for the default",
    )


def import_sounddevice() -> Any:
    """``sounddevice``, imported once a child process has survived PortAudio's device scan.

    PortAudio scans the devices when sounddevice is imported (Pa_Initialize), and with a broken
    ALSA configuration (an empty one: ``ALSA_CONFIG_PATH=/dev/null``) its ALSA host API fails an
    ``assert`` and aborts the whole process (pa_linux_alsa.c BuildDeviceList), before any line
    is printed. A child process takes that crash instead, once per process. Raises OSError when
    the child died or PortAudio is missing (callers fall back to WAV files or say there is no
    microphone, in one line), ImportError when sounddevice is not installed.
    """
    if "sounddevice" not in sys.modules:
        with _scan_lock:
            if not _scan_problem:
                _scan_problem.append(_scan_in_child())
        if _scan_problem[0] is not None:
            raise OSError(_scan_problem[0])
    import sounddevice

    return sounddevice


def _scan_in_child() -> str | None:
    """Why importing sounddevice kills a process here, or None when it does not."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import sounddevice"],
            capture_output=True,
            timeout=SCAN_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "PortAudio did not finish scanning the audio devices (a device or driver hangs)"
    if done.returncode >= 0:
        return None  # it survived; an ImportError or OSError shows again when we import it
    name = signal.Signals(-done.returncode).name
    return (
        f"PortAudio crashed ({name}) while scanning the audio devices: the ALSA configuration "
        "is broken (check /etc/asound.conf, ~/.asoundrc and $ALSA_CONFIG_PATH)"
    )
