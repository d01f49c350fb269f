"""A recorded word, trimmed of silence and checked: ``check_recording`` → ``Recording``.

    rec = check_recording(wave, 48_000)   # SilentRecording, ClippedRecording, SpeechTooShort…

Used on what ``app.sound.microphone.record_voice`` captured; it takes any (L,) float wave, so a
voice
given as a file can go through the same checks. Every failure is a ``BadRecording``: a one-line
EarSightError saying what to do, so the caller can ask the user to record again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from earsight.errors import EarSightError
from earsight.trainer.speech.synth import trim_silence

# Levels, in dBFS (0 dBFS = full scale). Speech a forearm from a laptop or headset microphone
# peaks around -20..-6 dBFS and a quiet room sits near -60..-50 dBFS, so a recording whose
# loudest sample is under -40 dBFS heard no voice (a muted input, the wrong device).
SILENT_PEAK_DBFS = -40.0
CLIP_LEVEL = 0.999  # |sample| at or above this (int16 ≥ 32735) is at full scale
# Speech that merely touches full scale has a few such samples; 0.1 % of the speech (≈ 50 at
# 48 kHz in a 1 s word) means flattened peaks: audible distortion the word would be learnt with.
CLIPPED_SHARE = 0.001
TRIM_THRESHOLD_DB = -40.0  # relative to the peak: quieter leading/trailing samples are silence
# Kept around the speech: a soft onset ("h") or release ("s") is quieter than -40 dB for a few
# tens of ms; espeak-ng's clips (10 ms) start and end sharply, a voice does not.
TRIM_MARGIN_MS = 50.0
MIN_SPEECH_S = 0.15  # shorter after trimming is a click or a cough, not a word
MAX_SPEECH_S = 2.5  # a word or a short name ("Nana's mug" is ≈ 0.8 s); longer is a sentence
CUT_OFF_S = 0.05  # speech within this of the end of a recording that ran full: cut off


class BadRecording(EarSightError):
    """A recording that cannot be used; the user should record again."""


class SilentRecording(BadRecording):
    """Nothing louder than SILENT_PEAK_DBFS was heard."""


class ClippedRecording(BadRecording):
    """More than CLIPPED_SHARE of the speech is at full scale."""


class SpeechTooShort(BadRecording):
    """Less than MIN_SPEECH_S of sound after trimming."""


class SpeechTooLong(BadRecording):
    """More than MAX_SPEECH_S of sound, or still speaking when the recording ran full."""


@dataclass(frozen=True, eq=False)
class Recording:
    wave: np.ndarray  # float32 mono (L,) in [-1, 1], leading/trailing silence trimmed
    sample_rate: int  # Hz, the device's
    peak_dbfs: float  # loudest sample, dB re full scale (≤ 0)
    # first to last sample above TRIM_THRESHOLD_DB re the peak; ``wave`` keeps TRIM_MARGIN_MS
    # more on each side (len(wave) / sample_rate ≈ speech_s + 0.1 s)
    speech_s: float


def dbfs(level: float) -> float:
    """Amplitude (full scale 1.0) → dBFS; silence is -inf."""
    return 20.0 * math.log10(level) if level > 0 else -math.inf


def check_recording(wave: np.ndarray, sample_rate: int, ran_full: bool = False) -> Recording:
    """Trim a recorded word and check its level and length; a BadRecording if unusable.

    ``ran_full``: the recording lasted as long as it could (a fixed length, or ``max_seconds``
    reached with the key still held), so speech at its very end was cut off.
    """
    x = np.asarray(wave, dtype=np.float32).ravel()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if dbfs(peak) < SILENT_PEAK_DBFS:
        loudest = "no sound at all" if peak == 0.0 else f"loudest {dbfs(peak):.0f} dBFS"
        raise SilentRecording(
            f"the recording is silent ({loudest}; a voice reaches "
            f"{SILENT_PEAK_DBFS:.0f} dBFS or more)",
            "check the microphone is on and not muted, and speak closer to it",
        )
    # The room first (frame levels against its own background), then the peak's threshold: a
    # fan or a quiet room at -60 dBFS lies within 40 dB of a -13 dBFS voice, and the peak alone
    # kept 3 s of it ("say just the word", to a user who had).
    room = speech_over_background(x, sample_rate)  # None in a quiet room
    kept = trim_silence(
        around(x, room, sample_rate), TRIM_THRESHOLD_DB, TRIM_MARGIN_MS, sample_rate
    )
    clipped = float(np.mean(np.abs(kept) >= CLIP_LEVEL))
    if clipped > CLIPPED_SHARE:
        raise ClippedRecording(
            f"the recording is clipped ({100 * clipped:.1f} % of the speech at full scale)",
            "speak a little further from the microphone or turn its input level down",
        )
    seconds = trim_silence(kept, TRIM_THRESHOLD_DB, 0.0, sample_rate).size / sample_rate
    if seconds < MIN_SPEECH_S:
        raise SpeechTooShort(
            f"the recording holds only {1000 * seconds:.0f} ms of sound",
            "keep recording while you say the whole word",
        )
    if seconds > MAX_SPEECH_S:
        raise SpeechTooLong(
            f"the recording holds {seconds:.1f} s of sound; a word is {MAX_SPEECH_S:g} s at most",
            "say just the word, and stop the recording right after it",
        )
    cut_off = max(1, round(CUT_OFF_S * sample_rate))
    if room is not None:  # a noisy room: speech is what stands over it, to the very end?
        still_speaking = room[1] >= x.size - cut_off
    else:
        still_speaking = float(np.max(np.abs(x[-cut_off:]))) >= peak * 10.0 ** (
            TRIM_THRESHOLD_DB / 20
        )
    if ran_full and still_speaking:
        raise SpeechTooLong(
            "the word was cut off: the recording ended while it was still being said",
            "start the word right after pressing, and say only the word",
        )
    return Recording(kept.copy(), int(sample_rate), dbfs(peak), seconds)


FRAME_MS = 20.0  # the level of a recording is measured over frames this long
BACKGROUND_MARGIN_DB = 12.0  # speech frames stand at least this far above the background
KEEP_MS = 30.0  # kept before and after the speech, so its first and last sounds are whole


def trim_background(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """(L,) → the part from the first to the last frame louder than BACKGROUND_MARGIN_DB over
    the background (the 10th percentile frame level), with KEEP_MS either side; ``wave`` as it
    is when that background lies more than 40 dB under the loudest frame, where a threshold
    from the peak (trim_silence) already leaves it out. For recordings with steady noise."""
    return around(wave, speech_over_background(wave, sample_rate), sample_rate)


def around(wave: np.ndarray, bounds: tuple[int, int] | None, sample_rate: int) -> np.ndarray:
    """``wave[first:end]`` of speech_over_background's ``bounds`` with KEEP_MS either side;
    ``wave`` as it is for None (a quiet room)."""
    if bounds is None:
        return wave
    keep = round(sample_rate * KEEP_MS / 1000)
    return wave[max(0, bounds[0] - keep) : min(wave.size, bounds[1] + keep)]


def speech_over_background(wave: np.ndarray, sample_rate: int) -> tuple[int, int] | None:
    """(first, end) samples of the frames louder than BACKGROUND_MARGIN_DB over the background
    (FRAME_MS frames; the background is the 10th percentile frame level); None when the
    background lies more than 40 dB under the loudest frame (a quiet room) or the wave is
    shorter than three frames."""
    frame = max(1, round(sample_rate * FRAME_MS / 1000))
    n = wave.size // frame
    if n < 3:
        return None
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-12
    level = 20 * np.log10(rms)
    background = np.percentile(level, 10) + BACKGROUND_MARGIN_DB
    if background <= level.max() - 40.0:  # a quiet room: the peak's threshold trims it finer
        return None  # (sample-wise, trim_silence), and a word keeps its soft first and last sounds
    loud = np.flatnonzero(level >= background)
    end = wave.size if loud[-1] == n - 1 else (loud[-1] + 1) * frame  # the partial last frame
    return int(loud[0] * frame), int(end)
