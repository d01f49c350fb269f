"""The teach key of ``earsight live`` (app/modes/live_teach.py) with real parts: a video file as the
camera (FrameGrabber), espeak-ng's word fed as the microphone through ALSA's ``file`` plugin
(tests/test_microphone.FileMicrophone, sounddevice recording from it), a real TeachStore in tmp
(EARSIGHT_TEACH), a real LiveApp (ONNX Runtime, mnist-ad) taking the key presses, sounds as WAV
files. Only the learner is a fake that records its call: real learning takes minutes and is
tested in tests/test_teach_learn.py and tests/test_teach_cli.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.test_microphone import (
    RATE,
    FileMicrophone,
    file_mic_config,
    in_a_room,
    mic,  # noqa: F401  # fixtures
    spoken_s,
    word,  # noqa: F401
)
from tests.test_teach_cli import make_video

VIEWS = 8  # a short turn: 8 views in 3 s of the 30 fps video
SECONDS = 3.0
WAIT_S = 20.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class FakeLearner:
    """Records its call and holds the "learning" phase until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.error: Exception | None = None  # raised instead of learning

    def __call__(self, store, say, progress) -> None:
        say("learning the taught words; this takes a few minutes")
        progress("learning the voice: step 1 of 400")
        self.calls.append([w.name for w in store.words()])
        if self.error is not None:
            raise self.error
        self.release.wait(WAIT_S)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("turn") / "turn.avi")


@pytest.fixture
def store(tmp_path, monkeypatch):
    from earsight.trainer.teach.store import TeachStore

    monkeypatch.setenv("EARSIGHT_TEACH", str(tmp_path / "taught"))
    return TeachStore(tmp_path / "taught")


@pytest.fixture
def live(tmp_path, video, store):
    """(app, teacher, learner, lines): a LiveApp with a LiveTeacher; presses go to on_action."""
    from earsight.app.camera.grabber import FrameGrabber, parse_source
    from earsight.app.config import LiveOptions
    from earsight.app.models import resolve_model
    from earsight.app.modes.answer import ConfidenceGate
    from earsight.app.modes.live import LiveApp
    from earsight.app.modes.live_teach import LiveTeacher
    from earsight.app.sound.voice import StatusVoice
    from earsight.app.sound.wav_sink import WavSink
    from earsight.engine.runtime import RuntimeOptions, load

    options = LiveOptions(source=str(video), loop=True, speak_status=False, model="mnist-ad")
    runtime = load(resolve_model(options.model), "onnx-cpu", RuntimeOptions(threads=1))
    lines: list[str] = []
    voice = StatusVoice(enabled=False, printer=lines.append)
    learner = FakeLearner()
    with FrameGrabber(parse_source(str(video), loop=True)) as grabber:
        teacher = LiveTeacher(grabber, voice, store, learn=learner, views=VIEWS, seconds=SECONDS)
        gate = ConfidenceGate(options.threshold, options.gate)
        audio = WavSink(tmp_path / "sounds")
        app = LiveApp(options, runtime, grabber, audio, voice, gate, teacher=teacher)
        yield app, teacher, learner, lines
        learner.release.set()
        teacher.close()
        assert teacher.join(WAIT_S)
    runtime.close()
    voice.close()


def say_the_name(app, teacher, lines: list[str], wave: np.ndarray) -> None:
    """Wait for the recording, let the file "microphone" give ``wave``, then press TEACH to stop
    it unless it stopped by itself. (A press at once stopped it after 98 ms of the word on a
    loaded machine; ALSA's file plugin has no clock of its own, so the recording may also reach
    its 4 s first, and a press after that would start a second one.)"""
    from earsight.app.modes.live_teach import Phase

    wait_for(lambda: any(line.startswith("recording, up to") for line in lines), "recording")
    deadline = time.monotonic() + wave.size / RATE + 0.3
    while teacher.phase is Phase.RECORDING and time.monotonic() < deadline:
        time.sleep(0.02)
    if teacher.phase is Phase.RECORDING:
        press(app, "TEACH")


def press(app, name: str) -> None:
    from earsight.app.keys.controllers import Action

    app.on_action(Action[name], time.perf_counter())


