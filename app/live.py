"""`earsight live`: capture → infer → speak, on each key press.

A grabber thread keeps only the freshest camera frame; a key press wakes one worker thread that
takes that frame, runs the model and hands the waveform to the audio output, where a newer sound
replaces an older one. Presses that arrive while the worker is busy are coalesced into one more
run, so a flood of presses never builds a queue. Every stage is time-stamped for the latency
benchmark (key → frame → inference → first audio buffer).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app import earcons
from app.config import LiveOptions

log = logging.getLogger(__name__)

FRAME_WAIT_S = 0.5  # how long a press waits for a first/fresh frame before saying so
JOIN_TIMEOUT_S = 1.0  # shutdown must finish within a second (Ctrl-C, SIGTERM)


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


@dataclass
class LiveState:
    mode: str = "word"
    verbosity: int = 1
    last_sound: tuple[np.ndarray, int, str] | None = None  # (wave, rate, label) for "repeat"
    timings: list[PressTiming] = field(default_factory=list)


class LiveApp:
    """Wires a runtime, a frame grabber, an audio output, a status voice and a controller."""

    def __init__(
        self,
        options: LiveOptions,
        runtime: Any,
        grabber: Any,
        audio: Any,
        voice: Any,
        gate: Any,
        record_dir: Path | None = None,
    ) -> None:
        self.options, self.runtime, self.grabber = options, runtime, grabber
        self.record_dir = record_dir  # a WAV tee: every sound played is also saved here
        self.audio, self.voice, self.gate = audio, voice, gate
        self.state = LiveState(mode=options.mode, verbosity=options.verbosity)
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._pending_key: float | None = None  # newest unserved press (older ones coalesce)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._serve, name="earsight-infer", daemon=True)
        self._timing: PressTiming | None = None
        if hasattr(audio, "on_first_buffer"):
            audio.on_first_buffer = self._first_audio
        self._rate = runtime.info.output_rate
        self._click = earcons.capture_click(self._rate)

    # --- controller side: cheap, never blocks ---------------------------------------------

    def on_action(self, action: Any, t_key: float) -> None:
        name = getattr(action, "name", str(action)).upper()
        if name == "DESCRIBE":
            with self._lock:
                self._pending_key = t_key
            self._wake.set()
            self.audio.play(self._click, self._rate, "click")  # heard at once; the word cuts it
        elif name == "REPEAT" and self.state.last_sound is not None:
            wave, rate, label = self.state.last_sound
            self.audio.play(wave, rate, label)
        elif name == "VERBOSITY":
            self.state.verbosity = (self.state.verbosity + 1) % 3
            self.voice.verbosity = self.state.verbosity
            self.voice.say(f"verbosity {self.state.verbosity}", level=0)
        elif name == "TOGGLE_MODE":
            self.state.mode = "soundscape" if self.state.mode == "word" else "word"
            self.voice.say(f"{self.state.mode} mode", level=0)
        elif name == "QUIT":
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
            except Exception as err:  # keep serving presses; say what went wrong
                log.exception("describe failed")
                self.voice.say(f"error: {err}", level=0)

    def _describe_once(self, t_key: float) -> None:
        timing = PressTiming(key=t_key)
        frame = self.grabber.latest(FRAME_WAIT_S)
        if frame is None:
            self.audio.play(earcons.error_tone(self._rate), self._rate, "error")
            self.voice.say("no camera image", level=0)
            return
        timing.frame, timing.frame_index = time.perf_counter(), frame.index
        if self.state.mode == "soundscape":
            from app.soundscape import encode

            wave, rate, label = encode(frame.image), self._soundscape_rate(), "soundscape"
        else:
            wave, rate, label = self._word_for(frame.image)
        timing.inferred = time.perf_counter()
        timing.word = label
        self.state.timings.append(timing)
        self.state.last_sound = (wave, rate, label)
        # Stamp the word's first buffer, not the click's: the click either already started
        # (its stamp went to the previous timing) or is replaced by this play before it starts.
        self._timing = timing
        self.audio.play(wave, rate, label)
        if self.record_dir is not None:
            self._record(wave, rate, label, len(self.state.timings))
        if self.state.verbosity >= 2:
            self.voice.say(label, level=2)
        else:
            print(label, flush=True)  # the screen-reader line; the audio is the answer

    def _word_for(self, image: np.ndarray) -> tuple[np.ndarray, int, str]:
        from app.camera import prepare

        h, w, c = self.runtime.info.input_shape
        crop = self.runtime.info.input_crop
        waves, probs = self.runtime(prepare(image, (h, w), c, crop)[None])
        labels = self.runtime.info.labels
        top = np.argsort(probs[0])[::-1][:2]
        said, confident = self.gate.decide([(labels[i], float(probs[0][i])) for i in top])
        rate = self.runtime.info.output_rate
        if confident:
            return waves[0], rate, said
        from app.describe import phrase_clip

        phrase = phrase_clip(said, rate, self.runtime.options.postprocess)
        return np.concatenate([earcons.not_sure_tone(rate), phrase]), rate, said

    def _record(self, wave: np.ndarray, rate: int, label: str, index: int) -> None:
        import soundfile as sf

        self.record_dir.mkdir(parents=True, exist_ok=True)
        slug = label.replace(" ", "-")
        sf.write(self.record_dir / f"{index:04d}-{slug}.wav", wave, rate, subtype="PCM_16")

    def _soundscape_rate(self) -> int:
        from app.soundscape import SoundscapeOptions

        return SoundscapeOptions().sample_rate

    def _first_audio(self, t: float) -> None:
        if self._timing is not None and self._timing.first_audio is None:
            self._timing.first_audio = t

    # --- lifecycle --------------------------------------------------------------------------

    def run(self, controller: Any) -> int:
        """Serve presses until quit, Ctrl-C or SIGTERM; returns the exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._worker.start()
        controller.start()
        try:
            while not self.stop_event.wait(0.1):
                pass
        finally:
            self.voice.say("stopping", level=1)
            controller.stop()
            self._wake.set()
            self._worker.join(JOIN_TIMEOUT_S)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.stop_event.set()
        self._wake.set()
