"""app.sound.soundscape: the vOICe encoding (columns → time, rows → pitch, brightness →
loudness)."""

from __future__ import annotations

import numpy as np
import pytest

from earsight.app.sound.soundscape import (
    PEAK,
    SoundscapeOptions,
    brightness,
    duration_s,
    encode,
)

OPTS = SoundscapeOptions()
RATE = OPTS.sample_rate
HOP = OPTS.column_samples  # samples per column


def peak_hz(x: np.ndarray) -> float:
    """Frequency of the strongest FFT bin, zero-padded to 1 Hz bins."""
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x)), RATE))))


def energy(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64)))


def test_length_is_about_the_vOICe_scan_and_a_black_image_is_silent():
    wave = encode(np.zeros((64, 64), np.uint8))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) / RATE == pytest.approx(1.05, abs=0.01) == duration_s()
    assert not wave.any()


def test_a_bright_top_left_pixel_is_a_5_khz_blip_at_the_start_only():
    image = np.zeros((64, 64), np.uint8)
    image[0, 0] = 255
    wave = encode(image)
    first = wave[:HOP]  # the first 1/64 of the scan
    assert peak_hz(first) == pytest.approx(5_000, abs=30)
    assert np.abs(wave).max() == pytest.approx(PEAK, rel=1e-3)
    crossfade = HOP + 2 * OPTS.overlap  # column 0 fades into column 1's slot over 3 ms
    assert not wave[crossfade:].any()  # after that: nothing at all
    assert energy(wave[HOP:crossfade]) < 0.15 * energy(first)


def test_a_bright_bottom_row_is_a_steady_500_hz_tone_throughout():
    image = np.zeros((64, 64), np.uint8)
    image[-1, :] = 255
    wave = encode(image)
    segments = np.array_split(wave[HOP:-HOP], 8)
    assert all(peak_hz(s) == pytest.approx(500, abs=15) for s in segments)
    energies = [energy(s) / len(s) for s in segments]
    assert max(energies) < 1.05 * min(energies)  # no dips at column boundaries


def test_rows_map_exponentially_from_5000_hz_at_the_top_to_500_hz_at_the_bottom():
    f = OPTS.frequencies()
    assert len(f) == OPTS.rows == 64
    assert f[0] == pytest.approx(5_000) and f[-1] == pytest.approx(500)
    assert np.allclose(f[1:] / f[:-1], (500 / 5_000) ** (1 / 63))  # equal musical steps
    middle = np.zeros((64, 64), np.uint8)
    middle[32, 10] = 255
    wave = encode(middle)
    assert peak_hz(wave[10 * HOP : 11 * HOP]) == pytest.approx(f[32], abs=30)


def test_columns_scan_left_to_right_and_brightness_sets_loudness():
    image = np.zeros((64, 64), np.uint8)
    image[40, 16] = 255  # a quarter of the way across
    image[40, 48] = 64  # three quarters across, a quarter as bright
    wave = encode(image)
    bright, dim = wave[16 * HOP : 17 * HOP], wave[48 * HOP : 49 * HOP]
    assert np.abs(bright).max() == pytest.approx(PEAK, rel=0.01)
    assert np.abs(dim).max() / np.abs(bright).max() == pytest.approx(64 / 255, rel=0.02)
    assert not wave[20 * HOP : 47 * HOP].any()


def test_no_clicks_at_column_boundaries_or_the_ends():
    image = np.zeros((64, 64), np.uint8)
    image[:, ::2] = 255  # every other column on: 64 switches of every row
    wave = encode(image)
    assert abs(wave[0]) < 1e-3 and abs(wave[-1]) < 1e-3
    single = np.zeros((64, 64), np.uint8)
    single[-1, 10] = 255  # a lone 500 Hz column: a hard on/off would be a 0.5 step
    steps = np.abs(np.diff(encode(single)))
    slope = PEAK * 2 * np.pi * 500 / RATE  # the steepest a 500 Hz sine at PEAK can be
    assert steps.max() < 1.2 * slope


def test_peak_is_half_scale_and_dim_sparse_images_stay_quiet():
    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 256, (64, 64), np.uint8), np.full((64, 64), 255, np.uint8)):
        assert np.abs(encode(image)).max() == pytest.approx(PEAK, rel=1e-4)
    dim = np.zeros((64, 64), np.uint8)
    dim[5, 5] = 51  # one pixel at 20 %: not amplified into a loud tone
    assert np.abs(encode(dim)).max() == pytest.approx(PEAK * 0.2, rel=0.01)


def test_any_image_size_and_colour_layout():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (480, 640), np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.zeros_like(grey)[..., None]], axis=2)
    expected = encode(grey)
    assert np.allclose(encode(rgb), expected, atol=1e-5)
    assert np.allclose(encode(rgba), expected, atol=1e-5)  # alpha ignored
    assert len(encode(rng.integers(0, 256, (8, 8, 1), np.uint8))) == len(expected)  # upsampled
    cells = brightness(np.arange(128 * 128, dtype=np.float32).reshape(128, 128) / 128**2, 64, 64)
    assert cells.shape == (64, 64)
    with pytest.raises(ValueError):
        encode(np.zeros((4,), np.uint8))


def test_options_are_checked():
    with pytest.raises(ValueError):
        SoundscapeOptions(f_high_hz=30_000)
    with pytest.raises(ValueError):
        SoundscapeOptions(f_low_hz=6_000)
    short = SoundscapeOptions(columns=16, duration_s=0.5, sample_rate=22_050)
    assert len(encode(np.full((64, 64), 200, np.uint8), short)) == short.length


def test_the_soundscape_bench_prints_both_sizes_and_the_word_peer():
    # its speed is a benchmark (docs/BENCHMARKS.md), not a timed test: this checks the command
    from earsight.app.bench.soundscape import measure

    rows = measure(repeats=2, model="mnist-ad")
    assert [name.split(",")[0] for name, _ in rows[:2]] == ["soundscape", "soundscape"]
    assert rows[2][0].startswith("word: mnist-ad") and all(ms > 0 for _, ms in rows)
