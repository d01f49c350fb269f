"""The app's subcommands of `earsight`: live, doctor, soundscape (registered in app/cli.py).

Each ``add_<name>(sub)`` builds its parser; the run functions assemble the library pieces:
runtime (engine.runtime) → frame grabber (app.camera.grabber) → audio (app.sound.audio) → status
voice
(app.sound.voice) → controller (app.keys.controllers), then hand them to
``earsight.app.modes.live.LiveApp``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earsight import paths
from earsight.app.config import KEY_KINDS, MODES, LiveOptions, resolve_options
from earsight.app.keys.names import keys_epilog, prompt_keys, ready_line
from earsight.arguments import positive_int
from earsight.errors import EarSightError, UsageError

if TYPE_CHECKING:  # the engine loads when live starts, not for --help
    from earsight.engine.runtime import RuntimeOptions

log = logging.getLogger(__name__)

LEARNING_LEFT = "learning left unfinished: the taught words are kept; earsight teach --learn"
OUT_DIR_UNUSED = (
    "playing through the audio device: --out-dir {out_dir} is only used without one"
    " (--record DIR keeps every sound)"
)
WAV_FALLBACK_KEEP = 500  # files (≈ 45 kB each) the default WAV folder keeps without a sound device
ERROR_SPEECH_S = 8.0  # a start-up error is spoken to the end (up to this) before live exits


# (flags, add_argument keywords): one flag per LiveOptions field; defaults are None so the
# config file can fill them.
_FLAGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--model",),
        {
            "help": "auto (default: your taught words' model, else the shipped default) | "
            "taught | a shipped model name | a .onnx/.pt path"
        },
    ),
    (("--backend",), {"help": "auto | tensorrt | onnx-cuda | onnx-cpu | torch"}),
    (
        ("--source",),
        {"help": "0, /dev/video0, /dev/v4l/by-id/…, csi://0, rtsp://…, a file, a folder"},
    ),
    (("--loop",), {"action": "store_true", "default": None, "help": "loop a video file"}),
    (("--keys",), {"choices": KEY_KINDS, "help": "auto = hotkey with a display, else terminal"}),
    (("--hotkey",), {"help": "describe key of the desktop hotkey (default f9)"}),
    (("--evdev-device",), {"help": "input device of a wearable button"}),
    (("--audio-device",), {"help": "sounddevice output name or index"}),
    (
        ("--out-dir",),
        {
            "help": "write WAVs here when there is no audio device (all kept; without it the "
            f"user data folder keeps the newest {WAV_FALLBACK_KEEP})"
        },
    ),
    (("--threshold",), {"type": float, "help": "confidence below which to say 'not sure'"}),
    (
        ("--gate",),
        {
            "choices": ("not-sure", "top-two"),
            "help": "below --threshold: say 'not sure', or the two likeliest words when "
            "together they reach it",
        },
    ),
    (("--mode",), {"choices": MODES, "help": "start in word or soundscape mode"}),
    (
        ("--verbosity",),
        {
            "type": int,
            "choices": (0, 1, 2),
            "help": "spoken status: 0 errors only; 1 also start-up, ready, camera lost; 2 also "
            "details and the word again",
        },
    ),
    (
        ("--no-speech",),
        {
            "dest": "speak_status",
            "action": "store_false",
            "default": None,
            "help": "print status lines but do not speak them",
        },
    ),
    (("--threads",), {"type": positive_int, "help": "CPU inference threads"}),
    (
        ("--no-int8",),
        {
            "dest": "int8",
            "action": "store_false",
            "default": None,
            "help": "on the CPU run the model as given, not its int8 variant",
        },
    ),
)
# What `earsight doctor` checks: the model (and its int8 variant), camera, keys, audio.
DOCTOR_FLAGS = frozenset(
    {"--model", "--no-int8", "--source", "--loop", "--keys", "--hotkey", "--evdev-device"}
    | {"--audio-device", "--out-dir"}
)


def _live_flags(p: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """The LiveOptions flags (``only`` those named), and --config."""
    for flags, kwargs in _FLAGS:
        if only is None or flags[0] in only:
            p.add_argument(*flags, **kwargs)
    p.add_argument("--config", type=Path, help=f"config file (default {paths.config_file()})")


def options_from(args: argparse.Namespace) -> LiveOptions:
    """The options of live/soundscape/doctor: defaults, config file, flags. ``earsight -q``
    ("only results and errors") is verbosity 0 unless --verbosity says otherwise."""
    names = {f.name for f in dataclasses.fields(LiveOptions)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "quiet", False) and flags.get("verbosity") is None:
        flags["verbosity"] = 0
    if getattr(args, "command", None) == "soundscape" and flags.get("mode") != "soundscape":
        raise UsageError(
            "earsight soundscape starts in soundscape mode", "for words use `earsight live`"
        )
    return resolve_options(flags, args.config)


def add_live(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live",
        help="camera loop: press a key, hear what the camera sees",
        epilog=keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _live_flags(p)
    p.add_argument("--record", type=Path, help="also save every sound played as a WAV here")
    p.set_defaults(run=run_live)


def add_soundscape(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soundscape",
        help="live, starting in vOICe soundscape mode (a key toggles)",
        epilog=keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _live_flags(p)
    p.add_argument("--record", type=Path, help="also save every sound played as a WAV here")
    p.set_defaults(run=run_live, mode="soundscape")


def add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check model, camera, keys, audio, speech, GPU; exit 0 if ok")
    _live_flags(p, only=DOCTOR_FLAGS)
    p.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Doctor's first line names the config file in use and what it sets; a bad file is a
    FAIL line (what is wrong, and the fix) and the other checks run with the flags alone."""
    from earsight.app.config import ConfigError, LiveOptions, read_config
    from earsight.app.doctor import Check
    from earsight.app.doctor import run_doctor as doctor
    from earsight.app.models import pinned_model_note

    source = args.config or paths.config_file()
    try:
        options = options_from(args)
        keys = sorted(read_config(source, required=args.config is not None))
    except ConfigError as err:
        check = Check("config", False, err.what, err.fix)
        names = {f.name for f in dataclasses.fields(LiveOptions)}
        flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
        return doctor(LiveOptions(**flags), first=check)
    if keys:
        note = pinned_model_note(options.model, args.config)
        check = Check("config", True, f"{source} sets {', '.join(keys)}" + f"; {note}" * bool(note))
    elif source.is_file():
        check = Check("config", True, f"{source} sets nothing: the defaults")
    else:
        check = Check("config", False, f"no file at {source}: the defaults", required=False)
    return doctor(options, first=check)


