"""earsight.app.sound.microphone on a real capture device: ALSA's ``file`` plugin reading a raw
PCM file.

ALSA's file plugin with ``infile`` serves the file's bytes as a capture device (and PortAudio
lists it with input channels): espeak-ng speech written as raw s16le at 48 kHz is what the
"microphone" hears, byte for byte; after the file's end the ``null`` slave gives silence. The
device runs faster than real time (a null slave has no clock), so press-to-talk recordings run
full at ``max_seconds``; fixed-length ones take milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.util
import io
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from earsight.app.sound.microphone import (
    CLOSE_TIMEOUT_S,
    STALL_S,
    NoMicrophone,
    UnknownMicrophone,
    check_microphone,
    record_voice,
    wait_for_enter,
)
from earsight.app.sound.recording import (
    MAX_SPEECH_S,
    TRIM_MARGIN_MS,
    ClippedRecording,
    SilentRecording,
    SpeechTooLong,
    SpeechTooShort,
    dbfs,
)
from earsight.app.sound.wav_sink import WavSink
from earsight.engine.postprocess import resample
from earsight.errors import UsageError
from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, trim_silence
from tests.alsa_null import alsa_config

needs_microphone = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None
    or not ctypes.util.find_library("portaudio")
    or ctypes.util.find_library("asound") is None,
    reason="sounddevice/PortAudio/ALSA not installed (./install.sh: sounddevice, libportaudio2)",
)
pytestmark = needs_microphone
RATE = 48_000
NOISE_STD = 3e-4  # the file's background: -70 dBFS, a quiet room through a decent microphone
LEAD_S = 0.5  # silence before the word, as between a key press and speaking
VOCABULARY = ("pillbox", "earsight", "wumpus", "kettle", "remote", "wallet")


def file_mic_config(infile: Path) -> str:
    # raw: the file's bytes are the samples, in whatever format the client asked for (int16)
    return (
        f'pcm.!default {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" '
        'format "raw" }\npcm.null { type null }\n'
    )


class FileMicrophone(contextlib.AbstractContextManager):
    """The default ALSA device of this process captures ``self.raw`` (PortAudio re-scanned)."""

    def __init__(self, directory: Path, config: str | None = None) -> None:
        self.raw = directory / "mic.s16le"
        self.config = directory / "asound.conf"
        self.raw.write_bytes(b"")
        self.config.write_text(config or file_mic_config(self.raw))
        self._config = contextlib.ExitStack()

    def feed(self, wave: np.ndarray) -> None:
        """What the microphone hears next: float (L,) at RATE → the raw s16le file."""
        pcm = np.clip(np.round(np.asarray(wave) * 32768), -32768, 32767).astype("<i2")
        self.raw.write_bytes(pcm.tobytes())

    def __enter__(self) -> FileMicrophone:
        self._config.enter_context(alsa_config(self.config))
        return self

    def __exit__(self, *exc: object) -> None:
        self._config.close()


def in_a_room(speech: np.ndarray, lead_s: float = LEAD_S, tail_s: float = 1.0) -> np.ndarray:
    """``speech`` with quiet room noise before and after it, (L,) at RATE."""
    pad = lambda s: np.zeros(round(s * RATE), np.float32)  # noqa: E731
    wave = np.concatenate([pad(lead_s), speech, pad(tail_s)])
    return wave + np.random.default_rng(0).normal(0.0, NOISE_STD, wave.size)


@pytest.fixture(scope="module")
def word() -> np.ndarray:
    """espeak-ng's "pillbox" (canonical voice, peak 0.5) at RATE, (L,)."""
    from earsight.trainer.speech.synth import synthesize

    return resample(synthesize("pillbox"), SAMPLE_RATE_HZ, RATE).astype(np.float32)


def spoken_s(wave: np.ndarray) -> float:
    """Seconds from the first to the last sample above -40 dB re the peak."""
    return trim_silence(wave, -40.0, 0.0, RATE).size / RATE


