"""Benchmark backends on one model, each in its own fresh process, torch eager as the reference.

Per backend: batch-1 latency p50/p99, throughput at every batch, peak RSS of its process
(VmHWM of a fresh process per backend, so peaks do not leak between rows), GPU
memory when it runs on CUDA, speedup vs torch eager fp32 measured in the same run, and the
fraction of the device's FLOP peak reached (2 × MAC per image × images/s ÷ peak).
Timed: the runtime's ``infer`` (validation + model), not post-processing, which is identical
for every backend.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from earsight.engine.bench_measure import (
    BENCH_SEED,
    DEFAULT_BACKENDS,
    BenchOptions,
    Row,
    parse_spec,
    run_in_fresh_process,
)
from earsight.engine.bench_peak import cpu_peak_gflops, gpu_peak_gflops
from earsight.engine.errors import EngineError
from earsight.errors import TRAIN_EXTRA_FIX, EarSightError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSpec:
    """A random-weights model to time when no --model is given (speed needs no training)."""

    preset: str = "compact"
    image_size: int = 28
    image_channels: int = 1
    audio_length: int = 16_344
    n_classes: int = 10


@dataclass
class BenchReport:
    model: str
    macs: int  # per image; 0 = not counted (torch is not installed)
    threads: int
    peak_gflops: dict[str, float | None]  # "cpu" / "gpu-fp32" / "gpu-fp16" → GFLOP/s
    peak_note: str
    load_average: float
    rows: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_installed() -> bool:
    """torch is importable (the ``train`` extra); a runtime-only install times ONNX files only."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def quick_unavailable(name: str) -> str | None:
    """A reason the backend cannot run here, found without loading anything (or None)."""
    import importlib.util

    if name == "torch" and importlib.util.find_spec("torch") is None:
        return f"torch is not installed (a runtime-only install) — {TRAIN_EXTRA_FIX}"
    if name == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        from earsight.engine.build import INSTALL_HINT

        return f"TensorRT is not installed — {INSTALL_HINT}"
    if name == "onnx-cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "ONNX Runtime has no CUDA provider here (CPU-only onnxruntime)"
    return None


# --- orchestration ------------------------------------------------------------------------------


def synth_checkpoint(spec: SynthSpec, path: Path) -> Path:
    """Save a random-weights checkpoint of ``spec`` (speed does not depend on training)."""
    import torch

    from earsight.trainer.checkpoint import save_checkpoint
    from earsight.trainer.mtnet.config import make_config
    from earsight.trainer.mtnet.model import MTNet

    cfg = make_config(
        spec.preset,
        image_size=spec.image_size,
        image_channels=spec.image_channels,
        audio_length=spec.audio_length,
        n_classes=spec.n_classes,
        labels=tuple(f"class{k}" for k in range(spec.n_classes)),
    )
    torch.manual_seed(BENCH_SEED)
    save_checkpoint(path, {"config": cfg.to_dict(), "model": MTNet(cfg).state_dict()})
    return path


class ModelFiles:
    """The checkpoint and the ONNX exports the rows need, exported once each, on demand."""

    def __init__(self, model: Path | None, synth: SynthSpec, workdir: Path) -> None:
        from earsight.engine.source import read_model

        self.workdir = workdir
        self.onnx: dict[str, Path] = {}
        self.exported: dict | None = None  # the ONNX's config: peers are built the same way
        self.given_onnx: Path | None = None
        self.cpu_variant: Path | None = None  # what describe/live run on the CPU for the model
        if model is None:
            self.checkpoint: Path | None = synth_checkpoint(synth, workdir / "random.pt")
            self.name = f"random {synth.preset} {synth.image_size}x{synth.image_size}x" + (
                f"{synth.image_channels}, L_s {synth.audio_length}"
            )
            return
        source = read_model(model)
        self.checkpoint, self.name = source.checkpoint, str(model)
        if not torch_installed():  # a runtime-only install: time the shipped ONNX files
            self.checkpoint = None
        if source.onnx is not None:
            self.onnx[source.contract.precision] = source.onnx
            self.exported = (source.sidecar or {}).get("config")
            self.given_onnx = source.onnx
            if source.int8 is not None:  # name.int8.onnx beside it: the `:int8` rows
                self.onnx["int8"] = self.cpu_variant = source.int8.path

    @property
    def flip_tta(self) -> bool:
        return bool((self.exported or {}).get("flip_tta"))

    def config(self):
        from earsight.trainer.checkpoint import read_checkpoint
        from earsight.trainer.mtnet.config import MTNetConfig

        if self.exported is not None:
            return MTNetConfig.from_dict(self.exported)
        return MTNetConfig.from_dict(read_checkpoint(self.checkpoint)["config"])

    def for_spec(self, name: str, precision: str) -> Path:
        if name == "torch":
            # Through the ONNX's sidecar the torch backend finds the exported weights (its
            # checkpoint, or a shipped model's teach base) and answers as the export does
            # (mirror averaging included); a bare checkpoint is its own reference.
            if self.exported and torch_installed():
                return self.given_onnx
            if self.checkpoint is None:
                raise EngineError("no checkpoint beside the ONNX for the torch reference")
            return self.checkpoint
        if precision == "int8" and precision not in self.onnx:
            raise EngineError(  # calibration needs the training data: not the bench's job
                "no int8 export beside the model",
                "write one with `earsight export CHECKPOINT -o NAME.int8.onnx --int8`",
            )
        if precision not in self.onnx:
            if self.checkpoint is None:
                raise EngineError(f"no {precision} ONNX and no checkpoint to export one from")
            from earsight.engine.export import export_onnx

            out = self.workdir / f"model-{precision}.onnx"
            exported = export_onnx(self.checkpoint, out, precision, flip_tta=self.flip_tta)
            self.onnx[precision] = exported.path
        return self.onnx[precision]