def live_runtime_options(options: LiveOptions) -> RuntimeOptions:
    """How the live app runs the model: key presses are seconds apart, so ONNX Runtime's threads
    do not spin-wait between them (≈ 7 ms slower per press, a quarter of the CPU: a wearable's
    battery, and a free core for the audio callback right after inference)."""
    from earsight.engine.runtime import RuntimeOptions

    return RuntimeOptions(threads=options.threads, cpu_int8=options.int8, cpu_spin=False)


def open_live_audio(options: LiveOptions, runtime_options: RuntimeOptions, voice: Any) -> Any:
    """The audio output (opened with a deadline), or WAV files, said out loud; errors raise."""
    from earsight.app.sound.audio import AudioOptions, WavSink, open_audio

    audio = open_audio(
        AudioOptions(
            device=options.audio_device,
            sample_rate=runtime_options.postprocess.output_rate or AudioOptions.sample_rate,
        ),
        Path(options.out_dir) if options.out_dir else paths.wav_dir(),
        on_fallback=lambda message: voice.say(message, level=0),
        # files the user asked for (--out-dir) are all kept; the default folder keeps the newest
        keep_newest=None if options.out_dir else WAV_FALLBACK_KEEP,
    )
    if options.out_dir and not isinstance(audio, WavSink):
        # --out-dir is the fall-back's folder: a user who gave it expecting files is told why
        # there are none (printed; spoken only at verbosity 2).
        voice.say(OUT_DIR_UNUSED.format(out_dir=options.out_dir), level=2)
    return audio