@pytest.fixture
def mic(tmp_path):
    import sounddevice  # noqa: F401  # imported first, so entering re-scans, as the app will

    with FileMicrophone(tmp_path) as device:
        yield device


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and " — " in text, text  # what — fix
    return text


def test_records_the_word_trimmed_and_pocketsphinx_hears_it(mic, word):
    from earsight.trainer.evaluation.metrics import WordRecognizer

    mic.feed(in_a_room(word))
    lines: list[str] = []
    rec = record_voice(seconds=3.0, on_status=lines.append)
    assert rec.sample_rate == RATE and rec.wave.dtype == np.float32 and rec.wave.ndim == 1
    assert rec.speech_s == pytest.approx(spoken_s(word), abs=0.01)  # "pillbox": 0.874 s
    margins = 2 * TRIM_MARGIN_MS / 1000  # kept around the speech
    assert rec.wave.size / RATE == pytest.approx(rec.speech_s + margins, abs=0.01)
    assert rec.peak_dbfs == pytest.approx(dbfs(0.5), abs=0.2)  # synthesize's peak level
    assert lines == ["recording for 3 s", f"recorded {rec.speech_s:.1f} s, peak -6 dBFS"]
    heard = WordRecognizer(VOCABULARY, sample_rate_in=RATE).recognize(rec.wave)
    assert heard == "pillbox"


@pytest.mark.faults
def test_a_word_in_a_noisy_room_is_kept_without_the_room(mic, word):
    """A fan or a quiet room at -60 dBFS lies within 40 dB of a -13 dBFS voice: the peak's
    threshold kept it all, and 1.5 s of room before the word and 0.7 s after were refused as
    "3.0 s of sound: say just the word" (the same audio as a file was accepted)."""
    quiet = word * 10 ** ((-13 - dbfs(0.5)) / 20)  # the voice peaking at -13 dBFS
    pad = lambda s: np.zeros(round(s * RATE), np.float32)  # noqa: E731
    wave = np.concatenate([pad(1.5), quiet, pad(0.7)])
    wave = wave + np.random.default_rng(1).normal(0.0, 10 ** (-60 / 20), wave.size)  # -60 dBFS
    mic.feed(wave)
    rec = record_voice(seconds=3.0)
    from earsight.trainer.evaluation.metrics import WordRecognizer

    assert rec.speech_s == pytest.approx(spoken_s(word), abs=0.08), rec.speech_s
    heard = WordRecognizer(VOCABULARY, sample_rate_in=RATE).recognize(rec.wave)
    assert heard == "pillbox"


def test_press_to_talk_plays_the_recording_back(mic, word, tmp_path):
    mic.feed(in_a_room(word))
    lines: list[str] = []
    sink = WavSink(tmp_path / "played")
    # The user reads the prompt before pressing: a stream capturing already would have used
    # up the whole file by then (this device is unclocked) and recorded silence.
    rec = record_voice(
        start=lambda: time.sleep(0.3),
        stop=lambda: time.sleep(0.2),
        on_status=lines.append,
        playback=sink,
    )
    assert lines[0] == "recording, up to 4 s"
    assert rec.speech_s == pytest.approx(spoken_s(word), abs=0.01)
    import soundfile as sf

    played, rate = sf.read(sink.written[0], dtype="float32")
    assert sink.written[0].name == "0001-your-recording.wav" and rate == RATE
    assert np.allclose(played, rec.wave, atol=1 / 32_768)


class Typist(io.StringIO):
    """A terminal whose user presses Enter 0.2 s after being asked."""

    def readline(self, *args: int) -> str:
        time.sleep(0.2)
        return super().readline(*args)


def test_enter_starts_and_stops_on_a_terminal(mic, word):
    mic.feed(in_a_room(word))
    keys = Typist("\n\n")
    rec = record_voice(start=wait_for_enter(keys), stop=wait_for_enter(keys))
    # this file device is unclocked: it may fill max_seconds before the second Enter comes
    wait_for_thread("mic-release")
    assert keys.read() == "" and rec.speech_s == pytest.approx(spoken_s(word), abs=0.01)
    with pytest.raises(UsageError, match="no terminal") as info:
        record_voice(start=wait_for_enter(io.StringIO("")), stop=wait_for_enter(keys))
    one_line(info)


