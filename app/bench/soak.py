"""Soak: the real `earsight live` for an hour, pressed once a second, watched from outside.

    export ALSA_CONFIG_PATH=/tmp/asound-pulse.conf
    python -m earsight.app.bench.soak --minutes 60 --press-every 1

Runs ``earsight -v live`` as a child process on a looping video of the model's shipped samples
(app/bench/e2e.py makes it), with terminal keys on a pipe: each press is one line on its stdin.
Every few seconds the child's RSS, thread count, open file descriptors and CPU time are read
from /proc; the key → first audio time of each press comes from the app's own ``-v`` line
(``PRESS_LOG`` in app/modes/live.py: the same stamps as `earsight bench --e2e`). Prints the first
window against the last (Markdown, for docs/BENCHMARKS.md) and writes the raw samples and
presses as CSV. A benchmark, not a CI test: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from earsight.app.models import DEFAULT_MODEL
from earsight.arguments import OneLineParser

SAMPLE_EVERY_S = 5.0  # /proc sampling period
READY_TIMEOUT_S = 300.0  # model load + audio start-up, on a CPU shared with training
READY_TEXT = "ready: press"  # what live prints once key input and audio work
STOP_TIMEOUT_S = 10.0  # live promises to stop within a second of SIGTERM; slack for a busy CPU
TAIL_LINES = 40  # the child's last output lines, shown if it dies
# app/modes/live.py PRESS_LOG, "press %d: key→first audio %.1f ms (%s)";
# nan = the press never sounded
PRESS_LINE_RE = re.compile(r"press (\d+): key→first audio (nan|[0-9.]+) ms")
CLOCK_TICKS_HZ = os.sysconf("SC_CLK_TCK")  # /proc/PID/stat CPU times are in these ticks


@dataclass(frozen=True)
class Sample:
    """One look at the child from outside; t_s is seconds since it said "ready"."""

    t_s: float
    rss_mb: float
    threads: int
    fds: int
    cpu_s: float  # user + system CPU time so far
    sent: int  # presses written so far


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # t_s of each press written
    answered: list[tuple[float, float]] = field(default_factory=list)  # (t_s logged, ms)
    duration_s: float = 0.0
    exit_code: int | None = None


def read_proc(pid: int) -> tuple[float, int, int, float]:
    """(RSS MB, threads, open fds, CPU s) of a live process, from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    # the command name (field 2) may hold spaces: count fields after its closing ")"
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS_HZ  # utime, stime: fields 14, 15
    rss_mb = int(status["VmRSS"].split()[0]) / 1024
    return rss_mb, int(status["Threads"]), fds, cpu_s


def parse_press(line: str) -> float | None:
    """The key → first audio ms of a live ``-v`` press line (nan: never sounded), else None."""
    match = PRESS_LINE_RE.search(line)
    return None if match is None else float(match.group(2))


