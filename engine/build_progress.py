"""Progress output while TensorRT builds: the build is silent for minutes otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

STEP_REPORT_S = 10.0  # at most one step line per phase this often


def make_monitor(trt, say: Callable[[str], None], start: float):
    """An IProgressMonitor printing top-level phases and, at most every few s, their steps."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}
            self._last = 0.0

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._steps[phase_name] = num_steps
            if parent_phase is None:
                say(f"[{time.monotonic() - start:5.0f} s] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.monotonic()
            if now - self._last >= STEP_REPORT_S:
                self._last = now
                total = self._steps.get(phase_name, 0)
                say(f"[{now - start:5.0f} s]   {phase_name}: {step + 1}/{total}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)

    return Monitor()


class ElapsedTicker:
    """Context manager: prints the elapsed time every ``interval`` seconds until exit."""

    def __init__(self, say: Callable[[str], None], start: float, interval: float) -> None:
        self._say, self._start, self._interval = say, start, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            self._say(f"[{time.monotonic() - self._start:5.0f} s] still building…")

    def __enter__(self) -> ElapsedTicker:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