@pytest.mark.faults
def test_the_terminal_is_told_to_press_enter_and_stops_at_max_seconds(mic, word, monkeypatch):
    # One Enter to start, none to stop: the recording ends by itself at max_seconds and says so
    # (it used to run, microphone open, until a second Enter).
    mic.feed(in_a_room(word))
    monkeypatch.setattr("sys.stdin", Typist("\n"))
    lines: list[str] = []
    started = time.monotonic()
    rec = record_voice(max_seconds=2.0, on_status=lines.append)
    assert time.monotonic() - started < 2.0 + STALL_S
    assert lines[0] == "press Enter, say the word, then press Enter again (at most 2 s)"
    assert lines[1:3] == ["recording, up to 2 s", "2 s reached: recording stopped"]
    assert rec.speech_s == pytest.approx(spoken_s(word), abs=0.01)


@pytest.mark.faults
def test_the_enter_after_a_recording_that_ran_full_starts_the_next_one(mic, monkeypatch):
    """A recording that reached max_seconds left its wait for the release Enter reading the
    terminal: it took the Enter the user pressed at the next "press Enter", which then never
    started a recording (a blind user heard nothing), and the Enter after it started one of
    silence. The terminal here is a real pipe, typed into after each prompt."""
    import os

    from earsight.app.sound.recording import SilentRecording

    mic.feed(np.zeros(RATE, np.float32))  # a muted microphone: each try is refused as silent
    read_end, write_end = os.pipe()
    keys, typing = os.fdopen(read_end, "r"), os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdin", keys)
    typing.write("\n")  # the first press; the user waits for the release that never matters
    typing.flush()
    with pytest.raises(SilentRecording):
        record_voice(max_seconds=0.5)  # this device is unclocked: it runs full at once
    lines: list[str] = []
    raised: list[BaseException] = []

    def again() -> None:
        try:
            record_voice(max_seconds=0.5, on_status=lines.append)
        except BaseException as err:
            raised.append(err)

    second = threading.Thread(target=again, daemon=True)
    second.start()
    deadline = time.monotonic() + 10
    while not lines and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # the user hears the prompt, then presses Enter once
    typing.write("\n")
    typing.flush()
    second.join(10)
    assert not second.is_alive(), lines  # one Enter started the second recording
    assert "recording, up to 0.5 s" in lines and isinstance(raised[0], SilentRecording), lines
    typing.close()


def test_an_enter_pressed_as_the_keep_question_shows_answers_it(mic, monkeypatch):
    """After a recording that ran full its wait for the release Enter is still pending. "keep
    it?" was said before the answer's wait began, so an Enter typed the moment it showed (a
    script; a fast user) was taken as that late release and the question waited for ever
    (the end-to-end teach test hung so under load). The question is now said once its wait is
    the newest."""
    import os

    from earsight.app.sound.microphone import read_answer
    from earsight.app.sound.recording import SilentRecording

    mic.feed(np.zeros(RATE, np.float32))
    read_end, write_end = os.pipe()
    keys, typing = os.fdopen(read_end, "r"), os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdin", keys)
    typing.write("\n")  # the press; the release wait outlives the recording
    typing.flush()
    with pytest.raises(SilentRecording):
        record_voice(max_seconds=0.5)

    def enter_at_once() -> None:  # the question shows; Enter, before anything else runs
        typing.write("\n")
        typing.flush()
        time.sleep(0.3)  # long enough for a pending wait to take it

    answers: list[str | None] = []
    asking = threading.Thread(target=lambda: answers.append(read_answer(prompt=enter_at_once)))
    asking.daemon = True
    asking.start()
    asking.join(10)
    assert not asking.is_alive() and answers == [""]  # Enter: keep it
    typing.close()


