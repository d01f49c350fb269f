"""`earsight doctor`: checks everything `earsight live` needs and reports in plain lines.

Each check prints `ok   <what>: <detail>` or `FAIL <what>: <detail> — <fix>`; optional parts
(GPU, TensorRT) print `--   …` when absent. The exit code is 0 when `live` can run with these
options (model, camera, key input and either an audio device or --out-dir for WAV files), 1
otherwise. Devices are opened the way live opens them (the audio output with its deadline), so
a device that would hang or fail live fails here too.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from earsight import paths
from earsight.app.config import LiveOptions
from earsight.errors import EarSightError

if TYPE_CHECKING:  # the engine loads when doctor checks the model
    from earsight.engine.source import ModelSource

log = logging.getLogger(__name__)

CAMERA_WAIT_S = 3.0  # a USB camera can take a couple of seconds to deliver its first frame


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    silent: bool = False  # live would run, but without sound (no audio output device)

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "--  ")
        tail = f" — {self.fix}" if (self.fix and not self.ok) else ""
        return f"{mark} {self.name}: {self.detail}{tail}"


def check_model(options: LiveOptions) -> Check:
    from earsight.app.models import resolve_model
    from earsight.engine.source import read_model

    try:
        path = resolve_model(options.model)
    except EarSightError as err:
        return Check("model", False, err.what, err.fix)
    if path.suffix != ".onnx":
        return Check("model", path.is_file(), f"{path} (checkpoint, no checksum to compare)")
    try:
        source = read_model(path, int8=options.int8)  # raises on a checksum mismatch
    except EarSightError as err:
        return Check("model", False, err.what, err.fix)
    detail = f"{path.name}, its checksum matches its sidecar"
    return Check("model", True, detail + _int8_note(source, options))


def _int8_note(source: ModelSource, options: LiveOptions) -> str:
    """What ONNX Runtime CPU will run instead of the model: its int8 variant, if usable."""
    from earsight.engine.source import int8_variant_path

    name = int8_variant_path(source.path)
    if not options.int8 or not name.is_file():
        return ""
    variant = source.int8  # read_model logged why a variant is ignored
    if variant is None:
        return f"; {name.name} ignored (see the warning above)"
    return f"; on the CPU {variant.path.name}, its checksum matches too"


def check_camera(options: LiveOptions) -> Check:
    from earsight.app.camera.grabber import FrameGrabber, parse_source
    from earsight.errors import EarSightError

    try:
        spec = parse_source(options.source, loop=options.loop)
        with FrameGrabber(spec) as grabber:
            frame = grabber.latest(CAMERA_WAIT_S)
    except EarSightError as err:
        return Check("camera", False, err.what, err.fix)
    if frame is None:
        return Check(
            "camera",
            False,
            f"{options.source} opened but sent no frame",
            "check the cable, or that no other program uses the camera",
        )
    h, w = frame.image.shape[:2]
    return Check("camera", True, f"{options.source}: {w}×{h} frames")


def check_audio(options: LiveOptions) -> Check:
    """Opens the output as live does: a device the user named must exist, even with --out-dir."""
    from earsight.app.sound.audio import AudioOptions, AudioOut
    from earsight.app.sound.devices import AudioUnavailable, UnknownAudioDevice

    # live writes WAV files when there is no output (commands.py): --out-dir, else paths.wav_dir
    wavs = options.out_dir or paths.wav_dir()
    try:
        out = AudioOut(AudioOptions(device=options.audio_device))
    except UnknownAudioDevice as err:
        return Check("audio", False, err.what, err.fix)
    except AudioUnavailable as err:
        fix = "plug in headphones or a speaker to hear it; --out-dir DIR picks the folder"
        detail = f"{err.what}; live will write WAV files to {wavs} instead"
        return Check("audio", bool(options.out_dir), detail, fix, required=False, silent=True)
    out.close()
    return Check("audio", True, f"output device {options.audio_device or 'default'} opens")


def check_microphone(_options: LiveOptions) -> Check:
    """Opens the default input as ``earsight teach`` does before it asks for anything
    (app.sound.microphone.check_microphone). Optional: live needs none, and a taught word's
    sound can come from a WAV file or espeak-ng instead."""
    fix = "teach mode records the word's sound from it; or use --voice-file or --espeak-voice"
    try:
        from earsight.app.sound.microphone import check_microphone as open_input
    except ImportError as err:  # sounddevice or PortAudio missing
        return Check("microphone", False, f"no audio input library ({err})", fix, required=False)
    try:
        name = open_input()
    except EarSightError as err:  # NoMicrophone, UnknownMicrophone: one line each
        return Check("microphone", False, err.what, fix, required=False)
    return Check("microphone", True, f"input {name!r} opens (teach mode)", required=False)


def check_keys(options: LiveOptions) -> Check:
    """The key input live would use can work here (started and stopped, as live starts it)."""
    import os
    import stat

    from earsight.app.keys.controllers import KeyMap, display_problem, make_controller
    from earsight.errors import EarSightError
    from earsight.logs import quieter

    kind = options.keys
    if kind == "auto":
        kind = "terminal" if display_problem() else "hotkey"
    if kind == "terminal":
        if os.isatty(0):
            return Check("keys", True, "terminal: keys typed here")
        try:
            mode = os.fstat(0).st_mode
        except OSError:
            mode = 0
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return Check("keys", True, "terminal: lines from a pipe")
        fix = "run it in a terminal, or use --keys hotkey (a desktop) or --keys evdev (a button)"
        return Check("keys", False, "terminal: stdin is not a terminal or a pipe", fix)
    try:
        controller = make_controller(
            kind,
            lambda *_: None,
            keymap=KeyMap.for_describe(options.hotkey),
            evdev_device=options.evdev_device,
        )
        with quieter("earsight.app.keys", level=logging.ERROR):  # the check line says it, once
            controller.start()
        waiting = getattr(controller, "waiting", None)  # evdev: a button not connected yet
        controller.stop()
    except EarSightError as err:
        return Check("keys", False, err.what, err.fix)
    if waiting:
        fix = "connect or pair the button; if the name is wrong, see ls /dev/input/by-id"
        return Check("keys", False, f"{waiting}: live waits for it", fix, required=False)
    return Check("keys", True, f"{kind}: {options.hotkey.upper() if kind == 'hotkey' else 'ok'}")


def check_speech(_options: LiveOptions) -> Check:
    path = shutil.which("espeak-ng")
    if path is None:
        return Check(
            "speech",
            False,
            "espeak-ng not found",
            "sudo apt-get install espeak-ng (or ./install.sh)",
            required=False,
        )
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    name = version.stdout.strip().split(" Data")[0].strip()  # "eSpeak NG text-to-speech: 1.51"
    return Check("speech", True, name, required=False)


def check_gpu(_options: LiveOptions) -> Check:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        return Check("GPU", True, "ONNX Runtime can use CUDA", required=False)
    smi = shutil.which("nvidia-smi")
    detail = "NVIDIA driver present but ONNX Runtime is CPU-only" if smi else "no NVIDIA GPU"
    return Check("GPU", False, detail, "the CPU works; a GPU is optional", required=False)


def check_tensorrt(_options: LiveOptions) -> Check:
    try:
        import tensorrt as trt
    except ImportError:
        return Check(
            "TensorRT",
            False,
            "not installed",
            "optional: pip install earsight[tensorrt] on a CUDA machine",
            required=False,
        )
    return tensorrt_usable(f"version {trt.__version__}")


def tensorrt_usable(version: str) -> Check:
    """TensorRT (``version`` found) as the backend uses it: its CUDA buffers and streams are
    torch's (engine/backends/tensorrt.py), so torch must be there and see the GPU."""
    try:
        import torch
    except ImportError:
        fix = "pip install 'earsight[tensorrt]' (it brings torch) or ./install.sh on this machine"
        return Check(
            "TensorRT", False, f"{version}, but its backend needs torch", fix, required=False
        )
    if not torch.cuda.is_available():
        return Check(
            "TensorRT",
            False,
            f"{version}, but torch {torch.__version__} sees no CUDA GPU",
            "install torch built for this GPU's CUDA (./install.sh does on an NVIDIA machine)",
            required=False,
        )
    return Check("TensorRT", True, version, required=False)


