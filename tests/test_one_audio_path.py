"""Status speech and words share one open output (issue 12): the real espeak-ng program, a real
PortAudio stream on an ALSA device with no sound card (paced at real time, tests/alsa_null.py).

A board whose audio is a raw ALSA ``hw`` device has no software mixing: a second opener (the
``aplay`` that pyttsx3 plays speech with) gets "device busy". So with an ``AudioOut`` attached,
the voice must open nothing itself: no player process, its speech in the stream's tee.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import threading
import time

import numpy as np
import pytest

from earsight.app.sound.audio import AudioOptions, AudioOut
from earsight.app.sound.players import PLAYERS, child_processes, process_name
from earsight.app.sound.voice import StatusVoice
from earsight.app.sound.wav_sink import WavSink
from tests.alsa_null import AlsaNull

RATE = 48_000
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None
    or not ctypes.util.find_library("portaudio")
    or shutil.which("espeak-ng") is None,
    reason="sounddevice/PortAudio or the espeak-ng program missing (./install.sh)",
)


def player_processes() -> list[int]:
    """Speech players (aplay) among this process's descendants."""
    tree, todo, found = child_processes(), [os.getpid()], []
    while todo:
        for pid in tree.get(todo.pop(), []):
            todo.append(pid)
            if process_name(pid) in PLAYERS:
                found.append(pid)
    return found


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    with AlsaNull(tmp_path_factory.mktemp("alsa"), paced_bytes_per_s=RATE * 4) as dev:
        yield dev


@pytest.fixture
def audio(device):
    tee: list[np.ndarray] = []
    with AudioOut(AudioOptions(sample_rate=RATE), tee=tee.append) as out:
        out.teed = tee
        yield out


def audible_s(buffers: list[np.ndarray]) -> float:
    x = np.concatenate(buffers) if buffers else np.zeros(0, np.float32)
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    return (loud[-1] - loud[0]) / RATE if len(loud) else 0.0


@pytest.mark.faults
def test_speech_waits_for_the_output_then_plays_through_it_without_a_player(audio):
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, Voice, synthesize

    lines: list[str] = []
    voice = StatusVoice(shared_output=True, printer=lines.append)
    started = threading.Event()
    voice.on_started = lambda text: started.set()
    try:
        voice.say("starting up")
        voice.say("EarSight starting")  # the newest waiting message wins
        time.sleep(0.3)
        assert lines == ["starting up", "EarSight starting"]  # printed at once
        assert not voice._threads and not audio.teed  # not spoken: no output yet
        voice.use_output(audio)
        assert started.wait(5.0)
        players = []
        while audio.is_playing:  # watch for a second opener while the speech plays
            players += player_processes()
            time.sleep(0.01)
    finally:
        voice.close()
    assert players == []
    expected = len(synthesize("EarSight starting", Voice(words_per_min=175))) / SAMPLE_RATE_HZ
    assert audible_s(audio.teed) == pytest.approx(expected, abs=0.05)  # one message, whole


def test_a_status_said_during_a_word_is_spoken_after_it(audio):
    word = (0.3 * np.sin(np.arange(RATE // 2) * 0.1)).astype(np.float32)
    voice = StatusVoice(shared_output=True, printer=lambda _: None)
    voice.use_output(audio)
    try:
        audio.play(word, RATE, "five")
        voice.say("ready")
        assert voice.flush(5.0)  # spoken to its end through the output
    finally:
        voice.close()
    played = np.concatenate(audio.teed)
    assert np.array_equal(played[: len(word)], word)  # the word was not cut
    assert np.abs(played[len(word) :]).max() > 0.1  # the speech came after it
    assert player_processes() == []


def test_wav_files_are_not_a_speech_output_and_flush_without_output_speaks_itself(tmp_path):
    voice = StatusVoice(shared_output=True, enabled=False, printer=lambda _: None)
    assert voice._mode() == "await"
    voice.use_output(WavSink(tmp_path / "wavs"))  # no device: words go to files, speech not
    assert voice._mode() == "own" and not list((tmp_path / "wavs").iterdir())
    waiting = StatusVoice(shared_output=True, enabled=False, printer=lambda _: None)
    assert waiting.flush(0.5)  # an error before the audio opened: not left waiting forever
    assert waiting._mode() == "own"
