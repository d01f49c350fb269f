"""Peak arithmetic rates for the bench's "% of FLOP limit" column.

CPU: an estimate, cores × clock × FLOPs/cycle, read from /proc/cpuinfo and /sys; real sustained
peaks are lower (AVX clocks, one FMA port on some parts), so treat the percentage as a guide.
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


def cpu_peak_gflops(cores: int) -> tuple[float, str]:
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
