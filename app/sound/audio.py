"""Audio out for the live app: one persistent output stream where the newest sound wins.

    with open_audio(AudioOptions(), fallback_dir=Path("wavs")) as out:
        out.play(wave, 48_000)  # returns at once; a later play() cuts this one off
        out.wait(2.0)

``AudioOut`` opens a single ``sounddevice.OutputStream`` (mono float32, callback-based) at start-up
and keeps it running, so a key press never pays for opening the device. ``play`` swaps the sound
the callback reads from; the rest of the interrupted sound is replaced by a 5 ms raised-cosine
fade of it (a hard cut is a click in the user's ear), then the new sound starts.

It is the app's one audio path: spoken status messages (``app.sound.voice``) play through it too, as
``kind="status"``, so a device without software mixing (a raw ALSA ``hw`` device, which answers
a second opener "device busy") carries both. Priorities: a word (or earcon) cuts whatever plays
and drops a waiting status; a status cuts an older status, but waits for a playing word to end
(only the newest waiting status is kept).

Underruns (the callback late, e.g. a starved CPU): PortAudio's ALSA host recovers the PCM
(``snd_pcm_recover``) and sound resumes with the first callback after the late one, i.e. within
one buffer; ``underflows`` counts them. Measured through ALSA's PulseAudio plugin into a sink
clocked like a sound card (a 300 ms late callback: 268 ms of silence, 34.8 ms buffer;
tests/test_audio_pulse.py). The ≈ 1.9 s of silence seen before was PulseAudio's *null* sink,
not the plugin: on an underrun the plugin reconnects its stream, the sink is idle for that
moment and the null sink sleeps out its 2 s idle timer (none of abort+start, stop+start, stream
priming or polling the PCM shortened it; docs/BENCHMARKS.md). A real sink has no such timer.

Without an output device (no sound card, PortAudio missing) or when opening it does not return
within ``open_timeout_s`` (an ALSA default that blocks, e.g. pointed at a FIFO nobody reads)
``AudioOut`` raises ``AudioUnavailable``; ``open_audio`` then falls back to ``WavSink``, which
writes every sound to a numbered WAV file, so nothing the user asked for is lost. A device the
user named that does not exist is ``UnknownAudioDevice``: an error naming the devices there are,
never a silent fall-back (WAV files nobody listens to).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earsight.app.sound.deadline import DeadlineExceeded, call_with_deadline
from earsight.app.sound.devices import (
    AudioUnavailable,
    FirstBufferHook,
    TeeHook,
    UnknownAudioDevice,
    as_mono,
    check_output_device,
    device_arg,
    import_sounddevice,
)
from earsight.app.sound.wav_sink import WavSink
from earsight.engine.postprocess import resample
from earsight.errors import first_line

log = logging.getLogger(__name__)

FADE_OUT_S = 0.005  # fade applied to the rest of an interrupted sound
# A new stream is "flowing" once the device has asked for this many buffers. Through ALSA's
# PulseAudio plugin into an idle PulseAudio null sink the first request comes at once and the
# second ≈ 1.9 s later (the null sink's 2 s idle timer; a clocked sink: 41 ms, 2026-11-30); a
# sound played in that gap waits for it.
FLOWING_CALLBACKS = 8
STREAM_START_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 3.0  # opening a device that has not answered by then counts as no device
CLOSE_TIMEOUT_S = 1.0  # close() returns within this even when the driver hangs
AUDIBLE = 1e-4  # |sample| above this (−80 dBFS) counts as sound, for on_first_buffer
NO_DEVICE_FIX = "plug in headphones or run with --out-dir DIR to write WAV files"

KINDS = ("word", "status")  # play(kind=…): words and earcons, or spoken status messages


@dataclass(frozen=True)
class AudioOptions:
    device: str | int | None = None  # sounddevice name (substring) or index; None = default
    sample_rate: int = 48_000  # Hz; the runtime's output rate, so words need no resampling
    # PortAudio's suggested output latency: "low", "high" or seconds. "high" (≈ 35 ms through
    # PulseAudio, vs 8.7 ms for "low"): with "low", a busy CPU (inference right after the click)
    # made the stream underrun, and the ALSA→PulseAudio path then stalled ≈ 1.9 s before the
    # sound (6 of 100 sounds late; "high": 0 of 100; `python -m earsight.app.bench.audio`).
    latency: str | float = "high"
    blocksize: int = 0  # frames per callback; 0 lets PortAudio pick (lowest latency)
    open_timeout_s: float = OPEN_TIMEOUT_S  # a device that does not open by then is "none"


class AudioOut:
    """Plays sounds on one persistent output stream; a new ``play`` interrupts the current one.

    Hooks (plain attributes, settable any time; both run in the audio callback, so keep them
    cheap: no I/O, no locks held for long):

    * ``on_first_buffer(t)``: ``time.perf_counter()`` when the first buffer holding an audible
      sample of a new word (not a status message) is handed to the device (key → first audio).
    * ``tee(buffer)``: a copy of every buffer handed to the device while a sound plays (the last
      one padded with zeros); idle silence is not teed.
    """

    carries_speech = True  # app.sound.voice speaks status messages through play(kind="status")

    def __init__(
        self,
        options: AudioOptions = AudioOptions(),
        on_first_buffer: FirstBufferHook | None = None,
        tee: TeeHook | None = None,
    ) -> None:
        self.options = options
        self.on_first_buffer = on_first_buffer
        self.tee = tee
        self.underflows = 0  # callbacks PortAudio flagged as late (the device ran dry)
        self._lock = threading.Lock()  # guards the seven fields below; held for microseconds
        self._segments: list[np.ndarray] = []  # [faded tail of the cut sound,] current sound
        self._pos = 0  # next sample of _segments[0]
        self._handed = 0  # samples handed to the device since the last play()
        self._first_at: int | None = None  # _handed index of the new sound's first audible one
        self._on_first: FirstBufferHook | None = None  # the current word's own play(on_first=)
        self._kind = "word"  # of the current sound
        self._waiting: np.ndarray | None = None  # a status waiting for the word to end
        self._idle = threading.Event()
        self._idle.set()
        self._callbacks = 0  # buffers the device asked for since start (callback thread only)
        self._flowing = threading.Event()  # set at FLOWING_CALLBACKS
        self._stream, self.sample_rate = self._open_with_deadline(options)
        n = max(2, round(FADE_OUT_S * self.sample_rate))
        self._fade = (0.5 + 0.5 * np.cos(np.pi * np.arange(n) / (n - 1))).astype(np.float32)

    # --- device -----------------------------------------------------------------------------

    def _open_with_deadline(self, options: AudioOptions) -> tuple[Any, int]:
        """``_open_stream`` under a deadline (app/sound/deadline.py); AudioUnavailable if it has
        not returned in time. A blocked open (an ALSA plugin writing into a FIFO nobody reads, a
        wedged driver) never returns: its thread is left behind and closes a late stream."""
        try:
            return call_with_deadline(
                lambda: self._open_stream(options),
                options.open_timeout_s,
                "audio-open",
                discard=lambda opened: opened[0].close(ignore_errors=True),
            )
        except DeadlineExceeded as err:
            raise AudioUnavailable(
                f"the audio output did not open within {options.open_timeout_s:g} s "
                "(device stuck or busy)",
                NO_DEVICE_FIX,
            ) from err

    def _open_stream(self, options: AudioOptions) -> tuple[Any, int]:
        """Start the stream at the requested rate, else at the device's own (resampled to)."""
        try:
            sd = import_sounddevice()
        except OSError as err:  # PortAudio is missing, or crashes scanning the devices
            raise AudioUnavailable(
                f"no audio output device: {first_line(err)}", NO_DEVICE_FIX
            ) from err
        device = device_arg(options.device)
        if device is not None:
            check_output_device(sd, device)
        rates = [options.sample_rate]
        try:
            default_rate = round(sd.query_devices(device, kind="output")["default_samplerate"])
            rates += [default_rate] if default_rate != options.sample_rate else []
            for i, rate in enumerate(rates):
                try:
                    return self._start(sd, device, rate, options), rate
                except sd.PortAudioError as err:
                    if i == len(rates) - 1:
                        raise
                    log.info("audio: %d Hz refused (%s), trying %d Hz", rate, err, rates[-1])
        except (sd.PortAudioError, ValueError) as err:  # ValueError: no device matching a name
            reason = first_line(err)
            if device is None:  # PortAudio's "Error querying device -1": there is no default
                reason = f"the system has none ({reason})"
            raise AudioUnavailable(f"no audio output device: {reason}", NO_DEVICE_FIX) from err
        raise AssertionError("unreachable")

    def _start(self, sd: Any, device: str | int | None, rate: int, options: AudioOptions) -> Any:
        stream = sd.OutputStream(
            samplerate=rate,
            channels=1,
            dtype="float32",
            device=device,
            latency=options.latency,
            blocksize=options.blocksize,
            callback=self._callback,
        )
        try:
            stream.start()
        except Exception:
            stream.close(ignore_errors=True)
            raise
        log.debug("audio: %s at %d Hz, latency %.1f ms", device, rate, stream.latency * 1e3)
        return stream

    # --- control (any thread) ---------------------------------------------------------------

    def play(
        self,
        wave: np.ndarray,
        sample_rate: int,
        label: str = "",
        kind: str = "word",
        on_first: FirstBufferHook | None = None,
    ) -> None:
        """Start ``wave`` now, cutting off (with a short fade) whatever is playing. Non-blocking.

        ``kind="status"``: a spoken status message; it cuts an older status but waits until a
        playing word has ended (replacing any status already waiting). ``label`` is unused
        here; it names the file in ``WavSink``, which takes the same calls. ``on_first(t)``
        stamps this word's own first audible buffer (as ``on_first_buffer`` does for every
        word), so a stamp can never belong to a sound this one cut.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if self._stream is None:
            log.debug("audio: play() after close() ignored")
            return
        sound = as_mono(wave)
        if sample_rate != self.sample_rate:
            sound = resample(sound, sample_rate, self.sample_rate)
        with self._lock:
            if kind == "status" and self._kind == "word" and self._segments:
                self._waiting = sound  # the word is the answer the user asked for: let it end
                self._idle.clear()
                return
            self._waiting = None  # a word drops a waiting status; a newer status replaces it
            self._swap(sound, kind)
            self._on_first = on_first if kind == "word" else None

    def _swap(self, sound: np.ndarray, kind: str) -> None:
        """Make ``sound`` current, after a faded tail of the cut one (lock held)."""
        tail = self._peek(len(self._fade))
        tail *= self._fade[: len(tail)]
        self._segments = [s for s in (tail, sound) if len(s)]
        self._pos = 0
        self._handed = 0
        self._kind = kind
        audible = np.flatnonzero(np.abs(sound) > AUDIBLE) if kind == "word" else []
        self._first_at = len(tail) + int(audible[0]) if len(audible) else None
        if self._segments:
            self._idle.clear()
        else:
            self._idle.set()

    def stop(self) -> None:
        """Fade out and end the current sound (within 5 ms of audio)."""
        self.play(np.zeros(0, np.float32), self.sample_rate)

    @property
    def is_playing(self) -> bool:
        """True until the last sample of the current sound has been handed to the device."""
        return not self._idle.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current sound is played out; False if ``timeout`` s passed first."""
        return self._idle.wait(timeout)

    def wait_until_flowing(self, timeout: float = STREAM_START_TIMEOUT_S) -> bool:
        """Block until the device is steadily asking for audio; False if ``timeout`` s passed.

        Call it before telling the user the app is ready: some audio paths (ALSA's PulseAudio
        plugin) start a stream with a ≈ 2 s pause, and a sound played then starts that late.
        """
        return self._flowing.wait(timeout)

    def close(self) -> None:
        """Cut the sound short (faded), drain the device buffer, release the device."""
        if self._stream is None:
            return
        self.stop()
        self._idle.wait(0.1)  # the 5 ms fade reaches the device before the stream stops
        stream, self._stream = self._stream, None
        closer = threading.Thread(target=_stop_and_close, args=(stream,), daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():  # a wedged driver: leave its thread, the process can still exit
            log.warning("audio: the output did not close within %g s; leaving it", CLOSE_TIMEOUT_S)
        if self.underflows:
            log.info("audio: %d buffer underflows while playing", self.underflows)

    def __enter__(self) -> AudioOut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- callback (PortAudio's thread) ------------------------------------------------------

    def _peek(self, n: int) -> np.ndarray:
        """Up to ``n`` samples that would play next (a small copy; does not advance)."""
        parts, pos = [], self._pos
        for seg in self._segments:
            parts.append(seg[pos : pos + n - sum(len(p) for p in parts)])
            pos = 0
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _fill(self, out: np.ndarray) -> int:
        """Copy the next samples into ``out``; return how many there were (lock held)."""
        written = 0
        while written < len(out) and (self._segments or self._waiting is not None):
            if not self._segments:  # the word has ended: the waiting status starts here
                self._segments, self._waiting, self._kind = [self._waiting], None, "status"
                continue
            seg = self._segments[0]
            n = min(len(out) - written, len(seg) - self._pos)
            out[written : written + n] = seg[self._pos : self._pos + n]
            written += n
            self._pos += n
            if self._pos == len(seg):
                self._segments.pop(0)
                self._pos = 0
        return written

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.output_underflow:
            self.underflows += 1
        self._callbacks += 1
        if self._callbacks == FLOWING_CALLBACKS:
            self._flowing.set()
        out = outdata[:, 0]
        with self._lock:
            n = self._fill(out)
            first = self._first_at is not None and self._handed <= self._first_at < self._handed + n
            own_hook = self._on_first if first else None
            self._handed += n
            if n and not self._segments and self._waiting is None:
                self._idle.set()
        out[n:] = 0.0
        if n == 0:
            return
        if first:
            t_first = time.perf_counter()
            for hook in (self.on_first_buffer, own_hook):
                if hook is not None:
                    hook(t_first)
        if self.tee is not None:
            self.tee(out.copy())


def _stop_and_close(stream: Any) -> None:
    try:
        stream.stop()  # plays out what the device already holds
    except Exception as err:  # a device unplugged mid-run: nothing left to drain
        log.debug("audio: stopping the stream failed: %s", err)
    finally:
        stream.close(ignore_errors=True)


# --- fallback: WAV files --------------------------------------------------------------------


def open_audio(
    options: AudioOptions,
    fallback_dir: Path,
    on_fallback: Callable[[str], None] | None = None,
    keep_newest: int | None = None,
) -> AudioOut | WavSink:
    """The audio device if one opens in time, else WAV files in ``fallback_dir`` (only the
    ``keep_newest`` newest kept, if given: WavSink).

    The fall-back is announced in one line, through ``on_fallback`` (live speaks it) or the
    log. A device the user named that is not there raises UnknownAudioDevice instead.
    """
    try:
        return AudioOut(options)
    except UnknownAudioDevice:
        raise
    except AudioUnavailable as err:
        message = f"{err.what}; writing WAV files to {fallback_dir} instead"
        if on_fallback is None:
            log.warning("%s", message)
        else:
            on_fallback(message)
        return WavSink(fallback_dir, keep_newest=keep_newest)
