"""The soak bench's own logic: the line it reads from live, and its first/last windows."""

from __future__ import annotations

import math

import pytest

from earsight.app.bench.soak import Sample, Soak, first_and_last, parse_press, rss_trend_mb_per_h
from earsight.app.modes.live import PRESS_LOG


def test_the_press_line_live_logs_is_the_one_the_soak_parses():
    # the two sides live in different files: a reworded log line must fail here, not read as
    # "no press answered" after an hour
    assert parse_press("DEBUG " + PRESS_LOG % (12, 23.456, "cat")) == pytest.approx(23.5)
    assert math.isnan(parse_press(PRESS_LOG % (13, float("nan"), "dog")))
    assert parse_press("cat") is None  # the word line live prints for the screen reader


def _soak(minutes: int, leak_mb_per_h: float) -> Soak:
    """A press a second, answered in 20 ms (1 s at 59 s and in the last minute), a sample every
    5 s."""
    end_s = minutes * 60.0
    soak = Soak(duration_s=end_s)
    soak.sent_at = [float(t) for t in range(int(end_s))]
    for t in soak.sent_at:
        ms = 1000.0 if t >= end_s - 60 or t == 59 else 20.0
        soak.answered.append((t + ms / 1e3 + 0.05, ms))  # logged on the next main-loop tick
    for t in range(0, int(end_s), 5):
        rss = 200 + leak_mb_per_h * t / 3600
        soak.samples.append(Sample(t, rss, threads=12, fds=30, cpu_s=t * 0.1, sent=t + 1))
    return soak


def test_windows_count_each_press_in_the_window_it_was_sent_in():
    first, last = first_and_last(_soak(minutes=10, leak_mb_per_h=60.0), window_s=60.0)
    # a press sent at 59 s and logged after 60 s belongs to the first window; a 1 s answer to
    # a press sent at 540 s belongs to the last, though it is logged after its start
    assert (first.answered, first.sent) == (60, 60)
    assert (last.answered, last.sent) == (60, 60)
    assert first.p50_ms == pytest.approx(20.0) and first.p99_ms > 100
    assert last.p99_ms == pytest.approx(1000.0)
    assert last.rss_mb - first.rss_mb == pytest.approx(9.0, abs=0.2)  # 60 MB/h over 9 min
    assert first.cpu_pct == pytest.approx(10.0)


def test_the_rss_trend_sees_a_slow_leak_and_not_a_flat_run():
    assert rss_trend_mb_per_h(_soak(10, leak_mb_per_h=6.0), after_s=60) == pytest.approx(6.0)
    assert rss_trend_mb_per_h(_soak(10, leak_mb_per_h=0.0), after_s=60) == pytest.approx(0.0)
