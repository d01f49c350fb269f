"""app.sound.audio on a real PortAudio stream (an ALSA device with no sound card) and
app.sound.earcons.

What was played is what ``AudioOut.tee`` received: every buffer handed to the device.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from earsight.app.sound import earcons
from earsight.app.sound.audio import AudioOptions, AudioOut, open_audio
from earsight.app.sound.devices import AudioUnavailable, UnknownAudioDevice
from earsight.app.sound.wav_sink import WavSink
from earsight.engine.postprocess import fade, resample
from tests.alsa_null import AlsaNull, rescan_portaudio

RATE = 48_000
needs_portaudio = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None or not ctypes.util.find_library("portaudio"),
    reason="sounddevice/PortAudio not installed (pip install sounddevice pyttsx3, libportaudio2)",
)


def tone(hz: float, seconds: float, rate: int = RATE, level: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return fade((level * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, 0.005)


class Capture:
    """tee + on_first_buffer recorder; ``first`` is set when a sound's first buffer went out."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []
        self.firsts: list[float] = []
        self.first = threading.Event()

    def tee(self, buffer: np.ndarray) -> None:
        self.buffers.append(buffer)

    def on_first(self, t: float) -> None:
        self.firsts.append(t)
        self.first.set()

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self.buffers) if self.buffers else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A real-time ALSA output for this module (PortAudio re-scanned on entry and exit)."""
    with AlsaNull(tmp_path_factory.mktemp("alsa"), paced_bytes_per_s=RATE * 4) as dev:
        yield dev


@pytest.fixture
def out(device):
    cap = Capture()
    with AudioOut(AudioOptions(sample_rate=RATE), cap.on_first, cap.tee) as audio:
        audio.capture = cap
        yield audio


@needs_portaudio
def test_play_hands_exactly_the_samples_to_the_device(out):
    cap, sound = out.capture, tone(440, 0.3)
    t_play = time.perf_counter()
    out.play(sound, RATE)
    assert time.perf_counter() - t_play < 0.01  # non-blocking
    assert out.is_playing
    assert out.wait(2.0)
    played = cap.samples
    assert np.array_equal(played[: len(sound)], sound)
    assert not played[len(sound) :].any()  # only the last buffer's zero padding after it
    assert len(played) - len(sound) < 4096
    assert len(cap.firsts) == 1 and 0 <= cap.firsts[0] - t_play < 0.1
    assert not out.is_playing


@needs_portaudio
def test_a_new_play_interrupts_the_sound_with_a_short_fade(out):
    cap = out.capture
    first, second = tone(440, 2.0), tone(880, 0.3)
    out.play(first, RATE)
    assert cap.first.wait(1.0)
    time.sleep(0.1)  # the first sound is audibly playing
    out.play(second, RATE)
    assert out.wait(2.0)
    played = cap.samples
    cut = int(np.flatnonzero(played[: len(first)] != first[: len(played)])[0]) - 1
    n_fade = round(0.005 * RATE)
    assert 0.05 * RATE < cut < 0.5 * RATE  # the first sound was cut after ~0.1 s of its 2 s
    assert np.array_equal(played[:cut], first[:cut])
    tail = played[cut : cut + n_fade]
    assert np.all(np.abs(tail) <= np.abs(first[cut : cut + n_fade]) + 1e-7)  # faded, not cut
    assert tail[-1] == 0.0
    start = cut + n_fade
    assert np.array_equal(played[start : start + len(second)], second)
    assert np.count_nonzero(np.abs(played) > 1e-4) < len(first) + len(second)
    assert len(cap.firsts) == 2  # each sound reported its first buffer once


@needs_portaudio
def test_a_words_own_stamp_fires_for_that_word_only(out):
    """play(on_first=) stamps its own sound: a click cut before it sounded stamps nothing, and
    the word cutting it stamps once, with the buffer that holds the word's first sample."""
    cap = out.capture
    click_stamps: list[float] = []
    word_stamps: list[float] = []
    word = tone(440, 0.3)
    out.play(earcons.capture_click(RATE), RATE, "click", on_first=click_stamps.append)
    out.play(word, RATE, "word", on_first=word_stamps.append)  # before the click's buffer
    assert out.wait(2.0)
    assert click_stamps == [] and len(word_stamps) == 1
    assert word_stamps[0] == cap.firsts[-1]
    out.play(tone(660, 0.2), RATE, kind="status", on_first=click_stamps.append)
    assert out.wait(2.0)
    assert click_stamps == []  # status speech is no answer: it is never stamped


# --- one audio path: words and status speech share the stream --------------------------------


