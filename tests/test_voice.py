"""app.sound.voice with the real pyttsx3 + espeak-ng, speaking into an ALSA device with no sound
card.

The device is paced at real time (tests/alsa_null.py), so an utterance takes as long as it
lasts and can be interrupted; what was spoken is what pyttsx3 reported through its
``started-utterance`` / ``finished-utterance`` callbacks.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import logging
import shutil
import threading
import time

import pytest

from earsight.app.sound.lines import plain_line
from earsight.app.sound.voice import CHATTY, NORMAL, SILENT, StatusVoice
from tests.alsa_null import AlsaNull

ESPEAK_RATE = 22_050  # Hz, 16-bit mono: what pyttsx3's espeak driver hands to aplay
needs_speech = pytest.mark.skipif(
    importlib.util.find_spec("pyttsx3") is None
    or not ctypes.util.find_library("espeak-ng")
    or shutil.which("aplay") is None,
    reason="pyttsx3, libespeak-ng or aplay missing (./install.sh: pyttsx3, espeak-ng)",
)
LONG = (
    "message {} is a long status message that would keep the speaker busy for several "
    "seconds if nothing interrupted it, which is exactly what we want to test here"
)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    with AlsaNull(tmp_path_factory.mktemp("alsa"), paced_bytes_per_s=ESPEAK_RATE * 2) as dev:
        yield dev


class SpokenLog:
    """Records started/finished utterances with times, from pyttsx3's own callbacks."""

    def __init__(self, voice: StatusVoice) -> None:
        self.events: list[tuple[str, str, float]] = []
        self._changed = threading.Condition()
        voice.on_started = lambda text: self._add("started", text)
        voice.on_finished = lambda text, completed: self._add("finished", text)

    def _add(self, kind: str, text: str) -> None:
        with self._changed:
            self.events.append((kind, text, time.perf_counter()))
            self._changed.notify_all()

    def started(self) -> list[str]:
        return [text for kind, text, _ in self.events if kind == "started"]

    def time_of(self, kind: str, text: str) -> float:
        return next(t for k, x, t in self.events if (k, x) == (kind, text))

    def wait_started(self, text: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: text in self.started(), timeout)


def test_every_message_is_printed_as_a_plain_line_in_order(capsys):
    voice = StatusVoice(verbosity=CHATTY, enabled=False)
    voice.say("EarSight starting")
    voice.say("\x1b[31mcamera lost\x1b[0m,\nretrying", level=SILENT)
    voice.say("model on the GPU", level=CHATTY)
    voice.say("   ")  # nothing to say: no empty line
    voice.close()
    assert capsys.readouterr().out.splitlines() == [
        "EarSight starting",
        "camera lost, retrying",
        "model on the GPU",
    ]


def test_plain_line_strips_escape_codes_and_control_characters():
    assert plain_line("\x1b[1;32mready\x1b[0m\t\r\n now\x07") == "ready now"


def test_a_custom_printer_gets_every_message():
    lines: list[str] = []
    voice = StatusVoice(verbosity=SILENT, enabled=False, printer=lines.append)
    for i in range(3):
        voice.say(f"line {i}", level=CHATTY)
    assert lines == ["line 0", "line 1", "line 2"]


@needs_speech
def test_verbosity_zero_prints_but_speaks_only_errors(device, capsys):
    voice = StatusVoice(verbosity=SILENT)
    spoken = SpokenLog(voice)
    try:
        voice.say("ready", level=NORMAL)
        time.sleep(0.3)
        assert spoken.started() == []
        voice.say("error: camera lost", level=SILENT)
        assert spoken.wait_started("error: camera lost", 5.0)
    finally:
        voice.close()
    assert capsys.readouterr().out.splitlines() == ["ready", "error: camera lost"]
    assert spoken.started() == ["error: camera lost"]


