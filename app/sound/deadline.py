"""Call something that may never return (opening an audio device) with a deadline.

    stream = call_with_deadline(open_it, 3.0, "mic-open", discard=lambda s: s.close())

A blocked ``open`` (an ALSA plugin reading a FIFO nobody writes, a wedged driver) cannot be
interrupted from Python, so the call runs on a daemon thread and the caller stops waiting for
it; the thread is left behind. Should it return after all, ``discard`` gets the late result
(closes the stream nobody will use). The output stream (app/sound/audio.py) and the microphone
(app/sound/microphone.py) open through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The call had not returned within its deadline (it may still be running)."""


def call_with_deadline(
    fn: Callable[[], T],
    timeout_s: float,
    name: str,
    discard: Callable[[T], object] | None = None,
) -> T:
    """``fn()``'s result, or its exception re-raised here; DeadlineExceeded after ``timeout_s``."""
    lock, done = threading.Lock(), threading.Event()
    outcome: list[tuple[bool, object]] = []  # (returned normally, result or exception)
    abandoned = False

    def runner() -> None:
        try:
            result: tuple[bool, object] = (True, fn())
        except BaseException as err:  # handed to the caller below
            result = (False, err)
        with lock:
            late = abandoned
            outcome.append(result)
        if late and result[0] and discard is not None:
            discard(result[1])  # type: ignore[arg-type]  # it is fn()'s T
        done.set()

    threading.Thread(target=runner, name=name, daemon=True).start()
    done.wait(timeout_s)
    with lock:
        if not outcome:
            abandoned = True
            raise DeadlineExceeded(f"{name} did not return within {timeout_s:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]  # a BaseException from fn()
    return value  # type: ignore[return-value]
