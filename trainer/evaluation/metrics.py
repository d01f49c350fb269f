"""Evaluation metrics of the paper (§4.2: Corr2D, PESQ, STOI) plus word recognition.

- ``corr2d``: Eq. 12, the Pearson correlation of two auditory spectrograms. The paper does not
  define its "auditory spectrogram"; we use a log-mel spectrogram (``auditory_spectrogram``).
- ``pesq_wb``: wide-band PESQ (ITU-T P.862.2) at 16 kHz, from the ``pesq`` package.
- ``stoi``: short-time objective intelligibility, from ``pystoi``.
- ``WordRecognizer``: pocketsphinx constrained by a JSGF grammar to the class vocabulary; does the
  generated audio say the right word? Run on the ground-truth clips it gives the ceiling.

PESQ and STOI never crash an evaluation: unusable audio gives NaN and a warning, and the batch
means of ``evaluate_pairs`` skip NaNs.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from scipy.signal import get_window, resample_poly

from earsight.errors import trainer_not_installed
from earsight.trainer.errors import MetricError, SpeechError
from earsight.trainer.speech.synth import trim_silence

log = logging.getLogger(__name__)

# Auditory spectrogram (log-mel).
N_MELS = 64
WINDOW_S = 0.025  # 25 ms Hann window
HOP_S = 0.010  # 10 ms hop (220 samples at 22,050 Hz: 9.98 ms)
MIN_N_FFT = 1024  # >= 1024 bins so the narrow low mel bands never fall between FFT bins
TOP_DB = 80.0  # floor the log-mel at (max - 80 dB): digital silence would otherwise be -inf
POWER_FLOOR = 1e-20  # only guards log10(0); the TOP_DB floor is the one that matters

# PESQ.
PESQ_RATE_HZ = 16_000  # wide-band PESQ is defined at 16 kHz
PESQ_PAD_S = 0.25  # silence added on both sides when PESQ finds no utterance in a short clip


def _resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return np.asarray(wave, dtype=np.float64)
    g = math.gcd(rate_in, rate_out)
    return resample_poly(np.asarray(wave, dtype=np.float64), rate_out // g, rate_in // g)


def _pad_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad the shorter of two 1-D waves at the end: (La,), (Lb,) → both (max(La, Lb),)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    n = max(a.size, b.size)
    return np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular filters, equally spaced on the HTK mel scale over 0..sample_rate/2 Hz.

    Returns (n_mels, n_fft // 2 + 1): row m weights the FFT bins of band m (peak weight 1).
    """

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft // 2 + 1,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    rising = (bins[None, :] - lo) / (mid - lo)
    falling = (hi - bins[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rising, falling))


@functools.lru_cache(maxsize=8)
def _sparse_filterbank(sample_rate: int, n_fft: int) -> sparse.csr_matrix:
    # Sparse (each band covers a few bins): a dense BLAS matmul of this size costs 10x more
    # when OpenBLAS threads compete with training for 2 cores.
    return sparse.csr_matrix(mel_filterbank(sample_rate, n_fft))  # (n_mels, n_fft // 2 + 1)


def auditory_spectrogram(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The "auditory spectrogram" of the paper = a log-mel spectrogram here, (n_mels, n_frames).

    The paper does not define it; a gammatone filterbank is the alternative, we use mel: 64 mel
    bands over 0..sample_rate/2 Hz, 25 ms Hann window, 10 ms hop, power in dB floored at 80 dB
    below the spectrogram's maximum. Scaling the wave shifts every value by the same number of dB,
    so Corr2D is independent of loudness.
    """
    x = np.asarray(wave, dtype=np.float64).ravel()  # (L,)
    win = round(WINDOW_S * sample_rate)
    hop = max(1, round(HOP_S * sample_rate))
    n_fft = max(MIN_N_FFT, 1 << (win - 1).bit_length())
    n_frames = 1 + max(0, math.ceil((x.size - win) / hop))
    x = np.pad(x, (0, (n_frames - 1) * hop + win - x.size))  # the last frame is complete
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]  # (n_frames, win)
    power = np.abs(np.fft.rfft(frames * get_window("hann", win), n=n_fft)) ** 2
    mel = _sparse_filterbank(sample_rate, n_fft) @ power.T  # (n_mels, n_frames)
    db = 10.0 * np.log10(np.maximum(mel, POWER_FLOOR))
    return np.maximum(db, db.max() - TOP_DB).astype(np.float32)  # (n_mels, n_frames)


def pearson2d(a: np.ndarray, b: np.ndarray) -> float:
    """Eq. 12: Σ(A-Ā)(B-B̄) / sqrt(Σ(A-Ā)² Σ(B-B̄)²) over all elements; NaN if one is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise MetricError(f"Corr2D needs equal shapes, got {a.shape} and {b.shape}", "pad first")
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db)))
    return float(np.sum(da * db) / denom) if denom > 0 else float("nan")


