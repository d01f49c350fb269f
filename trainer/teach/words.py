"""A taught word's parts, checked before the store keeps them: its name (check_word), its photos
(JPEG bytes), its voice (mono, a sane rate and length); the teach errors, each one line saying
what to do; and a stored word's word.json (WORD_SCHEMA) and what it says (TaughtWord)."""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earsight.errors import EarSightError

MAX_WORD_CHARS = 40  # long enough for "front door key", short enough to speak as one word


WORD_PUNCTUATION = frozenset(" -'")  # besides letters and digits ("t-shirt", "mum's keys")


JPEG_QUALITY = 95  # photos are the training data: keep detail, ~4× smaller than PNG


MIN_SIDE_PX = 16  # smaller photos carry nothing a 160 px backbone can use


SAMPLE_RATE_RANGE_HZ = (8_000, 192_000)


MAX_VOICE_S = 10.0  # a word or a short phrase; longer is a wrong file


VOICE_SOURCES = ("microphone", "file", "espeak-ng")


class TeachError(EarSightError):
    """Base of the teach-store errors: one line, what is wrong and what to do."""


class BadWordError(TeachError):
    """A word that cannot be taught as written (empty, odd characters, too long)."""


class BadInputError(TeachError):
    """Photos or a voice the store will not keep (tiny photos, a rate or length out of range)."""


class WordExistsError(TeachError):
    """``add_word`` of a word already taught."""


class UnknownWordError(TeachError):
    """A word that was never taught (or was forgotten)."""


class StoreError(TeachError):
    """The store's files: a broken word.json, a full or read-only disk, a busy lock."""


def check_word(name: str) -> str:
    """The word as stored (NFC, single spaces, trimmed); BadWordError if it cannot be one."""
    word = " ".join(unicodedata.normalize("NFC", str(name)).split())
    fix = "use letters, digits, spaces, hyphens or apostrophes, e.g. 'front door key'"
    if not word:
        raise BadWordError("the word is empty", "give the word to teach, e.g. earsight teach mug")
    odd = sorted({c for c in word if not (c.isalpha() or c.isdecimal() or c in WORD_PUNCTUATION)})
    if odd:
        raise BadWordError(f"{word!r} has characters a word cannot have: {''.join(odd)!r}", fix)
    if not (word[0].isalpha() or word[0].isdecimal()):  # "-x" reads as an option, ".x" hides
        raise BadWordError(f"{word!r} must start with a letter or digit", fix)
    if len(word) > MAX_WORD_CHARS:
        raise BadWordError(
            f"{word[:20]!r}… is {len(word)} characters long",
            f"use at most {MAX_WORD_CHARS}: a short name is quicker to hear",
        )
    return word


def jpeg_bytes(photo: np.ndarray, index: int) -> bytes:
    from PIL import Image

    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(
            f"photo {index} must be RGB uint8 (H, W, 3), got {photo.dtype} {photo.shape}"
        )
    if min(photo.shape[:2]) < MIN_SIDE_PX:
        raise BadInputError(
            f"photo {index} is {photo.shape[1]}x{photo.shape[0]} pixels",
            f"use photos at least {MIN_SIDE_PX} pixels on each side",
        )
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(photo)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def checked_voice(wave: np.ndarray, sample_rate: int, source: str) -> np.ndarray:
    wave = np.asarray(wave)
    lo, hi = SAMPLE_RATE_RANGE_HZ
    if source not in VOICE_SOURCES:
        raise ValueError(f"voice source must be one of {VOICE_SOURCES}, got {source!r}")
    if wave.ndim != 1 or wave.size == 0 or not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(
            f"the voice must be a non-empty float mono wave, got {wave.dtype} {wave.shape}"
        )
    if not lo <= int(sample_rate) <= hi:
        raise BadInputError(
            f"the voice's sample rate {sample_rate} Hz is unusual", f"use {lo}–{hi} Hz"
        )
    if not np.isfinite(wave).all():
        raise BadInputError("the voice has NaN or infinite samples", "record or pick it again")
    if wave.size / sample_rate > MAX_VOICE_S:
        raise BadInputError(
            f"the voice lasts {wave.size / sample_rate:.1f} s",
            f"say just the word: at most {MAX_VOICE_S:g} s",
        )
    return wave.astype(np.float32)


# --- a stored word: word.json and what it says -----------------------------------------------

# `live`'s teach key stores a word as "object 1", "object 2", … (app/modes/live_teach.py) while
# its recording says the object's real name: no recognizer can check that name by ear.
PLACEHOLDER_PREFIX = "object"


def is_placeholder(word: str) -> bool:
    """ "object 3": a name `live`'s teach key gave, not the word its recording says."""
    head, _, number = word.rpartition(" ")
    return head == PLACEHOLDER_PREFIX and number.isdecimal()


FORMAT = 1  # word.json "format": bump when the layout changes

WORD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "word", "created", "voice", "photos"],
    "properties": {
        "format": {"const": FORMAT},
        "word": {"type": "string", "minLength": 1, "maxLength": MAX_WORD_CHARS},
        "created": {"type": "string", "minLength": 10},
        "updated": {"type": "string"},
        "photos": {"type": "integer", "minimum": 0},
        "voice": {
            "type": "object",
            "required": ["source", "sample_rate"],
            "properties": {
                "source": {"enum": list(VOICE_SOURCES)},
                "espeak_voice": {"type": ["string", "null"]},
                "sample_rate": {
                    "type": "integer",
                    "minimum": SAMPLE_RATE_RANGE_HZ[0],
                    "maximum": SAMPLE_RATE_RANGE_HZ[1],
                },
                "seconds": {"type": "number", "minimum": 0},
            },
        },
    },
}


@dataclass(frozen=True)
class TaughtWord:
    """One taught word as its word.json and folder describe it."""

    name: str  # the folder name: the word as spoken and shown
    folder: Path
    created: str  # ISO 8601 with time zone, when it was first taught
    voice_source: str  # one of VOICE_SOURCES
    espeak_voice: str | None  # the espeak-ng voice, when voice_source is "espeak-ng"
    sample_rate: int  # of voice.wav, Hz
    voice_seconds: float
    photo_count: int  # photos/*.jpg on disk now (word.json's count may be stale by hand edits)
    updated: str = ""  # ISO 8601, when photos were added or it was renamed ("" if never)
