"""One bench row: a backend timed on one model file in a fresh process (so neither its memory
nor its threads mix with another's): latency per batch size, CPU time, throughput, peak RSS and
GPU memory."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earsight.engine.errors import EngineError
from earsight.engine.runtime import BACKEND_NAMES
from earsight.errors import EarSightError, first_line

MIN_TIMED_RUNS = 3  # per batch, even when the time budget is spent


BENCH_SEED = 0


DEFAULT_BACKENDS = ("torch", "onnx-cpu", "onnx-cuda", "tensorrt")


# Batch 256 of the 160 px default model peaked at 7.1 GB RSS on the CPU (fp16 file; 3.4 GB
# int8): a wearable's whole memory, and the OOM killer may take the running service with it.
# Throughput at large batches is a GPU question: --batches 1,8,64,256 asks it.
DEFAULT_BATCHES = (1, 8, 32)


DEFAULT_PRECISION = {"tensorrt": "fp16"}  # others run the fp32 export unless ":fp16" is given


def parse_spec(spec: str) -> tuple[str, str]:
    name, _, precision = spec.partition(":")
    precision = precision or DEFAULT_PRECISION.get(name, "fp32")
    int8_ok = precision != "int8" or name in ("onnx-cpu", "onnx-cuda")
    if name not in BACKEND_NAMES or precision not in ("fp32", "fp16", "int8") or not int8_ok:
        raise EngineError(
            f"unknown backend {spec!r}",
            f"use {', '.join(BACKEND_NAMES)} with optional :fp16 (onnx-cpu/onnx-cuda also :int8)",
        )
    return name, precision


@dataclass(frozen=True)
class BenchOptions:
    backends: tuple[str, ...] = DEFAULT_BACKENDS  # "name" or "name:fp16" / "name:fp32"
    batches: tuple[int, ...] = DEFAULT_BATCHES
    iters: int = 100  # timed runs per batch (p99 of fewer than 100 is the max)
    warmup: int = 3  # untimed runs per batch
    budget_s: float = 10.0  # stop a batch's timed runs after this long (≥ MIN_TIMED_RUNS)
    threads: int | None = None  # CPU intra-op threads for every backend; None = physical cores
    device: str = "auto"  # torch backend device
    peak_gflops: float | None = None  # None = estimate (CPU) / known table (GPU)
    gap_s: float = 0.0  # pause between timed runs (a key press every gap_s s); 0 = back to back
    spin: bool = True  # ONNX Runtime CPU threads spin-wait between runs (RuntimeOptions.cpu_spin)


@dataclass
class Row:
    spec: str  # as requested, e.g. "tensorrt:fp16"
    backend: str
    precision: str = ""
    device: str = ""
    error: str = ""  # why it did not run; empty when it did
    file: str = ""  # the model file this row timed (e.g. cifar10-ad.int8.onnx for :int8)
    latency_ms: dict[int, tuple[float, float]] = field(default_factory=dict)  # batch: (p50, p99)
    throughput: dict[int, float] = field(default_factory=dict)  # batch: images/s
    cpu_ms: dict[int, float] = field(default_factory=dict)  # batch: process CPU ms per run
    peak_rss_mb: float = 0.0
    gpu_mb: float | None = None


def _time_batch(rt, batch: int, opts: BenchOptions) -> tuple[list[float], float]:
    """Wall seconds of each timed run, and process CPU seconds per run (all threads, gaps too:
    what spinning threads burn between runs is part of a run's cost)."""
    rng = np.random.default_rng(BENCH_SEED)
    images = rng.integers(0, 256, size=(batch, *rt.info.input_shape), dtype=np.uint8)
    for _ in range(opts.warmup):
        rt.infer(images)
    times: list[float] = []
    deadline = time.perf_counter() + opts.budget_s
    cpu_start = time.process_time()
    for _ in range(opts.iters):
        start = time.perf_counter()
        rt.infer(images)
        times.append(time.perf_counter() - start)
        time.sleep(opts.gap_s)
        if time.perf_counter() > deadline and len(times) >= MIN_TIMED_RUNS:
            break
    return times, (time.process_time() - cpu_start) / len(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB.

    VmHWM, not ``getrusage().ru_maxrss``: on Linux ru_maxrss survives fork + exec, so a spawned
    worker would report its parent's size (the bench parent holds torch and the exporter).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(spec: str, model: str, opts: BenchOptions) -> Row:
    """In a fresh process: load ``model`` on the spec's backend and time every batch."""
    logging.basicConfig(level=logging.WARNING)
    from earsight.engine.backends.base import RuntimeOptions
    from earsight.engine.runtime import load

    name, precision = parse_spec(spec)
    row = Row(spec, name)
    gpu = _GpuMemory(enabled=name != "onnx-cpu")  # importing torch would inflate its RSS
    try:
        options = RuntimeOptions(
            threads=opts.threads,
            device=opts.device,
            trt_precision=precision,
            trt_max_batch=max(opts.batches),
            cpu_int8=False,  # each row runs exactly the file its spec names
            cpu_spin=opts.spin,
        )
        row.file = Path(model).name
        rt = load(model, backend=name, options=options)
        row.precision, row.device = rt.info.precision, rt.info.device
        ran = getattr(rt.backend, "weights_file", None)  # torch runs the .pt (or teach base)
        row.file = (ran or rt.info.model).name
        for batch in opts.batches:
            wall_s, cpu_s = _time_batch(rt, batch, opts)
            times = np.asarray(wall_s) * 1e3  # ms
            row.cpu_ms[batch] = cpu_s * 1e3
            gpu.sample()
            row.latency_ms[batch] = (
                float(np.percentile(times, 50)),
                float(np.percentile(times, 99)),
            )
            row.throughput[batch] = batch / (float(np.median(times)) / 1e3)
    except EarSightError as err:  # unavailable, out of memory, bad model
        row.error = str(err)
    except Exception as err:  # a crashed backend must not lose the other rows
        row.error = first_line(err, typed=True)
    row.peak_rss_mb = peak_rss_mb()
    row.gpu_mb = gpu.used_mb() if row.device.startswith("cuda") else None
    return row


class _GpuMemory:
    """Device memory in use, sampled after each batch (covers ORT and TensorRT allocations)."""

    def __init__(self, enabled: bool) -> None:
        self.free0: int | None = None
        self.min_free: int | None = None
        if not enabled:
            return
        try:
            import torch

            if torch.cuda.is_available():
                self.free0 = self.min_free = torch.cuda.mem_get_info()[0]
        except ImportError:
            pass

    def sample(self) -> None:
        if self.free0 is not None:
            import torch

            self.min_free = min(self.min_free, torch.cuda.mem_get_info()[0])

    def used_mb(self) -> float | None:
        return None if self.free0 is None else (self.free0 - self.min_free) / 2**20


def _ignore_interrupts() -> None:
    """A timing process leaves Ctrl-C to the bench: no traceback of its own on the terminal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_in_fresh_process(spec: str, model: Path, opts: BenchOptions) -> Row:
    """``measure`` in a spawned process (no inherited torch/ORT state or memory). Ctrl-C (the
    terminal sends it to the whole process group) ends the timing process at once."""
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_ignore_interrupts)
    try:
        return pool.submit(measure, spec, str(model), opts).result()
    except KeyboardInterrupt:
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
