"""What key input delivers and the base all key controllers share.

An Action (describe, repeat, …) goes to ``on_action(action, t_key)`` on the controller's own
thread; a KeyMap names the desktop hotkeys. The controllers themselves live in keys/terminal.py,
keys/hotkey.py and keys/evdev.py; keys/controllers.py picks one (make_controller).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from earsight.errors import EarSightError, UsageError

log = logging.getLogger(__name__)

STOP_JOIN_S = 0.2  # stop() returns within this (the thread is woken through a pipe)
KEY_INPUTS = {
    "hotkey": "--keys hotkey (a desktop with an X display)",
    "terminal": "--keys terminal (keys typed in this terminal)",
    "evdev": "--keys evdev (a button)",
}


def other_keys_hint(kind: str) -> str:
    """What to do when key input ``kind`` cannot work: the other kinds, never ``kind`` itself."""
    return "use " + " or ".join(text for name, text in KEY_INPUTS.items() if name != kind)


TERMINAL_HINT = other_keys_hint("hotkey")  # the desktop hotkey's fix (kept for importers)


class Action(enum.Enum):
    DESCRIBE = "describe"  # say what the camera sees now
    REPEAT = "repeat"  # say the last word again
    VERBOSITY = "verbosity"  # next verbosity level
    TOGGLE_MODE = "toggle mode"  # word ↔ soundscape
    TEACH = "teach"  # teach the object in front of the camera (app/modes/live_teach.py)
    QUIT = "quit"
    QUIT_ASKED = "quit asked"  # a desktop-wide quit key pressed once: pressed again, it quits
    UNBOUND = "unbound"  # a terminal key that does nothing: the app says which keys do


OnAction = Callable[[Action, float], None]
OnClosed = Callable[[str], None]


class ControllerUnavailable(EarSightError):
    """This kind of key input cannot work here (no display, no device, missing package)."""


# X keysym names (lower case) a user may know from xdotool or xev → pynput's Key names.
X_KEYSYM_NAMES = {
    "escape": "esc",
    "return": "enter",
    "prior": "page_up",
    "next": "page_down",
    "print": "print_screen",
    "super_l": "cmd",
    "control_l": "ctrl_l",
    "control_r": "ctrl_r",
}
HOTKEY_NAMES = "f1…f20, esc, enter, space, tab, pause, insert, home, end, page_up, page_down, menu"


@dataclass(frozen=True)
class KeyMap:
    """Desktop hotkeys: pynput key names (f9, esc, space, pause, …) or single characters."""

    describe: str = "f9"
    repeat: str = "f10"
    verbosity: str = "f11"
    toggle: str = "f12"
    teach: str = "f8"
    quit: str = "esc"

    @classmethod
    def for_describe(cls, key: str) -> KeyMap:
        """The default map with ``key`` (--hotkey) as the describe key. An action whose default
        key that is takes the describe key's default (f9) instead: a config's hotkey = "f8",
        set before F8 became the teach key, keeps describing, and teach moves to F9 (it was
        refused, by describe and terminal-key live too, which never read a hotkey)."""
        default = cls()
        wanted = key.strip().lower()
        wanted = X_KEYSYM_NAMES.get(wanted, wanted)
        for f in fields(cls):
            if f.name != "describe" and getattr(default, f.name) == wanted:
                log.info("%s moves to %s: %s describes", f.name, default.describe, key)
                return replace(default, describe=key, **{f.name: default.describe})
        return replace(default, describe=key)

    def bindings(self) -> dict[str, Action]:
        """Key name (lower case) → Action; UsageError when two actions share a key. X keysym
        names (xdotool's, e.g. "Escape", "Return", "Prior") are taken as pynput's."""
        actions = {"toggle": Action.TOGGLE_MODE}
        out: dict[str, Action] = {}
        for f in fields(self):
            key = getattr(self, f.name).strip().lower()
            key = X_KEYSYM_NAMES.get(key, key)
            action = actions.get(f.name) or Action[f.name.upper()]
            if key in out:
                raise UsageError(
                    f"key {key!r} is bound twice: to {out[key].value} and to {action.value}",
                    "give each action its own key (--hotkey picks the describe key)",
                )
            out[key] = action
        return out


def deliver(on_action: OnAction, action: Action, t_key: float) -> None:
    try:
        on_action(action, t_key)
    except Exception:  # the app's bug must not silence the keys
        log.exception("key action %s failed", action.value)


class Controller:
    """start() / stop() / context manager; subclasses read keys and call _deliver.

    ``on_closed(reason)`` (settable) is called once when key input ends by itself (stdin closed,
    the SSH session gone), so the app does not go on running without a way to be asked.
    """

    kind = "?"
    on_closed: OnClosed | None = None

    def _report_closed(self, reason: str) -> None:
        if self.on_closed is None:
            log.info("%s", reason)
            return
        try:
            self.on_closed(reason)
        except Exception:  # the app's bug must not hide the closing
            log.exception("key input closed callback failed")

    def start(self) -> Controller:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadController(Controller):
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
