"""Earcons: short synthetic sounds that tell the user what happened without words.

    out.play(capture_click(48_000), 48_000)

Each function returns a float32 mono array at ``rate``, faded in and out (raised cosine, end
samples exactly 0, so no click of its own) with a peak of at most ``PEAK`` — below the spoken
words (0.9 after post-processing) so a cue never startles. Sounds are deterministic (no noise),
so they are recognizable press after press.

========================  ==========  ==================================================
sound                     duration    what it is
========================  ==========  ==================================================
``capture_click``         15 ms       2 kHz sine, exponential decay: "frame taken"
``not_sure_tone``         200 ms      660 Hz then 440 Hz (falling fifth): "not sure"
``error_tone``            360 ms      two low 220 Hz beeps with a square-ish timbre
``ready_chime``           360 ms      C5–E5–G5 rising arpeggio: "ready"
========================  ==========  ==================================================
"""

from __future__ import annotations

import numpy as np

from earsight.engine.postprocess import fade

DEFAULT_RATE_HZ = 48_000
PEAK = 0.5  # maximum |sample| of every earcon
FADE_S = 0.005  # raised-cosine fade-in/out at both ends of every earcon

CLICK_S = 0.015
CLICK_HZ = 2_000.0
CLICK_DECAY_S = 0.004  # e-folding time: soft, a tick rather than a beep
CLICK_PEAK = 0.3  # quieter than the others: it sounds on every press

NOT_SURE_HZ = (660.0, 440.0)  # falling: the intonation of a doubt
NOT_SURE_NOTE_S = 0.1  # per note

ERROR_HZ = 220.0
ERROR_BEEP_S = 0.12
ERROR_GAP_S = 0.12
ERROR_HARMONICS = (1.0, 0.0, 1 / 3, 0.0, 1 / 5)  # odd harmonics: harsher than the other cues

READY_HZ = (523.25, 659.25, 783.99)  # C5, E5, G5
READY_NOTE_S = 0.12  # onset spacing; each note rings until the end of the chime
READY_DECAY_S = 0.08


def _t(seconds: float, rate: int) -> np.ndarray:
    return np.arange(round(seconds * rate)) / rate


def _finish(x: np.ndarray, rate: int, peak: float = PEAK) -> np.ndarray:
    """Scale to ``peak``, fade both ends, float32."""
    x = np.asarray(x, dtype=np.float64)
    top = np.abs(x).max(initial=0.0)
    if top > 0:
        x = x * (peak / top)
    return fade(x.astype(np.float32), rate, FADE_S)


def _note(
    hz: float, seconds: float, rate: int, harmonics: tuple[float, ...] = (1.0,)
) -> np.ndarray:
    t = _t(seconds, rate)
    tone = sum(a * np.sin(2 * np.pi * hz * (k + 1) * t) for k, a in enumerate(harmonics) if a)
    return fade(np.asarray(tone, dtype=np.float32), rate, FADE_S)  # each note fades: no seams


def capture_click(rate: int = DEFAULT_RATE_HZ) -> np.ndarray:
    """~15 ms soft tick: the frame was taken (the word follows)."""
    t = _t(CLICK_S, rate)
    x = np.sin(2 * np.pi * CLICK_HZ * t) * np.exp(-t / CLICK_DECAY_S)
    # a 1 ms fade: the click is 15 ms long, a 5 ms ramp would swallow its attack
    x = x / np.abs(x).max() * CLICK_PEAK
    return fade(x.astype(np.float32), rate, 0.001)


def not_sure_tone(rate: int = DEFAULT_RATE_HZ) -> np.ndarray:
    """~200 ms falling two-tone: the model is not confident."""
    return _finish(np.concatenate([_note(hz, NOT_SURE_NOTE_S, rate) for hz in NOT_SURE_HZ]), rate)


def error_tone(rate: int = DEFAULT_RATE_HZ) -> np.ndarray:
    """Two low buzzy beeps (~360 ms): something went wrong; the printed line says what."""
    beep = _note(ERROR_HZ, ERROR_BEEP_S, rate, ERROR_HARMONICS)
    gap = np.zeros(round(ERROR_GAP_S * rate), np.float32)
    return _finish(np.concatenate([beep, gap, beep]), rate)


def ready_chime(rate: int = DEFAULT_RATE_HZ) -> np.ndarray:
    """Rising major arpeggio (~360 ms): the app is ready for a key press."""
    total = READY_NOTE_S * len(READY_HZ)
    t = _t(total, rate)
    x = np.zeros_like(t)
    for i, hz in enumerate(READY_HZ):
        start = i * READY_NOTE_S
        local = np.clip(t - start, 0.0, None)
        ring = np.sin(2 * np.pi * hz * local) * np.exp(-local / READY_DECAY_S)
        x += np.where(t >= start, ring, 0.0)
    return _finish(x, rate)


EARCONS = {
    "capture": capture_click,
    "not-sure": not_sure_tone,
    "error": error_tone,
    "ready": ready_chime,
}
