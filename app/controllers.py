"""Key input for ``earsight live``: a key press → an Action, delivered to ``on_action(action, t)``.

    def on_action(action: Action, t_key: float) -> None: ...   # t_key: time.perf_counter()
    with make_controller("auto", on_action):                    # hotkey on a desktop, else terminal
        ...

Three sources of presses:

* HotkeyController: a desktop-wide hotkey (default F9) through pynput; needs an X display.
* TerminalController: single keys typed in a terminal or over SSH (space/Enter, r, v, m, q);
  lines when stdin is a pipe. Ctrl-C still interrupts: the terminal is in cbreak, not raw, mode.
* EvdevController: a Linux input device, e.g. a Bluetooth shutter button worn on the body.

Controllers never queue: ``on_action`` runs on the controller's thread at each press, so it must
be cheap (set a flag, swap the newest request); dropping or coalescing presses is the app's call.
An exception in it is logged and the controller goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import errno
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from trainer.errors import EarSightError, UsageError

log = logging.getLogger(__name__)

CONTROLLER_KINDS = ("auto", "hotkey", "terminal", "evdev")
STOP_JOIN_S = 0.2  # stop() returns within this (the thread is woken through a pipe)
READY_TIMEOUT_S = 2.0  # the pynput listener must be listening by then
RETRY_S = 1.0  # between reopen attempts of an unplugged input device
TERMINAL_HINT = "use --keys terminal (keys typed in this terminal) or --keys evdev (a button)"


class Action(enum.Enum):
    DESCRIBE = "describe"  # say what the camera sees now
    REPEAT = "repeat"  # say the last word again
    VERBOSITY = "verbosity"  # next verbosity level
    TOGGLE_MODE = "toggle mode"  # word ↔ soundscape
    QUIT = "quit"


OnAction = Callable[[Action, float], None]


class ControllerUnavailable(EarSightError):
    """This kind of key input cannot work here (no display, no device, missing package)."""


@dataclass(frozen=True)
class KeyMap:
    """Desktop hotkeys: pynput key names (f9, esc, space, pause, …) or single characters."""

    describe: str = "f9"
    repeat: str = "f10"
    verbosity: str = "f11"
    toggle: str = "f12"
    quit: str = "esc"

    def bindings(self) -> dict[str, Action]:
        """Key name (lower case) → Action; UsageError when two actions share a key."""
        actions = {"toggle": Action.TOGGLE_MODE}
        out: dict[str, Action] = {}
        for f in fields(self):
            key = getattr(self, f.name).strip().lower()
            if key in out:
                raise UsageError(f"key {key!r} is bound twice", "give each action its own key")
            out[key] = actions.get(f.name) or Action[f.name.upper()]
        return out


# Terminal keys (letters in either case): what a sighted helper types over SSH, too.
TERMINAL_KEYS: Mapping[str, Action] = MappingProxyType(
    {
        " ": Action.DESCRIBE,
        "\n": Action.DESCRIBE,
        "\r": Action.DESCRIBE,
        "r": Action.REPEAT,
        "v": Action.VERBOSITY,
        "m": Action.TOGGLE_MODE,
        "q": Action.QUIT,
    }
)
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
        "KEY_Q": Action.QUIT,
    }
)


def _deliver(on_action: OnAction, action: Action, t_key: float) -> None:
    try:
        on_action(action, t_key)
    except Exception:  # the app's bug must not silence the keys
        log.exception("key action %s failed", action.value)


class Controller:
    """start() / stop() / context manager; subclasses read keys and call _deliver."""

    kind = "?"

    def start(self) -> Controller:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ThreadController(Controller):
    """A reader thread woken by a pipe, so stop() never waits for a timeout to expire."""

    def __init__(self, on_action: OnAction) -> None:
        self._on_action = on_action
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def _start_thread(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"keys-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(STOP_JOIN_S)
        if self._thread.is_alive():  # still inside a callback: closing its pipe would break it
            log.warning("%s key thread still busy after %.1f s; leaving it", self.kind, STOP_JOIN_S)
            return
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wait_readable(self, fd: int, timeout_s: float | None = None) -> bool:
        """True when fd has input; False on stop or timeout."""
        ready, _, _ = select.select([fd, self._wake_r], [], [], timeout_s)
        return fd in ready and not self._stop.is_set()

    def _run(self) -> None:
        raise NotImplementedError


# --- terminal ---------------------------------------------------------------------------------


def terminal_keys(data: bytes) -> Iterator[str]:
    """Bytes typed in cbreak mode → key characters, skipping escape sequences.

    Arrow and function keys arrive as ESC [ … final-byte or ESC O x; without this, the "A" of an
    arrow key or the "R" of a cursor report could become an action.
    """
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        i += 1
        if byte != 0x1B:
            yield chr(byte) if byte < 0x80 else ""
        elif i < n and data[i] == ord("["):  # CSI: parameters, then a final byte @..~
            i += 1
            while i < n and not 0x40 <= data[i] <= 0x7E:
                i += 1
            i += 1
        elif i < n and data[i] == ord("O"):  # SS3 (ESC O x): F1-F4, keypad
            i += 2
        else:  # Alt+key (ESC x): not a plain key either
            i += 1


class TerminalController(_ThreadController):
    """Single keys from a terminal (cbreak mode, restored on stop), or lines from a pipe."""

    kind = "terminal"

    def __init__(
        self,
        on_action: OnAction,
        fd: int | None = None,
        keys: Mapping[str, Action] = TERMINAL_KEYS,
    ) -> None:
        super().__init__(on_action)
        self._fd = fd
        self._keys = {k.lower(): a for k, a in keys.items()}
        self._saved: list[Any] | None = None  # termios attributes to restore
        self._restore_lock = threading.Lock()

    def start(self) -> TerminalController:
        if self._fd is None:
            try:
                self._fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError) as err:
                raise ControllerUnavailable("no terminal to read keys from", TERMINAL_HINT) from err
        if os.isatty(self._fd):
            import termios  # POSIX only: imported here so the module loads everywhere
            import tty

            self._saved = termios.tcgetattr(self._fd)
            atexit.register(self._restore)  # a daemon thread dies without its finally
            tty.setcbreak(self._fd, termios.TCSANOW)  # keys one by one, no echo, Ctrl-C works
        self._start_thread()
        return self

    def stop(self) -> None:
        super().stop()
        self._restore()

    def _restore(self) -> None:
        with self._restore_lock:
            saved, self._saved = self._saved, None
        if saved is None or self._fd is None:
            return
        import termios

        try:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
        except termios.error as err:  # the terminal went away (SSH dropped)
            log.debug("could not restore the terminal: %s", err)
        atexit.unregister(self._restore)

    def _run(self) -> None:
        assert self._fd is not None
        tty_mode = self._saved is not None
        pending = b""  # pipe mode: a line not yet complete
        try:
            while self._wait_readable(self._fd):
                t_key = time.perf_counter()
                try:
                    data = os.read(self._fd, 1024)
                except OSError as err:  # EIO: the pty/SSH session closed
                    if err.errno not in (errno.EIO, errno.EBADF):
                        raise
                    data = b""
                if not data:
                    log.info("key input closed; no more keys from the terminal")
                    return
                if tty_mode:
                    self._press(terminal_keys(data), t_key)
                else:
                    *lines, pending = (pending + data).split(b"\n")
                    self._press((_line_key(line) for line in lines), t_key)
        finally:
            self._restore()  # also when the loop dies: never leave the user's terminal mute

    def _press(self, keys: Iterator[str], t_key: float) -> None:
        for key in keys:
            action = self._keys.get(key.lower())
            if action is not None:
                _deliver(self._on_action, action, t_key)


def _line_key(line: bytes) -> str:
    """Pipe mode: a line's first character is the key; an empty line is Enter."""
    text = line.decode("utf-8", "replace").strip()
    return text[:1] or "\n"


# --- desktop hotkey ---------------------------------------------------------------------------


def display_problem() -> str | None:
    """Why the desktop hotkey cannot work here (a short reason), or None when it can."""
    if not os.environ.get("DISPLAY"):
        return "no X display (DISPLAY is not set)"
    try:
        import Xlib.display  # python-xlib: pynput's X backend

        display = Xlib.display.Display()
    except ImportError:
        return "pynput is not installed (pip install 'earsight[app]')"
    except Exception as err:  # Xlib raises its own error types, all meaning "cannot connect"
        return f"cannot connect to X display {os.environ['DISPLAY']} ({type(err).__name__})"
    try:
        if not display.has_extension("RECORD"):  # pynput listens through X RECORD
            return f"X display {os.environ['DISPLAY']} has no RECORD extension"
    finally:
        display.close()
    return None


class HotkeyController(Controller):
    """A desktop-wide hotkey through pynput's X listener (works whichever window has focus)."""

    kind = "hotkey"

    def __init__(self, on_action: OnAction, keymap: KeyMap | None = None) -> None:
        self._on_action = on_action
        self._bindings = (keymap or KeyMap()).bindings()
        self._listener: Any = None

    def start(self) -> HotkeyController:
        if problem := display_problem():
            raise ControllerUnavailable(f"no desktop hotkey: {problem}", TERMINAL_HINT)
        try:
            from pynput import keyboard  # picks its backend at import: needs DISPLAY set
        except Exception as err:  # ImportError, or the backend's own failure
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ControllerUnavailable(f"no desktop hotkey: {reason}", TERMINAL_HINT) from err
        for key in self._bindings:
            if len(key) != 1 and key not in keyboard.Key.__members__:
                raise UsageError(f"unknown hotkey {key!r}", "use f1…f12, esc, space, pause, …")
        listener = keyboard.Listener(on_press=self._on_press)
        listener.daemon = True
        listener.start()
        ready = threading.Thread(target=listener.wait, daemon=True)  # wait() has no timeout
        ready.start()
        ready.join(READY_TIMEOUT_S)
        if ready.is_alive():  # its thread failed before listening; leave it to die
            raise ControllerUnavailable("the desktop hotkey listener did not start", TERMINAL_HINT)
        self._listener = listener
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
        # pynput 1.8's X listener disables its RECORD context on the connection its own thread is
        # blocked on, so the thread only ends at the next key or mouse event (pynput PR #583).
        # Disabling it on the other connection ends it now; harmless once pynput is fixed.
        try:
            listener._display_stop.record_disable_context(listener._context)
            listener._display_stop.flush()
        except Exception as err:  # another backend or pynput version: the thread ends later
            log.debug("could not wake the pynput listener: %s", err)
        listener.join(STOP_JOIN_S)

    def _on_press(self, key: Any) -> None:
        t_key = time.perf_counter()
        name = getattr(key, "name", None) or getattr(key, "char", None)  # Key.f9 / KeyCode('a')
        action = self._bindings.get(name.lower()) if name else None
        if action is not None:
            _deliver(self._on_action, action, t_key)


# --- input device (evdev) ---------------------------------------------------------------------


def _evdev() -> Any:
    try:
        import evdev
    except ImportError as err:
        raise ControllerUnavailable(
            "no input-device keys: python-evdev is not installed",
            "install python-evdev (pip install evdev), or " + TERMINAL_HINT,
        ) from err
    return evdev


def evdev_codes(keys: Mapping[str, Action]) -> dict[int, Action]:
    """Key names (KEY_ENTER, BTN_0, …) → {evdev key code: Action}; UsageError on unknown."""
    ecodes = _evdev().ecodes.ecodes
    unknown = sorted(name for name in keys if name not in ecodes)
    if unknown:
        raise UsageError(f"unknown input key {', '.join(unknown)}", "use names like KEY_ENTER")
    return {ecodes[name]: action for name, action in keys.items()}


class EvdevController(_ThreadController):
    """Key presses from a Linux input device; reopens it when a Bluetooth button reconnects."""

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

    def start(self) -> EvdevController:
        self._codes = evdev_codes(self._keys)
        self._device = self._open()
        log.info("keys from %s (%s)", self._device.path, self._device.name)
        self._start_thread()
        return self

    def _open(self) -> Any:
        evdev = _evdev()
        paths = [self._path] if self._path else evdev.list_devices()
        for path in paths:
            try:
                device = evdev.InputDevice(path)
            except OSError as err:
                if not self._path:  # scanning: a device that just vanished is not the one
                    continue
                fix = _EVDEV_PERM if isinstance(err, PermissionError) else _EVDEV_HINT
                raise ControllerUnavailable(f"cannot read input device {path}", fix) from err
            codes = device.capabilities().get(evdev.ecodes.EV_KEY, [])
            if self._path or any(code in self._codes for code in codes):
                if self._grab:
                    device.grab()
                return device
            device.close()
        raise ControllerUnavailable("no readable input device with a known key", _EVDEV_HINT)

    def _run(self) -> None:
        evdev = _evdev()
        while not self._stop.is_set():
            try:
                self._read_events(evdev)
            except OSError as err:  # ENODEV: unplugged / out of Bluetooth range
                log.warning("input device lost (%s); retrying every %.0f s", err, RETRY_S)
                with contextlib.suppress(OSError):
                    self._device.close()
                self._device = None
                while not self._stop.wait(RETRY_S):
                    with contextlib.suppress(ControllerUnavailable):
                        self._device = self._open()
                        log.warning("input device back: %s", self._device.path)
                        break
        if self._device is not None:
            with contextlib.suppress(OSError):
                self._device.close()

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
                    _deliver(self._on_action, action, now - max(0.0, now_wall - event.timestamp()))


_EVDEV_HINT = "pass the device (ls /dev/input/by-id), or " + TERMINAL_HINT
_EVDEV_PERM = "add the user to the input group (sudo usermod -aG input $USER), log in again"


# --- choice -----------------------------------------------------------------------------------


def make_controller(
    kind: str,
    on_action: OnAction,
    *,
    keymap: KeyMap | None = None,
    fd: int | None = None,
    evdev_device: str | None = None,
) -> Controller:
    """``auto``: the desktop hotkey when an X display answers, else the terminal."""
    if kind not in CONTROLLER_KINDS:
        raise UsageError(f"unknown key input {kind!r}", f"use {', '.join(CONTROLLER_KINDS)}")
    if kind == "auto":
        problem = display_problem()
        kind = "terminal" if problem else "hotkey"
        log.debug("key input: %s%s", kind, f" ({problem})" if problem else "")
    if kind == "hotkey":
        return HotkeyController(on_action, keymap)
    if kind == "evdev":
        return EvdevController(on_action, evdev_device)
    return TerminalController(on_action, fd)
