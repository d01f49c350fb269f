"""The teach key of ``earsight live`` (issue #13): teach the object in front of the camera now.

    teacher = LiveTeacher(grabber, voice, TeachStore(paths.taught_root()))
    app = LiveApp(..., teacher=teacher)    # TEACH presses go to teacher.press()

One press: the microphone is checked first (none: one spoken line, nothing else happens, so the
user never turns an object for nothing); ~20 good views are captured from the live grabber
while the user turns the object (app.modes.teach_capture); then the user says its name after a tone
and presses TEACH again (press-to-talk on the same key; the recording also ends by itself after
RECORD_MAX_S). The word is stored under the first free "object N" (renamed later with
``earsight teach --rename``) with voice source "microphone", then learned on this module's
thread by ``earsight.app.modes.teach.learn_words``. When the taught model is written,
app/modes/model_watch's
ModelWatcher swaps it into the running app, as it does for ``earsight teach`` run beside it.

Phases: idle → capturing → recording → confirming → learning → idle. Confirming: the name is
played back and a TEACH press within CONFIRM_S records it again (the views are kept). While
capturing, recording or confirming the flow owns the camera, microphone and speaker
(``owns_devices``): LiveApp answers describe and repeat with "teaching, one moment", since a
word played during the recording would be recorded too. While
learning, describe works; TEACH says which word is still being learned and how far it is. A
recording the checks refuse (silent, clipped, too short or long) is said in one line and the
views are kept: the next TEACH press records the name again without capturing again.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from earsight.app.keys.names import KeyNames
from earsight.app.sound import earcons
from earsight.app.sound.voice import CHATTY, NORMAL, SILENT
from earsight.errors import EarSightError
from earsight.trainer.teach.store import TaughtWord, TeachStore
from earsight.trainer.teach.words import PLACEHOLDER_PREFIX, WordExistsError

log = logging.getLogger(__name__)

VIEWS = 20  # one slow turn of the object; `earsight teach` asks 2 × 30
CAPTURE_S = 8.0  # the turn's length: capture_views spreads the views over it
MIN_VIEWS = 3  # fewer is too little to learn from (as app.modes.teach.MIN_VIEWS)
RECORD_MAX_S = 4.0  # a press-to-talk recording ends here if TEACH is not pressed again
STOP_SLACK_S = 0.5  # the stop wait outlasts the recording: a full recording ends it first
PROMPT_WAIT_S = 8.0  # the "say its name" prompt is spoken to the end (up to this) before the tone
TONE_GAP_S = 0.15  # after the tone, before the microphone starts: the tone is not recorded
TONE_RATE_HZ = earcons.DEFAULT_RATE_HZ  # the audio output resamples it if it runs at another
PRINT_ONLY = CHATTY + 1  # a level above every verbosity: printed, never spoken
NAME_PREFIX = PLACEHOLDER_PREFIX  # "object 1", "object 2", … (trainer/teach/words.py)

START = "teaching a new object: hold it in front of the camera and turn it slowly"
SAY_NAME = "now say its name after the tone; press {teach} again when done"
BUSY = "teaching, one moment"
STILL_CAPTURING = "still capturing: keep turning the object"
STILL_LEARNING = "still learning {word}{where}; press {describe} meanwhile, it says when it is done"
RETRY = "press {teach} to record the name again"
AGAIN = "that was your recording; press {teach} now to record it again"
CONFIRM_S = 3.0  # after AGAIN is spoken, a TEACH press this long records the name again
PLAYBACK_SLACK_S = 0.3  # after the recording's length, before AGAIN: the playback has ended
CANCELLED = "teaching cancelled: nothing of the new object was stored"
QUIT_JOIN_S = 5.0  # at quit: a recording ends at once and is stored; a capture stops within


Say = Callable[[str], None]
# app.modes.teach.learn_words(store, say, progress=…): say for its start and report, progress for
# the lines every ~10 s (printed; spoken only at verbosity 2: the user is pressing describe)
Learn = Callable[[TeachStore, Say, Say], object]
# app.sound.microphone.record_voice: start=, stop=, on_status=, max_seconds=
Record = Callable[..., Any]
Check = Callable[[], object]  # app.sound.microphone.check_microphone: raises NoMicrophone
Play = Callable[[np.ndarray, int, str], None]  # LiveApp._play: played, and kept by --record


class Phase(enum.Enum):
    IDLE = "idle"
    CAPTURING = "capturing"
    RECORDING = "recording"
    CONFIRMING = "confirming"  # the name played back; TEACH now records it again
    LEARNING = "learning"


LEARN_THREADS = 1  # torch threads while learning inside live: a core stays free for presses


def _learn_words(store: TeachStore, say: Say, progress: Say) -> object:
    from earsight.app.modes.teach import learn_words, learning_unavailable

    if learning_unavailable() is None:  # else learn_words says what is missing, in one line
        import torch  # loads only when something is learned

        # Process-wide: ONNX Runtime keeps its own threads; a live on --backend torch shares it.
        torch.set_num_threads(LEARN_THREADS)
    return learn_words(store, say, progress=progress)


def _record_voice(**kwargs: Any) -> Any:
    from earsight.app.sound.microphone import (
        record_voice,  # sounddevice loads at the first TEACH press
    )

    return record_voice(**kwargs)


def _check_microphone() -> object:
    from earsight.app.sound.microphone import check_microphone

    return check_microphone()


class LiveTeacher:
    """The teach flow of one live app; ``press`` is cheap (the work runs on a thread of its own).

    ``learn``, ``record`` and ``check`` default to the real learner and microphone (tests inject
    them); ``play`` (settable: LiveApp sets it to its own ``_play``) sounds the tone.
    """

    def __init__(
        self,
        grabber: Any,
        voice: Any,
        store: TeachStore,
        *,
        learn: Learn = _learn_words,
        record: Record = _record_voice,
        check: Check = _check_microphone,
        play: Play | None = None,
        views: int = VIEWS,
        seconds: float = CAPTURE_S,
        keys: KeyNames | None = None,
    ) -> None:
        self.grabber, self.voice, self.store = grabber, voice, store
        self.play = play
        self.keys = keys or KeyNames()
        self._learn, self._record, self._check = learn, record, check
        self._want, self._seconds = views, seconds
        self._lock = threading.Lock()  # guards _phase against two presses at once
        self._phase = Phase.IDLE
        self._pressed = threading.Event()  # TEACH while recording: the name is said
        self._again = threading.Event()  # TEACH while confirming: record the name again
        self._closed = threading.Event()
        self._views: list[np.ndarray] | None = None  # kept when a recording was refused
        self._thread: threading.Thread | None = None
        self._learning: tuple[str, str] = ("", "")  # (word, its learning's last progress line)
        self._stored: TaughtWord | None = None  # what the flow now running stored

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def owns_devices(self) -> bool:
        """Capturing or recording: describe and repeat must wait."""
        return self._phase in (Phase.CAPTURING, Phase.RECORDING, Phase.CONFIRMING)

    def busy(self) -> None:
        """The answer to describe or repeat while ``owns_devices``."""
        # While recording it is printed only: spoken, it would be in the recording of the name.
        recording = self._phase is Phase.RECORDING
        self.voice.say(BUSY, level=PRINT_ONLY if recording else SILENT)

    def press(self) -> None:
        """TEACH: start teaching, end the recording of the name, or say what is going on."""
        with self._lock:
            phase = self._phase
            if phase is Phase.IDLE and not self._closed.is_set():
                self._phase = Phase.CAPTURING
                self._stored = None
                self._pressed.clear()
                self._thread = threading.Thread(
                    target=self._run, name="earsight-teach", daemon=True
                )
                self._thread.start()
                return
        if phase is Phase.RECORDING:
            self._pressed.set()
        elif phase is Phase.CONFIRMING:
            self._again.set()
        elif phase is Phase.LEARNING:
            self.voice.say(self._still_learning(), level=SILENT)
        elif phase is Phase.CAPTURING:
            self.voice.say(STILL_CAPTURING, level=SILENT)

    def close(self) -> None:
        """At exit: a recording waiting for its press ends now; learning is left to the
        process's end (its model is written atomically, so an interrupted one is just absent)."""
        self._closed.set()
        self._pressed.set()
        self._again.set()  # the confirming wait ends: the recording is kept (closed)

    def left_at_quit(self) -> Phase:
        """At the app's exit, after ``close``: what the flow was doing. A capture or a recording
        is let finish (the recording is stored, a capture is not) and CANCELLED is said when
        nothing was stored; LEARNING is returned while learning goes on (the caller says so)."""
        phase = self._phase
        if phase in (Phase.CAPTURING, Phase.RECORDING, Phase.CONFIRMING):
            self.join(QUIT_JOIN_S)
            if self._stored is None:
                self.voice.say(CANCELLED, level=SILENT)
            phase = self._phase
        return phase

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the flow (learning included) to end; True when it has. For tests."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # --- the flow, on its own thread ---------------------------------------------------------

    def _set(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase

    def _run(self) -> None:
        try:
            taught = self._teach()
        except EarSightError as err:  # no microphone, a full disk: one line, the app goes on
            self.voice.say(str(err), level=SILENT)
            taught = None
        except Exception as err:  # a bug must not take the live app down with it
            log.exception("teaching failed")
            self.voice.say(f"teaching failed: {err}", level=SILENT)
            taught = None
        self._stored = taught
        if taught is not None and not self._closed.is_set():
            self._learning = (taught.name, "")
            self._set(Phase.LEARNING)
            self._learn_now()
        self._set(Phase.IDLE)

    def _teach(self) -> TaughtWord | None:
        """Views (or those kept), the name, stored; None when the user has to press again."""
        try:
            self._check()  # before the views: nobody turns an object for nothing
        except ImportError as err:  # app.sound.microphone's own imports (numpy/sounddevice glue)
            raise EarSightError(
                f"no microphone here ({err})", "pip install sounddevice (or ./install.sh)"
            ) from err
        views = self._views if self._views is not None else self._capture()
        if views is None:
            return None
        self._views = views
        recording = self._record_name()
        if recording is None:
            return None
        self._views = None
        taught = self._store(views, recording)
        self.voice.say(
            f"stored {taught.name} with {taught.photo_count} photos and your voice; "
            "rename it with earsight teach --rename",
            level=SILENT,
        )
        self._say_look_alike(views, taught.name)
        return taught

    def _say_look_alike(self, views: list[np.ndarray], name: str) -> None:
        """As `earsight teach` does: the model may already have a word for this object."""
        from earsight.app.modes.teach_overlap import look_alike_line

        line = look_alike_line(views, name)
        if line is not None:
            self.voice.say(line, level=NORMAL)

    def _capture(self) -> list[np.ndarray] | None:
        # photos as `earsight teach` stores them (≤ 1024 px)
        from earsight.app.modes.teach_capture import capture_views
        from earsight.app.modes.teach_inputs import storable_photo

        self.voice.say(START, level=SILENT)
        result = capture_views(
            self.grabber,
            self._want,
            self._seconds,
            on_status=lambda line: self.voice.say(line, level=SILENT),
        )
        self.voice.say(result.summary(), level=NORMAL)
        if len(result.frames) < MIN_VIEWS:
            self.voice.say(
                f"only {len(result.frames)} usable views: more light, a steadier hand, and "
                f"turn the object slowly; press {self.keys.teach} to try again",
                level=SILENT,
            )
            return None
        return [storable_photo(frame) for frame in result.frames]

    def _record_name(self) -> Any:
        """The recording of the name (app.sound.recording.Recording), played back; recorded
        again while the user presses TEACH after hearing it; None after a refused one."""
        from earsight.app.sound.recording import BadRecording

        while True:
            self._set(Phase.RECORDING)
            self._pressed.clear()  # the press that ended the last recording is not this one's
            self.voice.say(SAY_NAME.format(teach=self.keys.teach), level=SILENT)
            try:
                recording = self._record(
                    start=self._tone,
                    stop=lambda: self._pressed.wait(RECORD_MAX_S + STOP_SLACK_S),
                    on_status=lambda line: self.voice.say(line, level=PRINT_ONLY),
                    max_seconds=RECORD_MAX_S,
                )
            except BadRecording as err:
                self.voice.say(f"{err}; {RETRY.format(teach=self.keys.teach)}", level=SILENT)
                return None
            self.voice.say(f"heard the name: {recording.speech_s:.1f} s", level=NORMAL)
            if not self._record_again(recording):
                return recording

    def _record_again(self, recording: Any) -> bool:
        """Plays the name back (the issue's "played back for confirmation": a stumble or a
        cough is heard before it becomes the word's voice), then True when TEACH is pressed
        within CONFIRM_S of AGAIN. Without an audio output, or at quit, the name is kept."""
        if self.play is None or self._closed.is_set():
            return False
        self._set(Phase.CONFIRMING)
        self._again.clear()
        self.play(recording.wave, int(recording.sample_rate), "your recording")
        time.sleep(recording.wave.size / recording.sample_rate + PLAYBACK_SLACK_S)
        self.voice.say(AGAIN.format(teach=self.keys.teach), level=SILENT)
        self.voice.flush(PROMPT_WAIT_S)  # the window opens once the question is heard
        again = self._again.wait(CONFIRM_S) and not self._closed.is_set()
        if again:
            self.voice.say("recording the name again", level=NORMAL)
        return again

    def _tone(self) -> None:
        """After the prompt has been spoken: the tone, then the microphone starts."""
        self.voice.flush(PROMPT_WAIT_S)
        if self.play is not None:
            tone = earcons.ready_chime(TONE_RATE_HZ)
            self.play(tone, TONE_RATE_HZ, "teach tone")
            time.sleep(tone.size / TONE_RATE_HZ + TONE_GAP_S)

    def _store(self, views: list[np.ndarray], recording: Any) -> TaughtWord:
        """Stored under the first free "object N" (another teach may take one meanwhile)."""
        for n in itertools.count(1):
            name = f"{NAME_PREFIX} {n}"
            if self.store.find(name) is not None:
                continue
            try:
                return self.store.add_word(
                    name, views, recording.wave, recording.sample_rate, "microphone"
                )
            except WordExistsError:
                continue
        raise AssertionError("unreachable")

    def _progress(self, line: str) -> None:
        """A learning progress line: printed (spoken at verbosity 2), kept for TEACH presses."""
        self._learning = (self._learning[0], line)
        if not self._closed.is_set():  # after quit: "learning left unfinished" was the last word
            self.voice.say(line, level=CHATTY)

    def _learning_line(self, line: str) -> None:
        """The learn's own lines (its start, each word, the report), until live quits: a quit
        said "learning left unfinished", then 8 s of "hand cream: 40 photos to learn from"."""
        if not self._closed.is_set():
            self.voice.say(line, level=NORMAL)

    def _still_learning(self) -> str:
        """What TEACH says while learning: which word, how far ("learning the voice: step 40
        of 400, about 90 s left"), and that describe works meanwhile."""
        word, last = self._learning
        return STILL_LEARNING.format(
            word=repr(word) if word else "the taught words",
            where=f" ({last})" if last else "",
            describe=self.keys.describe,
        )

    def _learn_now(self) -> None:
        """Learning takes minutes; describe works meanwhile, the watcher swaps the model in."""
        try:
            self._learn(self.store, self._learning_line, self._progress)
        except EarSightError as err:  # no torch, no teach base: the word stays stored
            self.voice.say(f"learning failed: {err}", level=SILENT)
        except Exception as err:
            log.exception("learning failed")
            self.voice.say(f"learning failed: {err}", level=SILENT)