@pytest.mark.faults
def test_teach_records_a_bad_recording_again_and_keeps_going(mic, word, monkeypatch):
    # a silent first try (muted microphone) is said and recorded again: the photos the user
    # took are not thrown away (it was one error line and the whole teach lost)
    from earsight.app.modes.teach_inputs import voice_from_microphone

    mic.feed(in_a_room(np.zeros(RATE, np.float32)))
    monkeypatch.setattr("sys.stdin", Typist("\n" * 40))
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if line.endswith("once more"):
            mic.feed(in_a_room(word))  # unmuted for the second try

    voice = voice_from_microphone(say)
    retry = [line for line in lines if line.endswith("once more")]
    assert len(retry) == 1 and retry[0].startswith("the recording is silent"), lines
    assert voice.source == "microphone" and voice.wave.size / voice.sample_rate > 0.3
    mic.feed(in_a_room(np.zeros(RATE, np.float32)))  # never unmuted: gives up after 3 tries
    lines.clear()
    from earsight.app.modes.teach_inputs import TeachInputError

    with pytest.raises(TeachInputError) as info:
        voice_from_microphone(lines.append)
    assert sum(line.endswith("once more") for line in lines) == 2, lines
    # the photos taken go too: said (they were lost in silence), with the other ways to a sound
    assert "(3 tries): nothing was stored, its photos neither" in one_line(info)
    assert "--voice-file or --espeak-voice" in str(info.value)


def test_teach_plays_the_word_back_and_records_it_again_on_r(mic, word, monkeypatch):
    """After hearing the recording the user keeps it (Enter) or records it again ("r", Enter):
    a stumble or a cough was kept before, with no way back short of teaching again. The
    terminal is a real pipe, typed into when each prompt is said; the end of input keeps."""
    import os

    from earsight.app.modes.teach_inputs import KEEP_OR_AGAIN, voice_from_microphone

    mic.feed(in_a_room(word))
    read_end, write_end = os.pipe()
    keys, typing = os.fdopen(read_end, "r"), os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdin", keys)
    answers = iter(["r\n", "\n"])  # record it again, then keep the second one
    lines: list[str] = []

    def type_soon(text: str) -> None:  # the user hears the prompt, then types
        def typed() -> None:
            typing.write(text)
            typing.flush()

        threading.Timer(0.3, typed).start()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("press Enter, say the word"):
            type_soon("\n")  # the press; this file device is unclocked: it runs full at once
        elif line == KEEP_OR_AGAIN:
            type_soon(next(answers))

    voice = voice_from_microphone(say)
    assert lines.count(KEEP_OR_AGAIN) == 2 and lines.count("recording it again") == 1, lines
    assert sum(line.startswith("recording, up to") for line in lines) == 2, lines
    assert voice.source == "microphone" and voice.wave.size / voice.sample_rate > 0.3
    typing.close()  # a script whose answers ran out: the recording is kept
    monkeypatch.setattr("sys.stdin", Typist("\n\n"))
    lines.clear()
    assert voice_from_microphone(lines.append).source == "microphone"
    assert lines.count(KEEP_OR_AGAIN) == 1 and "recording it again" not in lines, lines


def test_a_recording_of_nothing_at_all_says_so_in_words(mic):
    mic.feed(np.zeros(RATE, np.float32))  # digital silence: -inf dBFS is not a thing to say
    with pytest.raises(SilentRecording) as info:
        record_voice(seconds=1.0)
    assert "(no sound at all;" in one_line(info) and "inf" not in str(info.value)


def wait_for_thread(name: str, timeout_s: float = 5.0) -> None:
    """Until app.sound.deadline's thread ``name`` has ended: PortAudio must not re-scan under it."""
    deadline = time.monotonic() + timeout_s
    while any(t.name == name for t in threading.enumerate()):
        assert time.monotonic() < deadline, f"{name} is still blocked"
        time.sleep(0.05)


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.faults
def test_a_silent_recording_is_one_line(mic):
    mic.feed(in_a_room(np.zeros(RATE, np.float32)))
    with pytest.raises(SilentRecording, match="silent") as info:
        record_voice(seconds=2.0)
    assert "(loudest -5" in one_line(info)  # the room noise's loudest sample: -57 dBFS


