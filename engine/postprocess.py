"""Post-processing of generated waveforms, in the runtime so every front end plays the same sound.

Order (each step sees the previous one's output; pure numpy + scipy, no state)::

    DC removal → trailing-silence trim → resample to the output rate → 5 ms fades → peak normalize

* DC removal subtracts the clip's mean. A DC-blocking IIR filter would leave a decaying transient
  at the start of a sub-second clip; the generator's offset is constant over the clip anyway.
* Trim: everything after the last sample above ``silence_db`` relative to the clip's peak goes,
  keeping ``trim_margin_s`` so the word's decay is not cut.
* Resampling (the paper's interpolation from the model's 22,050 Hz to the sound card's rate) is
  polyphase by default (``scipy.signal.resample_poly``: a Kaiser-windowed FIR, so no aliasing
  and no imaging); ``"linear"`` (``np.interp``) is there for the cheapest devices.
* Fades are raised-cosine ramps whose end samples are exactly 0, so playback never starts or
  stops on a step (the click a blind user hears on every key press otherwise).
* Peak normalization scales the peak to ``peak`` but never by more than ``max_gain``: a clip
  that is nearly silent stays quiet instead of becoming loud noise in someone's ear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

RESAMPLERS = ("polyphase", "linear")
_EPS = 1e-9  # amplitude below which a clip counts as digital silence


@dataclass(frozen=True)
class PostprocessOptions:
    output_rate: int | None = 48_000  # Hz; None = keep the model's rate
    resampler: str = "polyphase"  # "polyphase" | "linear"
    remove_dc: bool = True
    trim_silence: bool = True
    silence_db: float = -40.0  # dB re the clip's peak; quieter tail samples are silence
    trim_margin_s: float = 0.05  # seconds kept after the last non-silent sample
    fade_s: float = 0.005  # fade-in and fade-out length, seconds
    peak: float | None = 0.9  # target |x| max; None = no normalization
    max_gain: float = 20.0  # linear gain cap of the normalization (+26 dB)

    def __post_init__(self) -> None:
        if self.resampler not in RESAMPLERS:
            raise ValueError(f"resampler must be one of {RESAMPLERS}, got {self.resampler!r}")
        if self.output_rate is not None and self.output_rate <= 0:
            raise ValueError(f"output_rate must be positive, got {self.output_rate}")
        if self.peak is not None and not 0 < self.peak <= 1:
            raise ValueError(f"peak must be in (0, 1], got {self.peak}")


def remove_dc(x: np.ndarray) -> np.ndarray:
    """(L,) → (L,) with zero mean."""
    return x - x.mean(dtype=np.float64).astype(x.dtype)


def trim_trailing_silence(
    x: np.ndarray, rate: int, silence_db: float, margin_s: float
) -> np.ndarray:
    """(L,) → (L',) L' ≤ L: drop the tail quieter than ``silence_db`` re peak, keep a margin."""
    peak = float(np.abs(x).max(initial=0.0))
    if peak < _EPS:
        return x[:0]  # nothing but silence
    loud = np.flatnonzero(np.abs(x) > peak * 10.0 ** (silence_db / 20.0))
    end = int(loud[-1]) + 1 + round(margin_s * rate)
    return x[: min(end, len(x))]


def resample(x: np.ndarray, rate_in: int, rate_out: int, method: str = "polyphase") -> np.ndarray:
    """(L,) at rate_in → (ceil(L · rate_out / rate_in),) at rate_out."""
    if rate_in == rate_out or len(x) == 0:
        return x
    if method == "linear":
        n_out = math.ceil(len(x) * rate_out / rate_in)
        t_out = np.arange(n_out) * (rate_in / rate_out)  # output instants in input samples
        return np.interp(t_out, np.arange(len(x)), x).astype(x.dtype)
    g = math.gcd(rate_in, rate_out)  # 22,050 → 48,000 Hz: up 320, down 147
    return resample_poly(x, rate_out // g, rate_in // g).astype(x.dtype)


def fade(x: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of ``seconds`` each; first and last samples become 0."""
    n = min(round(seconds * rate), len(x) // 2)
    if n < 2:
        return x
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / (n - 1))).astype(x.dtype)  # 0 → 1
    out = x.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def normalize_peak(x: np.ndarray, peak: float, max_gain: float) -> np.ndarray:
    current = float(np.abs(x).max(initial=0.0))
    if current < _EPS:
        return x
    return x * np.float32(min(peak / current, max_gain))


def postprocess_one(x: np.ndarray, rate: int, opts: PostprocessOptions) -> np.ndarray:
    """One clip (L,) float at ``rate`` → processed float32 clip at the output rate."""
    y = np.asarray(x, dtype=np.float32)
    if opts.remove_dc:
        y = remove_dc(y)
    if opts.trim_silence:
        y = trim_trailing_silence(y, rate, opts.silence_db, opts.trim_margin_s)
    out_rate = opts.output_rate or rate
    y = resample(y, rate, out_rate, opts.resampler)
    y = fade(y, out_rate, opts.fade_s)
    if opts.peak is not None:
        y = normalize_peak(y, opts.peak, opts.max_gain)
    return np.clip(y, -1.0, 1.0)


def postprocess(
    waveforms: np.ndarray, rate: int, opts: PostprocessOptions = PostprocessOptions()
) -> np.ndarray | list[np.ndarray]:
    """(L,) → processed (L',) array; (B, L) → list of B processed clips (lengths differ)."""
    waveforms = np.asarray(waveforms)
    if waveforms.ndim == 1:
        return postprocess_one(waveforms, rate, opts)
    if waveforms.ndim != 2:
        raise ValueError(f"expected (L,) or (B, L) waveforms, got shape {waveforms.shape}")
    return [postprocess_one(row, rate, opts) for row in waveforms]


def pad_batch(clips: list[np.ndarray]) -> np.ndarray:
    """Clips of different lengths → (B, max L) float32, zero (silence) after each clip's end."""
    out = np.zeros((len(clips), max((len(c) for c in clips), default=0)), np.float32)
    for row, clip in zip(out, clips, strict=True):
        row[: len(clip)] = clip
    return out
