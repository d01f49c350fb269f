"""The bench report as a plain-text table (no colour: it goes to logs and BENCHMARKS.md)."""

from __future__ import annotations

import os

from earsight.engine.bench import BenchReport
from earsight.engine.bench_measure import Row
from earsight.tables import aligned, as_lines

NA = "–"
BUSY_LOAD_MARGIN = 0.5  # 1-min load average above CPUs + this: other work shared the cores


def _peak_for(row: Row, report: BenchReport) -> float | None:
    if row.precision == "int8":  # integer MACs against a float peak would read as > 100 %
        return None
    if not row.device.startswith("cuda"):
        return report.peak_gflops.get("cpu")
    return report.peak_gflops.get("gpu-fp16" if row.precision == "fp16" else "gpu-fp32")


def _percent_of_peak(row: Row, report: BenchReport) -> str:
    peak = _peak_for(row, report)
    if not row.throughput or not peak or not report.macs:
        return NA
    gflops = 2 * report.macs * max(row.throughput.values()) / 1e9  # 1 MAC = 2 FLOPs
    return f"{100 * gflops / peak:.1f}"


def _macs(report: BenchReport) -> str:
    if not report.macs:
        return "MMAC/image not counted (needs torch)"
    return f"{report.macs / 1e6:,.1f} MMAC/image"


def _speedup(row: Row, ref: Row | None, batch: int, latency: bool) -> str:
    if ref is None or ref.error or row.error:
        return NA
    if latency:
        return f"{ref.latency_ms[batch][0] / row.latency_ms[batch][0]:.2f}"
    return f"{row.throughput[batch] / ref.throughput[batch]:.2f}"


def _cells(row: Row, ref: Row | None, report: BenchReport, batches: list[int]) -> list[str]:
    first, last = batches[0], batches[-1]
    if row.error:
        return [row.spec, row.file or NA, NA, "not run", *[NA] * (len(batches) + 8)]
    p50, p99 = row.latency_ms[first]
    return [
        row.spec,
        row.file or NA,
        row.precision,
        row.device,
        f"{p50:.2f}",
        f"{p99:.2f}",
        f"{row.cpu_ms[first]:.2f}",
        *[f"{row.throughput[b]:,.0f}" for b in batches],
        f"{row.peak_rss_mb:,.0f}",
        NA if row.gpu_mb is None else f"{row.gpu_mb:,.0f}",
        _speedup(row, ref, first, latency=True),
        _speedup(row, ref, last, latency=False),
        _percent_of_peak(row, report),
    ]


def _ref_name(ref: Row | None) -> str:
    if ref is None or ref.backend == "torch":
        return "torch eager fp32"
    return f"{ref.spec} ({ref.file})" if ref.file else ref.spec


def format_table(report: BenchReport, lines_only: bool = False) -> str:
    """The report as an aligned table, or (``lines_only``) one line per row, every value after
    its column's name (for a screen reader; earsight/tables.py)."""
    batches = sorted({b for r in report.rows for b in r.throughput}) or [1]
    first, last = batches[0], batches[-1]
    header = [
        "backend",
        "file",
        "precision",
        "device",
        f"b{first} p50 ms",
        f"b{first} p99 ms",
        f"b{first} CPU ms",
        *[f"img/s b{b}" for b in batches],
        "peak RSS MB",
        "GPU MB",
        f"speedup b{first} latency",
        f"speedup b{last} img/s",
        "% FLOP peak",
    ]
    ran = [r for r in report.rows if not r.error]
    ref = next((r for r in ran if r.backend == "torch"), ran[0] if ran else None)
    cells = [_cells(r, ref, report, batches) for r in report.rows]
    lines = [
        f"model: {report.model}; {_macs(report)}; {report.threads} CPU "
        f"thread(s); 1-min load average {report.load_average:.2f} on {os.cpu_count()} CPUs",
        f"{report.peak_note}; speedups are vs {_ref_name(ref)} in this run",
        "",
    ]
    lines += as_lines(header, cells) if lines_only else aligned(header, cells, left=4)
    lines += [f"{r.spec}: not run: {r.error}" for r in report.rows if r.error]
    cpus = os.cpu_count() or 1
    if report.load_average > cpus + BUSY_LOAD_MARGIN:  # other work shared the cores
        lines.append(
            f"warning: the machine was busy (load average {report.load_average:.1f} on {cpus} "
            "CPUs): times are high and ratios unreliable; run again when it is idle"
        )
    return "\n".join(lines)
