"""The backend interface and the options every backend reads.

A backend runs the raw model: uint8 images (B, H, W, C), C-contiguous and already validated by
the runtime, → waveform (B, L_s) float32 at the model's rate and probs (B, K) float32.
Construction raises ``BackendUnavailable`` (auto falls back to the next backend, logged) or
``ModelFileError`` (the model itself is bad: no fallback).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earsight.engine.postprocess import PostprocessOptions

DEFAULT_TRT_MAX_BATCH = 64  # batch profile upper bound when the runtime builds an engine


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings count once); ≥ 1."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            cores.add((package, (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("?", str(cpu)))
    return max(1, len(cores))


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int | None = None  # CPU intra-op threads (ORT, torch); None = physical cores
    device: str = "auto"  # torch backend: "auto" (CUDA when visible) | "cpu" | "cuda[:N]"
    gpu: int = 0  # CUDA device index for onnx-cuda and tensorrt
    trt_precision: str = "fp16"  # engine precision when a TensorRT engine is built
    trt_max_batch: int = DEFAULT_TRT_MAX_BATCH  # profile max when the runtime builds an engine
    build_engine: bool = False  # auto may build a missing TensorRT engine (minutes) if True
    engine_cache: Path | None = None  # None = platformdirs user cache / "engines"
    verify_sha256: bool = True  # check the ONNX against its sidecar on load
    cpu_int8: bool = True  # onnx-cpu runs the model's int8 variant (name.int8.onnx) if present
    # ONNX Runtime's CPU threads spin-wait after each call: cifar10-ad int8 batch 1 ran in
    # 10.8 ms spinning vs 18.2 ms not, but one call every 0.25 s cost 71.5 vs 19.4 ms of CPU
    # (`earsight bench --gap-s 0.25 [--no-spin]`, docs/BENCHMARKS.md). The live app turns it
    # off (presses are seconds apart); benches and describe keep it.
    cpu_spin: bool = True
    postprocess: PostprocessOptions = field(default_factory=PostprocessOptions)

    def cpu_threads(self) -> int:
        return self.threads if self.threads is not None else physical_cores()


class Backend(ABC):
    """One way of running the model. Subclasses set the attributes in their constructor."""

    name: str  # "tensorrt" | "onnx-cuda" | "onnx-cpu" | "torch"
    device: str  # e.g. "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)"
    precision: str  # "fp32" | "fp16" | "int8"
    providers: tuple[str, ...] = ()  # ONNX Runtime providers in use, or the library
    max_batch: int | None = None  # largest batch it accepts (TensorRT profile), None = any

    @abstractmethod
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, C) uint8 → waveform (B, L_s) float32, probs (B, K) float32."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends need no teardown
        """Release accelerator resources (sessions, engines, buffers)."""