def test_teach_key_stores_object_1_and_learns_in_the_background(live, mic, word, store):  # noqa: F811
    from earsight.app.modes.live_teach import BUSY, SAY_NAME, START, STILL_LEARNING, Phase

    app, teacher, learner, lines = live
    mic.feed(in_a_room(word))
    press(app, "TEACH")
    assert teacher.owns_devices
    press(app, "DESCRIBE")  # the camera is the teach flow's: answered, not described
    assert BUSY in lines and app._pending_key is None
    say_the_name(app, teacher, lines, word)  # the name is said: TEACH stops the recording
    wait_for(lambda: bool(learner.calls), "learning")
    assert learner.calls == [["object 1"]] and teacher.phase is Phase.LEARNING
    assert not teacher.owns_devices
    press(app, "TEACH")  # which word, how far, and that describe works meanwhile
    assert lines[-1] == STILL_LEARNING.format(
        word="'object 1'", where=" (learning the voice: step 1 of 400)", describe="describe"
    )
    press(app, "DESCRIBE")  # while learning, describe is served again
    assert app._pending_key is not None and lines.count(BUSY) == 1
    learner.release.set()
    assert teacher.join(WAIT_S) and teacher.phase is Phase.IDLE

    taught = store.word("object 1")
    assert [w.name for w in store.words()] == ["object 1"]
    assert taught.voice_source == "microphone" and taught.sample_rate == RATE
    assert taught.photo_count >= 5
    wave, _ = store.voice("object 1")  # the recorded word, trimmed: "pillbox", 0.87 s
    assert spoken_s(wave) == pytest.approx(spoken_s(word), abs=0.02)
    assert lines.index(START) < lines.index(SAY_NAME.format(teach="teach"))
    assert any(line.startswith("stored object 1 with") for line in lines)
    sounds = sorted(p.name for p in (app.audio.directory).iterdir())
    assert any("teach-tone" in name for name in sounds), sounds  # the tone before speaking