def check_trainer(_options: LiveOptions) -> Check:
    """The ``train`` extra (torch): live does not need it; teach mode's learning does."""
    import importlib.util

    from earsight.errors import TRAIN_EXTRA_FIX

    if importlib.util.find_spec("torch") is None:
        detail = "not installed (a runtime-only install): taught words are stored, not learned"
        return Check("trainer", False, detail, f"optional: {TRAIN_EXTRA_FIX}", required=False)
    from importlib.metadata import version

    return Check("trainer", True, f"torch {version('torch')} (teach, export)", required=False)


def check_engine_cache(_options: LiveOptions) -> Check:
    """Where TensorRT engines are kept: writable (probed in it, or in the nearest folder that
    exists, which the first build creates it in), and how many it holds."""
    folder = paths.engine_cache_dir()
    try:
        paths.probe_creatable(folder)
    except OSError as err:
        return Check(
            "engine cache",
            False,
            f"{folder} cannot be written ({err.strerror or err})",
            "set EARSIGHT_ENGINE_CACHE to a folder this user can write (TensorRT engines)",
            required=False,
        )
    plans = sorted(folder.glob("*.plan")) if folder.is_dir() else []
    held = (
        f"{len(plans)} TensorRT engine{'s' * (len(plans) != 1)}" if plans else "no TensorRT engines"
    )
    return Check("engine cache", True, f"{folder}: {held}", required=False)


CHECKS: tuple[Callable[[LiveOptions], Check], ...] = (
    check_model,
    check_camera,
    check_keys,
    check_audio,
    check_microphone,
    check_speech,
    check_gpu,
    check_tensorrt,
    check_trainer,
    check_engine_cache,
)


def run_doctor(
    options: LiveOptions, printer: Callable[[str], None] = print, first: Check | None = None
) -> int:
    """Print one line per check (``first``, the config file's, before them); 0 when `live`
    can run, 1 otherwise."""
    failed, heard = False, True
    if first is not None:
        printer(first.line())
        failed |= first.required and not first.ok
    for check in CHECKS:
        try:
            result = check(options)
        except Exception as err:  # a check must never take the doctor down
            result = Check(check.__name__.removeprefix("check_"), False, f"check crashed: {err}")
        printer(result.line())
        failed |= result.required and not result.ok
        heard &= not result.silent
    if failed:
        printer("live cannot run: fix the FAIL lines above")
    elif not heard:
        printer("live can run, but nobody will hear it: no audio output (see the audio line)")
    else:
        printer("live can run")
    return 1 if failed else 0