@pytest.mark.faults
def test_a_clipped_recording_is_one_line(mic, word):
    mic.feed(in_a_room(np.clip(word * 8.0, -1.0, 1.0)))  # +18 dB into a full-scale limit
    with pytest.raises(ClippedRecording, match="clipped") as info:
        record_voice(seconds=2.0)
    one_line(info)


@pytest.mark.faults
def test_a_click_is_too_short(mic):
    click = 0.5 * np.hanning(round(0.1 * RATE)).astype(np.float32)  # 100 ms, 89 ms over -40 dB
    mic.feed(in_a_room(click))
    with pytest.raises(SpeechTooShort, match="ms of sound") as info:
        record_voice(seconds=2.0)
    one_line(info)


@pytest.mark.faults
def test_a_sentence_or_a_cut_off_word_is_too_long(mic, word):
    sentence = np.tile(word, int(MAX_SPEECH_S / (word.size / RATE)) + 1)
    mic.feed(in_a_room(sentence))
    with pytest.raises(SpeechTooLong, match="at most") as info:
        record_voice(seconds=4.0)
    one_line(info)
    mic.feed(in_a_room(word))
    with pytest.raises(SpeechTooLong, match="cut off") as info:
        record_voice(seconds=LEAD_S + 0.4)  # ends in the middle of the word
    one_line(info)


@pytest.mark.faults
def test_an_unknown_device_names_the_input_devices(mic):
    with pytest.raises(UnknownMicrophone, match="'usb mic'") as info:
        record_voice(device="usb mic", seconds=1.0)
    assert "input devices: 0 default" in one_line(info)
    with pytest.raises(UnknownMicrophone, match="'usb mic'"):
        check_microphone("usb mic")  # before teach mode asks for photos
    assert check_microphone() == check_microphone(0) == "default"


@pytest.mark.faults
def test_no_input_device_is_one_line(tmp_path):
    import sounddevice  # noqa: F401

    no_card = "pcm.!default { type hw card 97 }\n"  # no such card
    with FileMicrophone(tmp_path, no_card):
        with pytest.raises(NoMicrophone, match="no microphone") as info:
            record_voice(seconds=1.0)
        with pytest.raises(NoMicrophone, match="no microphone"):
            check_microphone()
    assert "the system has no input device" in one_line(info)


@pytest.mark.faults
def test_no_sounddevice_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # `import sounddevice` fails
    with pytest.raises(NoMicrophone, match="no microphone") as info:
        record_voice(seconds=1.0)
    one_line(info)


@pytest.mark.faults
def test_a_device_that_never_opens_is_no_microphone_within_the_timeout(mic):
    mic.raw.unlink()
    os.mkfifo(mic.raw)  # after PortAudio's scan: opening it now waits for a writer forever
    t0 = time.monotonic()
    try:
        with pytest.raises(NoMicrophone, match=r"did not open within 0\.5 s") as info:
            record_voice(seconds=1.0, open_timeout_s=0.5)
        assert time.monotonic() - t0 < 1.5
        one_line(info)
    finally:  # let the abandoned opener finish (its stream is closed) before PortAudio rescans
        os.close(os.open(mic.raw, os.O_WRONLY | os.O_NONBLOCK))
        wait_for_thread("mic-open")


@pytest.mark.faults
def test_a_microphone_that_stops_delivering_is_one_line(mic, caplog):
    mic.raw.unlink()
    os.mkfifo(mic.raw)
    writer = os.open(mic.raw, os.O_RDWR)  # a writer that never writes: every read waits
    try:
        t0 = time.monotonic()
        with pytest.raises(NoMicrophone, match="stopped") as info:
            record_voice(seconds=0.2)
        assert time.monotonic() - t0 < 0.2 + STALL_S + CLOSE_TIMEOUT_S + 0.5
        one_line(info)
        assert "did not close within" in caplog.text  # PortAudio's abort waits on the read
    finally:
        os.close(writer)  # end of file: the blocked read returns, the stream closes
        wait_for_thread("mic-close")
