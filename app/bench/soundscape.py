"""Soundscape encoding time against a word inference, in one run (the issue's rule: speed lives in
benchmarks, with a peer measured beside it, not in timed tests).

    python -m earsight.app.bench.soundscape [--repeats 50] [--model NAME]

Rows: `app/sound/soundscape.py`'s encode of a 64 × 64 grey image and of a 640 × 480 colour
camera frame (the bank built first, as live's warm-up does), and the peer: one word of the model
live runs (the runtime's call on one frame at its input size, post-processing included). The
ratio says what a soundscape press costs next to a word press on the same machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from earsight.app.models import DEFAULT_MODEL
from earsight.tables import aligned

REPEATS = 50


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # first call: arenas, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def measure(repeats: int = REPEATS, model: str = DEFAULT_MODEL) -> list[tuple[str, float]]:
    """(row, median ms) for the two soundscape sizes and the word peer."""
    from earsight.app.models import resolve_model
    from earsight.app.sound.soundscape import encode, warm_up
    from earsight.engine.runtime import load

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (64, 64), np.uint8)
    camera = rng.integers(0, 256, (480, 640, 3), np.uint8)
    warm_up()
    rows = [
        ("soundscape, 64 × 64 grey", _median_ms(lambda: encode(grey), repeats)),
        ("soundscape, 640 × 480 colour", _median_ms(lambda: encode(camera), repeats)),
    ]
    with load(resolve_model(model)) as runtime:
        frame = rng.integers(0, 256, runtime.info.input_shape, np.uint8)
        name = f"word: {runtime.info.model.name} on {runtime.info.backend} (peer)"
        rows.append((name, _median_ms(lambda: runtime(frame), repeats)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    rows = measure(args.repeats, args.model)
    peer = rows[-1][1]
    table = [(name, f"{ms:.2f}", f"{ms / peer:.2f}") for name, ms in rows]
    for line in aligned(("what", "median ms", "× word"), table):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
