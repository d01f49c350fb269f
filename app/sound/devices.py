"""What both audio outputs (AudioOut, WavSink) share: the errors, PortAudio's device names
(listed, checked), the hook types and sounds as mono float32."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from earsight.errors import EarSightError, first_line

log = logging.getLogger(__name__)

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
