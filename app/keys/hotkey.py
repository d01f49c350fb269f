"""A desktop-wide hotkey through pynput (needs an X display with the RECORD extension).

pynput is imported inside start(): it picks its backend at import and fails without a display.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from earsight.app.keys.base import (
    HOTKEY_NAMES,
    STOP_JOIN_S,
    Action,
    Controller,
    ControllerUnavailable,
    KeyMap,
    OnAction,
    deliver,
    other_keys_hint,
)
from earsight.errors import UsageError, first_line

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0  # the pynput listener must be listening by then
# The quit key is heard in every window (Esc closes dialogs all day): it quits only when pressed
# twice within this many seconds; the first press asks (Action.QUIT_ASKED).
QUIT_CONFIRM_S = 2.0
HOTKEY_HINT = other_keys_hint("hotkey")


def display_problem() -> str | None:
    """Why the desktop hotkey cannot work here (a short reason), or None when it can."""
    if not os.environ.get("DISPLAY"):
        return "no X display (DISPLAY is not set)"
    try:
        import Xlib.display  # python-xlib: pynput's X backend

        display = Xlib.display.Display()
    except ImportError:
        return "pynput is not installed (pip install pynput, or ./install.sh)"
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
        self._held: set[str] = set()  # keys down now: X autorepeat resends a held key's press
        self._quit_asked_at = -QUIT_CONFIRM_S  # perf_counter s of the last lone quit press

    def start(self) -> HotkeyController:
        if problem := display_problem():
            raise ControllerUnavailable(f"no desktop hotkey: {problem}", HOTKEY_HINT)
        try:
            from pynput import keyboard  # picks its backend at import: needs DISPLAY set
        except Exception as err:  # ImportError, or the backend's own failure
            reason = first_line(err)
            raise ControllerUnavailable(f"no desktop hotkey: {reason}", HOTKEY_HINT) from err
        for key in self._bindings:
            if len(key) != 1 and key not in keyboard.Key.__members__:
                raise UsageError(
                    f"unknown hotkey {key!r}", f"use one of {HOTKEY_NAMES}, or one character"
                )
        listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        listener.daemon = True
        listener.start()
        ready = threading.Thread(target=listener.wait, daemon=True)  # wait() has no timeout
        ready.start()
        ready.join(READY_TIMEOUT_S)
        if ready.is_alive():  # its thread failed before listening; leave it to die
            raise ControllerUnavailable("the desktop hotkey listener did not start", HOTKEY_HINT)
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
        name = _key_name(key)
        action = self._bindings.get(name) if name else None
        if action is None or name in self._held:  # unbound, or held down and auto-repeating
            return
        self._held.add(name)
        if action is Action.QUIT and t_key - self._quit_asked_at > QUIT_CONFIRM_S:
            self._quit_asked_at = t_key
            action = Action.QUIT_ASKED
        deliver(self._on_action, action, t_key)

    def _on_release(self, key: Any) -> None:
        self._held.discard(_key_name(key) or "")


def _key_name(key: Any) -> str | None:
    """pynput's key → the KeyMap's name: Key.f9 → "f9", KeyCode('A') → "a"."""
    name = getattr(key, "name", None) or getattr(key, "char", None)
    return name.lower() if name else None