class ChildOutput:
    """Drains the child's stdout on a thread (a full pipe would stall the app under test) into
    ``log`` (all of it, for what the table cannot say: underflows, errors) and ``soak``."""

    def __init__(self, proc: subprocess.Popen, soak: Soak, log: TextIO) -> None:
        self.ready = threading.Event()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.t0 = math.inf  # monotonic time of "ready"; press lines are stamped against it
        self._proc, self._soak, self._log = proc, soak, log
        self._thread = threading.Thread(target=self._run, name="soak-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.tail.append(line.rstrip())
            self._log.write(line)
            if not self.ready.is_set() and READY_TEXT in line:
                self.t0 = time.monotonic()
                self.ready.set()
            elif (ms := parse_press(line)) is not None:
                self._soak.answered.append((time.monotonic() - self.t0, ms))

    def join(self) -> None:
        self._thread.join(STOP_TIMEOUT_S)


def live_command(model: str, video: Path, threads: int | None) -> list[str]:
    earsight = str(Path(sys.executable).with_name("earsight"))  # the installed CLI, as users run it
    cmd = [earsight, "-v", "live", "--model", model, "--source", str(video), "--loop"]
    cmd += ["--keys", "terminal", "--no-speech"]  # only the press path is timed, no status
    return cmd + (["--threads", str(threads)] if threads else [])


def drive(
    proc: subprocess.Popen,
    out: ChildOutput,
    soak: Soak,
    minutes: float,
    every_s: float,
    sample_s: float,
) -> None:
    """Press every ``every_s`` and sample every ``sample_s`` for ``minutes``, or until it dies."""
    assert proc.stdin is not None
    end_s = minutes * 60
    next_press = next_sample = 0.0
    while (now := time.monotonic() - out.t0) < end_s and proc.poll() is None:
        if now >= next_press:
            proc.stdin.write("\n")  # pipe mode: an empty line is Enter = describe
            proc.stdin.flush()
            soak.sent_at.append(now)
            next_press += every_s
        if now >= next_sample:
            try:
                soak.samples.append(Sample(now, *read_proc(proc.pid), sent=len(soak.sent_at)))
            except (FileNotFoundError, ProcessLookupError):  # it exited since poll()
                break
            next_sample += sample_s
        time.sleep(max(0.0, min(next_press, next_sample) - (time.monotonic() - out.t0)))
    soak.duration_s = min(end_s, time.monotonic() - out.t0)


def run_soak(
    model: str,
    minutes: float,
    every_s: float,
    sample_s: float,
    threads: int | None,
    log_path: Path,
) -> tuple[Soak, list[str]]:
    from earsight.app.bench.e2e import sample_images, sample_video

    soak = Soak()
    with tempfile.TemporaryDirectory() as tmp, log_path.open("w") as log:
        video = sample_video(Path(tmp), sample_images(model))
        env = {**os.environ, "EARSIGHT_CONFIG": str(Path(tmp) / "none.toml")}  # no user config
        proc = subprocess.Popen(
            live_command(model, video, threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        out = ChildOutput(proc, soak, log)
        try:
            if out.ready.wait(READY_TIMEOUT_S):
                time.sleep(1.0)  # let the newest press line of the warm-up settle
                drive(proc, out, soak, minutes, every_s, sample_s)
                time.sleep(1.0)  # the last press's line is logged within a main-loop tick
            proc.send_signal(signal.SIGTERM)
            soak.exit_code = proc.wait(STOP_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.join()
    return soak, list(out.tail)


@dataclass(frozen=True)
class Window:
    """One stretch of the soak: resources as sampled from outside, latency as the app logged."""

    name: str
    rss_mb: float  # median of the samples
    rss_max_mb: float
    threads: int  # the most seen
    fds: int  # the most seen
    cpu_pct: float  # CPU time over wall time, % of one core
    p50_ms: float
    p99_ms: float
    answered: int  # presses that sounded
    sent: int


def window(soak: Soak, name: str, lo_s: float, hi_s: float) -> Window:
    """Figures of the samples and presses in [lo_s, hi_s); ±inf bounds take the run's edges."""
    samples = [s for s in soak.samples if lo_s <= s.t_s < hi_s]
    # a press line is logged within one main-loop tick of its first buffer; classify it by its
    # key time (logged time less its latency) so a press lands in the window it was sent in
    ms = np.array([m for t, m in soak.answered if lo_s <= t - m / 1e3 < hi_s and not math.isnan(m)])
    rss = np.array([s.rss_mb for s in samples])
    span_s = samples[-1].t_s - samples[0].t_s if len(samples) > 1 else 0.0
    cpu = (samples[-1].cpu_s - samples[0].cpu_s) / span_s * 100 if span_s else math.nan
    return Window(
        name=name,
        rss_mb=float(np.median(rss)) if len(rss) else math.nan,
        rss_max_mb=float(rss.max()) if len(rss) else math.nan,
        threads=max((s.threads for s in samples), default=0),
        fds=max((s.fds for s in samples), default=0),
        cpu_pct=cpu,
        p50_ms=float(np.percentile(ms, 50)) if len(ms) else math.nan,
        p99_ms=float(np.percentile(ms, 99)) if len(ms) else math.nan,
        answered=len(ms),
        sent=sum(lo_s <= t < hi_s for t in soak.sent_at),
    )


def first_and_last(soak: Soak, window_s: float) -> tuple[Window, Window]:
    minutes = f"{window_s / 60:g} min"
    first = window(soak, f"first {minutes}", -math.inf, window_s)
    last = window(soak, f"last {minutes}", soak.duration_s - window_s, math.inf)
    return first, last


def rss_trend_mb_per_h(soak: Soak, after_s: float) -> float:
    """Least-squares slope of RSS after the warm-up window (start-up growth is not a leak)."""
    points = [(s.t_s, s.rss_mb) for s in soak.samples if s.t_s >= after_s]
    if len(points) < 3:
        return math.nan
    t, rss = np.array(points).T
    return float(np.polyfit(t / 3600, rss, 1)[0])


def format_windows(first: Window, last: Window) -> str:
    """Markdown: the two windows and the change, as pasted into docs/BENCHMARKS.md."""
    head = (
        "| window | RSS MB (median) | RSS MB (max) | threads | open fds | CPU % of a core "
        "| key→first audio p50 ms | key→first audio p99 ms | presses answered |"
    )
    lines = [head, "|" + "---|" * 9]
    for w in (first, last):
        lines.append(
            f"| {w.name} | {w.rss_mb:.1f} | {w.rss_max_mb:.1f} | {w.threads} | {w.fds} "
            f"| {w.cpu_pct:.1f} | {w.p50_ms:.1f} | {w.p99_ms:.1f} | {w.answered}/{w.sent} |"
        )
    lines.append(
        f"| change | {last.rss_mb - first.rss_mb:+.1f} | {last.rss_max_mb - first.rss_max_mb:+.1f}"
        f" | {last.threads - first.threads:+d} | {last.fds - first.fds:+d}"
        f" | {last.cpu_pct - first.cpu_pct:+.1f} | {last.p50_ms - first.p50_ms:+.1f}"
        f" | {last.p99_ms - first.p99_ms:+.1f} | |"
    )
    return "\n".join(lines)


def write_csv(soak: Soak, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    samples, presses = out_dir / "samples.csv", out_dir / "presses.csv"
    with samples.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "rss_mb", "threads", "fds", "cpu_s", "presses_sent"])
        for s in soak.samples:
            writer.writerow([f"{s.t_s:.2f}", f"{s.rss_mb:.2f}", s.threads, s.fds, s.cpu_s, s.sent])
    with presses.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_logged_s", "key_to_first_audio_ms"])
        writer.writerows([f"{t:.3f}", m] for t, m in soak.answered)
    return samples, presses


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m earsight.app.bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="how long to press (default 60)")
    p.add_argument("--press-every", type=float, default=1.0, help="seconds between presses")
    p.add_argument("--window-min", type=float, default=10.0, help="first/last window, minutes")
    p.add_argument("--sample-every", type=float, default=SAMPLE_EVERY_S, help="seconds")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=None, help="live --threads (default: live's)")
    p.add_argument("--out", type=Path, default=Path("runs/soak"), help="CSV folder")
    args = p.parse_args(argv)
    if not 0 < 2 * args.window_min <= args.minutes:
        p.error("--window-min must be positive and at most half of --minutes")
    if args.press_every <= 0 or args.sample_every <= 0:
        p.error("--press-every and --sample-every must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 if live died, stopped early, or a press went unanswered."""
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "live.log"
    soak, tail = run_soak(
        args.model, args.minutes, args.press_every, args.sample_every, args.threads, log_path
    )
    samples_csv, presses_csv = write_csv(soak, args.out)
    print(
        f"soak of `earsight live --model {args.model}`, started {started}, "
        f"{soak.duration_s / 60:.1f} of {args.minutes:g} min, load average "
        f"{os.getloadavg()[0]:.2f}, exit code {soak.exit_code}"
    )
    if not soak.samples:
        print("live never said ready; its last lines:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    first, last = first_and_last(soak, args.window_min * 60)
    print(format_windows(first, last))
    trend = rss_trend_mb_per_h(soak, args.window_min * 60)
    print(f"RSS trend after the first window: {trend:+.2f} MB/h (least squares)")
    answered = sum(not math.isnan(m) for _, m in soak.answered)
    silent = sum(math.isnan(m) for _, m in soak.answered)  # served, but no first buffer
    print(f"presses answered: {answered}/{len(soak.sent_at)}, served but never sounded: {silent}")
    print(f"raw: {samples_csv}, {presses_csv}; live's output: {log_path}")
    early = soak.duration_s < args.minutes * 60 - args.press_every
    if early or soak.exit_code != 0:
        print("live stopped early or failed; its last lines:\n" + "\n".join(tail), file=sys.stderr)
    return 1 if early or soak.exit_code != 0 or answered < len(soak.sent_at) else 0


if __name__ == "__main__":
    raise SystemExit(main())
