"""Key input for ``earsight live``: a key press → an Action, delivered to ``on_action(action, t)``.

    def on_action(action: Action, t_key: float) -> None: ...   # t_key: time.perf_counter()
    with make_controller("auto", on_action):                    # hotkey on a desktop, else terminal
        ...

Three sources of presses:

* HotkeyController: a desktop-wide hotkey (default F9) through pynput; needs an X display.
* TerminalController: single keys typed in a terminal or over SSH (space/Enter, r, v, m, t, q);
  lines when stdin is a pipe. Ctrl-C still interrupts: the terminal is in cbreak, not raw, mode.
* EvdevController: a Linux input device, e.g. a Bluetooth shutter button worn on the body.

Controllers never queue: ``on_action`` runs on the controller's thread at each press, so it must
be cheap (set a flag, swap the newest request); dropping or coalescing presses is the app's call.
An exception in it is logged and the controller goes on.
"""

from __future__ import annotations

import logging

from earsight.app.keys.base import (
    STOP_JOIN_S,
    TERMINAL_HINT,
    Action,
    Controller,
    ControllerUnavailable,
    KeyMap,
    OnAction,
)
from earsight.app.keys.evdev import EVDEV_KEYS, RETRY_S, EvdevController, evdev_codes
from earsight.app.keys.hotkey import READY_TIMEOUT_S, HotkeyController, display_problem
from earsight.app.keys.terminal import TERMINAL_KEYS, TerminalController, terminal_keys
from earsight.errors import UsageError

# Re-exported: callers import every key-input name from here, as before the split.
__all__ = [
    "CONTROLLER_KINDS",
    "EVDEV_KEYS",
    "READY_TIMEOUT_S",
    "RETRY_S",
    "STOP_JOIN_S",
    "TERMINAL_HINT",
    "TERMINAL_KEYS",
    "Action",
    "Controller",
    "ControllerUnavailable",
    "EvdevController",
    "HotkeyController",
    "KeyMap",
    "OnAction",
    "TerminalController",
    "display_problem",
    "evdev_codes",
    "make_controller",
    "terminal_keys",
]

log = logging.getLogger(__name__)

CONTROLLER_KINDS = ("auto", "hotkey", "terminal", "evdev")


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
    if keymap is not None and keymap.describe != KeyMap.describe:  # --hotkey: desktop keys only
        log.warning("--hotkey %s is for the desktop keys; %s keys are fixed", keymap.describe, kind)
    if kind == "evdev":
        return EvdevController(on_action, evdev_device)
    return TerminalController(on_action, fd)
