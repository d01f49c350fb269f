"""``earsight``: a thin command line over the library (app.*, engine.*, trainer.*).

    earsight export CHECKPOINT -o model.onnx [--fp16 | --int8 [--data-root DIR]] [--flip-tta]
    earsight engine build model.onnx [--max-batch N]
    earsight bench [--model PATH] [--backends torch,onnx-cpu] [--batches 1,8,64,256]
    earsight describe IMAGE... [--out DIR]
    earsight live [--source 0] [--keys auto|hotkey|terminal|evdev] [--model cifar10-ad]
    earsight soundscape [...]      live, starting in the vOICe soundscape mode
    earsight doctor [...]          checks camera, audio, speech, GPU, TensorRT, model
    earsight teach WORD [...] | --list | --forget WORD | --rename OLD NEW

Adding a subcommand is one ``_add_<name>(sub)`` function that builds its parser and sets
``run=<function(args) -> int>``, plus one entry in ``COMMANDS``. User errors (``EarSightError``,
bad arguments) print one ``error: …`` line on stderr and exit 2, never a traceback. Messages are
plain lines on stdout (no colour, no progress bars): they end up in logs and screen readers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from earsight.app.commands import add_doctor, add_live, add_soundscape
from earsight.errors import EarSightError, trainer_not_installed

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # user errors, bad arguments
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints usage + message; we print one line
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (≥ 0), got {text!r}") from None
    if not 0.0 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"expected seconds in 0..60, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part) for part in text.split(",") if part.strip())


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# --- export ---------------------------------------------------------------------------------


def _add_export(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--opset", type=_positive_int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--max-batch", type=_positive_int, default=DEFAULT_MAX_BATCH)
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from earsight.engine.export import export_onnx

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


# --- engine build ---------------------------------------------------------------------------


def _add_engine(sub: argparse._SubParsersAction) -> None:
    from earsight.engine.build import DEFAULT_OPT_BATCH, DEFAULT_WORKSPACE_MB

    p = sub.add_parser("engine", help="TensorRT engines")
    engine_sub = p.add_subparsers(dest="engine_command", required=True, metavar="ACTION")
    b = engine_sub.add_parser("build", help="build (or reuse) the cached TensorRT engine")
    b.add_argument("model", type=Path, help="the .onnx (with its .onnx.json sidecar)")
    b.add_argument("--max-batch", type=_positive_int, default=64, help="profile max batch")
    b.add_argument("--opt-batch", type=_positive_int, default=DEFAULT_OPT_BATCH)
    b.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    b.add_argument("--workspace-mb", type=_positive_int, default=DEFAULT_WORKSPACE_MB)
    b.add_argument("--gpu", type=int, default=0, help="CUDA device index")
    b.add_argument("--cache-dir", type=Path, default=None, help="default: user cache/engines")
    b.add_argument("--rebuild", action="store_true", help="ignore a valid cached engine")
    b.set_defaults(run=_run_engine_build)


ENGINE_BUILD_FIX = (
    "engine build needs an NVIDIA GPU with TensorRT (pip install earsight[tensorrt]); without "
    "one, skip it: describe and live run the .onnx on the CPU as it is"
)


def _run_engine_build(args: argparse.Namespace) -> int:
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


# --- bench ----------------------------------------------------------------------------------


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from earsight.engine.bench import DEFAULT_BACKENDS, DEFAULT_BATCHES, BenchOptions, SynthSpec

    d, s = BenchOptions(), SynthSpec()
    p = sub.add_parser("bench", help="time backends against torch eager in one run")
    p.add_argument("--model", type=Path, help=".onnx or .pt; default: random weights (below)")
    p.add_argument(
        "--backends",
        type=_str_list,
        help=f"comma list, each optionally :fp16/:fp32 (default {','.join(DEFAULT_BACKENDS)}; "
        "with --e2e: onnx-cpu,torch)",
    )
    p.add_argument("--batches", type=_int_list, default=DEFAULT_BATCHES, help="e.g. 1,8,64,256")
    p.add_argument("--iters", type=_positive_int, default=d.iters, help="timed runs per batch")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed runs per batch")
    p.add_argument("--budget-s", type=float, default=d.budget_s, help="time cap per batch")
    p.add_argument(
        "--gap-s",
        type=_seconds,
        default=d.gap_s,
        help="pause between timed runs, as between key presses (CPU ms then counts idle spinning)",
    )
    p.add_argument(
        "--no-spin",
        dest="spin",
        action="store_false",
        help="ONNX Runtime CPU threads sleep between runs (as `earsight live` runs them)",
    )
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: physical cores)")
    p.add_argument("--device", default=d.device, help="torch backend device")
    p.add_argument(
        "--peak-gflops",
        type=float,
        help="device peak for the %% column (default: CPU estimate from "
        "cores × GHz × FLOP/cycle, or a datasheet GPU figure)",
    )
    p.add_argument("--preset", default=s.preset, help="random model preset (no --model)")
    p.add_argument("--image-size", type=_positive_int, default=s.image_size)
    p.add_argument("--channels", type=_positive_int, default=s.image_channels)
    p.add_argument("--audio-length", type=_positive_int, default=s.audio_length)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument(
        "--e2e",
        action="store_true",
        help="key press → first audio through the live loop (app/bench/e2e.py)",
    )
    p.add_argument("--source", help="--e2e: camera/video source (default: a sample-digit video)")
    p.add_argument("--presses", type=_positive_int, default=40, help="--e2e: presses per backend")
    p.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    if args.e2e:
        from earsight.app.bench.e2e import DEFAULT_BACKENDS as E2E_BACKENDS
        from earsight.app.bench.e2e import E2EOptions, main_e2e
        from earsight.app.models import DEFAULT_MODEL

        model = str(args.model or DEFAULT_MODEL)
        backends = args.backends or E2E_BACKENDS
        opts = E2EOptions(model, args.source, backends, args.presses, args.threads)
        return main_e2e(opts, args.json)
    from earsight.engine.bench import DEFAULT_BACKENDS, BenchOptions, SynthSpec, run_bench
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
    synth = SynthSpec(args.preset, args.image_size, args.channels, args.audio_length)
    report = run_bench(args.model, opts, synth)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


# --- describe -------------------------------------------------------------------------------


def _add_describe(sub: argparse._SubParsersAction) -> None:
    from earsight.app.models import AUTO_MODEL, DEFAULT_MODEL, available_models
    from earsight.app.modes.answer import DEFAULT_THRESHOLD, GATE_MODES
    from earsight.engine.runtime import BACKEND_NAMES

    p = sub.add_parser("describe", help="say what image files show: print the word, write WAVs")
    p.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files (PNG, JPEG, BMP, TIFF, WebP) or folders (their images, in name order)",
    )
    p.add_argument(
        "--model",
        default=AUTO_MODEL,
        help=f"shipped model ({', '.join(available_models()) or 'none'}), 'taught', or a "
        f".onnx/.pt path (default: the taught model once you taught words, else {DEFAULT_MODEL})",
    )
    p.add_argument("--out", type=Path, help="write <image stem>.wav here (created if needed)")
    p.add_argument("--backend", choices=("auto", *BACKEND_NAMES), default="auto")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="top probability below which the answer is not trusted (default %(default)s)",
    )
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        default=GATE_MODES[0],
        help="below the threshold say 'not sure' or 'maybe X or Y' (default %(default)s)",
    )
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: physical cores)")
    p.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        help="on the CPU run the model as given, not its int8 variant (name.int8.onnx)",
    )
    p.set_defaults(run=_run_describe)


def _run_describe(args: argparse.Namespace) -> int:
    from earsight.app.modes.describe import (
        run_describe,  # prints each image's line as it is made; SIGTERM
    )

    return run_describe(args)


# --- teach ----------------------------------------------------------------------------------


def _add_teach(sub: argparse._SubParsersAction) -> None:
    from earsight.app.modes.teach import DEFAULT_SECONDS, DEFAULT_VIEWS

    p = sub.add_parser(
        "teach",
        help="store your own object: its views and its spoken word (then: learning)",
        description="Teach a word: photos from the camera (or a video, a folder, --photos) and "
        "its sound from the microphone, a WAV file or espeak-ng, stored in $EARSIGHT_TEACH "
        "(default: the user data folder's earsight/taught).",
    )
    p.add_argument("word", nargs="?", help="the word to teach, e.g. 'front door key'")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="the taught words")
    action.add_argument("--forget", metavar="WORD", help="remove a taught word and its files")
    action.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"), help="rename a taught word")
    action.add_argument("--more", action="store_true", help="add views of a taught WORD")
    action.add_argument("--learn", action="store_true", help="learn the taught words again")
    photos = p.add_mutually_exclusive_group()
    photos.add_argument(
        "--source", help="camera (0, /dev/video0, csi://0, rtsp://…), video, folder"
    )
    photos.add_argument("--photos", type=Path, metavar="DIR", help="use these photos, no camera")
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--voice-file", type=Path, metavar="WAV", help="the word's sound")
    voice.add_argument("--espeak-voice", metavar="VOICE", help="espeak-ng says it (e.g. en-gb)")
    p.add_argument("--views", type=_positive_int, default=DEFAULT_VIEWS, help="kept per side")
    p.add_argument(
        "--seconds", type=_seconds, default=DEFAULT_SECONDS, help="capture time per side"
    )
    p.add_argument("--no-speech", dest="speak", action="store_false", help="print, do not speak")
    p.add_argument(
        "--no-learn",
        dest="learn_now",
        action="store_false",
        help="store the word only (learn later with --learn)",
    )
    p.add_argument(
        "--voice-steps", type=_positive_int, help="training steps for the voice (default 400)"
    )
    p.add_argument("--base", type=Path, help="teach base to start from (default: the model's)")
    p.set_defaults(run=_run_teach, parser=p)


def _run_teach(args: argparse.Namespace) -> int:
    from earsight.app.modes.teach import run_teach

    other = args.list or args.learn or args.forget is not None or args.rename is not None
    if other == (args.word is not None):  # exactly one of: WORD, --list, --forget, --rename
        args.parser.error(
            "give a WORD to teach, or one of --list, --learn, --forget WORD, --rename OLD NEW"
        )
    given = [f for f in ("source", "photos", "voice_file", "espeak_voice") if getattr(args, f)]
    if other and given:
        args.parser.error(f"--{given[0].replace('_', '-')} goes with teaching a WORD")
    if args.seconds <= 0:
        args.parser.error("--seconds must be more than 0")
    if args.more and (args.voice_file or args.espeak_voice):
        args.parser.error("--more adds views only; the word keeps its voice")
    return run_teach(args)


# --- main -----------------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_export,
    _add_engine,
    _add_bench,
    _add_describe,
    add_live,
    add_soundscape,
    add_doctor,
    _add_teach,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="earsight", description="Press a key, hear what the camera sees.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stdout, force=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.run(args) or 0)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:  # a runtime-only install asked to train, export or run a .pt
        missing = trainer_not_installed(err, f"earsight {args.command}")
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
