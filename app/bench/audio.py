"""How long a sound waits for the audio device, with the CPU busy (as right after a key press).

    export ALSA_CONFIG_PATH=/tmp/asound-pulse.conf
    python -m earsight.app.bench.audio --latency low high 0.03

For each suggested output latency: open ``AudioOut`` and wait until it flows (as the live app
does before "ready"; the time this took is the "start ms" column), keep every core busy in other
processes (inference does that while the click plays), play a 0.5 s tone every 0.1–0.5 s, and
time ``play()`` → the callback handing over the tone's first buffer. Prints one row per setting
with the p50, how many waited > 100 ms, the three slowest and the underflows the stream
reported (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from earsight.app.sound.audio import AudioOptions, open_audio
from earsight.arguments import OneLineParser

RATE_HZ = 48_000
TONE_S = 0.5
WAIT_S = 5.0  # a sound not started by then counts as this long
LATE_MS = 100.0  # a wait a listener notices after the click


def _burn(stop: mp.synchronize.Event) -> None:
    a = np.random.default_rng(0).random((400, 400))
    while not stop.is_set():
        a @ a


def probe(latency: str | float, sounds: int) -> dict:
    """Waits (ms) from play() to the first buffer, for ``sounds`` tones on a busy CPU."""
    tone = (0.3 * np.sin(np.arange(int(TONE_S * RATE_HZ)) * 0.1)).astype(np.float32)
    starts: list[float] = []
    opened = time.perf_counter()
    audio = open_audio(AudioOptions(sample_rate=RATE_HZ, latency=latency), Path(tempfile.mkdtemp()))
    audio.wait_until_flowing()  # as the live app does before it says "ready"
    start_ms = (time.perf_counter() - opened) * 1e3
    audio.on_first_buffer = starts.append
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(os.cpu_count() or 1)]
    for p in burners:
        p.start()
    waits = []
    try:
        for i in range(sounds):
            n, t = len(starts), time.perf_counter()
            audio.play(tone, RATE_HZ, "tone")
            while len(starts) == n and time.perf_counter() - t < WAIT_S:
                time.sleep(0.0005)
            waits.append((starts[-1] - t if len(starts) > n else WAIT_S) * 1e3)
            time.sleep(0.1 + 0.2 * (i % 3))
    finally:
        stop.set()
        for p in burners:
            p.join()
        audio.close()
    underflows = getattr(audio, "underflows", 0)
    return {"latency": latency, "start_ms": start_ms, "waits_ms": waits, "underflows": underflows}


def _latency(text: str) -> str | float:
    if text in ("low", "high"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 2.0:
        raise argparse.ArgumentTypeError(f"expected low, high or seconds in (0, 2], got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earsight.app.bench.audio", description=__doc__)
    parser.add_argument(
        "--latency", nargs="+", type=_latency, default=["low", "high"], help="low|high|seconds"
    )
    parser.add_argument("--sounds", type=_count, default=50)
    args = parser.parse_args(argv)
    print("latency  start ms  sounds  p50 ms  waits > 100 ms  3 slowest ms           underflows")
    for latency in args.latency:
        text = str(latency)
        row = probe(latency, args.sounds)
        waits = np.asarray(row["waits_ms"])
        slow = " / ".join(f"{w:,.0f}" for w in np.sort(waits)[-3:])
        late = int((waits > LATE_MS).sum())
        print(
            f"{text:<8} {row['start_ms']:8,.0f}  {len(waits):6d}  {np.median(waits):6.1f}  "
            f"{late:14d}  {slow:<22} "
            f"{row['underflows']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