def build_live(options: LiveOptions, voice: Any, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Audio, model and camera, in start-up order, each closed by ``stack``; speaks progress."""
    from earsight.app.camera.grabber import FrameGrabber, GrabberOptions, parse_source
    from earsight.app.models import AUTO_MODEL, resolve_model, unlearned_note
    from earsight.app.modes.answer import ConfidenceGate
    from earsight.engine.runtime import load
    from earsight.engine.sidecar import taught_words

    gate = ConfidenceGate(options.threshold, options.gate)
    source = parse_source(options.source, loop=options.loop)  # a typo fails before the model
    runtime_options = live_runtime_options(options)
    # The stream opens first so that its start-up pause (≈ 2 s through PulseAudio) passes
    # while the model loads; a mismatched rate is resampled in play().
    audio = open_live_audio(options, runtime_options, voice)
    stack.callback(audio.close)
    voice.use_output(audio)  # one open device: status speech plays through it (not aplay)
    model_path = resolve_model(options.model)
    if options.model == AUTO_MODEL and (note := unlearned_note()) is not None:
        voice.say(f"{note}; the shipped words answer meanwhile")
    runtime = load(model_path, options.backend, runtime_options)
    stack.callback(runtime.close)
    runtime.warmup()
    if not audio.wait_until_flowing():
        log.warning("the audio device is slow to start: the first sound may come late")
    where = "on the GPU" if runtime.info.device.startswith("cuda") else "on the CPU"
    name = runtime.info.model.stem.removesuffix(".int8")  # the CPU variant is the same model
    words = taught_words(runtime.info.sidecar)
    voice.say(
        f"model {name} ready {where}" + (f", with your words: {', '.join(words)}" * bool(words))
    )
    # A camera or stream that is not there yet (a wearable boots faster than its USB camera)
    # is waited for: the grabber says so every few seconds and presses get "no camera".
    grabber = FrameGrabber(
        source, GrabberOptions(wait=True), on_status=lambda status: voice.say(status, level=0)
    )
    stack.enter_context(grabber)
    watcher = _model_watcher(options, runtime_options, model_path, voice)
    if watcher is not None:
        watcher.start()
        stack.callback(watcher.stop)
    parts = {"gate": gate, "runtime": runtime, "audio": audio, "grabber": grabber}
    return {**parts, "watcher": watcher}


def _model_watcher(options: LiveOptions, runtime_options: Any, path: Path, voice: Any) -> Any:
    """For "auto"/"taught": a watcher that loads the re-learned model (app/modes/model_watch.py)."""
    from earsight.app.modes.model_watch import ModelWatcher, watched
    from earsight.engine.runtime import load

    if not watched(options.model):
        return None

    def reload(new_path: Path) -> Any:
        runtime = load(new_path, options.backend, runtime_options)
        runtime.warmup()
        return runtime

    return ModelWatcher(
        options.model, reload, path, on_status=lambda status: voice.say(status, level=0)
    )


def run_live(args: argparse.Namespace) -> int:
    """`earsight live`: errors are spoken as well as printed (by main, on stderr)."""
    from earsight.app.sound.voice import StatusVoice

    try:
        options = options_from(args)
    except EarSightError as err:  # a bad config file: a headless wearable must hear it too
        _speak_start_error(err, args)
        raise
    # Messages wait for the audio output to open rather than open the device themselves
    voice = StatusVoice(
        verbosity=options.verbosity,
        enabled=options.speak_status,
        shared_output=True,
        quiet=getattr(args, "quiet", False),
    )
    from earsight.app.models import pinned_model_note

    if (note := pinned_model_note(options.model, args.config)) is not None:
        voice.say(note, level=0)  # a model pinned before teach mode: the taught words unused
    try:
        with one_live_per_source(options.source):
            return _run_live(options, args.record, voice)
    except EarSightError as err:
        voice.use_output(None)  # the audio output is closed by now: the voice's own player
        voice.say(f"error: {err.what}", level=0, printed=False)
        voice.flush(ERROR_SPEECH_S)
        raise
    finally:
        voice.close()


def _speak_start_error(err: EarSightError, args: argparse.Namespace) -> None:
    """Say an error found before the options exist (the config file's) in the default voice,
    unless --no-speech was given; main prints it."""
    from earsight.app.sound.voice import StatusVoice

    if getattr(args, "speak_status", None) is False:
        return
    voice = StatusVoice(quiet=getattr(args, "quiet", False))
    try:
        voice.say(f"error: {err.what}", level=0, printed=False)
        voice.flush(ERROR_SPEECH_S)
    finally:
        voice.close()


def source_identity(source: str) -> str:
    """What ``source`` opens, so that one camera has one name: ``0`` and ``/dev/video0`` and a
    ``/dev/v4l/by-id/…`` link to it, or ``cat.avi`` and its absolute path, are one source.
    URIs (rtsp://, csi://) are their own names."""
    import os

    text = source.strip()
    if text.isdecimal():
        text = f"/dev/video{int(text)}"  # OpenCV's index N is V4L2's /dev/videoN
    if "://" in text:
        return text
    return os.path.realpath(os.path.expanduser(text))


@contextlib.contextmanager
def one_live_per_source(source: str) -> Iterator[None]:
    """Refuse a second ``earsight live`` on the same camera: two would answer every press in
    two voices (desktop keys are heard by both), and a real camera opens only once. A lock file
    per source in the cache folder; where it cannot be made, no guard (logged)."""
    import hashlib

    from earsight.locks import exclusive

    folder = paths.cache_dir("live")
    busy = UsageError(
        f"another earsight live is already running on --source {source}",
        "stop it first (q, or Ctrl-C in its terminal; `systemctl stop earsight` for the "
        "service), or give another --source",
    )
    key = source_identity(source)
    with contextlib.ExitStack() as held:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"
            held.enter_context(exclusive(lock, 0.0, busy))
        except OSError as err:  # a read-only cache: run unguarded rather than not at all
            log.debug("no single-instance guard (%s)", err)
        yield


def _run_live(options: LiveOptions, record: Path | None, voice: Any) -> int:
    """Key input first (it must work before "ready"), then audio, model, camera; then serve."""
    from earsight.app.keys.controllers import KeyMap, make_controller
    from earsight.app.modes.live import LiveApp, PressRelay
    from earsight.app.modes.live_teach import LiveTeacher, Phase
    from earsight.trainer.teach.store import TeachStore

    voice.say("EarSight starting")
    relay = PressRelay(voice)
    keymap = KeyMap.for_describe(options.hotkey)  # once: it says when an action moves
    controller = make_controller(
        options.keys, relay, keymap=keymap, evdev_device=options.evdev_device
    )
    controller.on_closed = relay.closed
    keys = prompt_keys(type(controller).__name__, keymap)  # the keys the user has
    with contextlib.ExitStack() as stack:
        controller.start()
        stack.callback(controller.stop)
        parts = build_live(options, voice, stack)
        app = LiveApp(
            options,
            parts["runtime"],
            parts["grabber"],
            parts["audio"],
            voice,
            parts["gate"],
            record_dir=record,
            watcher=parts["watcher"],
            teacher=LiveTeacher(
                parts["grabber"],
                voice,
                TeachStore(paths.taught_root()),
                keys=keys,
            ),
            describe_key=keys.describe,
        )
        stack.callback(lambda: app.runtime.close())  # the model in use at the end (swaps)
        relay.attach(app)  # a quit or closed key input during start-up takes effect now
        if not app.stop_event.is_set():
            voice.say(ready_line(options.mode, keys))
        code = app.run(controller)
    if app.teacher is not None and app.teacher.left_at_quit() is Phase.LEARNING:
        voice.say(LEARNING_LEFT, level=0)
        voice.flush(ERROR_SPEECH_S)
        sys.stdout.flush()
        sys.stderr.flush()
        # torch's worker threads abort the interpreter's own exit ("terminate called without an
        # active exception", SIGABRT, exit 134); the model is written last and atomically, so an
        # unfinished learn leaves the words stored and the old model as it was
        os._exit(code)
    return code
