"""The user's keys by name, for what is said and printed: "press space" on a terminal, "press
F9" on a desktop, "press the button" on a wearable (the prompts named actions before: "press
teach", a key nobody has), and the key table of `earsight live --help`.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names.py stays importable without the key libraries' modules
    from earsight.app.keys.base import KeyMap


@dataclass(frozen=True)
class KeyNames:
    """What the user presses, named in the prompts: "t" on a terminal, "F8" on a desktop;
    the actions' names where the app does not know the keys (tests, a library caller)."""

    describe: str = "describe"
    teach: str = "teach"
    toggle: str = "toggle"  # word ↔ soundscape


def key_label(key: str) -> str:
    """pynput key name → how a keyboard labels it: f9 → F9, esc → Esc."""
    return key.upper() if re.fullmatch(r"f\d+", key) else key.capitalize()


def keys_epilog() -> str:
    """The keys of each key input, for `live --help` (from the key maps themselves)."""
    from earsight.app.keys.base import Action, KeyMap
    from earsight.app.keys.evdev import EVDEV_KEYS
    from earsight.app.keys.terminal import TERMINAL_KEYS

    words = {
        Action.DESCRIBE: "describe",
        Action.REPEAT: "repeat",
        Action.VERBOSITY: "verbosity",
        Action.TOGGLE_MODE: "word/soundscape",
        Action.TEACH: "teach the object held up",
        Action.QUIT: "quit",
    }
    named = {" ": "space", "\n": "Enter", "\r": None}

    def line(kind: str, mapping: dict[str, Action], quit_word: str = "quit") -> str:
        keys: dict[Action, list[str]] = {}
        for key, action in mapping.items():
            if named.get(key, key) is not None:
                keys.setdefault(action, []).append(named.get(key, key))
        said = {**words, Action.QUIT: quit_word}
        text = f"{kind}: " + ", ".join(f"{'/'.join(k)} {said[a]}" for a, k in keys.items())
        return textwrap.fill(text, 90, initial_indent="  ", subsequent_indent="      ")

    hotkeys = {key_label(k): a for k, a in KeyMap().bindings().items()}
    button = {k.removeprefix("KEY_").lower(): a for k, a in EVDEV_KEYS.items()}
    return "\n".join(
        [
            "keys:",
            # heard in every window: one Esc only asks (app/keys/hotkey.QUIT_CONFIRM_S)
            line("--keys hotkey (desktop, any window; --hotkey changes F9)", hotkeys, "twice quit"),
            line("--keys terminal (or over SSH; lines when stdin is a pipe)", dict(TERMINAL_KEYS)),
            line("--keys evdev (a button, Linux input key names; teach: a keyboard's T)", button),
        ]
    )


def prompt_keys(controller: str, keymap: KeyMap) -> KeyNames:
    """The describe and teach keys to name in "ready" and the teach prompts, for the controller
    auto actually picked; ``keymap`` is the desktop hotkeys that controller was given."""
    if controller == "TerminalController":
        import sys

        # keys piped in are read a line at a time: an empty line is the describe key
        describe = "space" if sys.stdin is not None and sys.stdin.isatty() else "Enter"
        return KeyNames(describe=describe, teach="t", toggle="m")
    if controller == "EvdevController":
        return KeyNames(describe="the button", teach="T", toggle="M")
    return KeyNames(
        describe=keymap.describe.upper(),
        teach=key_label(keymap.teach),
        toggle=key_label(keymap.toggle),
    )


def ready_line(mode: str, keys: KeyNames) -> str:
    """What is said once live is ready: the key to press, and in soundscape mode that it is
    soundscape mode (a press sounds the whole picture, not a word) and the key back to words."""
    if mode == "soundscape":
        return (
            f"ready in soundscape mode: press {keys.describe} to hear the camera as a "
            f"soundscape; {keys.toggle} switches to words"
        )
    return f"ready: press {keys.describe} to hear the camera"
