"""Key presses from a Linux input device (evdev), e.g. a Bluetooth shutter button on the body."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from earsight.app.keys.base import (
    Action,
    ControllerUnavailable,
    OnAction,
    ThreadController,
    deliver,
    other_keys_hint,
)
from earsight.errors import UsageError

log = logging.getLogger(__name__)

RETRY_S = 1.0  # between reopen attempts of an unplugged input device

# Input-device key names (evdev.ecodes). Cheap Bluetooth shutter remotes send KEY_VOLUMEUP
# (iOS button) or KEY_ENTER (Android button); headset buttons send KEY_PLAYPAUSE.
EVDEV_KEYS: Mapping[str, Action] = MappingProxyType(
    {
        "KEY_ENTER": Action.DESCRIBE,
        "KEY_KPENTER": Action.DESCRIBE,
        "KEY_SPACE": Action.DESCRIBE,
        "KEY_VOLUMEUP": Action.DESCRIBE,
        "KEY_PLAYPAUSE": Action.DESCRIBE,
        "KEY_CAMERA": Action.DESCRIBE,
        "KEY_VOLUMEDOWN": Action.REPEAT,
        "KEY_PREVIOUSSONG": Action.REPEAT,
        "KEY_R": Action.REPEAT,
        "KEY_V": Action.VERBOSITY,
        "KEY_NEXTSONG": Action.TOGGLE_MODE,
        "KEY_M": Action.TOGGLE_MODE,
        # A keyboard's T only: a shutter remote's two buttons are describe and repeat, and
        # teaching needs a key pressed twice on purpose, not one reachable by accident.
        "KEY_T": Action.TEACH,
        "KEY_Q": Action.QUIT,
    }
)


def _evdev() -> Any:
    try:
        import evdev
    except ImportError as err:
        raise ControllerUnavailable(
            "no input-device keys: python-evdev is not installed",
            "install python-evdev (pip install evdev), or " + other_keys_hint("evdev"),
        ) from err
    return evdev


def evdev_codes(keys: Mapping[str, Action]) -> dict[int, Action]:
    """Key names (KEY_ENTER, BTN_0, …) → {evdev key code: Action}; UsageError on unknown."""
    ecodes = _evdev().ecodes.ecodes
    unknown = sorted(name for name in keys if name not in ecodes)
    if unknown:
        raise UsageError(f"unknown input key {', '.join(unknown)}", "use names like KEY_ENTER")
    return {ecodes[name]: action for name, action in keys.items()}


class NoInputDeviceYet(ControllerUnavailable):
    """The input device is not there (yet): a Bluetooth button that connects after boot."""


class EvdevController(ThreadController):
    """Key presses from a Linux input device; reopens it when a Bluetooth button reconnects,
    and waits for one that is not there yet at start (a service starts before the button
    connects: failing would restart the service forever, as a missing camera would not)."""

    kind = "evdev"

    def __init__(
        self,
        on_action: OnAction,
        device: str | None = None,
        keys: Mapping[str, Action] = EVDEV_KEYS,
        grab: bool = False,
    ) -> None:
        super().__init__(on_action)
        self._path = device  # None: the first readable device that has one of the keys
        self._keys = keys
        self._grab = grab  # exclusive: the button's keys stop reaching the console/desktop
        self._codes: dict[int, Action] = {}
        self._device: Any = None
        self._waiting = ""  # NoInputDeviceYet's words while there is no device

    def start(self) -> EvdevController:
        self._codes = evdev_codes(self._keys)
        try:
            self._device = self._open()
            log.info("keys from %s (%s)", self._device.path, self._device.name)
        except NoInputDeviceYet as err:
            self._waiting = err.what
            log.warning(
                "%s: waiting for it, retrying every %.0f s (%s)", err.what, RETRY_S, err.fix
            )
            self._device = None
        self._start_thread()
        return self

    @property
    def waiting(self) -> str | None:
        """Why no device is open yet (live waits for it), or None once one is."""
        return self._waiting if self._device is None else None

    def _open(self) -> Any:
        evdev = _evdev()
        paths = [self._path] if self._path else evdev.list_devices()
        for path in paths:
            try:
                device = evdev.InputDevice(path)
            except OSError as err:
                if not self._path:  # scanning: a device that just vanished is not the one
                    continue
                if isinstance(err, FileNotFoundError):
                    raise NoInputDeviceYet(
                        f"input device {path} is not there yet",
                        "if the name is wrong, see ls /dev/input/by-id",
                    ) from err
                fix = _EVDEV_PERM if isinstance(err, PermissionError) else _EVDEV_HINT
                raise ControllerUnavailable(f"cannot read input device {path}", fix) from err
            codes = device.capabilities().get(evdev.ecodes.EV_KEY, [])
            if self._path or any(code in self._codes for code in codes):
                if self._grab:
                    device.grab()
                return device
            device.close()
        raise NoInputDeviceYet(
            "no input device with a known key yet", "a Bluetooth button may connect later"
        )

    def _run(self) -> None:
        evdev = _evdev()
        while not self._stop.is_set():
            if self._device is None and not self._wait_for_device():
                break
            try:
                self._read_events(evdev)
            except OSError as err:  # ENODEV: unplugged / out of Bluetooth range
                log.warning("input device lost (%s); retrying every %.0f s", err, RETRY_S)
                with contextlib.suppress(OSError):
                    self._device.close()
                self._device = None
        if self._device is not None:
            with contextlib.suppress(OSError):
                self._device.close()

    def _wait_for_device(self) -> bool:
        """Open the device once it is there (retrying every RETRY_S); False when stopped."""
        while not self._stop.wait(RETRY_S):
            with contextlib.suppress(ControllerUnavailable):
                self._device = self._open()
                log.warning("input device ready: %s (%s)", self._device.path, self._device.name)
                return True
        return False

    def _read_events(self, evdev: Any) -> None:
        while self._wait_readable(self._device.fd):
            now_wall, now = time.time(), time.perf_counter()
            try:
                events = list(self._device.read())
            except BlockingIOError:  # woken, but another reader took the events
                continue
            for event in events:
                # value 1 = press; 2 = auto-repeat of a held key (not a new press); 0 = release
                if event.type != evdev.ecodes.EV_KEY or event.value != 1:
                    continue
                action = self._codes.get(event.code)
                if action is not None:  # the kernel's timestamp: when the button went down
                    deliver(self._on_action, action, now - max(0.0, now_wall - event.timestamp()))


_EVDEV_HINT = "pass the device with --evdev-device (ls /dev/input/by-id), or " + other_keys_hint(
    "evdev"
)
_EVDEV_PERM = "add the user to the input group (sudo usermod -aG input $USER), log in again"