def run_bench(
    model: Path | None,
    opts: BenchOptions | None = None,
    synth: SynthSpec = SynthSpec(),
    say=print,
) -> BenchReport:
    """Time every requested backend on ``model`` (or a random ``synth`` model); torch first."""
    from earsight.engine.backends.base import physical_cores

    opts = opts or BenchOptions()
    threads = opts.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="earsight-bench-") as tmp:
        files = ModelFiles(model, synth, Path(tmp))
        macs = 0  # unknown: counting them builds the torch model
        if torch_installed():
            from earsight.trainer.mtnet.model import inference_macs

            macs = inference_macs(files.config())
        backends = _with_cpu_variant(opts.backends, files, say)
        specs = sorted(backends, key=lambda s: parse_spec(s)[0] != "torch")  # reference first
        rows = []
        for spec in specs:
            name, precision = parse_spec(spec)
            reason = quick_unavailable(name)
            if reason is None:
                try:
                    say(f"timing {spec} …")
                    rows.append(run_in_fresh_process(spec, files.for_spec(name, precision), opts))
                    continue
                except EarSightError as err:
                    reason = str(err)
            # the engine's hints name live and describe's flag; bench's is --backends
            rows.append(Row(spec, name, error=reason.replace("--backend ", "--backends ")))
    peaks, note = _peaks(opts, threads, rows)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return BenchReport(files.name, macs, threads, peaks, note, load_avg, rows)


def _with_cpu_variant(backends: tuple[str, ...], files: ModelFiles, say) -> tuple[str, ...]:
    """Say which file each name means: ``onnx-cpu`` times the ONNX as named, while describe
    and live run its int8 variant on the CPU; that variant's row (``onnx-cpu:int8``) is added
    to the default backends so the file the app runs is always timed."""
    default = backends == DEFAULT_BACKENDS
    if files.given_onnx is not None and files.checkpoint is None and default:
        # A fresh clone ships ONNX files only: no torch reference, no fp32 re-export. The
        # shipped file itself is the peer of its int8 variant (same weights, same run).
        shipped = f"onnx-cpu:{_shipped_precision(files)}"
        base = _teach_base(files.given_onnx)
        say(f"note: {_fresh_clone_note(files.given_onnx, base)}")
        keep_torch = base is not None  # the torch row runs the teach base's same weights
        backends = tuple(b for b in backends if b != "onnx-cpu" and (b != "torch" or keep_torch))
        backends = (shipped, *backends)
    elif files.given_onnx is not None and files.checkpoint is None:
        # no checkpoint to export another precision from: a bare ONNX Runtime name means the
        # file as given (`--backends onnx-cpu` on a shipped fp16 file times that file)
        own = _shipped_precision(files)
        bare = ("onnx-cpu", "onnx-cuda")
        backends = tuple(f"{b}:{own}" if b in bare else b for b in backends)
    if files.cpu_variant is None or files.given_onnx is None:
        return backends
    say(
        f"note: describe and live run {files.cpu_variant.name} for {files.given_onnx.name} on "
        f"the CPU (row onnx-cpu:int8); row onnx-cpu:{_shipped_precision(files)} times "
        f"{files.given_onnx.name} itself"
    )
    if default and "onnx-cpu:int8" not in backends:
        return (*backends, "onnx-cpu:int8")
    return backends


def _teach_base(onnx: Path) -> Path | None:
    """A shipped model's teach base beside it (the same weights, for the torch row)."""
    if not torch_installed():
        return None
    from earsight.engine.backends.torch_backend import teach_base_beside

    return teach_base_beside(onnx)


def _fresh_clone_note(onnx: Path, base: Path | None) -> str:
    if not torch_installed():
        return f"torch is not installed: timing the shipped files of {onnx.name}"
    torch_row = f"torch runs its weights from {base.name}" if base else "no torch row"
    return f"no checkpoint beside {onnx.name}: timing the shipped files ({torch_row})"


def _shipped_precision(files: ModelFiles) -> str:
    return next(p for p, path in files.onnx.items() if path == files.given_onnx)


def _peaks(opts: BenchOptions, threads: int, rows: list[Row]) -> tuple[dict, str]:
    if opts.peak_gflops is not None:
        value = opts.peak_gflops
        return {"cpu": value, "gpu-fp32": value, "gpu-fp16": value}, "--peak-gflops (given)"
    cpu, note = cpu_peak_gflops(threads)
    gpu_name = next((r.device for r in rows if r.device.startswith("cuda")), "")
    return {
        "cpu": cpu,
        "gpu-fp32": gpu_peak_gflops(gpu_name, "fp32"),
        "gpu-fp16": gpu_peak_gflops(gpu_name, "fp16"),
    }, note