def test_the_name_is_played_back_and_teach_then_records_it_again(live, mic, word, store):  # noqa: F811
    """After the name is recorded it is played back ("played back for confirmation": it was
    stored unheard), and a TEACH press right after records it again with the views kept; the
    second recording is the one stored."""
    from earsight.app.modes.live_teach import AGAIN, Phase

    app, teacher, learner, lines = live
    mic.feed(in_a_room(word))
    press(app, "TEACH")
    say_the_name(app, teacher, lines, word)
    wait_for(lambda: AGAIN.format(teach="teach") in lines, "the question after the playback")
    assert teacher.phase is Phase.CONFIRMING and teacher.owns_devices
    quiet = np.concatenate([word[: word.size // 2], np.zeros(word.size // 2, np.float32)])
    mic.feed(in_a_room(quiet))  # the second take: the word's first half only
    press(app, "TEACH")
    wait_for(lambda: "recording the name again" in lines, "recording again")
    wait_for(lambda: sum(x.startswith("recording, up to") for x in lines) == 2, "a 2nd recording")
    say_the_name(app, teacher, lines, quiet)
    wait_for(lambda: bool(learner.calls), "learning")  # the second take kept: no third press
    assert learner.calls == [["object 1"]] and lines.count(AGAIN.format(teach="teach")) == 2
    stored, _ = store.voice("object 1")
    assert spoken_s(stored) == pytest.approx(spoken_s(quiet), abs=0.02)
    assert spoken_s(quiet) < spoken_s(word) - 0.1  # told apart from the first take
    played = sorted(p.name for p in app.audio.directory.iterdir() if "your-recording" in p.name)
    assert len(played) == 2, played


def test_the_name_is_the_first_free_object_number(store):
    from earsight.app.modes.live_teach import LiveTeacher
    from earsight.app.sound.recording import check_recording

    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    tone = 0.5 * np.sin(np.arange(RATE // 2) * 2 * np.pi * 440 / RATE).astype(np.float32)
    recording = check_recording(np.concatenate([np.zeros(RATE // 4), tone]), RATE)
    for name in ("object 1", "object 3"):
        store.add_word(name, [photo], recording.wave, RATE, "microphone")
    teacher = LiveTeacher(None, None, store)
    assert teacher._store([photo], recording).name == "object 2"
    assert teacher._store([photo], recording).name == "object 4"


def test_views_the_model_already_names_get_a_note_after_storing(store):
    """As `earsight teach`: views of a tabby cat (scikit-image's chelsea) stored as "object 1"
    are said to be what the model already calls 'cat'; views of noise get no note."""
    from earsight.app.modes.live_teach import LiveTeacher
    from earsight.app.sound.voice import StatusVoice

    skimage_data = pytest.importorskip("skimage.data")
    cat = skimage_data.chelsea()
    views = [cat[y : y + 260, x : x + 400] for y, x in [(0, 0), (20, 30), (40, 10), (30, 50)]]
    noise = [np.random.default_rng(i).integers(0, 255, (120, 160, 3), np.uint8) for i in range(4)]
    lines: list[str] = []
    voice = StatusVoice(enabled=False, printer=lines.append)
    teacher = LiveTeacher(None, voice, store)
    teacher._say_look_alike(views, "object 1")
    teacher._say_look_alike(noise, "object 2")
    voice.close()
    assert [line for line in lines if line.startswith("note:")] == [
        "note: the model already calls 4 of these 4 photos 'cat': if 'object 1' means the "
        "same, 'cat' already says it; if not, learning tells them apart and says how well"
    ], lines


def test_t_in_a_live_process_teaches_and_space_waits(tmp_path, video, monkeypatch):
    """`earsight live --keys terminal` through a pty: t starts teaching, space is answered
    "teaching, one moment", a silent name (room noise through ALSA's file plugin) is refused in
    one line and nothing is stored; q quits."""
    from earsight.app.modes.live_teach import BUSY, RETRY, SAY_NAME, START
    from tests.test_live import _start_live, _wait_for

    taught = tmp_path / "taught"
    monkeypatch.setenv("EARSIGHT_TEACH", str(taught))  # the process's environment
    proc, master = _start_live(tmp_path, video)
    try:
        seen = _wait_for(proc, "ready: press space")
        assert "ready: press space" in seen, seen
        # ALSA reads its configuration at each open: the microphone opens at the press. (Not
        # ALSA's null device: its capture is whatever was in the buffer, not silence.)
        silence = tmp_path / "silence.s16le"
        silence.write_bytes((in_a_room(np.zeros(RATE)) * 32768).astype("<i2").tobytes())
        (tmp_path / "asound.conf").write_text(file_mic_config(silence))
        os.write(master, b"t")
        seen = _wait_for(proc, START, timeout=30)
        os.write(master, b" ")
        # the prompts name the terminal's keys (they said "press teach", a key nobody has)
        seen += _wait_for(proc, SAY_NAME.format(teach="t"), timeout=40)
        seen += _wait_for(proc, "recording, up to", timeout=30)
        os.write(master, b"t")
        seen += _wait_for(proc, RETRY.format(teach="t"), timeout=30)
        assert BUSY in seen and "silent" in seen and RETRY.format(teach="t") in seen, seen
        os.write(master, b"q")
        assert proc.wait(timeout=10) == 0
        assert not taught.exists() or not any(taught.iterdir())
    finally:
        proc.kill()
        os.close(master)


def test_learning_progress_inside_live_is_printed_not_spoken(store):
    # every ~10 s a progress line was spoken over the answers of a user pressing describe
    from earsight.app.modes.live_teach import LiveTeacher
    from earsight.app.sound.voice import CHATTY, NORMAL

    said: list[tuple[str, int]] = []

    class Voice:
        def say(self, message: str, level: int = NORMAL, printed: bool = True) -> None:
            said.append((message, level))

    learner = FakeLearner()
    learner.release.set()
    LiveTeacher(None, Voice(), store, learn=learner)._learn_now()
    assert ("learning the taught words; this takes a few minutes", NORMAL) in said, said
    assert ("learning the voice: step 1 of 400", CHATTY) in said, said  # verbosity 2 only


def test_quitting_while_a_taught_word_is_learned_exits_cleanly(tmp_path, video, monkeypatch, word):  # noqa: F811
    """q while the teach key's learning runs (torch threads busy): it aborted the interpreter's
    exit ("terminate called without an active exception", exit 134). Now it says the learning
    was left unfinished and exits 0, the word stored."""
    from earsight.app.commands import LEARNING_LEFT
    from earsight.app.modes.live_teach import SAY_NAME, START
    from tests.test_live import _start_live, _wait_for

    taught = tmp_path / "taught"
    monkeypatch.setenv("EARSIGHT_TEACH", str(taught))
    monkeypatch.setenv("EARSIGHT_CACHE", str(tmp_path / "cache"))
    proc, master = _start_live(tmp_path, video)
    try:
        assert "ready: press space" in _wait_for(proc, "ready: press space")
        speech = tmp_path / "speech.s16le"
        speech.write_bytes((in_a_room(word) * 32768).astype("<i2").tobytes())
        (tmp_path / "asound.conf").write_text(file_mic_config(speech))
        os.write(master, b"t")
        seen = _wait_for(proc, START, timeout=30)
        seen += _wait_for(proc, SAY_NAME.format(teach="t"), timeout=40)
        seen += _wait_for(proc, "recording, up to", timeout=30)
        # the file "microphone" gives the word; if the recording ends at 4 s by itself first,
        # this press only hears "still learning"
        time.sleep(word.size / RATE + 0.5)
        os.write(master, b"t")
        seen += _wait_for(proc, "learning the taught words", timeout=60)
        assert "learning the taught words" in seen, seen
        time.sleep(3.0)  # torch is loaded and busy
        os.write(master, b"q")
        code = proc.wait(timeout=60)
        rest = _wait_for(proc, LEARNING_LEFT, timeout=10)  # the lines the pump has not given
        rest += _wait_for(proc, "\0", timeout=5)  # and every line after it, to the exit
        err = proc.stderr.read()
    finally:
        proc.kill()
        os.close(master)
    assert code == 0 and "terminate called" not in err, err
    assert LEARNING_LEFT in seen + rest, seen + rest
    # the last word: the learn's own lines went on for 8 s after it ("object 1: 20 photos…")
    after = (seen + rest).split(LEARNING_LEFT, 1)[1]
    assert "photos" not in after and "learning the voice" not in after, after
    assert (taught / "object 1" / "word.json").is_file()


def test_quitting_while_capturing_says_nothing_was_stored(tmp_path, video, monkeypatch):
    """q while the object is being turned: it said "learning left unfinished: the taught words
    are kept", and `teach --list` then said nothing had been taught."""
    from earsight.app.commands import LEARNING_LEFT
    from earsight.app.modes.live_teach import CANCELLED, START
    from tests.test_live import _start_live, _wait_for

    taught = tmp_path / "taught"
    monkeypatch.setenv("EARSIGHT_TEACH", str(taught))
    proc, master = _start_live(tmp_path, video)
    try:
        assert "ready: press space" in _wait_for(proc, "ready: press space")
        os.write(master, b"t")
        seen = _wait_for(proc, START, timeout=30)
        os.write(master, b"q")
        code = proc.wait(timeout=30)
        seen += _wait_for(proc, CANCELLED, timeout=10)
    finally:
        proc.kill()
        os.close(master)
    assert code == 0 and CANCELLED in seen and LEARNING_LEFT not in seen, seen
    assert not taught.exists() or not any(taught.iterdir())


def test_live_help_lists_the_teach_key():
    from earsight.app.keys.names import keys_epilog

    text = " ".join(keys_epilog().split())  # unwrapped
    assert "F8 teach" in text and ", t teach" in text and "T)" in text


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.faults
def test_no_microphone_is_one_line_and_nothing_is_stored(live, tmp_path, store):
    import sounddevice  # noqa: F401  # imported first, so entering re-scans, as the app will

    app, teacher, learner, lines = live
    with FileMicrophone(tmp_path, "pcm.!default { type hw card 97 }\n"):  # no such card
        press(app, "TEACH")
        assert teacher.join(WAIT_S)
    assert len(lines) == 1 and "no microphone" in lines[0] and " — " in lines[0], lines
    assert store.words() == [] and learner.calls == []


@pytest.mark.faults
def test_a_silent_recording_is_one_line_and_the_views_are_kept(live, mic, word, store):  # noqa: F811
    from earsight.app.modes.live_teach import RETRY, START, Phase

    app, teacher, learner, lines = live
    mic.feed(in_a_room(np.zeros(RATE, np.float32)))
    press(app, "TEACH")
    say_the_name(app, teacher, lines, np.zeros(RATE, np.float32))
    wait_for(lambda: teacher.phase is Phase.IDLE, "the refusal")
    refusal = [line for line in lines if "silent" in line]
    assert len(refusal) == 1 and refusal[0].endswith(RETRY.format(teach="teach")), lines
    assert store.words() == [] and learner.calls == []

    lines.clear()
    mic.feed(in_a_room(word))
    press(app, "TEACH")  # records the name again, without a second turn of the object
    say_the_name(app, teacher, lines, word)
    wait_for(lambda: bool(learner.calls), "learning")
    assert START not in lines and learner.calls == [["object 1"]]


@pytest.mark.faults
def test_learning_that_fails_is_one_line_and_keeps_the_word(live, mic, word, store):  # noqa: F811
    from earsight.app.modes.live_teach import Phase
    from earsight.app.modes.teach_inputs import TeachInputError

    app, teacher, learner, lines = live
    learner.error = TeachInputError("the teach base x is missing", "reinstall EarSight")
    mic.feed(in_a_room(word))
    press(app, "TEACH")
    say_the_name(app, teacher, lines, word)
    assert teacher.join(WAIT_S) and teacher.phase is Phase.IDLE
    failed = [line for line in lines if line.startswith("learning failed")]
    assert failed == ["learning failed: the teach base x is missing — reinstall EarSight"]
    assert [w.name for w in store.words()] == ["object 1"]  # stored; `teach --learn` later
    press(app, "DESCRIBE")
    assert app._pending_key is not None  # the app goes on
