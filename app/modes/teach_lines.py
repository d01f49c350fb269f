"""How teach's lines read when heard: counts in words ("1 photo"), dates as words ("today",
"on 7 November 2026"), and lines for the screen only (a folder path read aloud is "slash tmp
slash …"). Every line `earsight teach` says goes to a screen reader or the status voice."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]


SCREEN_ONLY = 3  # a StatusVoice level above every verbosity: printed, never spoken


def print_only(say: Say, line: str) -> None:
    """A line for the screen (a folder path): printed, not spoken, when ``say`` is a
    StatusVoice's (heard, "slash tmp slash …" tells the user nothing); else just said."""
    try:
        say(line, level=SCREEN_ONLY)  # type: ignore[call-arg]
    except TypeError:  # a plain callable (a test's list.append)
        say(line)


def spoken_date(iso: str, today: str | None = None) -> str:
    """``2026-12-02T10:00:00+00:00`` → "today", "yesterday" or "on 2 December 2026" (read aloud,
    "2026-12-02" is "two thousand twenty-six dash twelve dash zero two")."""
    from datetime import date, timedelta

    day = date.fromisoformat(iso[:10])
    now = date.fromisoformat(today) if today else date.today()
    if day == now:
        return "today"
    if day == now - timedelta(days=1):
        return "yesterday"
    return f"on {day.day} {day:%B %Y}"


def plural(n: int, noun: str) -> str:
    """``1 photo``, ``2 photos``."""
    return f"{n} {noun}{'s' * (n != 1)}"
