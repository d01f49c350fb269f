"""Peak arithmetic rates for the bench's "% of FLOP limit" column.

CPU: *measured*, the best fp32 rate of ONNX Runtime's own matrix multiply (MLAS SGEMM, 512³
and 1024³) on the bench's threads: what the same library can sustain on this machine. The
former estimate (cores × /proc/cpuinfo clock × FLOPs/cycle of the widest FMA ISA) read 118 %
for the fp16 file: in a VM the "cpu MHz" line is the nominal clock, not the boost the cores
run at, and AMD parts execute AVX-512 on 256-bit pipes, so the estimate was wrong in both
directions. ``cpu_peak_estimate`` keeps it for machines without ONNX Runtime.
GPU: dense (no sparsity) datasheet figures for a few known boards; others need --peak-gflops.
"""

from __future__ import annotations

from pathlib import Path

# fp32 FLOPs per cycle per core by widest FMA ISA: 2 FMA pipes × lanes × 2 (mul + add).
FLOPS_PER_CYCLE = (("avx512f", 64), ("avx2", 32), ("avx", 16), ("asimd", 16))
SCALAR_SSE_FLOPS_PER_CYCLE = 8
DEFAULT_GHZ = 2.5  # when the clock cannot be read

# Datasheet dense GFLOP/s: (name substring, fp32 non-tensor, fp16 tensor-core dense).
GPU_PEAKS = (
    ("H200", 66_900.0, 989_400.0),
    ("H100 PCIe", 51_200.0, 756_000.0),
    ("H100", 66_900.0, 989_400.0),  # SXM ("H100 80GB HBM3")
    ("A100", 19_500.0, 312_000.0),
    ("L4", 30_300.0, 121_000.0),
    ("T4", 8_100.0, 65_000.0),
)


def _cpu_flags_and_mhz() -> tuple[set[str], float | None]:
    flags: set[str] = set()
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features"):
                flags |= set(value.split())
            elif key == "cpu mhz" and mhz is None:
                mhz = float(value)
    except (OSError, ValueError):
        pass
    try:  # the nominal maximum beats the momentary "cpu MHz" when the kernel exposes it
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        mhz = int(khz) / 1000
    except (OSError, ValueError):
        pass
    return flags, mhz


# M = N = K of the peak probes, each with its repeats (best of: the rate the library reaches,
# not an unlucky scheduling slice). The fastest size depends on the caches: on this project's
# 2-core EPYC VM 512³ reached 219 GFLOP/s and 1024³ 178-186, and a convolution model timed 183
# against the 1024³ figure alone (103 %), so the peak is the best of both.
GEMM_PROBES = ((512, 40), (1024, 10))


def cpu_peak_gflops(cores: int) -> tuple[float, str]:
    """(fp32 GFLOP/s of ONNX Runtime's SGEMM on ``cores`` threads, how it was obtained).

    Falls back to ``cpu_peak_estimate`` when ONNX Runtime or onnx is not importable.
    """
    try:
        rate = _measured_sgemm_gflops(cores)
    except ImportError:
        return cpu_peak_estimate(cores)
    sizes = " and ".join(f"{n}³" for n, _ in GEMM_PROBES)
    note = (
        f"CPU peak measured: ONNX Runtime SGEMM, the best of {sizes} on {cores} thread(s): "
        f"{rate:.0f} GFLOP/s"
    )
    return rate, note


def _measured_sgemm_gflops(threads: int) -> float:
    return max(_sgemm_gflops(n, repeats, threads) for n, repeats in GEMM_PROBES)


def _sgemm_gflops(n: int, repeats: int, threads: int) -> float:
    """Best fp32 GFLOP/s of ONNX Runtime's MatMul of two (n, n) matrices over ``repeats``."""
    import time

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "sgemm",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, ["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((n, n), dtype=np.float32) for x in ("a", "b")}
    session.run(None, feeds)  # warm-up: arenas, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def cpu_peak_estimate(cores: int) -> tuple[float, str]:
    """(estimated fp32 GFLOP/s of ``cores`` cores, how it was estimated)."""
    flags, mhz = _cpu_flags_and_mhz()
    per_cycle = next((n for flag, n in FLOPS_PER_CYCLE if flag in flags), None)
    isa = next((flag for flag, _ in FLOPS_PER_CYCLE if flag in flags), "sse")
    per_cycle = per_cycle or SCALAR_SSE_FLOPS_PER_CYCLE
    ghz = (mhz or DEFAULT_GHZ * 1000) / 1000
    peak = cores * ghz * per_cycle
    note = f"CPU peak estimate: {cores} core(s) × {ghz:.2f} GHz × {per_cycle} FLOP/cycle ({isa})"
    return peak, note


def gpu_peak_gflops(device_name: str, precision: str) -> float | None:
    for needle, fp32, fp16 in GPU_PEAKS:
        if needle in device_name:
            return fp16 if precision == "fp16" else fp32
    return None
