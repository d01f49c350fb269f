"""earsight.trainer.speech.synth against the real espeak-ng (no mocks of the synthesizer)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from earsight.trainer.errors import SpeechError
from earsight.trainer.speech import synth as speech
from earsight.trainer.speech.synth import (
    CANONICAL_VOICE,
    DEFAULT_WORDS_PER_MIN,
    PEAK_LEVEL,
    SAMPLE_RATE_HZ,
    Voice,
    espeak_version,
    speak_words,
    synthesize,
    trim_silence,
    voice_set,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (./install.sh)"
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


@needs_espeak
def test_speak_words_shapes_padding_and_level(cache):
    voices = voice_set(2)
    spoken = speak_words(DIGITS[:3], voices, cache_dir=cache)
    n_words, n_voices, length = spoken.clips.shape
    assert (n_words, n_voices) == (3, 2) == spoken.lengths.shape
    assert spoken.clips.dtype == np.float32 and spoken.lengths.dtype == np.int64
    assert spoken.sample_rate == SAMPLE_RATE_HZ
    assert spoken.words == DIGITS[:3] and spoken.voices == voices
    assert length == spoken.max_length == spoken.lengths.max()  # L_s = the longest clip
    for i in range(n_words):
        for j in range(n_voices):
            clip, n = spoken.clips[i, j], spoken.lengths[i, j]
            assert not clip[n:].any()  # zero padding at the end only
            assert np.max(np.abs(clip[:n])) == pytest.approx(PEAK_LEVEL, abs=1e-6)


@needs_espeak
def test_synthesize_is_deterministic_and_cached(tmp_path, monkeypatch):
    first = synthesize("cat", cache_dir=tmp_path / "a")
    second = synthesize("cat", cache_dir=tmp_path / "b")  # a fresh espeak-ng run
    assert first.tobytes() == second.tobytes()
    cached = list((tmp_path / "a").rglob("*.npy"))
    assert len(cached) == 1 and espeak_version() in str(cached[0])
    assert "cat" not in cached[0].name  # a taught word's name is not left readable in the cache

    def no_espeak(*_args, **_kwargs):
        raise AssertionError("espeak-ng ran although the clip is cached")

    monkeypatch.setattr(speech, "_run_espeak", no_espeak)
    assert synthesize("cat", cache_dir=tmp_path / "a").tobytes() == first.tobytes()


@needs_espeak
def test_trimmed_clips_start_and_end_near_speech(cache):
    clip = synthesize("six", cache_dir=cache)
    quiet = PEAK_LEVEL * 10 ** (-40 / 20)  # trim_silence's default threshold
    margin = round(0.010 * SAMPLE_RATE_HZ)
    assert abs(clip[0]) < quiet and abs(clip[-1]) < quiet
    assert np.max(np.abs(clip[: margin + 1])) >= quiet  # speech starts right after the margin
    assert np.max(np.abs(clip[-margin - 1 :])) >= quiet


def test_trim_silence_on_a_known_signal():
    sr = 1000
    tone = np.sin(np.linspace(0, 20 * np.pi, 200)).astype(np.float32)
    tone[[0, -1]] = 0.5  # loud first/last samples: the cut lands exactly on them
    wave = np.concatenate([np.zeros(300), tone, np.zeros(400)]).astype(np.float32)
    out = trim_silence(wave, margin_ms=10.0, sample_rate=sr)  # margin: 10 samples
    assert out.shape == (200 + 2 * 10,)
    assert np.array_equal(out[10:-10], tone)
    assert trim_silence(np.zeros(50, dtype=np.float32)).size == 0


@needs_espeak
def test_default_rate_gives_words_long_enough_for_stoi(cache):
    spoken = speak_words(("one", "two", "six"), cache_dir=cache)
    seconds = spoken.lengths[:, 0] / spoken.sample_rate
    assert CANONICAL_VOICE.words_per_min == DEFAULT_WORDS_PER_MIN
    assert np.all(seconds >= 0.4), dict(zip(spoken.words, seconds.round(3), strict=True))


@needs_espeak
def test_pad_to(cache):
    spoken = speak_words(("one", "two"), cache_dir=cache)
    longer = speak_words(("one", "two"), cache_dir=cache, pad_to=spoken.max_length + 100)
    assert longer.max_length == spoken.max_length + 100
    assert np.array_equal(longer.clips[..., : spoken.max_length], spoken.clips)
    with pytest.raises(SpeechError, match="pad_to"):
        speak_words(("one", "two"), cache_dir=cache, pad_to=spoken.max_length - 1)


def test_voice_set_is_distinct_deterministic_and_in_range():
    assert voice_set(1) == (CANONICAL_VOICE,)
    voices = voice_set(40)
    assert voices == voice_set(40) and voice_set(7) == voices[:7]
    assert len(set(voices)) == 40 and len({v.tag() for v in voices}) == 40
    assert {v.name for v in voices} == set(speech.VOICE_NAMES)
    for v in voices[1:]:
        assert 100 <= v.words_per_min <= 130 and 35 <= v.pitch <= 65
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", v.tag())
    assert CANONICAL_VOICE.tag() == "en-us_s110_p50"
    with pytest.raises(SpeechError):
        voice_set(0)


@needs_espeak
def test_every_voice_of_voice_set_exists_in_espeak(cache):
    spoken = speak_words(("cat",), voice_set(len(speech.VOICE_NAMES)), cache_dir=cache)
    assert np.all(spoken.lengths > 0.2 * SAMPLE_RATE_HZ)
    assert len({spoken.clips[0, j].tobytes() for j in range(len(spoken.voices))}) == len(
        spoken.voices
    )


@needs_espeak
def test_multi_word_class_names(cache):
    spoken = speak_words(("fish", "aquarium fish", "maple tree"), cache_dir=cache)
    assert spoken.lengths[1, 0] > spoken.lengths[0, 0] + 0.2 * SAMPLE_RATE_HZ
    underscored = synthesize("maple_tree", cache_dir=cache)  # CIFAR-100 spelling
    assert underscored.tobytes() == spoken.clips[2, 0, : spoken.lengths[2, 0]].tobytes()


@needs_espeak
def test_describe(cache):
    text = speak_words(("one", "two"), cache_dir=cache).describe()
    pattern = r"2 words × 1 voice, L_s = \d+ samples \(\d+ ms\), lengths \d+–\d+ ms"
    assert re.fullmatch(pattern, text), text


def test_missing_espeak_raises_with_install_hint(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SpeechError, match="apt-get install espeak-ng") as info:
        espeak_version()
    assert "\n" not in str(info.value)
    with pytest.raises(SpeechError, match="not installed"):
        synthesize("cat", cache_dir=tmp_path / "cache")


@needs_espeak
@pytest.mark.parametrize("word", ["", "   ", "..."])
def test_unspeakable_words_raise(word, tmp_path):
    with pytest.raises(SpeechError) as info:
        synthesize(word, cache_dir=tmp_path)
    assert "\n" not in str(info.value)


@needs_espeak
def test_bad_voices_raise(tmp_path):
    with pytest.raises(SpeechError, match="voice"):
        synthesize("cat", Voice(name="xx-nonexistent"), cache_dir=tmp_path)
    with pytest.raises(SpeechError, match="pitch"):
        Voice(pitch=120)
    with pytest.raises(SpeechError, match="words/min"):
        Voice(words_per_min=10)