@needs_speech
def test_say_never_blocks_and_the_newest_message_interrupts(device):
    voice = StatusVoice(verbosity=NORMAL, printer=lambda _: None)
    spoken = SpokenLog(voice)
    m1, m2, m3 = (LONG.format(i) for i in (1, 2, 3))
    natural_s = len(m1.split()) / voice.rate_wpm * 60  # how long m1 takes when not cut
    assert natural_s > 6
    played_before = device.drained
    try:
        t0 = time.perf_counter()
        voice.say(m1)
        assert time.perf_counter() - t0 < 0.05
        assert spoken.wait_started(m1, 5.0)  # pyttsx3 starts on the first message (~0.1 s)
        time.sleep(0.3)  # m1 is now being played
        for message in (m2, m3):
            t0 = time.perf_counter()
            voice.say(message)
            assert time.perf_counter() - t0 < 0.05
        t_said = time.perf_counter()
        assert spoken.wait_started(m3, 2.0)
    finally:
        t0 = time.perf_counter()
        voice.close()
        close_s = time.perf_counter() - t0
    assert spoken.started() == [m1, m3]  # m2 was out of date before its turn: dropped
    m1_spoken_s = spoken.time_of("finished", m1) - spoken.time_of("started", m1)
    assert m1_spoken_s < 2.0 < natural_s  # cut off, not played to its end
    assert spoken.time_of("started", m3) - t_said < 1.0  # m3 did not wait for m1
    assert close_s < 1.0  # with m3 still speaking
    played_s = (device.drained - played_before) / (ESPEAK_RATE * 2)
    assert 0.2 < played_s < natural_s  # m1's start and m3's start: less audio than m1 alone


@needs_speech
def test_close_is_quick_when_idle_and_say_after_close_only_prints(device):
    lines: list[str] = []
    voice = StatusVoice(printer=lines.append)
    t0 = time.perf_counter()
    voice.close()
    assert time.perf_counter() - t0 < 0.1
    voice.say("after close")
    assert lines == ["after close"]
    assert not any(t.is_alive() for t in voice._threads)


@needs_speech
def test_without_an_audio_output_messages_are_printed_and_one_warning_logged(
    tmp_path, monkeypatch, caplog
):
    empty = tmp_path / "asound.conf"
    empty.write_text("# no pcm.default: ALSA has nowhere to play\n")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(empty))
    lines: list[str] = []
    voice = StatusVoice(printer=lines.append)
    spoken = SpokenLog(voice)
    with caplog.at_level(logging.WARNING, logger="earsight.app.sound.voice"):
        voice.say("EarSight starting")
        deadline = time.monotonic() + 5
        while voice.available and time.monotonic() < deadline:
            time.sleep(0.02)
        voice.say("ready")
        voice.say("camera lost")
        start = time.monotonic()
        voice.flush(10.0)  # a last message before exit: nothing will speak it, so no wait
        flushed_s = time.monotonic() - start
        voice.close()
    assert lines == ["EarSight starting", "ready", "camera lost"]
    assert not voice.available and spoken.started() == []
    assert flushed_s < 1.0  # it waited the whole 10 s: every `earsight teach` paused at exit
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        "status speech off: no audio output (ALSA:"
    )
    assert "aplay" not in warnings[0] and "main:" not in warnings[0]  # ALSA's words alone


def test_spoken_lines_say_dashes_and_units_as_words():
    """espeak-ng says "earsight teach --learn" without the dashes (a blind user typed "teach
    learn" and taught a word called "learn"), "s" as "ess" and "dBFS" letter by letter; the
    printed line keeps the short form."""
    from earsight.app.sound.voice import StatusVoice

    printed: list[str] = []
    spoken: list[str] = []
    voice = StatusVoice(enabled=False, printer=printed.append)
    voice.on_spoken = spoken.append
    voice.enabled = True  # on_spoken hears what would be spoken, with or without a device
    voice.say("not learned yet: `earsight teach --learn`; recorded 1.3 s, peak -13 dBFS")
    voice.say("learned mug in 4 min 1 s")
    voice.close()
    assert printed[0] == "not learned yet: `earsight teach --learn`; recorded 1.3 s, peak -13 dBFS"
    assert spoken == [
        "not learned yet: `earsight teach dash dash learn`; recorded 1.3 seconds, "
        "peak -13 decibels",
        "learned mug in 4 minutes 1 second",
    ]
