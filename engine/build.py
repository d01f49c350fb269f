"""TensorRT engine build (TensorRT 10; the same code runs on Jetson), cached by engine/cache.py.

builder → network (explicit batch before 10; strongly typed for a fp16 ONNX) → ONNX parser
(every error printed) → config (workspace limit, FP16 flag only where needed, batch profile,
timing cache reused from disk) → serialized plan. ``tensorrt`` is imported lazily; the precision
choice and network flags are plain functions, tested without it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earsight import paths
from earsight.engine.cache import (
    DEFAULT_OPT_BATCH,
    EngineKey,
    Profile,
    plan_path,
    plan_problem,
    remove_plan,
    timing_cache_path,
    write_atomic,
    write_plan,
)
from earsight.engine.errors import BackendUnavailable, EngineBuildError, ModelFileError
from earsight.engine.sidecar import read_sidecar
from earsight.engine.sidecar_schema import INPUT_NAME

log = logging.getLogger(__name__)

BUILD_NOTICE = (
    "Building the TensorRT engine: this takes a while (often 1–5 minutes) and happens once "
    "per model and GPU"
)
DEFAULT_WORKSPACE_MB = 1024  # builder scratch memory; Jetson Orin Nano has 8 GB shared in all
PROGRESS_INTERVAL_S = 15.0  # elapsed-time lines when TensorRT has no IProgressMonitor
MODES = ("fp32", "fp16-flag", "fp16-strongly-typed")
INSTALL_HINT = "pip install earsight[tensorrt] on a CUDA machine, or use --backend onnx-cpu"


def choose_mode(requested: str, onnx_precision: str, has_fp16_flag: bool, strongly: bool) -> str:
    """How to get the requested precision from this ONNX on this TensorRT.

    A fp16 ONNX carries its types: build it strongly typed (TensorRT ≥ 9.1; the only fp16 route
    left in 11). A fp32 ONNX gets fp16 kernels only through BuilderFlag.FP16 (deprecated in
    10.12, removed in 11).
    """
    if requested not in ("fp16", "fp32"):
        raise EngineBuildError(f"precision must be fp16 or fp32, got {requested!r}")
    if onnx_precision == "int8":  # QDQ tuned for ONNX Runtime CPU; GPUs get the float export
        raise EngineBuildError(
            "this is the int8 CPU export; TensorRT engines are built from fp16/fp32 exports",
            "build the model's fp16 ONNX (e.g. cifar10-ad.onnx, not cifar10-ad.int8.onnx)",
        )
    if onnx_precision == "fp16":
        if strongly:
            return "fp16-strongly-typed"
        if has_fp16_flag:
            return "fp16-flag"
        raise EngineBuildError("this TensorRT can neither build strongly typed nor use FP16")
    if requested == "fp32":
        return "fp32"
    if has_fp16_flag:
        return "fp16-flag"
    raise EngineBuildError(
        "this TensorRT has no FP16 builder flag (deprecated in 10.12, removed in 11)",
        "export a fp16 ONNX (`earsight export --fp16`) and build that: it is built strongly typed",
    )


def network_flags(trt_major: int, strongly_typed: bool, explicit_bit: int, strong_bit: int) -> int:
    """NetworkDefinitionCreationFlag bits: explicit batch before 10 (default from 10 on)."""
    flags = 1 << explicit_bit if trt_major < 10 else 0
    return flags | (1 << strong_bit) if strongly_typed else flags


# --- TensorRT -------------------------------------------------------------------------------


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable("TensorRT is not installed", INSTALL_HINT) from err
    return trt


def gpu_identity(gpu: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "M.m") through torch, which the runtime uses for buffers."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU is visible", "use --backend onnx-cpu or torch")
    major, minor = torch.cuda.get_device_capability(gpu)
    return torch.cuda.get_device_name(gpu), f"{major}.{minor}"


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"  # "fp16" | "fp32"
    max_batch: int = 64
    opt_batch: int = DEFAULT_OPT_BATCH
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    gpu: int = 0
    cache_dir: Path | None = None  # None = earsight.paths.engine_cache_dir()
    rebuild: bool = False  # ignore a valid cached plan


def engine_key(
    onnx: Path, opts: BuildOptions, sidecar: dict[str, Any] | None = None
) -> tuple[EngineKey, dict[str, Any]]:
    """The cache key for ``onnx`` on this machine (needs TensorRT and a GPU), and its sidecar.

    ``sidecar``: the one already read and verified for ``onnx`` (engine.source.read_model), so a
    runtime reads it once; None reads it here (``earsight engine build``).
    """
    trt = import_tensorrt()
    side = sidecar if sidecar is not None else read_sidecar(onnx)
    name, cc = gpu_identity(opts.gpu)
    strongly = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    mode = choose_mode(opts.precision, side["precision"], fp16_flag, strongly)
    profile = Profile.up_to(opts.max_batch, opts.opt_batch)
    return EngineKey(side["sha256"], trt.__version__, name, cc, mode, profile), side


def ensure_engine(
    onnx: Path,
    opts: BuildOptions,
    allow_build: bool = True,
    say: Callable[[str], None] = print,
    sidecar: dict[str, Any] | None = None,
) -> tuple[Path, EngineKey]:
    """A valid cached plan for ``onnx`` (building it if allowed); returns its path and key.

    ``sidecar`` as for ``engine_key``.
    """
    if not Path(onnx).is_file():
        raise ModelFileError(f"model file not found: {onnx}", "pass the .onnx to build")
    key, side = engine_key(Path(onnx), opts, sidecar)
    cache_dir = opts.cache_dir or paths.engine_cache_dir()
    plan = plan_path(cache_dir, key)
    if opts.rebuild:
        remove_plan(plan)
    problem = plan_problem(plan, key)
    if problem is None:
        return plan, key
    if plan.exists():
        log.warning("cached engine %s unusable: %s; rebuilding", plan.name, problem)
        remove_plan(plan)
    if not allow_build:
        raise BackendUnavailable(
            "no cached TensorRT engine for this model and GPU",
            f"run `earsight engine build {onnx}` once (1–5 minutes)",
        )
    hwc = tuple(side["input_size"])
    write_plan(plan, build_plan(Path(onnx), key, hwc, opts, cache_dir, say), key)
    say(f"engine saved: {plan}")
    return plan, key


def build_plan(
    onnx: Path,
    key: EngineKey,
    hwc: tuple[int, int, int],
    opts: BuildOptions,
    cache_dir: Path,
    say: Callable[[str], None] = print,
) -> bytes:
    """Parse ``onnx`` and build a serialized engine for ``key``; reuses the timing cache."""
    trt = import_tensorrt()
    say(BUILD_NOTICE)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly = key.mode == "fp16-strongly-typed"
    flag_enum = trt.NetworkDefinitionCreationFlag
    flags = network_flags(
        int(trt.__version__.split(".")[0]),
        strongly,
        int(getattr(flag_enum, "EXPLICIT_BATCH", 0)),
        int(getattr(flag_enum, "STRONGLY_TYPED", 0)),
    )
    network = builder.create_network(flags)
    _parse(trt, network, logger, onnx, say)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    if key.mode == "fp16-flag":
        config.set_flag(trt.BuilderFlag.FP16)  # deprecated in 10.12: choose_mode prefers typed
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *key.profile.shapes(hwc))
    config.add_optimization_profile(profile)
    timing = timing_cache_path(cache_dir, key.trt_version, key.gpu_name, key.compute_capability)
    _attach_timing_cache(config, timing)
    start = time.monotonic()
    with _progress(trt, config, say, start):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            "TensorRT failed to build the engine (see its messages above)",
            "try a smaller --max-batch or a larger --workspace-mb",
        )
    write_atomic(timing, bytes(config.get_timing_cache().serialize()))
    say(f"engine built in {time.monotonic() - start:.0f} s ({key.mode}, batch 1..{opts.max_batch})")
    return bytes(serialized)


def _parse(trt, network, logger, onnx: Path, say: Callable[[str], None]) -> None:
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx)):
        return
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    for err in errors:  # every one: the first is often a symptom of a later one
        say(f"ONNX parser error: {err}")
    raise EngineBuildError(
        f"TensorRT could not parse {onnx.name}: {len(errors)} error(s), first: "
        f"{errors[0] if errors else '?'}",
        "TensorRT 10 parses opset 18; re-export with `earsight export`",
    )


def _attach_timing_cache(config, path: Path) -> None:
    blob = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # a damaged cache only costs build time: start a fresh one
        log.warning("timing cache %s unreadable; starting a new one", path.name)
        path.unlink(missing_ok=True)
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)


def _progress(trt, config, say: Callable[[str], None], start: float):
    """IProgressMonitor when TensorRT has it (≥ 10.0), else a thread printing elapsed time."""
    from earsight.engine.build_progress import ElapsedTicker, make_monitor

    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = make_monitor(trt, say, start)
        return contextlib.nullcontext()
    return ElapsedTicker(say, start, PROGRESS_INTERVAL_S)
