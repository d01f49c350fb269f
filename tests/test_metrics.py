"""earsight.trainer.evaluation.metrics with the real pesq, pystoi and pocketsphinx on real
espeak-ng speech."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from earsight.trainer.errors import MetricError
from earsight.trainer.evaluation import metrics
from earsight.trainer.evaluation.metrics import (
    N_MELS,
    WordRecognizer,
    auditory_spectrogram,
    corr2d,
    evaluate_pairs,
    pearson2d,
    pesq_wb,
    stoi,
    word_accuracy,
)
from earsight.trainer.speech import pronounce
from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, SpokenWords, speak_words

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (./install.sh)"
)
SR = SAMPLE_RATE_HZ
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> SpokenWords:
    return speak_words(DIGITS, cache_dir=tmp_path_factory.mktemp("speech-cache"))


def clip(spoken: SpokenWords, word: str) -> np.ndarray:
    """One word's unpadded clip, (L,) float32."""
    i = spoken.words.index(word)
    return spoken.clips[i, 0, : spoken.lengths[i, 0]]


def noisy(wave: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (wave + rng.normal(0.0, std, wave.shape)).astype(np.float32)


def test_auditory_spectrogram_shape_and_frequency_axis():
    n = SR  # 1 s
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(n) / SR).astype(np.float32)
    spec = auditory_spectrogram(tone, SR)
    win, hop = round(0.025 * SR), round(0.010 * SR)
    assert spec.shape == (N_MELS, 1 + math.ceil((n - win) / hop))
    centres = metrics.mel_filterbank(SR, 1024).argmax(axis=1) * SR / 1024  # Hz per band
    loudest = int(np.median(spec.argmax(axis=0)))
    assert abs(centres[loudest] - 1000.0) < 100.0
    assert spec.max() - spec.min() <= metrics.TOP_DB + 1e-3


def test_pearson2d_is_eq12():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    assert pearson2d(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    # By hand: A - Ā = [[-1.5, -0.5], [0.5, 1.5]], B - B̄ = [[-1, -1], [1, 1]]
    # → Σ = 4, ΣA'² = 5, ΣB'² = 4 → r = 4 / sqrt(20).
    hand = pearson2d(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 0.0], [2.0, 2.0]]))
    assert hand == pytest.approx(4 / math.sqrt(20), abs=1e-12)
    assert math.isnan(pearson2d(np.ones((2, 2)), a[:2, :2]))


def test_corr2d(digits):
    one, six = clip(digits, "one"), clip(digits, "six")
    assert corr2d(one, one, SR) == pytest.approx(1.0, abs=1e-6)
    assert corr2d(0.2 * one, one, SR) == pytest.approx(1.0, abs=1e-6)  # loudness-independent
    with_noise = corr2d(noisy(one, 0.02), one, SR)
    assert with_noise < 0.95
    assert corr2d(six, one, SR) < 0.5 < with_noise  # another word is much less alike
    # Equal to an independent computation: np.corrcoef of the flattened spectrograms, the
    # shorter wave zero-padded.
    n = max(len(six), len(one))
    g, r = np.pad(six, (0, n - len(six))), np.pad(one, (0, n - len(one)))
    expected = np.corrcoef(
        auditory_spectrogram(g, SR).ravel().astype(np.float64),
        auditory_spectrogram(r, SR).ravel().astype(np.float64),
    )[0, 1]
    assert corr2d(six, one, SR) == pytest.approx(expected, abs=1e-6)


def test_corr2d_of_silence_is_nan(digits):
    assert math.isnan(corr2d(np.zeros(SR, dtype=np.float32), clip(digits, "one"), SR))


def test_pesq(digits, caplog):
    one = clip(digits, "one")
    assert pesq_wb(one, one, SR) > 4.0
    assert pesq_wb(noisy(one, 0.05), one, SR) < 2.0
    with caplog.at_level(logging.WARNING, logger="earsight.trainer.evaluation.metrics"):
        assert math.isnan(pesq_wb(np.zeros_like(one), one, SR))  # no crash: NaN + warning
    assert "PESQ" in caplog.text


def test_stoi(digits):
    one = clip(digits, "one")
    assert stoi(one, one, SR) == pytest.approx(1.0, abs=1e-6)
    assert stoi(noisy(one, 0.05), one, SR) < 0.95


def test_evaluate_pairs(digits):
    ref = digits.clips[:4, 0]  # (4, L_s)
    gen = np.stack([ref[0], noisy(ref[1], 0.05), ref[2], np.zeros_like(ref[3])])
    scores = evaluate_pairs(gen, ref, SR)
    assert set(scores) == {"corr2d", "pesq", "stoi", "n_items", "n_failed"}
    assert scores["n_items"] == 4 and scores["n_failed"] >= 1  # the silent clip
    assert all(np.isfinite(v) for v in scores.values())
    # The silent clip counts at each metric's floor instead of being skipped: PESQ is
    # the mean of (≈4.6, noisy, ≈4.6, 1.0), below what the three scorable clips alone give.
    scorable = evaluate_pairs(gen[:3], ref[:3], SR)
    assert scores["pesq"] == pytest.approx((3 * scorable["pesq"] + 1.0) / 4, rel=1e-6)
    assert scores["corr2d"] < scorable["corr2d"] and 0.5 < scores["corr2d"] < 1.0
    same = evaluate_pairs(ref, ref, SR, max_items=2)
    assert same["n_items"] == 2 and same["corr2d"] == pytest.approx(1.0, abs=1e-6)
    assert same["pesq"] > 4.0 and same["stoi"] > 0.99
    with pytest.raises(MetricError):
        evaluate_pairs(gen, ref[:3], SR)