def corr2d(generated: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Paper Eq. 12 on auditory spectrograms; the shorter wave is zero-padded first.

    NaN when a spectrogram is constant (e.g. a silent generated clip): correlation is undefined.
    """
    g, r = _pad_pair(generated, reference)
    return pearson2d(auditory_spectrogram(g, sample_rate), auditory_spectrogram(r, sample_rate))


def pesq_wb(generated: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0..4.64) of ``generated`` against ``reference``.

    Both are resampled to 16 kHz. When PESQ finds no utterance (short or quiet clips) both get
    0.25 s of silence on each side and PESQ runs again; if it still fails: NaN and a warning.
    """
    from pesq import PesqError, pesq  # imported here: only evaluation needs it

    g, r = _pad_pair(generated, reference)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(r))):
        log.warning("PESQ: non-finite samples in the audio; returning NaN")
        return float("nan")
    g, r = _resample(g, sample_rate, PESQ_RATE_HZ), _resample(r, sample_rate, PESQ_RATE_HZ)
    pad = round(PESQ_PAD_S * PESQ_RATE_HZ)
    attempts = ((r, g), (np.pad(r, pad), np.pad(g, pad)))
    error: Exception | None = None
    for ref, deg in attempts:
        try:
            return float(pesq(PESQ_RATE_HZ, ref, deg, "wb"))
        except (PesqError, ValueError) as err:  # NoUtterancesError, ...; NaN inside for silence
            error = err
    log.warning("PESQ failed even with %.2f s of padding (%s); returning NaN", PESQ_PAD_S, error)
    return float("nan")


def stoi(generated: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """STOI (0..1) of ``generated`` against ``reference``, via pystoi at the native rate.

    pystoi resamples to 10 kHz and drops frames more than 40 dB below the reference's loudest
    one (its VAD), so padding with silence does not help: a reference with less than ~0.4 s of
    speech (30 frames of 12.8 ms) makes pystoi warn and return 1e-5. Callers must synthesize
    words slowly enough (trainer.speech.synth uses 110 words/min for this reason).
    """
    from pystoi import stoi as _stoi  # imported here: only evaluation needs it

    g, r = _pad_pair(generated, reference)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(r))):
        log.warning("STOI: non-finite samples in the audio; returning NaN")
        return float("nan")
    return float(_stoi(r, g, sample_rate, extended=False))


FAILURE_SCORES = {"corr2d": 0.0, "pesq": 1.0, "stoi": 0.0}  # wide-band PESQ's floor is ≈ 1.0


def _mean_with_floor(values: Sequence[float], floor: float) -> float:
    return float(np.mean([floor if math.isnan(v) else v for v in values])) if values else math.nan