def segment_at(played: np.ndarray, sound: np.ndarray) -> int:
    """Where ``sound`` starts, sample-exact, in what was played; -1 if it is not there whole."""
    audible = int(np.flatnonzero(np.abs(sound) > 1e-4)[0])
    for start in np.flatnonzero(played == sound[audible]) - audible:
        if 0 <= start <= len(played) - len(sound) and np.array_equal(
            played[start : start + len(sound)], sound
        ):
            return int(start)
    return -1


@needs_portaudio
def test_a_word_cuts_a_playing_status_with_a_fade(out):
    cap = out.capture
    status, word = tone(300, 2.0), tone(880, 0.3)
    out.play(status, RATE, "camera lost", kind="status")
    time.sleep(0.2)  # the status is audibly playing
    out.play(word, RATE, "five")
    assert out.wait(2.0)
    played = cap.samples
    start = segment_at(played, word)
    assert 0.1 * RATE < start < 0.5 * RATE  # at once, not after the 2 s status
    assert np.array_equal(played[: start - round(0.005 * RATE)], status[: start - 240])
    assert np.count_nonzero(np.abs(played) > 1e-4) < 0.6 * RATE + len(word)
    assert len(cap.firsts) == 1  # on_first_buffer reports the word, not the status


@needs_portaudio
def test_a_status_waits_for_the_playing_word_then_plays_whole(out):
    cap = out.capture
    word, status = tone(880, 0.4), tone(300, 0.3)
    out.play(word, RATE, "five")
    assert cap.first.wait(1.0)
    out.play(status, RATE, "ready", kind="status")
    assert out.is_playing
    assert out.wait(2.0)
    played = cap.samples
    assert np.array_equal(played[: len(word)], word)  # not cut
    assert np.array_equal(played[len(word) : len(word) + len(status)], status)  # right after


@needs_portaudio
def test_only_the_newest_status_is_heard_and_a_word_drops_a_waiting_one(out):
    cap = out.capture
    word, old, new = tone(880, 0.3), tone(300, 0.3), tone(500, 0.3)
    out.play(word, RATE, "five")
    out.play(old, RATE, "starting", kind="status")
    out.play(new, RATE, "ready", kind="status")  # replaces the waiting one
    assert out.wait(2.0)
    played = cap.samples
    assert segment_at(played, old) == -1
    assert segment_at(played, new) == len(word)
    cap.buffers.clear()  # a newer status cuts an older one that is playing
    out.play(old, RATE, "starting", kind="status")
    time.sleep(0.1)
    out.play(new, RATE, "ready", kind="status")
    assert out.wait(2.0)
    played = cap.samples
    assert 0.05 * RATE < segment_at(played, new) < 0.25 * RATE
    cap.buffers.clear()  # a new word drops the status waiting for the old word
    out.play(word, RATE, "five")
    out.play(old, RATE, "starting", kind="status")
    out.play(new, RATE, "six")
    assert out.wait(2.0)
    played = cap.samples
    assert segment_at(played, old) == -1 and segment_at(played, new) >= 0
    with pytest.raises(ValueError, match="kind"):
        out.play(word, RATE, kind="speech")


@needs_portaudio
def test_other_rates_are_resampled_to_the_device_rate(out):
    rate_in, sound = 22_050, tone(1_000, 0.2, 22_050)
    out.play(sound, rate_in)
    assert out.wait(2.0)
    expected = resample(sound, rate_in, RATE)
    played = out.capture.samples
    assert len(expected) == 9_600  # ceil(4410 · 48000 / 22050)
    assert len(expected) / len(sound) == pytest.approx(RATE / rate_in, rel=1e-3)
    assert np.allclose(played[: len(expected)], expected, atol=1e-6)
    spectrum = np.abs(np.fft.rfft(played[: len(expected)], 48_000))
    assert np.argmax(spectrum) == pytest.approx(1_000, abs=2)  # still 1 kHz (1 Hz bins)


@needs_portaudio
def test_stop_fades_out_and_many_presses_do_not_queue(out):
    cap, word = out.capture, tone(440, 0.5)
    for _ in range(100):  # a burst of key presses: each replaces the last, nothing queues up
        out.play(word, RATE)
    assert out.wait(2.0)
    assert np.count_nonzero(np.abs(cap.samples) > 1e-4) < 3 * len(word)
    cap.buffers.clear()
    out.play(tone(440, 5.0), RATE)
    time.sleep(0.1)
    t0 = time.perf_counter()
    out.stop()
    assert out.wait(0.5) and time.perf_counter() - t0 < 0.1
    assert np.count_nonzero(np.abs(cap.samples) > 1e-4) < 0.5 * RATE


