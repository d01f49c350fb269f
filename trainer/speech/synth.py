"""Spoken class words, synthesized offline with espeak-ng (the targets of MT-Net, paper §4.1).

The paper pairs every image with a recording of its class word at 22,050 Hz. We synthesize that
word with the espeak-ng command-line program: it is offline, fast (~20 ms a word) and
deterministic (the same text, voice and version give the same bytes), so a dataset can be rebuilt
exactly from its spec. Every clip is

1. synthesized at espeak-ng's native 22,050 Hz (the paper's rate),
2. trimmed of leading/trailing silence (``trim_silence``), and
3. peak-normalized to ``PEAK_LEVEL``: espeak-ng's level differs between voices and words, and a
   fixed level makes the waveform regression target's scale independent of the voice.

Clips are cached on disk (one ``.npy`` per word and voice, keyed by the espeak-ng version too) so
rebuilding a dataset costs nothing. ``speak_words`` stacks the clips of a vocabulary into one
zero-padded array ``(n_words, n_voices, L_s)``: L_s, the longest clip, is MT-Net's output length.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from earsight import paths
from earsight.trainer.errors import SpeechError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 22_050  # the paper's rate; espeak-ng's native rate
# Slower than espeak-ng's 175 words/min so that even "one"/"six" last >= ~0.4 s: pystoi needs
# ~30 frames of speech and returns 1e-5 for shorter clips.
DEFAULT_WORDS_PER_MIN = 110
PEAK_LEVEL = 0.5  # every clip's max |sample| (full scale = 1.0); leaves headroom for the model
SYNTH_TIMEOUT_S = 30.0  # one espeak-ng call; a word takes ~20 ms
CACHE_FORMAT = 1  # bump when the processing (trim, normalization) changes: invalidates the cache

# Voices that voice_set() draws from: espeak-ng's built-in English accents whose output differs
# (en-us-nyc and "+m3" variants sound identical to en-us/en-gb for single words; MBROLA voices
# need an extra package). Checked against `espeak-ng --voices=en` (espeak-ng 1.51).
VOICE_NAMES = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
SPEED_RANGE_WPM = (100, 130)  # voice_set() speeds: slow enough for STOI, varied enough to matter
PITCH_RANGE = (35, 65)  # voice_set() pitches, espeak-ng's 0..99 scale (50 = the voice's default)
INSTALL_HINT = "install it: sudo apt-get install espeak-ng (or ./install.sh)"


@dataclass(frozen=True)
class Voice:
    """One espeak-ng speaker: a voice name, a speaking rate and a pitch."""

    name: str = "en-us"  # espeak-ng voice, as in `espeak-ng -v NAME`
    words_per_min: int = DEFAULT_WORDS_PER_MIN
    pitch: int = 50  # espeak-ng's 0..99

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_+\-]+", self.name):
            raise SpeechError(f"bad espeak-ng voice name {self.name!r}", "e.g. 'en-us' or 'en-gb'")
        if not 80 <= self.words_per_min <= 450:  # espeak-ng's documented range
            raise SpeechError(
                f"speaking rate {self.words_per_min} words/min is outside espeak-ng's 80..450",
                f"use e.g. {DEFAULT_WORDS_PER_MIN}",
            )
        if not 0 <= self.pitch <= 99:
            raise SpeechError(f"pitch {self.pitch} is outside espeak-ng's 0..99", "use e.g. 50")

    def tag(self) -> str:
        """Filesystem-safe id, e.g. ``en-us_s110_p50``."""
        return f"{self.name.replace('+', '-')}_s{self.words_per_min}_p{self.pitch}"


CANONICAL_VOICE = Voice()


def voice_set(n: int) -> tuple[Voice, ...]:
    """``n`` distinct voices, always the same for the same ``n``; the first is the canonical one.

    The others cycle through ``VOICE_NAMES`` with speeds and pitches spread over their ranges by
    additive recurrences (golden ratio, sqrt 2), which are deterministic and well spread for
    any n, unlike a grid that needs n known in advance.
    """
    if n < 1:
        raise SpeechError(f"need at least one voice, got {n}", "use n >= 1")
    voices = [CANONICAL_VOICE]
    seen = {CANONICAL_VOICE}
    (s_lo, s_hi), (p_lo, p_hi) = SPEED_RANGE_WPM, PITCH_RANGE
    n_combos = len(VOICE_NAMES) * (s_hi - s_lo + 1) * (p_hi - p_lo + 1)
    if n > n_combos:
        raise SpeechError(f"at most {n_combos} distinct voices, asked for {n}", "use fewer voices")
    i = 0
    while len(voices) < n:
        i += 1
        speed = s_lo + int(math.fmod(i * 0.6180339887, 1.0) * (s_hi - s_lo + 1))
        pitch = p_lo + int(math.fmod(i * 0.4142135624, 1.0) * (p_hi - p_lo + 1))
        voice = Voice(VOICE_NAMES[i % len(VOICE_NAMES)], speed, pitch)
        if voice not in seen:
            seen.add(voice)
            voices.append(voice)
    return tuple(voices)


def _espeak_path() -> str:
    path = shutil.which("espeak-ng")  # looked up every call: PATH may change (tests do)
    if path is None:
        raise SpeechError("espeak-ng is not installed", INSTALL_HINT)
    return path


@functools.lru_cache(maxsize=8)
def _version_of(path: str) -> str:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SpeechError(f"espeak-ng at {path} does not run ({err})", INSTALL_HINT) from err
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    if match is None:
        raise SpeechError(f"espeak-ng at {path} printed no version", INSTALL_HINT)
    return match.group(1)


def espeak_version() -> str:
    """The installed espeak-ng's version, e.g. ``"1.51"``; SpeechError if it is missing."""
    return _version_of(_espeak_path())


