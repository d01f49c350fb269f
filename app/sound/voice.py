"""Spoken status messages ("EarSight starting", "camera lost", "ready"), newest first.

    voice = StatusVoice(verbosity=NORMAL)
    voice.say("camera lost, retrying")  # prints the line now; speaks it in the background
    voice.close()

Every message is printed as a plain line on stdout (a screen reader reads it, logs keep it) and,
when its level is within the verbosity, spoken with pyttsx3 on a thread of its own: ``say``
never waits for speech. A new message interrupts the one being spoken and replaces any waiting
one; a status that is out of date ("starting" after "ready") is only in the way.

Where the app has an audio output open, speech goes through it (``use_output``): each message is
synthesized with the espeak-ng program into samples (12–27 ms a message on a 2-core VM,
2026-11-30) and handed to ``AudioOut.play(kind="status")``, which cuts an older status and lets
a playing word finish first. No second process opens the device, which a raw ALSA ``hw`` device
without software mixing would refuse ("device busy"). ``StatusVoice(shared_output=True)`` makes
messages said before the output opens wait for it (the newest kept); ``flush`` with no output
(an error before the audio opened) speaks them with the voice's own player instead.

Without a shared output (WAV files instead of a device, or none attached) pyttsx3 speaks.
pyttsx3 2.99's espeak driver synthesizes into memory and plays the result with a blocking
``aplay`` child process; ``engine.stop()`` cannot cut that short (it waits for ``aplay`` to end).
So interrupting kills this process's own ``aplay`` children, and falls back to ``engine.stop()``
for drivers that play by themselves. If pyttsx3 cannot start (no espeak-ng), a warning is logged
once and messages are only printed: status speech never stops the app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from earsight.app.sound.lines import Printer, plain_line, print_line, spoken_form
from earsight.app.sound.players import (
    kill_players,
    player_problem,
)
from earsight.errors import first_line

log = logging.getLogger(__name__)

# Verbosity levels: a message is spoken when its level ≤ the voice's verbosity.
SILENT = 0  # only errors are spoken (say them with level=SILENT)
NORMAL = 1  # start-up, ready, camera lost/back
CHATTY = 2  # also details: which model, GPU or CPU, the word just played
VERBOSITY_LEVELS = (SILENT, NORMAL, CHATTY)

DEFAULT_RATE_WPM = 175  # espeak's default; words per minute
CLOSE_TIMEOUT_S = 1.0  # close() returns within this, whatever the speech threads are doing
CUT_POLL_S = 0.02  # how often an interruption looks for the player process
CUT_STOP_AFTER_S = 0.3  # no player process by then: the driver plays itself, use engine.stop()
CUT_GIVE_UP_S = 1.0  # an interrupted utterance counts as over after this, reported or not
UTTERANCE_MAX_S = 30.0  # longest a single message may keep the speech thread

# --- the process's one pyttsx3 engine -------------------------------------------------------
# pyttsx3 keeps one espeak instance per process and its driver's destructor unregisters the
# synthesis callback globally, so a second engine (or a collected first one) breaks speech.
# One engine lives for the whole process; one voice thread at a time uses it.

_ENGINE_LOCK = threading.Lock()
_engine: Any = None
_engine_error: str | None = None


def _shared_engine() -> Any:
    """The pyttsx3 engine, created on first use; None (warned once) if it cannot start."""
    global _engine, _engine_error
    if _engine is None and _engine_error is None:
        try:
            import pyttsx3

            _engine = pyttsx3.init()
        except Exception as err:  # ImportError, OSError (no libespeak), RuntimeError: all alike
            _engine_error = first_line(err)
            log.warning("status speech off (%s); messages are printed only", _engine_error)
    return _engine


# --- the voice ------------------------------------------------------------------------------


class StatusVoice:
    """Prints every message; speaks those with ``level <= verbosity``, newest interrupting.

    ``verbosity`` and ``enabled`` may be changed at any time. Hooks (tests, logs, --record):
    ``on_started(text)`` when pyttsx3 starts an utterance or a message is handed to the shared
    output, ``on_finished(text, completed)`` when pyttsx3 reports one done (not called for the
    shared output, which does not report ends); ``on_spoken(text)`` on the caller's thread for
    each message handed to speech (keep it quick: say() must not block).
    """

    def __init__(
        self,
        verbosity: int = NORMAL,
        rate_wpm: int = DEFAULT_RATE_WPM,
        enabled: bool = True,
        printer: Printer = print_line,
        shared_output: bool = False,
        quiet: bool = False,  # `earsight -q`: print only what is also spoken at verbosity 0
    ) -> None:
        self.verbosity = verbosity
        self.quiet = quiet
        self.rate_wpm = rate_wpm
        self.enabled = enabled
        self.on_started: Callable[[str], None] | None = None
        self.on_finished: Callable[[str, bool], None] | None = None
        self.on_spoken: Callable[[str], None] | None = None
        self._printer = printer
        self._cond = threading.Condition()  # guards the next six fields
        self._pending: str | None = None  # the newest message not yet handed to pyttsx3
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._current = ""  # the message pyttsx3 is working on
        self._serial = 0  # counts utterances, so a cut never hits the one after its target
        self._cut_target = 0  # the utterance a newer message (or close) wants gone
        self._done = threading.Event()  # the current utterance is over (set when idle)
        self._done.set()
        self._cut = threading.Event()  # wakes the cut thread
        self._problem: str | None = None  # why this voice cannot be heard (set once, warned)
        self._output: Any = None  # the AudioOut speech plays through; None: pyttsx3 (aplay)
        self._await_output = shared_output  # messages wait for use_output() (guarded by _cond)
        self._synthesizing = False  # the shared-output thread holds a message (guarded)
        self._started: set[str] = set()  # modes whose threads run: "own", "shared"

    @property
    def available(self) -> bool:
        """False once speech turned out impossible (messages are then only printed)."""
        own_ok = _engine_error is None or self._output is not None or self._await_output
        return own_ok and self._problem is None

    def use_output(self, output: Any) -> None:
        """Speak through ``output`` from now on (an ``AudioOut``: one open device for all sound).

        ``None``, or an output that does not carry speech (``WavSink``: status messages do not
        belong among the user's word files), means the voice's own player. Messages waiting
        for an output are spoken now.
        """
        carries = output is not None and getattr(output, "carries_speech", False)
        with self._cond:
            self._output = output if carries else None
            self._await_output = False
            if self._pending is not None and not self._closed:
                self._start_threads()
            self._cond.notify_all()

    def _mode(self) -> str:
        """The speech path: "shared" output, "await" (an output to come) or "own" (pyttsx3)."""
        if self._output is not None:
            return "shared"
        return "await" if self._await_output else "own"

    def say(self, message: str, level: int = NORMAL, printed: bool = True) -> None:
        """Print ``message`` now; speak it in the background if ``level <= verbosity``.

        ``printed=False``: speak only (the caller prints the line itself, e.g. on stderr).
        """
        text = plain_line(message)
        if not text:
            return
        if printed and not (self.quiet and level > 0):
            self._printer(text)
        if not (self.enabled and level <= self.verbosity and self.available):
            return
        text = spoken_form(text)  # "dash dash learn", "4 seconds": what espeak-ng says wrong
        if self.on_spoken is not None:
            self.on_spoken(text)
        with self._cond:
            if self._closed:
                return
            self._pending = text  # an older waiting message is dropped: it is out of date
            self._start_threads()
            self._cond.notify_all()
            if self._mode() == "own" and not self._done.is_set():
                self._cut_target = self._serial
                self._cut.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every message said so far has been spoken (False after ``timeout`` s).

        For a last message before the process exits (a start-up error): close() would cut it.
        Messages still waiting for an output that never came are spoken by the own player.
        """
        deadline = time.monotonic() + timeout
        if self._mode() == "await":
            self.use_output(None)
        while time.monotonic() < deadline:
            with self._cond:
                idle = self._pending is None and self._done.is_set() and not self._synthesizing
                output = self._output
            if self._problem is not None:  # speech is off here: nothing waiting will be spoken
                return idle
            if idle and output is not None:
                return output.wait(max(0.0, deadline - time.monotonic()))
            if idle or not any(t.is_alive() for t in self._threads):
                return idle
            time.sleep(CUT_POLL_S)
        return False

    def close(self) -> None:
        """Stop speaking and end the threads; returns within ``CLOSE_TIMEOUT_S``."""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        with self._cond:
            self._closed = True
            self._pending = None
            self._cut_target = self._serial
            self._cond.notify_all()
            threads = list(self._threads)
        self._cut.set()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.debug("status speech still finishing in the background")

    def __enter__(self) -> StatusVoice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- threads ----------------------------------------------------------------------------

    def _start_threads(self) -> None:
        """The threads of the current mode, once (``_cond`` held)."""
        mode = self._mode()
        if mode == "await" or mode in self._started:
            return
        self._started.add(mode)
        if mode == "shared":
            loops = [(self._output_loop, "voice-out")]
        else:
            loops = [(self._speak_loop, "voice"), (self._cut_loop, "voice-cut")]
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"earsight-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _next_message(self, mode: str = "own") -> str | None:
        """The newest message once the voice is in ``mode``; None when closing."""
        with self._cond:
            while not self._closed and (self._pending is None or self._mode() != mode):
                self._cond.wait()
            if self._closed:
                return None
            text, self._pending = self._pending, None
            self._current = text
            if mode == "own":
                self._serial += 1
                self._done.clear()
            else:
                self._synthesizing = True
            return text

    def _output_loop(self) -> None:
        """Shared output: synthesize each message with espeak-ng, hand it to the output."""
        from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, Voice, espeak_version, synthesize

        try:
            espeak_version()
        except Exception as err:  # SpeechError (not installed), OSError: printed only
            self._problem = str(err)
            log.warning("status speech off (%s); messages are printed only", err)
            return
        voice = Voice(words_per_min=self.rate_wpm)
        while (text := self._next_message("shared")) is not None:
            try:  # cached on disk: --record's copy of the message then costs nothing
                wave = synthesize(text, voice)
            except Exception as err:  # one unspeakable message ("42") must not end speech
                log.warning("status speech failed for %r: %s", text, err)
                wave = None
            with self._cond:
                self._synthesizing = False
                output = self._output
                stale = self._pending is not None  # a newer message came while synthesizing
            if wave is not None and output is not None and not stale:
                output.play(wave, SAMPLE_RATE_HZ, text, kind="status")
                if self.on_started is not None:
                    self.on_started(text)

    def _speak_loop(self) -> None:
        self._problem = player_problem()
        if self._problem is not None:
            log.warning("status speech off: %s; messages are printed only", self._problem)
            return
        with _ENGINE_LOCK:
            engine = _shared_engine()
            if engine is None:
                return
            tokens = [
                engine.connect("started-utterance", self._on_started),
                engine.connect("finished-utterance", self._on_finished),
            ]
            try:
                engine.setProperty("rate", self.rate_wpm)
                while (text := self._next_message("own")) is not None:
                    self._speak(engine, text)
            finally:
                for token in tokens:
                    engine.disconnect(token)

    def _speak(self, engine: Any, text: str) -> None:
        """Hand ``text`` to pyttsx3 and wait until it is spoken, cut, or we are closing."""
        try:
            engine.say(text)
            engine.runAndWait()  # pyttsx3 2.99: returns at once or after playing, by its state
        except Exception as err:  # a broken utterance must not end status speech for good
            log.warning("status speech failed: %s", err)
            self._done.set()
        deadline = time.monotonic() + UTTERANCE_MAX_S
        while not self._done.wait(0.05):
            if self._closed or time.monotonic() > deadline:
                break
        self._done.set()

    def _cut_loop(self) -> None:
        while True:
            self._cut.wait()
            self._cut.clear()
            self._cut_current()
            if self._closed:
                self._cut_current()  # close() may have come during an earlier cut
                return

    def _cut_current(self) -> None:
        """End the target utterance: kill its player; engine.stop() if it has none."""
        start = time.monotonic()
        killed = stopped = False
        while not self._done.is_set() and self._serial == self._cut_target:
            elapsed = time.monotonic() - start
            if elapsed > CUT_GIVE_UP_S:
                log.debug("interrupted utterance not reported finished; moving on")
                self._done.set()
                break
            if kill_players():  # pyttsx3 reports the utterance finished a moment later
                killed = True
            elif not (killed or stopped) and elapsed > CUT_STOP_AFTER_S:
                stopped = True  # no player process: a driver that plays by itself
                if _engine is not None:
                    _engine.stop()
            self._done.wait(CUT_POLL_S)

    # --- pyttsx3 callbacks ------------------------------------------------------------------

    def _on_started(self, name: str | None = None, **_: Any) -> None:
        # pyttsx3 2.99 loses utterance names; at most one utterance is in flight, so it is ours
        if self.on_started is not None:
            self.on_started(self._current)

    def _on_finished(self, name: str | None = None, completed: bool = True, **_: Any) -> None:
        self._done.set()
        if self.on_finished is not None:
            self.on_finished(self._current, completed)