@pytest.fixture(scope="module")
def recognizer() -> WordRecognizer:
    return WordRecognizer(DIGITS, sample_rate_in=SR)


def test_recognizer_hears_espeak_digits(recognizer, digits):
    heard = [recognizer.recognize(clip(digits, w)) for w in DIGITS]
    accuracy = np.mean([h == w for h, w in zip(heard, DIGITS, strict=True)])
    assert accuracy >= 0.9, dict(zip(DIGITS, heard, strict=True))
    # Padded clips (as the model's output is) and word_accuracy give the same.
    assert recognizer.accuracy(digits.clips[:, 0], DIGITS) == accuracy
    assert word_accuracy(digits.clips[:, 0], DIGITS, DIGITS, SR) == accuracy


def test_recognizer_is_deterministic_and_order_independent(recognizer, digits):
    seven = clip(digits, "seven")
    first = recognizer.recognize(seven)
    for w in ("one", "two"):
        recognizer.recognize(clip(digits, w))
    assert recognizer.recognize(seven) == first


def test_recognizer_rejects_noise_and_silence(recognizer):
    rng = np.random.default_rng(0)
    noise = [rng.normal(0.0, 0.2, SR).astype(np.float32) for _ in range(len(DIGITS))]
    assert recognizer.accuracy(noise, DIGITS) <= 0.3  # chance is 0.1
    assert recognizer.recognize(np.zeros(SR, dtype=np.float32)) == ""


def test_multi_word_vocabulary(tmp_path):
    vocab = ("aquarium_fish", "maple tree", "cat", "dog")  # CIFAR-100 style names included
    spoken = speak_words(vocab, cache_dir=tmp_path)
    rec = WordRecognizer(vocab, sample_rate_in=SR)
    assert rec.vocabulary == ("aquarium fish", "maple tree", "cat", "dog")
    assert rec.recognize(spoken.clips[0, 0]) == "aquarium fish"
    assert rec.recognize(spoken.clips[1, 0]) == "maple tree"
    assert rec.accuracy(spoken.clips[:, 0], vocab) >= 0.75


# A user's own words (issue #13's teach mode): none of the first seven is in CMUdict.
OWN_WORDS = ("pillbox", "earsight", "wumpus", "spork", "airpods", "chapstick", "nana's mug")
REAL_WORDS = ("kettle", "remote", "wallet", "keys", "glasses", "teapot")


def test_words_outside_the_dictionary_are_heard_through_espeak_phonemes(tmp_path):
    from pocketsphinx import Decoder

    cmudict = Decoder(lm=None, loglevel="FATAL")
    rec = WordRecognizer(OWN_WORDS + REAL_WORDS, sample_rate_in=SR)
    for word in ("pillbox", "earsight", "wumpus", "spork", "airpods", "chapstick", "nana's"):
        assert cmudict.lookup_word(word) is None and rec._decoder.lookup_word(word) is not None
    spoken = speak_words(OWN_WORDS + REAL_WORDS, cache_dir=tmp_path)
    heard = [rec.recognize(spoken.clips[i, 0]) for i in range(len(spoken.words))]
    accuracy = np.mean([h == w for h, w in zip(heard, spoken.words, strict=True)])
    # Measured: 13 of 13 (canonical voice); over voice_set(8) 0.89 for the own words, 0.98 the rest.
    assert accuracy >= 0.9, dict(zip(spoken.words, heard, strict=True))


def test_espeak_phonemes_map_to_the_en_us_model_phones():
    assert pronounce.arpabet("pillbox") == "P IH L B AA K S"
    assert pronounce.arpabet("chapstick") == "CH AE P S T IH K"  # tʃ is one phoneme
    assert pronounce.arpabet("earsight") == "IH R S AY T"  # ɪɹ: two phones
    assert pronounce.arpabet("altering") == "AO L T ER IH NG"  # ɚ_ɹ: CMUdict's one ER
    import pocketsphinx

    cmudict = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    model_phones = {p for line in cmudict.read_text().splitlines() for p in line.split()[1:]}
    assert len(model_phones) == 39  # CMUdict's phone set, no stress digits
    phones = set(" ".join(pronounce.IPA_TO_ARPABET.values()).split())
    assert phones <= model_phones, phones - model_phones


def test_extra_pronunciations_come_first():
    WordRecognizer(["shrew", "mouse"])  # CIFAR-100's one word missing from the dictionary
    assert metrics.EXTRA_PRONUNCIATIONS["shrew"] == "SH R UW"


@pytest.mark.faults
def test_a_word_outside_the_dictionary_without_espeak_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    WordRecognizer(["one", "two"])  # dictionary words need no espeak-ng
    with pytest.raises(MetricError, match="zzyzxq") as info:
        WordRecognizer(["one", "zzyzxq"])
    assert "espeak-ng is not installed" in str(info.value) and "\n" not in str(info.value)


def test_accuracy_rejects_words_outside_the_vocabulary(recognizer, digits):
    with pytest.raises(MetricError, match="ten"):
        recognizer.accuracy(digits.clips[:1, 0], ["ten"])
