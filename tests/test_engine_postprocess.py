"""Post-processing: DC removal, trailing-silence trim, resampling, click-free fades, peak."""

from __future__ import annotations

import numpy as np
import pytest

from earsight.engine.postprocess import (
    PostprocessOptions,
    fade,
    pad_batch,
    postprocess,
    remove_dc,
    resample,
    trim_trailing_silence,
)

RATE = 22_050
OUT = 48_000


def _word(seconds_on: float = 0.3, seconds_off: float = 0.4, dc: float = 0.0) -> np.ndarray:
    """A 440 Hz 'word' at 0.5 then near-silence (-70 dB noise), plus an optional DC offset."""
    t = np.arange(round(seconds_on * RATE)) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    noise = 1.6e-4 * np.random.default_rng(0).standard_normal(round(seconds_off * RATE))
    return (np.concatenate([tone, noise]) + dc).astype(np.float32)


def test_dc_is_removed():
    x = _word(dc=0.3)
    assert abs(remove_dc(x).mean()) < 1e-6
    y = postprocess(x, RATE, PostprocessOptions(trim_silence=False, peak=None, output_rate=None))
    assert abs(float(y.mean())) < 2e-3 and abs(float(np.median(y[-2000:-300]))) < 1e-3


def test_fades_start_and_end_at_zero_without_a_step():
    x = np.full(RATE, 0.8, np.float32)  # worst case: full-scale DC would click at both edges
    y = fade(x, RATE, 0.005)
    n = round(0.005 * RATE)
    assert y[0] == 0 and y[-1] == 0
    assert np.abs(np.diff(y)).max() < 0.8 * 2 / n  # smooth ramp: no sample-to-sample jump
    assert np.all(np.diff(y[:n]) >= 0) and np.all(y[n:-n] == np.float32(0.8))
    clip = postprocess(_word(dc=0.2), RATE)  # the whole chain, output at 48 kHz
    assert abs(clip[0]) < 1e-6 and abs(clip[-1]) < 1e-6
    assert np.abs(np.diff(clip[:10])).max() < 0.02 and np.abs(np.diff(clip[-10:])).max() < 0.02


def test_trailing_silence_is_trimmed_with_a_margin():
    x = _word(seconds_on=0.3, seconds_off=0.4)
    y = trim_trailing_silence(x, RATE, silence_db=-40, margin_s=0.05)
    assert abs(len(y) - round(0.35 * RATE)) <= 2  # 0.3 s word + 50 ms margin kept
    assert trim_trailing_silence(np.zeros(100, np.float32), RATE, -40, 0.05).size == 0
    opts = PostprocessOptions(trim_silence=False)
    assert len(postprocess(x, RATE, opts)) > len(postprocess(x, RATE))


def test_peak_is_normalized_and_gain_is_capped():
    y = postprocess(_word(), RATE)
    assert abs(np.abs(y).max() - 0.9) < 1e-3
    quiet = (_word() * 1e-3).astype(np.float32)  # 60 dB down: normalizing would amplify 1000×
    y = postprocess(quiet, RATE, PostprocessOptions(max_gain=20.0))
    assert np.abs(y).max() == pytest.approx(20 * np.abs(remove_dc(quiet)).max(), rel=0.05)


@pytest.mark.parametrize("method", ["polyphase", "linear"])
def test_resampled_length_follows_the_rate_ratio(method):
    x = _word()
    y = resample(x, RATE, OUT, method)
    assert abs(len(y) - len(x) * OUT / RATE) <= 1 and y.dtype == np.float32
    opts = PostprocessOptions(resampler=method, trim_silence=False)
    assert abs(len(postprocess(x, RATE, opts)) - len(x) * OUT / RATE) <= 1
    f = np.abs(np.fft.rfft(y[: OUT // 4]))  # the tone is still at 440 Hz after resampling
    assert abs(np.argmax(f) * OUT / (OUT // 4) - 440) <= 4


def test_batches_give_clips_and_padding_is_silence():
    batch = np.stack([_word(0.2, 0.5), _word(0.4, 0.3)])
    clips = postprocess(batch, RATE)
    assert isinstance(clips, list) and len(clips[0]) < len(clips[1])
    padded = pad_batch(clips)
    assert padded.shape == (2, len(clips[1])) and np.all(padded[0, len(clips[0]) :] == 0)
    with pytest.raises(ValueError, match="expected"):
        postprocess(np.zeros((1, 2, 3)), RATE)


def test_options_are_validated():
    with pytest.raises(ValueError, match="resampler"):
        PostprocessOptions(resampler="cubic")
    with pytest.raises(ValueError, match="peak"):
        PostprocessOptions(peak=1.5)