def evaluate_pairs(
    generated: np.ndarray,
    reference: np.ndarray,
    sample_rate: int,
    max_items: int | None = None,
) -> dict[str, float]:
    """Mean Corr2D, PESQ and STOI over (N, L) pairs of waves; unscorable clips count as floors.

    ``max_items`` scores an evenly spaced subset (PESQ + STOI cost ~30-60 ms a clip).
    Returns {"corr2d", "pesq", "stoi", "n_items", "n_failed"}.
    """
    gen, ref = np.atleast_2d(generated), np.atleast_2d(reference)  # (N, L), (N, L')
    if gen.shape[0] != ref.shape[0]:
        raise MetricError(
            f"{gen.shape[0]} generated clips but {ref.shape[0]} references",
            "pass one reference per generated clip",
        )
    idx = np.arange(gen.shape[0])
    if max_items is not None and max_items < idx.size:
        idx = np.unique(np.linspace(0, idx.size - 1, max(1, max_items)).round().astype(int))
    with warnings.catch_warnings():
        # pystoi warns for every too-short clip; the docstring of stoi() explains its 1e-5.
        warnings.filterwarnings("ignore", message="Not enough STFT frames")
        scores = {
            "corr2d": [corr2d(gen[i], ref[i], sample_rate) for i in idx],
            "pesq": [pesq_wb(gen[i], ref[i], sample_rate) for i in idx],
            "stoi": [stoi(gen[i], ref[i], sample_rate) for i in idx],
        }
    # A clip a metric cannot score (silence, a flat spectrogram) is a failure of the generator,
    # not a clip to skip: it counts at the metric's floor, so silence never inflates a mean.
    result = {name: _mean_with_floor(vals, FAILURE_SCORES[name]) for name, vals in scores.items()}
    result["n_items"] = float(idx.size)
    result["n_failed"] = float(sum(math.isnan(v) for vals in scores.values() for v in vals))
    return result


# Word recognition (pocketsphinx). The settings below were tuned on espeak-ng digits "zero".."nine"
# in 6 accents × 3 speeds (180 clips): 0.91 accuracy, 1.0 for the canonical voice with any seed.
RECOGNIZER_RATE_HZ = 16_000  # pocketsphinx's default en-us acoustic model
DECODE_PEAK = 0.5  # input peak-normalized to this (full scale 1.0): the model's CMN wants a level
DEFAULT_DITHER = 1.5e-3  # std of the added noise, full-scale units (-50 dB re the peak)
RECOGNIZER_PAD_S = 0.3  # silence (+ dither) on both sides: the search needs leading silence
# Words missing from pocketsphinx's CMUdict: these hand-written ones first, then espeak-ng's
# phonemes mapped to ARPAbet (trainer.speech.pronounce), for words such as a user's "pillbox".
EXTRA_PRONUNCIATIONS = {"shrew": "SH R UW"}  # ARPAbet, as CMUdict's "shrewd" minus D
_FILLER_PREFIXES = ("<", "[", "+")  # <s>, <sil>, [NOISE], +SMACK+: not words


def _normalize_entry(entry: str) -> str:
    """Class name → dictionary form: "Maple_Tree " → "maple tree" (lower case, spaces)."""
    return " ".join(str(entry).replace("_", " ").lower().split())


def _espeak_pronunciation(token: str) -> str:
    """ARPAbet for a word CMUdict lacks ("pillbox", a user's own word), from espeak-ng."""
    from earsight.trainer.speech.pronounce import (
        arpabet,  # only words outside the dictionary need espeak-ng
    )

    try:
        return arpabet(token)
    except SpeechError as err:
        raise MetricError(
            f"{token!r} is not in pocketsphinx's pronunciation dictionary and {err.what}",
            err.fix or "add it to metrics.EXTRA_PRONUNCIATIONS",
        ) from err


