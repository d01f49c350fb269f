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
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from earsight import paths
from earsight.app.commands import add_doctor, add_live, add_soundscape
from earsight.app.engine_commands import (
    add_bench,
    add_engine,
    add_export,
)
from earsight.arguments import OneLineParser, positive_int, seconds
from earsight.console import plain_text_streams
from earsight.errors import EarSightError, Interrupted, trainer_not_installed

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # user errors, bad arguments
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head` reports for yes


# --- export ---------------------------------------------------------------------------------


# --- engine build ---------------------------------------------------------------------------


# --- bench ----------------------------------------------------------------------------------


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
        help=f"shipped model ({', '.join(available_models()) or 'none'}), 'taught', 'auto', or "
        f"a .onnx/.pt path (default {AUTO_MODEL}: the taught model once you taught words, else "
        f"{DEFAULT_MODEL})",
    )
    p.add_argument(
        "--out",
        "--out-dir",
        dest="out",
        type=Path,
        help="write <image stem>.wav here (created if needed)",
    )
    p.add_argument("--backend", choices=("auto", *BACKEND_NAMES), help="default auto")
    p.add_argument(
        "--threshold",
        type=float,
        help=f"top probability below which the answer is not trusted (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        help="below the threshold say 'not sure', or 'maybe X or Y' when X and Y together reach "
        f"it (default {GATE_MODES[0]})",
    )
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: physical cores)")
    p.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        default=None,
        help="on the CPU run the model as given, not its int8 variant (name.int8.onnx)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="options file (default $EARSIGHT_CONFIG, else the user config folder's "
        "earsight/config.toml); flags win",
    )
    p.set_defaults(run=_run_describe)


def _run_describe(args: argparse.Namespace) -> int:
    from earsight.app.modes.describe import (
        run_describe,  # prints each image's line as it is made; SIGTERM
    )

    return run_describe(args)


# --- teach ----------------------------------------------------------------------------------


def _add_teach(sub: argparse._SubParsersAction) -> None:
    from earsight.app.modes.teach_inputs import DEFAULT_SECONDS, DEFAULT_VIEWS

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
    p.add_argument(
        "--config",
        type=Path,
        help=f"config file whose source is the camera (default {paths.config_file()})",
    )
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--voice-file", type=Path, metavar="WAV", help="the word's sound")
    voice.add_argument("--espeak-voice", metavar="VOICE", help="espeak-ng says it (e.g. en-gb)")
    p.add_argument("--views", type=positive_int, default=DEFAULT_VIEWS, help="kept per side")
    p.add_argument("--seconds", type=seconds, default=DEFAULT_SECONDS, help="capture time per side")
    p.add_argument("--no-speech", dest="speak", action="store_false", help="print, do not speak")
    p.add_argument(
        "--no-learn",
        dest="learn_now",
        action="store_false",
        help="store the word only (learn later with --learn)",
    )
    p.add_argument(
        "--voice-steps", type=positive_int, help="training steps for the voice (default 400)"
    )
    p.add_argument("--base", type=Path, help="teach base to start from (default: the model's)")
    p.set_defaults(run=_run_teach, parser=p)


def _run_teach(args: argparse.Namespace) -> int:
    from earsight.app.modes.teach import run_teach

    other = args.list or args.learn or args.forget is not None or args.rename is not None
    if args.more and args.word is None and not other:
        args.parser.error("--more needs the WORD to add views of: earsight teach WORD --more")
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
    add_export,
    add_engine,
    add_bench,
    _add_describe,
    add_live,
    add_soundscape,
    add_doctor,
    _add_teach,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="earsight", description="Press a key, hear what the camera sees.")
    _add_verbosity(parser, default=False)
    parser.add_argument("-V", "--version", action="version", version=f"earsight {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # `earsight live -q` as well as `earsight -q live`
        _add_verbosity(command, default=argparse.SUPPRESS)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    """-v / -q; a subcommand's default SUPPRESS keeps what was given before the command."""
    group = parser.add_argument_group("output").add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug messages"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="only results and errors"
    )


def _version() -> str:
    """``0.2.0``, and in a git checkout its commit and date (``0.2.0, checkout 6d65363 of
    2026-12-02``): a checkout's version does not change at each pull, its commit does, and a
    user who pulled and ran ./install.sh could not tell whether the upgrade took."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("earsight")
    except PackageNotFoundError:  # run from a checkout that was never installed
        text = "(not installed)"
    commit = _checkout_commit()
    return f"{text}, checkout {commit}" if commit else text


def _checkout_commit() -> str | None:
    """``6d65363 of 2026-12-02`` when this code runs from a git checkout; None for an
    installed wheel, or without git."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]  # app/ → the checkout (a wheel: site-packages)
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h of %cs"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stdout, force=True)
    # Libraries' own warnings (scikit-learn's ConvergenceWarning in teach's k-means, pystoi's
    # "Not enough STFT frames" on a short word) are for developers: -v shows them, in the log.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # A log line into a closed pipe would print a "--- Logging error ---" traceback; the next
    # print() raises BrokenPipeError instead, which main() turns into a quiet stop.
    logging.raiseExceptions = False


def main(argv: Sequence[str] | None = None) -> int:
    plain_text_streams()  # also for `python -m earsight.app.cli`: --help holds "—" and "…"
    try:
        args = build_parser().parse_args(argv)  # Ctrl-C here (imports, a second): one line
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.verbose and args.quiet:  # one before the command, one after: argparse cannot see
        print("error: -v and -q say opposite things — give one of them", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.run(args) or 0)
    except Interrupted as err:  # Ctrl-C where it matters what was kept: said by the command
        print(f"interrupted: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
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
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as err:
        if err.filename is None:  # not about a file the user can fix: a bug, shown in full
            raise
        log.debug("file error", exc_info=True)  # -v: where it happened
        print(f"error: {file_error_line(err)}", file=sys.stderr)
        return EXIT_USAGE


def file_error_line(err: OSError) -> str:
    """A file or folder the user's account cannot use (a root-only config, a read-only taught
    folder, a full disk) as one line: what, why, and what to do about that cause."""
    import errno
    import getpass

    why = err.strerror or type(err).__name__
    elsewhere = (
        "point earsight elsewhere (EARSIGHT_CONFIG, EARSIGHT_DATA, EARSIGHT_TEACH, EARSIGHT_CACHE)"
    )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free some space on its disk, or {elsewhere}"
    elif err.errno == errno.EROFS:
        fix = f"its file system is mounted read-only: {elsewhere}"
    else:
        fix = (
            f"let the user running earsight ({getpass.getuser()}) read and write it, or {elsewhere}"
        )
    return f"cannot use {err.filename} ({why}) — {fix}"


def _reader_went_away() -> int:
    """Whoever read stdout stopped (``earsight describe DIR | head -3``): stop quietly, as Unix
    tools do. stdout now points at /dev/null, so Python's flush at exit cannot raise again
    (the recipe of Python's docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
