"""The printed side of every message: one plain line on stdout, whoever says it.

Accessibility: a screen reader or a braille display reads stdout, so each message is one line,
flushed at once, without colour or cursor codes, and lines from two threads never interleave.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colour and cursor escape sequences
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

Printer = Callable[[str], None]


_PRINT_LOCK = threading.Lock()


def print_line(message: str) -> None:
    """The default printer: one line on stdout, flushed so a screen reader gets it now.

    One write of the whole line under a lock: print() writes the text and its newline apart,
    so two threads' lines could run together ("…: stoppingstopping")."""
    with _PRINT_LOCK:
        sys.stdout.write(f"{message}\n")
        sys.stdout.flush()


def plain_line(message: str) -> str:
    """One line without escape codes or control characters, whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", _ANSI.sub("", str(message))).split())


# What espeak-ng would say wrong, as a listener needs it: it drops "--" ("earsight teach
# --learn" was heard as "earsight teach learn", and typed so, taught a word called "learn"),
# reads "s" as "ess" and "dBFS" letter by letter. The printed line keeps the short form.
_SPOKEN = (
    (re.compile(r"(?<![\w-])--(?=\w)"), "dash dash "),
    (re.compile(r"\b1 s\b"), "1 second"),
    (re.compile(r"(\d) s\b"), r"\1 seconds"),
    (re.compile(r"(\d) ms\b"), r"\1 milliseconds"),
    (re.compile(r"(\d) min\b"), r"\1 minutes"),
    (re.compile(r"\bdBFS\b"), "decibels"),
)


def spoken_form(line: str) -> str:
    """A printed line as it should be spoken: ``--learn`` → "dash dash learn", ``4 s`` →
    "4 seconds", ``-13 dBFS`` → "-13 decibels"."""
    for pattern, said in _SPOKEN:
        line = pattern.sub(said, line)
    return line
