"""``earsight live --record DIR``: every sound played and every status spoken, kept as numbered
WAV files in the order heard (app/sound/wav_sink.py writes them), on a thread of its own."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RECORD_FLUSH_S = 2.0  # at exit, the recorder gets this long to write what is queued


class Recorder:
    """``--record DIR``: each sound played and each status spoken, as numbered WAVs in order.

    Writing happens on a thread of its own (status speech is synthesized with espeak-ng first),
    so recording never delays a sound; ``close`` waits up to RECORD_FLUSH_S for the queue.
    """

    def __init__(self, directory: Path) -> None:
        from earsight.app.sound.wav_sink import WavSink

        # numbered files; a second run adds, never overwrites
        self._sink = WavSink(directory, option="--record")
        self._queue: queue.Queue[tuple[np.ndarray | None, int, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="earsight-record", daemon=True)
        self._thread.start()

    @property
    def written(self) -> list[Path]:
        return self._sink.written

    def sound(self, wave: np.ndarray, rate: int, label: str) -> None:
        self._queue.put((wave, rate, label))

    def speech(self, text: str) -> None:
        self._queue.put((None, 0, text))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(RECORD_FLUSH_S)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            wave, rate, label = item
            try:
                if wave is None:
                    wave, rate, label = *self._speak(label), f"status-{label}"
                self._sink.play(wave, rate, label)
            except Exception as err:  # a full disk must not stop the app: say it once per sound
                log.warning("--record: could not save %s (%s)", label, err)

    @staticmethod
    def _speak(text: str) -> tuple[np.ndarray, int]:
        from earsight.app.sound.voice import DEFAULT_RATE_WPM  # as the status voice speaks
        from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, Voice, synthesize

        return synthesize(text, Voice(words_per_min=DEFAULT_RATE_WPM)), SAMPLE_RATE_HZ
