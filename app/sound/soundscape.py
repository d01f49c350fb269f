"""The vOICe soundscape of "Listen to the Image" (Hu et al., CVPR 2019; Meijer 1992).

    wave = encode(frame)  # (H, W) or (H, W, C) uint8 → float32 mono, ~1.05 s at 48 kHz

The image is reduced to ``rows × columns`` grey levels and scanned left to right over
``duration_s``. While a column is "under the scan line", each of its pixels is a sinusoid: the
row sets the pitch (top row highest, exponentially spaced between ``f_low_hz`` and ``f_high_hz``,
so equal steps up the image are equal musical intervals) and the brightness the amplitude.
Time is horizontal position, pitch is height, loudness is brightness.

64 rows: the vOICe's own 64 × 64 resolution. 64 partials over 500–5000 Hz (3.3 octaves) are
about 0.6 semitone apart, near the limit at which pitches in a dense chord can still be told
apart by ear; more rows would cost time without adding anything a listener can resolve.

Implementation: each row's sinusoid runs with a continuous phase through the whole clip (no
phase jumps between columns), and a column's loudness fades into the next one's over
``crossfade_s`` with raised-cosine ramps that sum to 1 (no clicks, no level dip). The sinusoid
bank is computed once per options and cached; ``encode`` is then a batched matrix product and
an overlap-add (on a 2-core CPU about 1 ms for a 64 × 64 image, 5 ms for a 640 × 480 colour
frame). Row phases follow Schroeder's formula, which keeps the peak of a bright column (all 64
partials) low compared with all-zero phases.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PEAK = 0.5  # |sample| of the loudest soundscape; below the words so a scan never startles


@dataclass(frozen=True)
class SoundscapeOptions:
    columns: int = 64  # horizontal resolution: one time slot per column
    rows: int = 64  # vertical resolution: one sinusoid per row
    duration_s: float = 1.05  # one left-to-right scan
    f_low_hz: float = 500.0  # bottom row
    f_high_hz: float = 5_000.0  # top row
    sample_rate: int = 48_000
    crossfade_s: float = 0.003  # column-to-column loudness ramp (also the clip's fade in/out)
    # Gain cap: a single full-bright pixel (raw peak 1.0) plays at PEAK; sparser or dimmer
    # images stay quieter instead of being amplified into loud noise.
    max_gain: float = PEAK

    def __post_init__(self) -> None:
        if self.columns < 1 or self.rows < 1:
            raise ValueError(f"need at least 1 row and column, got {self.rows}×{self.columns}")
        if not 0 < self.f_low_hz < self.f_high_hz < self.sample_rate / 2:
            raise ValueError(
                f"need 0 < f_low_hz < f_high_hz < sample_rate/2, got {self.f_low_hz}, "
                f"{self.f_high_hz}, {self.sample_rate}"
            )
        if not 2 * self.overlap < self.column_samples:
            raise ValueError("crossfade_s must be shorter than half a column")

    @property
    def column_samples(self) -> int:
        """Samples per column (the scan's hop)."""
        return max(1, round(self.duration_s * self.sample_rate / self.columns))

    @property
    def overlap(self) -> int:
        """Half the crossfade, in samples: a column's sound starts this early and ends this late."""
        return round(self.crossfade_s * self.sample_rate / 2)

    @property
    def length(self) -> int:
        """Samples in one soundscape: the columns plus the fade-in and fade-out halves."""
        return self.columns * self.column_samples + 2 * self.overlap

    def frequencies(self) -> np.ndarray:
        """(rows,) Hz, top row first: f_high · (f_low/f_high)^(r/(rows−1))."""
        steps = np.arange(self.rows) / max(1, self.rows - 1)
        return self.f_high_hz * (self.f_low_hz / self.f_high_hz) ** steps


DEFAULT_OPTIONS = SoundscapeOptions()


def brightness(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """(H, W) or (H, W, C) image → (rows, columns) float32 brightness in [0, 1].

    Each cell is the mean of the pixels it covers (area averaging: no aliasing, and a thin
    bright line still counts). Colour is the mean of the colour channels (alpha dropped): camera
    frames arrive as BGR or RGB depending on the source, and a mean cannot get the order wrong.
    uint8 images are scaled by 1/255; float images are taken as already in [0, 1].
    """
    x = np.asarray(image)
    if x.ndim == 3:
        x = x[..., : min(3, x.shape[2])]
    if x.ndim not in (2, 3) or x.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {x.shape}")
    # shrink first (exact sums in float32), then convert: 64×64 cells, not 640×480 pixels
    cells = _bin_means(_bin_means(x, rows, 0), columns, 1)
    if cells.ndim == 3:
        cells = cells.mean(axis=2)
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    return np.clip(cells * scale, 0.0, 1.0).astype(np.float32)


def _bin_means(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Area-average ``x`` along ``axis`` into ``n`` bins (nearest neighbour when upsampling)."""
    size = x.shape[axis]
    edges = (np.arange(n) * size) // n
    sums = np.add.reduceat(x, edges, axis=axis, dtype=np.float32)
    counts = np.diff(np.append(edges, size)).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n
    return sums / np.maximum(counts, 1).reshape(shape)  # reduceat gives one element for 0-wide


@functools.lru_cache(maxsize=4)
def _bank(opts: SoundscapeOptions) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows, n+2h) sinusoid frames, (n+2h,) window; n = hop, h = overlap.

    Frame c holds every row's sinusoid over column c's span plus h samples either side, all
    read from one continuous-phase sinusoid per row.
    """
    n, h, c, r = opts.column_samples, opts.overlap, opts.columns, opts.rows
    t = np.arange(opts.length) / opts.sample_rate
    phases = np.pi * np.arange(r) ** 2 / r  # Schroeder: low crest factor
    waves = np.sin(2 * np.pi * opts.frequencies()[:, None] * t + phases[:, None]).astype(np.float32)
    starts = np.arange(c) * n
    frames = np.stack([waves[:, s : s + n + 2 * h] for s in starts])  # (c, r, n + 2h)
    window = np.ones(n + 2 * h, np.float32)
    if h:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(2 * h) + 0.5) / (2 * h))  # 0 → 1
        window[: 2 * h] = ramp
        window[-2 * h :] = ramp[::-1]  # overlapping ramps sum to exactly 1
    frames.setflags(write=False)
    window.setflags(write=False)
    return frames, window


def _overlap_add(frames: np.ndarray, hop: int, length: int) -> np.ndarray:
    """(c, hop + 2h) windowed frames, frame k starting at k·hop → (length,) signal."""
    c, width = frames.shape
    overlap = width - hop  # 2h: frame k's tail lies on frame k+1's head
    out = np.zeros(length, np.float32)
    body = out[: c * hop].reshape(c, hop)  # a view: adding to it writes into out
    body += frames[:, :hop]
    body[1:, :overlap] += frames[:-1, hop:]
    out[c * hop :] += frames[-1, hop:]
    return out


def encode(image: np.ndarray, options: SoundscapeOptions = DEFAULT_OPTIONS) -> np.ndarray:
    """The soundscape of ``image``: float32 mono at ``options.sample_rate``, peak ≤ ``PEAK``.

    A black image gives silence (all zeros) of the same length.
    """
    cells = brightness(image, options.rows, options.columns)  # (rows, columns)
    frames, window = _bank(options)
    # column c's sound: Σ_rows cells[row, c] · sinusoid[row] over its span
    mixed = np.matmul(cells.T[:, None, :], frames)[:, 0, :] * window  # (c, n + 2h)
    out = _overlap_add(mixed, options.column_samples, options.length)
    peak = float(np.abs(out).max(initial=0.0))
    if peak > 0:
        out *= min(PEAK / peak, options.max_gain)
    return out


def duration_s(options: SoundscapeOptions = DEFAULT_OPTIONS) -> float:
    return options.length / options.sample_rate


def warm_up(options: SoundscapeOptions = DEFAULT_OPTIONS) -> None:
    """Build the sinusoid bank now (~0.2 s, 16 MB): the first soundscape press is then fast."""
    encode(np.zeros((1, 1), np.uint8), options)