class WordRecognizer:
    """pocketsphinx constrained to a vocabulary by a JSGF grammar:
    ``public <word> = one | two | (aquarium fish) | ...;``

    Decoding is deterministic and order-independent: every call trims the clip, resets the
    cepstral mean and draws the same seeded dither. Espeak-ng's clean, slow single words are a
    poor match for an acoustic model trained on read speech. Measured on the canonical voice:
    digits 1.0, CIFAR-10 0.9, CIFAR-100 0.9; over voice_set(8): 0.88, 0.81, 0.75. So report the
    ground-truth clips' accuracy as the ceiling next to the generated clips' accuracy.
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        sample_rate_in: int = 22_050,
        dither: float = DEFAULT_DITHER,
        seed: int = 0,
    ) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as err:
            missing = trainer_not_installed(err, "the speech recognizer (word accuracy)")
            if missing is None:
                raise
            raise MetricError(missing.what, missing.fix) from err
        self.vocabulary = tuple(dict.fromkeys(_normalize_entry(w) for w in vocabulary))
        if not self.vocabulary or "" in self.vocabulary:
            raise MetricError("the vocabulary is empty or has an empty word", "pass class names")
        self.sample_rate_in = int(sample_rate_in)
        self.dither = float(dither)
        self.seed = int(seed)
        self._decoder = Decoder(lm=None, loglevel="FATAL")  # lm=None: no 50 MB n-gram load
        self._add_pronunciations()
        grammar = " | ".join(f"({w})" if " " in w else w for w in self.vocabulary)
        jsgf = f"#JSGF V1.0;\ngrammar vocabulary;\npublic <word> = {grammar};\n"
        self._decoder.add_jsgf_string("vocabulary", jsgf)
        self._decoder.activate_search("vocabulary")
        self._initial_cmn = self._decoder.get_cmn()

    def _add_pronunciations(self) -> None:
        tokens = dict.fromkeys(t for entry in self.vocabulary for t in entry.split())
        for token in tokens:
            if self._decoder.lookup_word(token) is not None:
                continue
            phones = EXTRA_PRONUNCIATIONS.get(token) or _espeak_pronunciation(token)
            self._decoder.add_word(token, phones, True)

    def _pcm(self, wave: np.ndarray) -> bytes | None:
        """(L,) float at sample_rate_in → 16 kHz int16 bytes, padded, dithered; None if silent."""
        x = np.asarray(wave, dtype=np.float64).ravel()
        if x.size == 0 or not np.all(np.isfinite(x)):
            return None
        # Trim first: the amount of silence changes the cepstral mean and with it the result,
        # and a clip padded to L_s would otherwise decode differently from the same word unpadded.
        x = _resample(
            trim_silence(x, sample_rate=self.sample_rate_in),
            self.sample_rate_in,
            RECOGNIZER_RATE_HZ,
        )
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak == 0.0:
            return None
        pad = np.zeros(round(RECOGNIZER_PAD_S * RECOGNIZER_RATE_HZ))
        x = np.concatenate([pad, x * (DECODE_PEAK / peak), pad])
        # Digital silence and very clean synthetic speech trip the recognizer; slight noise,
        # the same for every call, makes it behave as on a recording.
        x += np.random.default_rng(self.seed).normal(0.0, self.dither, x.size)
        return (np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16).tobytes()

    def recognize(self, wave: np.ndarray) -> str:
        """The vocabulary entry heard in ``wave`` (words joined by one space), "" if none."""
        pcm = self._pcm(wave)
        if pcm is None:
            return ""
        d = self._decoder
        d.set_cmn(self._initial_cmn)  # no state carried over from the previous clip
        d.start_utt()
        d.process_raw(pcm, full_utt=True)  # full_utt: cepstral mean of this whole clip
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return ""
        words = [w.split("(")[0] for w in hyp.hypstr.split() if not w.startswith(_FILLER_PREFIXES)]
        return " ".join(words)

    def accuracy(self, waves: Sequence[np.ndarray] | np.ndarray, words: Sequence[str]) -> float:
        """Fraction of ``waves`` recognized as their ``words`` (NaN for no waves)."""
        if len(waves) != len(words):
            raise MetricError(f"{len(waves)} waves but {len(words)} words", "pass one word a wave")
        if len(words) == 0:
            return float("nan")
        expected = [_normalize_entry(w) for w in words]
        unknown = sorted(set(expected) - set(self.vocabulary))
        if unknown:
            raise MetricError(f"words not in the vocabulary: {unknown[:5]}", "add them to it")
        hits = [self.recognize(w) == e for w, e in zip(waves, expected, strict=True)]
        return float(np.mean(hits))


def word_accuracy(
    waves: Sequence[np.ndarray] | np.ndarray,
    words: Sequence[str],
    vocabulary: Sequence[str],
    sample_rate: int = 22_050,
) -> float:
    """Fraction of ``waves`` that pocketsphinx, limited to ``vocabulary``, hears as ``words``."""
    return WordRecognizer(vocabulary, sample_rate_in=sample_rate).accuracy(waves, words)
