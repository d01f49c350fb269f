"""`earsight live`: capture → infer → speak, on each key press.

A grabber thread keeps only the freshest camera frame; a key press wakes one worker thread that
takes that frame, runs the model and hands the waveform to the audio output, where a newer sound
replaces an older one. Presses that arrive while the worker is busy are coalesced into one more
run, so a flood of presses never builds a queue. Every stage is time-stamped for the latency
benchmark (key → frame → inference → first audio buffer).

Every sound goes through ``LiveApp._play``, so ``--record DIR`` saves each one (clicks, words,
repeats, error tones) and, through the voice's ``on_spoken`` hook, each status message spoken,
as numbered WAVs in the order they were played. Key input is started (and has to work) before
the app says "ready"; a ``PressRelay`` answers presses that come while it is still starting.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from earsight.app.config import LiveOptions
from earsight.app.keys.base import Action, KeyMap
from earsight.app.keys.terminal import UNBOUND_KEY
from earsight.app.modes.live_parts import (
    LiveAudio,
    LiveController,
    LiveGrabber,
    LiveRuntime,
    LiveTeacherPart,
    LiveVoice,
    LiveWatcher,
)
from earsight.app.sound import earcons
from earsight.app.sound.devices import AudioUnavailable
from earsight.app.sound.lines import print_line
from earsight.app.sound.recorder import Recorder
from earsight.errors import EarSightError

# app.sound.audio and app.modes.answer are imported where needed, not with this module
if TYPE_CHECKING:
    from earsight.app.modes.answer import ConfidenceGate
    from earsight.app.sound.devices import FirstBufferHook

log = logging.getLogger(__name__)

FRAME_WAIT_S = 0.5  # how long a press waits for a first/fresh frame before saying so
JOIN_TIMEOUT_S = 1.0  # shutdown must finish within a second (Ctrl-C, SIGTERM)
EXIT_KEYS_CLOSED = 1  # key input ended by itself: nobody can ask the app anything any more
QUIT_AGAIN = f"press {KeyMap.quit.capitalize()} again to quit"  # the desktop quit key, once
TIMINGS_KEPT = 1000  # press timings kept for benchmarks and -v (≈ 0.26 MB)
MAIN_LOOP_S = 0.1  # the main thread's tick: signals, stop, and the -v latency lines
# -v: one line per answered press; app/bench/soak.py parses it (PRESS_LINE_RE there)
PRESS_LOG = "press %d: key→first audio %.1f ms (%s)"


@dataclass
class PressTiming:
    """perf_counter stamps of one press, seconds; None when a stage did not happen."""

    key: float
    frame: float | None = None
    frame_index: int = -1  # which frame of the source was described
    inferred: float | None = None
    first_audio: float | None = None
    word: str = ""

    def key_to_audio_ms(self) -> float | None:
        return None if self.first_audio is None else (self.first_audio - self.key) * 1e3

    def heard(self, t: float) -> None:
        """The audio output's stamp of this press's word reaching the device (perf_counter s)."""
        if self.first_audio is None:
            self.first_audio = t


@dataclass
class LiveState:
    mode: str = "word"
    verbosity: int = 1
    last_sound: tuple[np.ndarray, int, str] | None = None  # (wave, rate, label) for "repeat"
    # The newest presses' timings only: a wearable answering a press a second for days must
    # not keep them all (the soak bench measured +1.1 MB/h with an unbounded list).
    timings: deque[PressTiming] = field(default_factory=lambda: deque(maxlen=TIMINGS_KEPT))
    presses: int = 0  # every press answered since start; timings[0] is number presses - len


class PressRelay:
    """The controller's ``on_action`` before the app exists: key input starts first.

    Until ``attach``, a quit is remembered, a describe press is remembered and answered once the
    app attaches (a user who pressed during start-up is still waiting for the word), and other
    presses are answered "still starting"; a key input that closes is remembered too and
    reported to the app when it attaches.
    """

    def __init__(self, voice: LiveVoice) -> None:
        self.voice = voice
        self._app: LiveApp | None = None
        self._quit = False
        self._describe = False
        self._closed: str | None = None

    def __call__(self, action: Action, t_key: float) -> None:
        app = self._app
        if app is not None:
            app.on_action(action, t_key)
        elif action is Action.QUIT:
            self._quit = True
        elif action is Action.DESCRIBE:
            self._describe = True
            self.voice.say("still starting: the answer comes when ready", level=0)
        else:
            self.voice.say("still starting, one moment", level=0)

    def closed(self, reason: str) -> None:
        if self._app is not None:
            self._app.keys_closed(reason)
        else:
            self._closed = reason

    def attach(self, app: LiveApp) -> None:
        self._app = app
        if self._quit:  # quit came first: the input's end after it is no fault
            app.stop_event.set()
            return
        if self._describe:
            # Stamped now, not at the press: key → audio figures measure the app, not start-up.
            app.on_action(Action.DESCRIBE, time.perf_counter())
        if self._closed is not None:
            app.keys_closed(self._closed)


class LiveApp:
    """Wires a runtime, a frame grabber, an audio output, a status voice and a controller."""

    def __init__(
        self,
        options: LiveOptions,
        runtime: LiveRuntime,
        grabber: LiveGrabber,
        audio: LiveAudio,
        voice: LiveVoice,
        gate: ConfidenceGate,
        record_dir: Path | None = None,
        watcher: LiveWatcher | None = None,
        teacher: LiveTeacherPart | None = None,
        describe_key: str = "describe",
    ) -> None:
        self.options, self.runtime, self.grabber = options, runtime, grabber
        self.describe_key = describe_key  # the user's key, named in prompts ("press space")
        self.watcher = watcher  # app/modes/model_watch.ModelWatcher: a re-learned model, swapped in
        self.teacher = teacher  # app/modes/live_teach.LiveTeacher: the TEACH key
        if teacher is not None:
            teacher.play = self._play  # its tone is played (and recorded) like every sound
        self.record_dir = record_dir  # a WAV tee: every sound played is also saved here
        self.recorder = Recorder(record_dir) if record_dir is not None else None
        if self.recorder is not None:
            voice.on_spoken = self.recorder.speech
        self.audio, self.voice, self.gate = audio, voice, gate
        self.exit_code = 0
        self.state = LiveState(mode=options.mode, verbosity=options.verbosity)
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._pending_key: float | None = None  # newest unserved press (older ones coalesce)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._serve, name="earsight-infer", daemon=True)
        self._logged = 0  # timings already reported by _log_latencies
        self._rate = runtime.info.output_rate
        self._click = earcons.capture_click(self._rate)
        self._sound_problem = ""  # the last "cannot write the sound file" line said

    # --- controller side: cheap, never blocks ---------------------------------------------

    def on_action(self, action: Action, t_key: float) -> None:
        """A key's Action at perf_counter time ``t_key``; returns at once (controller thread)."""
        teaching = self.teacher is not None and self.teacher.owns_devices
        if teaching and action in (Action.DESCRIBE, Action.REPEAT):
            self.teacher.busy()  # the teach flow has the camera and the microphone
            return
        match action:
            case Action.TEACH:
                if self.teacher is None:
                    self.voice.say("teaching is not available here", level=0)
                else:
                    self.teacher.press()
            case Action.DESCRIBE:
                with self._lock:
                    self._pending_key = t_key
                # The click first, then the worker: woken first, a loaded machine can answer
                # before this thread plays the click, and the click would cut the answer off.
                self._play(self._click, self._rate, "click")  # heard at once; the word cuts it
                self._wake.set()
            case Action.REPEAT:
                if self.state.last_sound is None:
                    self.voice.say(
                        f"nothing to repeat yet: press {self.describe_key} first", level=0
                    )
                else:
                    self._play(*self.state.last_sound)
                    print_line(f"repeat: {self.state.last_sound[2]}")  # the screen-reader line
            case Action.VERBOSITY:
                self.state.verbosity = (self.state.verbosity + 1) % 3
                self.voice.verbosity = self.state.verbosity
                self.voice.say(f"verbosity {self.state.verbosity}", level=0)
            case Action.TOGGLE_MODE:
                self.state.mode = "soundscape" if self.state.mode == "word" else "word"
                self.voice.say(f"{self.state.mode} mode", level=0)
            case Action.QUIT_ASKED:
                self.voice.say(QUIT_AGAIN, level=0)
            case Action.UNBOUND:
                self.voice.say(UNBOUND_KEY, level=0)
            case Action.QUIT:
                self.stop_event.set()
                self._wake.set()

    # --- worker side ------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                t_key, self._pending_key = self._pending_key, None
            if t_key is None or self.stop_event.is_set():
                continue
            try:
                self._describe_once(t_key)
            except EarSightError as err:  # a user-facing fault: its one line, no traceback
                self.voice.say(f"error: {err}", level=0)
            except Exception as err:  # keep serving presses; say what went wrong
                log.exception("describe failed")
                self.voice.say(f"error: {err}", level=0)

    def _describe_once(self, t_key: float) -> None:
        self._take_new_model()
        timing = PressTiming(key=t_key)
        frame = self.grabber.latest(FRAME_WAIT_S)
        if frame is None:
            self._play(earcons.error_tone(self._rate), self._rate, "error")
            lost = getattr(self.grabber, "lost", False)
            self.voice.say("no camera, still trying" if lost else "no camera image", level=0)
            return
        timing.frame, timing.frame_index = time.perf_counter(), frame.index
        if self.state.mode == "soundscape":
            from earsight.app.sound.soundscape import encode

            wave, rate, label = encode(frame.image), self._soundscape_rate(), "soundscape"
        else:
            wave, rate, label = self._word_for(frame.image)
        timing.inferred = time.perf_counter()
        timing.word = label
        self.state.timings.append(timing)
        self.state.presses += 1
        self.state.last_sound = (wave, rate, label)
        self._play(wave, rate, label, on_first=timing.heard)  # the word's stamp, never the click's
        if self.state.verbosity >= 2:
            self.voice.say(label, level=2)
        else:
            print_line(label)  # the screen-reader line; the audio is the answer

    def _take_new_model(self) -> None:
        """Swap in a model the watcher loaded (the user taught words); on this thread, so no
        inference runs on the old one while it closes."""
        new = self.watcher.take() if self.watcher is not None else None
        if new is None:
            return
        old, self.runtime = self.runtime, new
        old.close()
        if new.info.output_rate != self._rate:
            self._rate = new.info.output_rate
            self._click = earcons.capture_click(self._rate)

    def _word_for(self, image: np.ndarray) -> tuple[np.ndarray, int, str]:
        from earsight.app.camera.grabber import prepare
        from earsight.app.modes.answer import answer

        h, w, c = self.runtime.info.input_shape
        crop = self.runtime.info.input_crop
        waves, probs = self.runtime(prepare(image, (h, w), c, crop)[None])
        rate, opts = self.runtime.info.output_rate, self.runtime.options.postprocess
        reply = answer(waves[0], probs[0], self.runtime.info.labels, self.gate, rate, opts)
        return reply.clip, rate, reply.said

    def _play(
        self,
        wave: np.ndarray,
        rate: int,
        label: str,
        on_first: FirstBufferHook | None = None,
    ) -> None:
        """Every sound the app plays goes through here: played, and recorded with --record.
        A sound that cannot be written (the WAV folder full or read-only) is said once, and the
        press goes on: its word is still printed."""
        try:
            self.audio.play(wave, rate, label, on_first=on_first)
            if self.recorder is not None:
                self.recorder.sound(wave, rate, label)
        except AudioUnavailable as err:
            # Said again only when it changes: one line per press would bury the answers.
            said = f"{err.what}; answers are printed only"
            if said != self._sound_problem:
                self._sound_problem = said
                self.voice.say(f"{said} — {err.fix}", level=0)

    def _soundscape_rate(self) -> int:
        from earsight.app.sound.soundscape import SoundscapeOptions

        return SoundscapeOptions().sample_rate

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving presses (the inference worker); ``run`` does this itself."""
        self._worker.start()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> bool:
        """Stop serving: the press in progress finishes, later ones are dropped. True when the
        worker ended within ``timeout_s`` seconds."""
        self.stop_event.set()
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join(timeout_s)
        return not self._worker.is_alive()

    def run(self, controller: LiveController) -> int:
        """Serve presses until quit, Ctrl-C, SIGTERM or the end of key input; the exit code.

        ``controller`` is already started (key input works before "ready" is said); it is
        stopped here.
        """
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.start()
        try:
            while not self.stop_event.wait(MAIN_LOOP_S):
                self._log_latencies()
        finally:
            if self.exit_code != EXIT_KEYS_CLOSED:  # keys_closed said "…: stopping" already
                self.voice.say("stopping", level=1)
            controller.stop()
            if self.teacher is not None:
                self.teacher.close()
            self.stop()
            if self.recorder is not None:
                self.recorder.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _log_latencies(self) -> None:
        """-v: key → first audio of each answered press, for benchmarks outside the process.

        Logged from the main loop, not where first audio is stamped: that is the audio
        callback, which must never wait on I/O. The newest press may still be starting; an
        older one without a first buffer never sounded and is logged as such.
        """
        if not log.isEnabledFor(logging.DEBUG):
            return
        timings, total = self.state.timings, self.state.presses
        first = total - len(timings)  # the press number of timings[0] (older ones dropped)
        self._logged = max(self._logged, first)
        while self._logged < total:
            timing = timings[self._logged - first]
            ms = timing.key_to_audio_ms()
            if ms is None and self._logged == total - 1:
                return
            log.debug(PRESS_LOG, self._logged + 1, float("nan") if ms is None else ms, timing.word)
            self._logged += 1

    def keys_closed(self, reason: str) -> None:
        """Key input ended by itself (stdin closed): say so and stop, rather than run deaf.
        After a quit (``q`` then the end of a piped input) it is no fault: nothing is said."""
        if self.stop_event.is_set():
            return
        self.voice.say(f"{reason}: stopping", level=0)
        self.exit_code = EXIT_KEYS_CLOSED
        self.stop_event.set()
        self._wake.set()

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.stop_event.set()
        self._wake.set()
