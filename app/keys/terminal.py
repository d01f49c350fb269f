"""Key input typed in a terminal or over SSH: single keys in cbreak mode, or lines from a pipe."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
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

log = logging.getLogger(__name__)

# Terminal keys (letters in either case): what a sighted helper types over SSH, too.
TERMINAL_KEYS: Mapping[str, Action] = MappingProxyType(
    {
        " ": Action.DESCRIBE,
        "\n": Action.DESCRIBE,
        "\r": Action.DESCRIBE,
        "r": Action.REPEAT,
        "v": Action.VERBOSITY,
        "m": Action.TOGGLE_MODE,
        "t": Action.TEACH,
        "q": Action.QUIT,
    }
)


# Said when a key that does nothing is typed (a blind user cannot look the keys up on screen).
UNBOUND_KEY = (
    "that key does nothing: space describe, r repeat, v verbosity, m soundscape, t teach, q quit"
)


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


class TerminalController(ThreadController):
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
                raise ControllerUnavailable(
                    "no terminal to read keys from", other_keys_hint("terminal")
                ) from err
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
                    where = "on the terminal" if tty_mode else "of the keys piped in"
                    self._report_closed(f"key input closed (end of input {where})")
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
            if action is None and key.isprintable() and key:
                action = Action.UNBOUND
            if action is not None:
                deliver(self._on_action, action, t_key)


def _line_key(line: bytes) -> str:
    """Pipe mode: a line's first character is the key; an empty line is Enter."""
    text = line.decode("utf-8", "replace").strip()
    return text[:1] or "\n"
