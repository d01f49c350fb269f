"""Record the user's own spoken word from the microphone (teach mode, issue #13).

    rec = record_voice(start=pressed.wait, stop=released.wait)  # press, say it, release
    rec = record_voice(seconds=2.0)                             # headless: a fixed length
    play_back(rec, audio_out)                                   # "is this right?"

``record_voice`` opens one ``sounddevice.InputStream`` (mono int16, callback-based) before the
press, so a missing microphone is said before the user is asked to speak, and starts it on the
press: the microphone is live only while the key is held (the user's privacy; no CPU spent
before), and starting takes milliseconds against the ≥ 200 ms before anyone speaks after a
press. Until ``stop()`` returns the callback keeps every block, up to ``max_seconds``. int16
because every capture device offers it (ALSA's plug layer converts) and full scale is exact
for the clip check.

The recording is then trimmed and checked by
``earsight.app.sound.recording.check_recording``: too quiet,
clipped, too short or too long are each a ``BadRecording``, a one-line EarSightError saying
what to do, so the caller can ask the user to try again.

Devices: opening runs under a deadline (app.sound.deadline), so an input that never answers is
``NoMicrophone`` instead of a hang; a device the user named that is not there is
``UnknownMicrophone``, naming the input devices there are (as app.sound.audio does for outputs).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

import numpy as np

from earsight.app.sound.deadline import DeadlineExceeded, call_with_deadline
from earsight.app.sound.devices import (
    FirstBufferHook,
    device_arg,
    import_sounddevice,
    list_devices,
)
from earsight.app.sound.recording import Recording, check_recording
from earsight.errors import EarSightError, UsageError, first_line

log = logging.getLogger(__name__)

DEFAULT_RATE_HZ = 48_000  # what app.sound.audio plays at: the recording plays back unresampled
MAX_SECONDS = 4.0  # a press-to-talk recording stops here even if the key is still held
OPEN_TIMEOUT_S = 3.0  # opening an input that has not answered by then counts as none
CLOSE_TIMEOUT_S = 1.0  # closing returns within this even when the driver hangs
STALL_S = 2.0  # no samples for this long past the expected end: the input stopped delivering
PLAYBACK_SLACK_S = 1.0  # play_back waits the recording's length plus this
RELEASE_POLL_S = 0.02  # how often a press-to-talk recording checks whether it is full

NO_MICROPHONE_FIX = "plug in a microphone or headset, or give the word's sound as a file"
DEVICE_FIX = "name one of them as the microphone, or leave the device out for the default"

Wait = Callable[[], object]  # returns when the moment has come (a key press, a release)
Status = Callable[[str], None]


class MicrophoneError(EarSightError):
    """Recording from the microphone failed."""


class NoMicrophone(MicrophoneError):
    """No input device could be opened, or it stopped delivering sound."""


class UnknownMicrophone(NoMicrophone):
    """The input device the user named is not there."""


class Player(Protocol):  # app.sound.audio's AudioOut and WavSink
    def play(
        self,
        wave: np.ndarray,
        sample_rate: int,
        label: str = ...,
        kind: str = ...,
        on_first: FirstBufferHook | None = ...,
    ) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


# --- the device -----------------------------------------------------------------------------


def input_devices(sd: Any) -> list[str]:
    """``"0 default"``, ``"4 USB Microphone"``, …: every input device PortAudio lists."""
    return list_devices(sd, "input")


def _import_sounddevice() -> Any:
    try:
        sd = import_sounddevice()
    except (ImportError, OSError) as err:  # OSError: PortAudio missing, or it crashes scanning
        raise NoMicrophone(f"no microphone: {first_line(err)}", NO_MICROPHONE_FIX) from err
    return sd


def _input_rates(sd: Any, device: str | int | None, sample_rate: int) -> list[int]:
    """``[sample_rate, the device's own rate]``; NoMicrophone/UnknownMicrophone if none."""
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as err:  # ValueError: no device matching a name
        reason, names = first_line(err), input_devices(sd)
        there = f"input devices: {'; '.join(names)}"
        if device is not None:
            more = there if names else "there are no input devices"
            raise UnknownMicrophone(
                f"no microphone {device!r} ({reason}); {more}", DEVICE_FIX
            ) from err
        if names:  # PortAudio's "Error querying device -1": inputs, but no default one
            raise UnknownMicrophone(
                f"no default microphone ({reason}); {there}", DEVICE_FIX
            ) from err
        raise NoMicrophone(
            f"no microphone: the system has no input device ({reason})", NO_MICROPHONE_FIX
        ) from err
    own = round(info["default_samplerate"])
    return [sample_rate] + ([own] if own != sample_rate else [])


class _Collector:
    """The InputStream callback: keeps int16 blocks while recording, up to ``max_frames``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held for microseconds, by the callback too
        self._blocks: list[np.ndarray] = []
        self._frames = 0
        self._max_frames = 0
        self._recording = False
        self.full = threading.Event()  # max_frames reached
        self.callbacks = 0  # while recording
        self.overflows = 0  # blocks PortAudio flagged as lost (the callback was late)

    def begin(self, max_frames: int) -> None:
        with self._lock:
            self._blocks, self._frames, self._max_frames = [], 0, max_frames
            self.full.clear()
            self._recording = True

    def end(self) -> np.ndarray:
        """Stop keeping blocks; the recording as float32 (L,) in [-1, 1)."""
        with self._lock:
            self._recording = False
            blocks, self._blocks = self._blocks, []
        pcm = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0

    def __call__(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        with self._lock:
            if not self._recording or self._frames >= self._max_frames:
                return
            self.callbacks += 1
            take = min(frames, self._max_frames - self._frames)
            self._blocks.append(indata[:take, 0].copy())
            self._frames += take
            if self._frames >= self._max_frames:
                self.full.set()


def _open_stream(device: str | int | None, sample_rate: int, collector: _Collector) -> Any:
    """A mono int16 InputStream (not started) at ``sample_rate``, else at the device's own."""
    sd = _import_sounddevice()
    rates = _input_rates(sd, device, sample_rate)
    for i, rate in enumerate(rates):
        try:
            return sd.InputStream(
                samplerate=rate, channels=1, dtype="int16", device=device, callback=collector
            )
        except sd.PortAudioError as err:
            if i < len(rates) - 1:
                log.info("microphone: %d Hz refused (%s), trying %d Hz", rate, err, rates[-1])
                continue
            raise NoMicrophone(
                f"the microphone did not open: {first_line(err)}", NO_MICROPHONE_FIX
            ) from err
    raise AssertionError("unreachable")


def _start(stream: Any, timeout_s: float) -> None:
    """Start capturing (on the press): NoMicrophone if the device refuses or does not answer."""
    try:
        call_with_deadline(stream.start, timeout_s, "mic-start")
    except DeadlineExceeded as err:
        raise NoMicrophone(
            f"the microphone did not start within {timeout_s:g} s", NO_MICROPHONE_FIX
        ) from err
    except Exception as err:  # sounddevice.PortAudioError: a device unplugged since it opened
        raise NoMicrophone(
            f"the microphone did not start: {first_line(err)}", NO_MICROPHONE_FIX
        ) from err
    log.debug("microphone: recording at %d Hz", stream.samplerate)


def _close(stream: Any) -> None:
    def abort_and_close() -> None:
        stream.abort(ignore_errors=True)  # nothing to drain: the recording is taken
        stream.close(ignore_errors=True)

    try:
        call_with_deadline(abort_and_close, CLOSE_TIMEOUT_S, "mic-close")
    except DeadlineExceeded:  # a wedged driver: leave its thread, the process can still exit
        log.warning("microphone: the input did not close within %g s; leaving it", CLOSE_TIMEOUT_S)


def _open_input(
    device: str | int | None, sample_rate: int, collector: _Collector, timeout_s: float
) -> Any:
    """``_open_stream`` under a deadline: an input that never answers is NoMicrophone."""
    try:
        return call_with_deadline(
            lambda: _open_stream(device_arg(device), sample_rate, collector),
            timeout_s,
            "mic-open",
            discard=_close,  # opened too late: nobody will read it
        )
    except DeadlineExceeded as err:
        raise NoMicrophone(
            f"the microphone did not open within {timeout_s:g} s (device stuck or busy)",
            NO_MICROPHONE_FIX,
        ) from err


def check_microphone(device: str | int | None = None, timeout_s: float = OPEN_TIMEOUT_S) -> str:
    """Open the input without starting it, close it, and return its name (e.g. "default").

    For callers that ask for other things first (teach mode's photos): NoMicrophone or
    UnknownMicrophone now instead of after the user has done them.
    """
    stream = _open_input(device, DEFAULT_RATE_HZ, _Collector(), timeout_s)
    try:
        import sounddevice as sd  # imported by _open_input already

        return str(sd.query_devices(stream.device, kind="input")["name"])
    finally:
        _close(stream)


# --- recording ------------------------------------------------------------------------------


class _EnterKey:
    """The terminal's Enter presses, read by one thread for every wait. A wait for the release
    Enter outlives its recording when ``max_seconds`` is reached first; reading the terminal
    itself, it took the user's next Enter, meant for the next "press Enter" (the recording never
    started, and the Enter after it started one of silence). Here a wait ends, taking nothing,
    as soon as a newer one begins: an Enter before the next prompt's wait is the late release
    of the recording before; one after it is the next press."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[str] = []  # read, not yet taken; "" is the end of input
        self._changed = threading.Condition()
        self._turn = 0  # the newest wait's number
        self._reader: threading.Thread | None = None

    def wait(self, end_ok: bool = False, prompt: Callable[[], None] | None = None) -> str | None:
        """The next Enter's line (without its newline), or None when a newer wait overtook
        this one, or at the end of input if ``end_ok`` (else UsageError: nobody is there).
        ``prompt`` is said once this wait is the newest, so an Enter that answers it as soon
        as it shows is this wait's, never an older one's late release."""
        with self._changed:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="enter-key", daemon=True)
                self._reader.start()
            self._turn += 1
            turn = self._turn
            self._changed.notify_all()  # an older wait still waiting gives up
        if prompt is not None:
            prompt()  # outside the lock: the reader keeps reading while it is said
        with self._changed:
            while turn == self._turn:
                if self._lines:
                    if not self._lines[0]:  # end of input: nobody is there to press it
                        if end_ok:
                            return None
                        raise UsageError(
                            "no terminal to press Enter in (standard input is closed)",
                            "run it in a terminal, or give the word's sound as a file or an "
                            "espeak-ng voice",
                        )
                    return self._lines.pop(0).rstrip("\r\n")
                self._changed.wait(RELEASE_POLL_S)  # a timeout: Ctrl-C stays prompt
            return None

    def _read(self) -> None:
        while True:
            line = self._stream.readline()
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
            if not line:
                return


_ENTER_KEYS: dict[int, _EnterKey] = {}  # one reader per stream (sys.stdin in the app)
_ENTER_KEYS_LOCK = threading.Lock()


def _enter_key(stream: TextIO | None) -> _EnterKey:
    source = stream if stream is not None else sys.stdin
    with _ENTER_KEYS_LOCK:
        return _ENTER_KEYS.setdefault(id(source), _EnterKey(source))


def wait_for_enter(stream: TextIO | None = None) -> Wait:
    """A ``start``/``stop`` for a terminal: returns when the user presses Enter (a wait that
    a newer one overtook returns without taking one: see _EnterKey)."""

    def wait() -> None:
        _enter_key(stream).wait()

    return wait


def read_answer(
    stream: TextIO | None = None, prompt: Callable[[], None] | None = None
) -> str | None:
    """The line the user types and ends with Enter, read by the same reader as the press-to-
    talk Enters (so neither takes the other's); None at the end of input (a script's answers
    ran out: the caller takes its default). ``prompt``: says the question (_EnterKey.wait)."""
    return _enter_key(stream).wait(end_ok=True, prompt=prompt)


def record_voice(
    device: str | int | None = None,
    sample_rate: int = DEFAULT_RATE_HZ,
    max_seconds: float = MAX_SECONDS,
    start: Wait | None = None,
    stop: Wait | None = None,
    on_status: Status | None = None,
    seconds: float | None = None,
    playback: Player | None = None,
    open_timeout_s: float = OPEN_TIMEOUT_S,
) -> Recording:
    """Record one spoken word: press-to-talk (``start``/``stop``) or ``seconds`` long.

    ``start()`` returns when the user presses, ``stop()`` when they release; both default to
    Enter on the terminal. ``seconds`` records a fixed length instead (headless; ``start`` and
    ``stop`` must then be None). The device opens before ``start`` is called, so a missing
    microphone is reported before the user is asked to speak. ``on_status`` hears one line when
    recording starts and one with the result; ``playback`` (an AudioOut or WavSink) plays the
    trimmed recording back for confirmation. Raises NoMicrophone, UnknownMicrophone, or a
    BadRecording (silent, clipped, too short, too long) the user can answer by trying again.
    """
    if seconds is not None and (start is not None or stop is not None):
        raise ValueError("pass either seconds (a fixed length) or start/stop (press-to-talk)")
    length = seconds if seconds is not None else max_seconds
    if not 0 < length <= 60:
        raise ValueError(f"a recording lasts 0..60 s, got {length}")
    say = on_status or (lambda line: log.info("microphone: %s", line))
    collector = _Collector()
    stream = _open_input(device, sample_rate, collector, open_timeout_s)
    rate = int(stream.samplerate)
    try:
        if seconds is None:
            if start is None:  # the terminal: no key to hold, Enter starts and Enter stops
                say(f"press Enter, say the word, then press Enter again (at most {length:g} s)")
            (start or wait_for_enter())()
            collector.begin(round(length * rate))
            _start(stream, open_timeout_s)
            say(f"recording, up to {length:g} s")
            if not _until_released(collector, stop or wait_for_enter()):
                say(f"{length:g} s reached: recording stopped")
        else:
            collector.begin(round(length * rate))
            _start(stream, open_timeout_s)
            say(f"recording for {length:g} s")
            _until_full(collector, rate, length)
    finally:
        _close(stream)
    if collector.overflows:
        log.info("microphone: %d input overflows while recording", collector.overflows)
    # A fixed length always ran full; press-to-talk did if the key was held past max_seconds.
    recording = check_recording(collector.end(), rate, ran_full=collector.full.is_set())
    say(f"recorded {recording.speech_s:.1f} s, peak {recording.peak_dbfs:.0f} dBFS")
    if playback is not None:
        play_back(recording, playback)
    return recording


def _until_released(collector: _Collector, stop: Wait) -> bool:
    """Wait for ``stop()`` (the release) or for the recording to reach its length, whichever
    comes first: True when released. ``stop`` runs on its own thread, so a held key (or an
    Enter not yet pressed) cannot keep the microphone open past ``max_seconds``."""
    pressed = time.monotonic()
    released, raised = threading.Event(), []

    def wait_release() -> None:
        try:
            stop()
        except BaseException as err:  # re-raised on the caller's thread
            raised.append(err)
        finally:
            released.set()

    threading.Thread(target=wait_release, name="mic-release", daemon=True).start()
    while not released.wait(RELEASE_POLL_S) and not collector.full.is_set():
        pass
    if raised:
        raise raised[0]
    held = time.monotonic() - pressed
    if collector.callbacks == 0 and held >= STALL_S:  # a short press is "too short" instead
        raise NoMicrophone(f"the microphone delivered no sound in {held:.1f} s", NO_MICROPHONE_FIX)
    return released.is_set()


def _until_full(collector: _Collector, rate: int, seconds: float) -> None:
    if not collector.full.wait(seconds + STALL_S):
        got = collector.end().size / rate
        raise NoMicrophone(
            f"the microphone stopped: it delivered {got:.1f} s of sound in {seconds + STALL_S:g} s",
            NO_MICROPHONE_FIX,
        )


def play_back(recording: Recording, out: Player, wait: bool = True) -> None:
    """Play the trimmed recording for confirmation ("your recording"); waits till it ends."""
    out.play(recording.wave, recording.sample_rate, label="your recording", kind="word")
    if wait:
        out.wait(recording.speech_s + PLAYBACK_SLACK_S)
