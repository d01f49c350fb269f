"""The engine's commands: ``earsight export`` (a checkpoint → ONNX + sidecar, optionally int8),
``earsight engine build`` (a TensorRT plan into the cache) and ``earsight bench`` (backends timed
against each other in one run). Each ``add_*`` builds its parser, each ``run_*`` runs it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from earsight.arguments import (
    int_list,
    non_negative_int,
    positive_float,
    positive_int,
    seconds,
    str_list,
)
from earsight.errors import UsageError
from earsight.paths import probe_creatable


def add_export(sub: argparse._SubParsersAction) -> None:
    from earsight.engine.sidecar import (  # light: no torch at --help
        DEFAULT_MAX_BATCH,
        DEFAULT_OPSET,
    )

    p = sub.add_parser("export", help="export a checkpoint to ONNX (+ JSON sidecar)")
    p.add_argument("checkpoint", type=Path, help="a .pt written by trainer/fit.py")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx to write")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16", action="store_true", help="fp16 weights and compute (same I/O)"
    )
    precision.add_argument(
        "--int8",
        action="store_true",
        help="int8 encoder convolutions for CPUs, calibrated on the checkpoint's training images",
    )
    p.add_argument(
        "--data-root", type=Path, default=None, help="--int8: where the training dataset is"
    )
    p.add_argument(
        "--flip-tta",
        action="store_true",
        help="average each image with its mirror (models trained with flips; 2× encoder cost)",
    )
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--max-batch", type=positive_int, default=DEFAULT_MAX_BATCH)
    p.set_defaults(run=run_export)


def check_output(out: Path) -> None:
    """UsageError (one line, with the -o to write) for an -o that is a folder, does not end in
    .onnx (the runtime tells a model's kind by its suffix), or is in a folder this user cannot
    write (found by writing a probe file there, as root ignores mode bits)."""
    if out.is_dir():
        raise UsageError(f"-o {out} is a folder", f"write -o {out / 'model.onnx'}")
    if out.suffix != ".onnx":
        better = out.with_suffix(".onnx") if out.suffix in (".pt", ".pth", ".json") else None
        fix = f"write -o {better or str(out) + '.onnx'}"
        raise UsageError(f"the output {out} does not end in .onnx", fix)
    try:
        probe_creatable(out.parent)  # export makes the folder
    except OSError as err:
        raise UsageError(
            f"cannot write {out} ({err.strerror or err})", "choose a folder you can write to"
        ) from None


def run_export(args: argparse.Namespace) -> int:
    from earsight.engine.export import export_onnx

    check_output(args.output)  # before minutes of export and the int8 calibration
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    calibration = test_images = None
    if args.int8:
        from earsight.engine.quantize import checkpoint_images

        calibration, test_images = checkpoint_images(args.checkpoint, args.data_root)
    result = export_onnx(
        args.checkpoint,
        args.output,
        precision,
        args.opset,
        args.max_batch,
        args.flip_tta,
        calibration=calibration,
        test_images=test_images,
    )
    kind = precision + (", mirror-averaged" if args.flip_tta else "")
    print(f"wrote {result.path} ({kind}, opset {result.opset}, sha256 {result.sha256[:16]}…)")
    return 0


def add_engine(sub: argparse._SubParsersAction) -> None:
    from earsight.engine.build import DEFAULT_OPT_BATCH, DEFAULT_WORKSPACE_MB

    p = sub.add_parser("engine", help="TensorRT engines")
    engine_sub = p.add_subparsers(dest="engine_command", required=True, metavar="ACTION")
    b = engine_sub.add_parser("build", help="build (or reuse) the cached TensorRT engine")
    b.add_argument("model", type=Path, help="the .onnx (with its .onnx.json sidecar)")
    b.add_argument("--max-batch", type=positive_int, default=64, help="profile max batch")
    b.add_argument("--opt-batch", type=positive_int, default=DEFAULT_OPT_BATCH)
    b.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    b.add_argument("--workspace-mb", type=positive_int, default=DEFAULT_WORKSPACE_MB)
    b.add_argument("--gpu", type=int, default=0, help="CUDA device index")
    b.add_argument("--cache-dir", type=Path, default=None, help="default: user cache/engines")
    b.add_argument("--rebuild", action="store_true", help="ignore a valid cached engine")
    b.set_defaults(run=run_engine_build)


ENGINE_BUILD_FIX = (
    "engine build needs an NVIDIA GPU with TensorRT (pip install earsight[tensorrt]); without "
    "one, skip it: describe and live run the .onnx on the CPU as it is"
)


def run_engine_build(args: argparse.Namespace) -> int:
    from earsight.engine.build import BuildOptions, ensure_engine
    from earsight.engine.errors import BackendUnavailable

    opts = BuildOptions(
        precision=args.precision,
        max_batch=args.max_batch,
        opt_batch=min(args.opt_batch, args.max_batch),
        workspace_mb=args.workspace_mb,
        gpu=args.gpu,
        cache_dir=args.cache_dir,
        rebuild=args.rebuild,
    )
    try:
        plan, key = ensure_engine(args.model, opts, allow_build=True)
    except BackendUnavailable as err:
        # The engine's own fix names options of describe/live (--backend), not of this command.
        if "--backend" in err.fix:
            raise BackendUnavailable(err.what, ENGINE_BUILD_FIX) from err
        raise
    print(f"engine {plan} ({key.mode}, batch {key.profile.min_batch}..{key.profile.max_batch})")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    from earsight.engine.bench_measure import DEFAULT_BACKENDS, DEFAULT_BATCHES, BenchOptions

    d = BenchOptions()
    p = sub.add_parser("bench", help="time backends against torch eager in one run")
    p.add_argument(
        "--model",
        help="shipped model name, .onnx or .pt (default: the default model, as live and "
        "describe run it; --preset etc. below time random weights instead)",
    )
    p.add_argument(
        "--backends",
        type=str_list,
        help="comma list, each optionally :fp16/:fp32/:int8 "
        f"(default {','.join(DEFAULT_BACKENDS)}; "
        "with --e2e: onnx-cpu,torch)",
    )
    p.add_argument(
        "--batches",
        type=int_list,
        default=DEFAULT_BATCHES,
        help=f"default {','.join(map(str, DEFAULT_BATCHES))} (large ones need GiBs on a CPU); "
        "on a GPU e.g. 1,8,64,256",
    )
    p.add_argument("--iters", type=positive_int, default=d.iters, help="timed runs per batch")
    p.add_argument(
        "--warmup", type=non_negative_int, default=d.warmup, help="untimed runs per batch"
    )
    p.add_argument("--budget-s", type=positive_float, default=d.budget_s, help="time cap per batch")
    p.add_argument(
        "--gap-s",
        type=seconds,
        default=d.gap_s,
        help="pause between timed runs, as between key presses (CPU ms then counts idle spinning)",
    )
    p.add_argument(
        "--no-spin",
        dest="spin",
        action="store_false",
        help="ONNX Runtime CPU threads sleep between runs (as `earsight live` runs them)",
    )
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: physical cores)")
    p.add_argument("--device", default=d.device, help="torch backend device")
    p.add_argument(
        "--peak-gflops",
        type=positive_float,
        help="device peak for the %% column (default: the CPU's measured SGEMM rate, or a "
        "datasheet GPU figure)",
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument(
        "--as-lines",
        action="store_true",
        help="one line per row, each value after its column's name (for a screen reader)",
    )
    _random_model_arguments(p.add_argument_group("random weights (instead of --model)"))
    _e2e_arguments(p.add_argument_group("key press to sound (--e2e)"))
    p.set_defaults(run=run_bench)


def _random_model_arguments(group: argparse._ArgumentGroup) -> None:
    from earsight.engine.bench import SynthSpec
    from earsight.trainer.mtnet.config import PRESETS

    s = SynthSpec()
    group.add_argument(
        "--preset", choices=sorted(PRESETS), help=f"MT-Net preset (default {s.preset})"
    )
    group.add_argument("--image-size", type=positive_int, help=f"default {s.image_size}")
    group.add_argument("--channels", type=positive_int, help=f"default {s.image_channels}")
    group.add_argument("--audio-length", type=positive_int, help=f"default {s.audio_length}")


def _random_spec(args: argparse.Namespace):
    """The SynthSpec the random-weights options ask for, or None when none was given."""
    from earsight.engine.bench import SynthSpec

    given = {
        "preset": args.preset,
        "image_size": args.image_size,
        "image_channels": args.channels,
        "audio_length": args.audio_length,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    if args.model is not None:
        raise UsageError(
            "--model times that model; --preset, --image-size, --channels and --audio-length "
            "time random weights",
            "give one or the other",
        )
    return SynthSpec(**given)


def _e2e_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--e2e",
        action="store_true",
        help="key press → first audio through the live loop (app/bench/e2e.py)",
    )
    group.add_argument(
        "--source",
        help="camera/video source (default: a video of the model's sample images)",
    )
    group.add_argument("--presses", type=positive_int, default=40, help="presses per backend")


def run_bench(args: argparse.Namespace) -> int:
    if args.e2e:
        from earsight.app.bench.e2e import DEFAULT_BACKENDS as E2E_BACKENDS
        from earsight.app.bench.e2e import E2EOptions, main_e2e
        from earsight.app.models import DEFAULT_MODEL

        model = str(args.model or DEFAULT_MODEL)
        backends = args.backends or E2E_BACKENDS
        opts = E2EOptions(model, args.source, backends, args.presses, args.threads)
        return main_e2e(opts, args.json, args.as_lines)
    from earsight.app.models import DEFAULT_MODEL, resolve_model
    from earsight.engine.bench import SynthSpec, run_bench
    from earsight.engine.bench_measure import DEFAULT_BACKENDS, BenchOptions
    from earsight.engine.bench_table import format_table

    opts = BenchOptions(
        backends=args.backends or DEFAULT_BACKENDS,
        batches=tuple(sorted(set(args.batches))),
        iters=args.iters,
        warmup=args.warmup,
        budget_s=args.budget_s,
        threads=args.threads,
        device=args.device,
        peak_gflops=args.peak_gflops,
        gap_s=args.gap_s,
        spin=args.spin,
    )
    synth = _random_spec(args)
    # shipped names too; no model and no random-weights option: the default model
    model = None if synth is not None else resolve_model(args.model or DEFAULT_MODEL)
    report = run_bench(model, opts, synth or SynthSpec())
    print(format_table(report, args.as_lines))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