def _normalize_text(word: str) -> str:
    # Class names come as "maple_tree" or "maple tree"; espeak-ng would read "_" aloud.
    text = " ".join(word.replace("_", " ").split())
    if not text or not re.search(r"\w", text):
        raise SpeechError(f"cannot speak {word!r}: it has no letters", "pass a word such as 'cat'")
    return text


def trim_silence(
    wave: np.ndarray,
    threshold_db: float = -40.0,
    margin_ms: float = 10.0,
    sample_rate: int = SAMPLE_RATE_HZ,
) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``threshold_db`` below the peak, keep a margin.

    (L,) → (L',) with L' <= L; an all-silent wave gives an empty array. Sample-wise, not
    frame-wise: espeak-ng's silence is exact zeros and its speech starts sharply.
    """
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave[:0]
    loud = np.flatnonzero(np.abs(wave) >= peak * 10.0 ** (threshold_db / 20.0))
    margin = round(margin_ms * 1e-3 * sample_rate)
    start = max(0, int(loud[0]) - margin)
    stop = min(wave.size, int(loud[-1]) + 1 + margin)
    return wave[start:stop]


def _run_espeak(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng → raw float32 waveform at SAMPLE_RATE_HZ, untrimmed, (L,)."""
    exe = _espeak_path()
    with tempfile.TemporaryDirectory(prefix="earsight-espeak-") as tmp:
        out = Path(tmp) / "word.wav"
        cmd = [exe, "-w", str(out), "-v", voice.name, "-s", str(voice.words_per_min)]
        cmd += ["-p", str(voice.pitch), "--", text]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as err:
            raise SpeechError(f"espeak-ng failed on {text!r} ({err})", INSTALL_HINT) from err
        if proc.returncode != 0 or not out.exists():
            detail = " ".join(proc.stderr.split())[:200] or f"exit status {proc.returncode}"
            raise SpeechError(
                f"espeak-ng could not speak {text!r} with voice {voice.name!r}: {detail}",
                "check the voice name against `espeak-ng --voices=en`",
            )
        rate, pcm = wavfile.read(out)
    wave = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:  # MBROLA voices run at 16 kHz
        g = math.gcd(rate, SAMPLE_RATE_HZ)
        wave = resample_poly(wave, SAMPLE_RATE_HZ // g, rate // g).astype(np.float32)
    return wave


def _cache_path(cache_dir: Path, text: str, voice: Voice, version: str) -> Path:
    key = f"{CACHE_FORMAT}|{version}|{voice.name}|{voice.words_per_min}|{voice.pitch}|{text}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    # the hash alone names the file: a taught word ("insulin pen") stayed readable in the
    # cache's file names after --forget
    return cache_dir / f"espeak-{version}" / voice.tag() / f"{digest}.npy"


def _save_atomic(path: Path, wave: np.ndarray) -> None:
    # Write-then-rename so a concurrent reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, wave)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def synthesize(
    word: str, voice: Voice = CANONICAL_VOICE, cache_dir: Path | None = None
) -> np.ndarray:
    """One word (or a few: "maple tree") → float32 (L,) at SAMPLE_RATE_HZ, trimmed, peak 0.5.

    Cached under ``cache_dir`` (default: ``earsight.paths.cache_dir("speech")``), keyed by the
    text, the voice and the espeak-ng version, so an upgrade of espeak-ng never mixes old and
    new clips.
    """
    text = _normalize_text(word)
    version = espeak_version()
    path = _cache_path(cache_dir or paths.cache_dir("speech"), text, voice, version)
    if path.exists():
        try:
            return np.load(path).astype(np.float32, copy=False)
        except (OSError, ValueError) as err:  # a corrupt cache entry: synthesize again
            log.warning("ignoring unreadable cached clip %s (%s)", path, err)
    wave = trim_silence(_run_espeak(text, voice))
    if wave.size == 0:
        raise SpeechError(f"espeak-ng produced silence for {text!r}", "pass a pronounceable word")
    wave = (wave * (PEAK_LEVEL / np.max(np.abs(wave)))).astype(np.float32)
    try:
        _save_atomic(path, wave)
    except OSError as err:  # a read-only cache only costs speed
        log.warning("could not cache %s (%s)", path, err)
    return wave


@dataclass(frozen=True)
class SpokenWords:
    """The spoken vocabulary: one zero-padded clip per (word, voice)."""

    words: tuple[str, ...]
    voices: tuple[Voice, ...]
    clips: np.ndarray  # (n_words, n_voices, L_s) float32, trimmed then zero-padded at the end
    lengths: np.ndarray  # (n_words, n_voices) int64, true lengths in samples before padding
    sample_rate: int

    @property
    def max_length(self) -> int:
        """L_s: the padded clip length in samples (MT-Net's output length)."""
        return int(self.clips.shape[-1])

    def describe(self) -> str:
        """E.g. ``10 words × 1 voice, L_s = 18140 samples (823 ms), lengths 322–823 ms``."""

        def ms(n: float) -> int:
            return round(1000 * n / self.sample_rate)

        n_w, n_v = len(self.words), len(self.voices)
        return (
            f"{n_w} word{'s' * (n_w != 1)} × {n_v} voice{'s' * (n_v != 1)}, "
            f"L_s = {self.max_length} samples ({ms(self.max_length)} ms), "
            f"lengths {ms(self.lengths.min())}–{ms(self.lengths.max())} ms"
        )


def speak_words(
    words: Sequence[str],
    voices: Sequence[Voice] = (CANONICAL_VOICE,),
    cache_dir: Path | None = None,
    pad_to: int | None = None,
) -> SpokenWords:
    """Synthesize every word in every voice and pad all clips to one length.

    ``pad_to`` fixes L_s (e.g. a trained model's output length); by default L_s is the longest
    clip. A ``pad_to`` shorter than the longest clip is an error: clipping would cut words.
    """
    if len(words) == 0 or len(voices) == 0:
        raise SpeechError("need at least one word and one voice", "pass a non-empty vocabulary")
    waves = [[synthesize(w, v, cache_dir) for v in voices] for w in words]
    lengths = np.array([[len(c) for c in row] for row in waves], dtype=np.int64)
    longest = int(lengths.max())
    length = longest if pad_to is None else int(pad_to)
    if length < longest:
        w, v = np.unravel_index(int(lengths.argmax()), lengths.shape)
        raise SpeechError(
            f"pad_to={length} samples is shorter than the clip of {words[w]!r} "
            f"({voices[v].tag()}, {longest} samples)",
            f"use pad_to >= {longest} or a faster speaking rate",
        )
    clips = np.zeros((len(words), len(voices), length), dtype=np.float32)  # (n_w, n_v, L_s)
    for i, row in enumerate(waves):
        for j, clip in enumerate(row):
            clips[i, j, : len(clip)] = clip
    spoken = SpokenWords(tuple(words), tuple(voices), clips, lengths, SAMPLE_RATE_HZ)
    log.debug("spoke %s", spoken.describe())
    return spoken