@needs_portaudio
def test_close_is_quick_and_play_after_close_is_ignored(device):
    audio = AudioOut(AudioOptions())
    audio.play(tone(440, 3.0), RATE)
    t0 = time.perf_counter()
    audio.close()
    assert time.perf_counter() - t0 < 0.5
    audio.play(tone(440, 0.1), RATE)
    assert not audio.is_playing
    audio.close()  # twice is fine


@needs_portaudio
def test_wait_until_flowing_returns_once_the_device_keeps_asking(device, tmp_path):
    from earsight.app.sound.audio import FLOWING_CALLBACKS

    audio = AudioOut(AudioOptions(sample_rate=RATE))
    try:
        t0 = time.perf_counter()
        assert audio.wait_until_flowing(5.0)
        # the paced device asks for a buffer every few ms: several buffers' time, not seconds
        assert audio._callbacks >= FLOWING_CALLBACKS and time.perf_counter() - t0 < 2.0
    finally:
        audio.close()
    assert WavSink(tmp_path).wait_until_flowing(0.0)  # files never pause


@needs_portaudio
def test_unknown_device_is_a_one_line_user_error_naming_the_devices(device):
    with pytest.raises(UnknownAudioDevice) as info:
        AudioOut(AudioOptions(device="no-such-device"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no audio output device 'no-such-device'")
    assert "output devices: 0 default" in message and "--audio-device" in message


@needs_portaudio
def test_open_audio_uses_the_device_when_there_is_one(device, tmp_path):
    audio = open_audio(AudioOptions(), tmp_path / "wavs")
    try:
        assert isinstance(audio, AudioOut)
    finally:
        audio.close()
    assert not (tmp_path / "wavs").exists()


@needs_portaudio
def test_open_audio_falls_back_to_readable_wav_files(tmp_path, caplog, monkeypatch):
    import soundfile as sf

    folder = tmp_path / "wavs"
    (tmp_path / "asound.conf").write_text("pcm.!default { type hw card 97 }\n")  # no such card
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(tmp_path / "asound.conf"))
    rescan_portaudio()
    try:
        with caplog.at_level(logging.WARNING, logger="earsight.app.sound.audio"):
            sink = open_audio(AudioOptions(), folder)
    finally:
        monkeypatch.undo()
        rescan_portaudio()
    assert isinstance(sink, WavSink)
    assert "no audio output device" in caplog.text and str(folder) in caplog.text
    firsts: list[float] = []
    sink.on_first_buffer = firsts.append
    word, other = tone(440, 0.2), tone(660, 0.1, 22_050)
    sink.play(word, RATE, label="five")
    sink.play(other, 22_050, label="Not sure!")
    assert sink.wait(0) and not sink.is_playing and len(firsts) == 2
    sink.close()
    assert [p.name for p in sorted(folder.iterdir())] == ["0001-five.wav", "0002-not-sure.wav"]
    data, rate = sf.read(folder / "0001-five.wav", dtype="float32")
    assert rate == RATE and sf.info(folder / "0001-five.wav").subtype == "PCM_16"
    assert np.allclose(data, word, atol=1 / 32_768)
    data, rate = sf.read(folder / "0002-not-sure.wav", dtype="float32")
    assert rate == 22_050 and len(data) == len(other)
    WavSink(folder).play(word, RATE)  # a second run adds files instead of overwriting
    assert (folder / "0003-sound.wav").exists()
    (folder / "10000-truck.wav").write_bytes(b"")  # past 9999 (a wearable's long run)
    WavSink(folder).play(word, RATE)  # after the highest: a 4-digit pattern missed 10000-…
    assert (folder / "10001-sound.wav").exists() and (
        folder / "10000-truck.wav"
    ).stat().st_size == 0


@pytest.mark.faults
def test_without_a_sound_device_the_default_wav_folder_keeps_only_the_newest(tmp_path, monkeypatch):
    """A wearable without sound answering for weeks must not fill its disk: the user data
    folder keeps the newest WAV_FALLBACK_KEEP files (older runs' too), other files untouched;
    files the user asked for with --out-dir are all kept."""
    from earsight.app.commands import WAV_FALLBACK_KEEP, open_live_audio
    from earsight.app.config import LiveOptions
    from earsight.engine.runtime import RuntimeOptions

    (tmp_path / "asound.conf").write_text("pcm.!default { type hw card 97 }\n")  # no such card
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(tmp_path / "asound.conf"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    said: list[str] = []
    voice = type("Voice", (), {"say": lambda self, message, level=1: said.append(message)})()
    rescan_portaudio()
    try:
        sink = open_live_audio(LiveOptions(), RuntimeOptions(), voice)
        mine = open_live_audio(LiveOptions(out_dir=str(tmp_path / "mine")), RuntimeOptions(), voice)
    finally:
        monkeypatch.undo()
        rescan_portaudio()
    assert isinstance(sink, WavSink) and sink.keep_newest == WAV_FALLBACK_KEEP
    assert isinstance(mine, WavSink) and mine.keep_newest is None
    assert any("writing WAV files to" in line for line in said), said
    folder = sink.directory
    (folder / "0007-an-older-run.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("mine")
    (folder / "voice.wav").write_bytes(b"")  # not one of the numbered answers
    small = WavSink(folder, keep_newest=3)
    for label in ("one", "two", "three", "four"):
        small.play(tone(440, 0.05), RATE, label=label)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["0009-two.wav", "0010-three.wav", "0011-four.wav", "notes.txt", "voice.wav"]
    assert [p.name for p in small.written] == names[:3]


# --- earcons --------------------------------------------------------------------------------

EARCON_SECONDS = {
    "capture": earcons.CLICK_S,
    "not-sure": 2 * earcons.NOT_SURE_NOTE_S,
    "error": 2 * earcons.ERROR_BEEP_S + earcons.ERROR_GAP_S,
    "ready": earcons.READY_NOTE_S * len(earcons.READY_HZ),
}


@pytest.mark.parametrize("name", sorted(earcons.EARCONS))
@pytest.mark.parametrize("rate", [48_000, 22_050])
def test_earcons_are_short_soft_and_faded(name, rate):
    sound = earcons.EARCONS[name](rate)
    assert sound.dtype == np.float32 and sound.ndim == 1
    assert len(sound) / rate == pytest.approx(EARCON_SECONDS[name], abs=1 / rate)
    assert 0.05 < np.abs(sound).max() <= earcons.PEAK
    assert sound[0] == 0.0 and sound[-1] == 0.0  # raised-cosine ends: no click
    assert np.abs(sound[:3]).max() < 0.01 and np.abs(sound[-3:]).max() < 0.01
    assert np.array_equal(sound, earcons.EARCONS[name](rate))  # deterministic


def test_capture_click_is_about_15_ms_and_quieter_than_the_rest():
    click = earcons.capture_click()
    assert 0.010 <= len(click) / 48_000 <= 0.020
    assert np.abs(click).max() <= earcons.CLICK_PEAK


def test_not_sure_tone_falls_from_660_to_440_hz():
    sound, rate = earcons.not_sure_tone(), 48_000
    half = len(sound) // 2

    def pitch(x: np.ndarray) -> float:
        return float(np.argmax(np.abs(np.fft.rfft(x, rate))))  # 1 Hz bins

    assert pitch(sound[:half]) == pytest.approx(660, abs=5)
    assert pitch(sound[half:]) == pytest.approx(440, abs=5)


def test_wav_sink_reports_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AudioUnavailable, match="cannot create"):
        WavSink(blocker / "wavs")


def test_alsa_null_helper_restores_the_environment(tmp_path):
    import os

    before = os.environ.get("ALSA_CONFIG_PATH")
    with AlsaNull(tmp_path / "a", paced_bytes_per_s=None) as dev:
        assert os.environ["ALSA_CONFIG_PATH"] == str(dev.config)
        assert "type null" in Path(dev.config).read_text()
    assert os.environ.get("ALSA_CONFIG_PATH") == before


def test_audio_latency_probe_prints_one_row_per_setting(tmp_path, capsys):
    from earsight.app.bench import audio as bench_audio

    with AlsaNull(tmp_path):  # paced like a sound card
        assert bench_audio.main(["--latency", "low", "0.05", "--sounds", "3"]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.startswith("latency  start ms  sounds  p50 ms")
    assert [r.split()[0] for r in rows] == ["low", "0.05"]
    assert all(r.split()[2] == "3" for r in rows)
    assert all(0 < float(r.split()[1].replace(",", "")) < 5e3 for r in rows)  # stream flowed
    assert all(0 < float(r.split()[3]) < bench_audio.WAIT_S * 1e3 for r in rows)  # all started


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--latency", "soon"], "expected low, high or seconds"), (["--sounds", "0"], "positive")],
)
def test_audio_latency_probe_bad_arguments_are_one_line(capsys, argv, needle):
    from earsight.app.bench import audio as bench_audio

    with pytest.raises(SystemExit) as exit_:
        bench_audio.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and needle in err[-1] and "Traceback" not in "\n".join(err)
