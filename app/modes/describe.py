"""``earsight describe``: image files → the spoken word (WAV) and a plain line per image.

    rt = engine.runtime.load(app.models.resolve_model("cifar10-ad"))
    for d in describe_images(["cat.jpg"], rt, out_dir=Path("wavs"), gate=ConfidenceGate()):
        print(d.error or f"{d.image.name}: {d.word}")

Images are fitted to the model's input the way the live camera path will be: centre-cropped to
the input's aspect ratio, resized, converted to its channels (grey ↔ RGB; OpenCV's BGR order is
turned into the RGB the models were trained on). Pixels are never inverted: MNIST-style models
expect a light digit on a dark background, so a scan of dark ink on white paper must be inverted
by the caller (``255 - img``). Guessing the polarity would silently break light-on-dark inputs,
and the model's per-image standardization (Eq. 1) does not undo it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earsight.app.camera.sources import folder_images
from earsight.app.modes.answer import ConfidenceGate, answer
from earsight.engine.postprocess import postprocess
from earsight.engine.runtime import Runtime
from earsight.errors import UsageError
from earsight.trainer.data.image_io import IMAGE_SUFFIXES, ImageFileError, read_image
from earsight.trainer.data.preprocess import fit_to_input
from earsight.wav import write_wav as write_wav_file

log = logging.getLogger(__name__)

BATCH = 64  # images per runtime call: TensorRT's default profile maximum, and bounded memory
OPENCV_HINT = "install OpenCV: pip install opencv-python-headless (or ./install.sh)"


ImageError = ImageFileError  # the name callers catch: missing, not a file, too big, corrupt


@dataclass(frozen=True)
class Description:
    """What was said about one image; ``error`` set (and nothing else) when it could not be read."""

    image: Path
    word: str  # what the user hears: the top word, "not sure" or "maybe X or Y"; "" on error
    top: tuple[tuple[str, float], ...]  # the two most probable (word, probability), best first
    confident: bool
    wav: Path | None  # the WAV written, None without out_dir or on error
    duration_s: float  # length of the spoken clip
    error: str | None = None  # one-line message naming the file

    @property
    def ok(self) -> bool:
        return self.error is None


# --- images ---------------------------------------------------------------------------------


def _cv2():
    try:
        import cv2  # the [app] extra: the trainer and engine never need it
    except ImportError as err:
        raise UsageError("OpenCV is not installed", OPENCV_HINT) from err
    return cv2


def expand_images(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given; a folder → its images (suffixes and natural order of ``live --source
    DIR``: img2.png before img10.png), not recursive. A folder without images stays itself, so
    that it gets its own error line."""
    out: list[Path] = []
    for path in map(Path, paths):
        images = folder_images(path) if path.is_dir() else []
        out.extend(images or [path])
    return out


def skipped_subfolders(paths: Iterable[Path | str]) -> list[Path]:
    """Subfolders of the folders in ``paths`` that hold images, which ``expand_images`` does
    not look into: said, so that a user who cannot see the listing knows they were left."""
    return [
        sub
        for path in map(Path, paths)
        if path.is_dir() and folder_images(path)
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and folder_images(p))
    ]


def _to_channels(pixels: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB → (H, W) grey for channels=1, (H, W, 3) RGB for 3."""
    cv2 = _cv2()
    n = 1 if pixels.ndim == 2 else pixels.shape[2]
    codes = {(1, 1): None, (1, 3): cv2.COLOR_GRAY2RGB, (3, 1): cv2.COLOR_RGB2GRAY, (3, 3): None}
    if (n, channels) not in codes:
        raise ImageError(path, f"{n} channels, the model takes {channels}")
    code = codes[(n, channels)]
    return pixels if code is None else cv2.cvtColor(pixels, code)


def load_image(path: Path, input_shape: tuple[int, int, int], crop: float = 1.0) -> np.ndarray:
    """An image file → uint8 (H, W, C) the model takes (centre ``crop`` of the shorter side,
    resized); ImageError naming the file otherwise.

    Decoded by ``trainer.data.image_io.read_image``, the path the live folder source and the
    datasets share: regular files only, size and pixel count capped, EXIF orientation applied, alpha
    composited on a contrasting background.
    """
    height, width, channels = input_shape
    if Path(path).is_dir():
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        has_folders = any(p.is_dir() for p in Path(path).iterdir())
        fix = "give image files" + ("; subfolders are not looked into" if has_folders else "")
        lead = "nothing to describe in folder"
        raise ImageError(path, f"no images in it ({suffixes})", fix, lead=lead)
    pixels = _to_channels(read_image(Path(path)), channels, path)
    pixels = fit_to_input(pixels, height, width, crop)
    return pixels.reshape(height, width, channels)  # cv2 drops a single channel's axis


# --- audio ----------------------------------------------------------------------------------


def write_wav(path: Path, clip: np.ndarray, rate: int) -> None:
    """``clip`` (L,) at ``rate`` Hz → ``path`` (earsight.wav); UsageError when it cannot be."""
    try:
        write_wav_file(path, clip, rate)
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = (
            "free some space, or choose another --out folder" if full else "check the --out folder"
        )
        raise UsageError(f"cannot write {path}: {err.strerror or err}", fix) from err


def _wav_paths(paths: Sequence[Path], out_dir: Path | None) -> list[Path | None]:
    """``out_dir/<image stem>.wav`` per image (out_dir created); two images, one name: error."""
    if out_dir is None:
        return [None] * len(paths)
    wavs = [out_dir / f"{p.stem}.wav" for p in paths]
    seen: dict[Path, Path] = {}
    for image, wav in zip(paths, wavs, strict=True):
        if wav in seen:
            raise UsageError(
                f"images {seen[wav]} and {image} would both be written to {wav}",
                "describe them in separate runs with different --out folders",
            )
        seen[wav] = image
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder", "pick a folder for --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {out_dir}: {err.strerror or err}", "pick --out") from err
    return wavs


# --- describe -------------------------------------------------------------------------------


def _infer(runtime: Runtime, images: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """uint8 (H, W, C) images → one unpadded clip each at the output rate, probs (N, K)."""
    chunk = min(BATCH, runtime.backend.max_batch or BATCH)
    opts = runtime.options.postprocess
    clips: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for start in range(0, len(images), chunk):
        # infer + postprocess rather than runtime(): the same processing, without the padding
        # to the batch's longest clip, so each WAV is exactly its word.
        waves, p = runtime.infer(np.stack(images[start : start + chunk]))
        clips.extend(postprocess(waves, runtime.info.sample_rate, opts))
        probs.append(p)
    k = len(runtime.info.labels)
    return clips, np.concatenate(probs) if probs else np.zeros((0, k), np.float32)


def _describe_one(
    path: Path,
    clip: np.ndarray,
    probs: np.ndarray,
    runtime: Runtime,
    gate: ConfidenceGate,
    wav: Path | None,
) -> Description:
    rate = runtime.info.output_rate
    reply = answer(clip, probs, runtime.info.labels, gate, rate, runtime.options.postprocess)
    if wav is not None:
        write_wav(wav, reply.clip, rate)
    return Description(path, reply.said, reply.top, reply.confident, wav, len(reply.clip) / rate)


def _load_chunk(
    images: Sequence[Path], part: range, runtime: Runtime
) -> tuple[list[np.ndarray], dict[int, str]]:
    """``images[part]`` → the model inputs of the readable ones, and {index: error line}."""
    pixels: list[np.ndarray] = []
    errors: dict[int, str] = {}
    info = runtime.info
    for i in part:
        try:
            pixels.append(load_image(images[i], info.input_shape, info.input_crop))
        except ImageError as err:
            errors[i] = str(err)
    return pixels, errors


def iter_descriptions(
    paths: Iterable[Path | str],
    runtime: Runtime,
    out_dir: Path | None = None,
    gate: ConfidenceGate | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Description]:
    """One Description per image, in order, each yielded as soon as it is made (its WAV written).

    Folders in ``paths`` are replaced by their images (``expand_images``). Images go through the
    runtime in chunks of ``BATCH``, so the first results come after one chunk, not after all.
    Unreadable images get ``error`` and the rest go on. With ``out_dir``, each image's clip is
    written to ``out_dir/<image stem>.wav`` (16-bit PCM, output rate) before it is yielded.
    ``stop`` set: no further image is started (the one being yielded is complete). Lazy: iterate
    it while ``runtime`` is open. UsageError (before anything is written) when two images would
    share a WAV name or ``out_dir`` cannot be created.
    """
    images = expand_images(paths)
    gate = gate or ConfidenceGate()
    wavs = _wav_paths(images, out_dir)
    chunk = min(BATCH, runtime.backend.max_batch or BATCH)
    for start in range(0, len(images), chunk):
        if stop is not None and stop.is_set():
            return
        part = range(start, min(start + chunk, len(images)))
        pixels, errors = _load_chunk(images, part, runtime)
        clips, probs = _infer(runtime, pixels)
        j = 0
        for i in part:
            if stop is not None and stop.is_set():
                return
            if i in errors:
                yield Description(images[i], "", (), False, None, 0.0, errors[i])
                continue
            yield _describe_one(images[i], clips[j], probs[j], runtime, gate, wavs[i])
            j += 1


def describe_images(
    paths: Iterable[Path | str],
    runtime: Runtime,
    out_dir: Path | None = None,
    gate: ConfidenceGate | None = None,
) -> list[Description]:
    """All of ``iter_descriptions`` as a list (one Description per image, in order)."""
    return list(iter_descriptions(paths, runtime, out_dir, gate))


# --- command --------------------------------------------------------------------------------

EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended


@contextlib.contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[threading.Event]:
    """While inside: the first SIGTERM sets ``stop`` (the work ends at the next image), and puts
    back the previous handler, so a second SIGTERM ends the process at once. Main thread only."""
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_options(args: argparse.Namespace):
    """The options describe shares with live (app.config.LiveOptions): the config file's, each
    overridden by a flag the user gave. ConfigError for a bad file or value."""
    from earsight.app.config import resolve_options

    keys = ("model", "backend", "threshold", "gate", "threads", "int8")
    return resolve_options({k: getattr(args, k) for k in keys}, args.config)


def run_describe(args: argparse.Namespace) -> int:
    """``earsight describe``: one line per image printed (flushed) as soon as its WAV is written.

    Lines: ``name: word (p)`` on stdout, ``error: …`` on stderr, then ``wrote N WAV files to
    DIR``. Exit 0, 1 when some images failed (the rest spoken), 143 after a SIGTERM: the images
    done so far are printed, one line each, and the summary says how many of how many.
    """
    from earsight.app.messages import describe_line, wrote_line
    from earsight.app.models import AUTO_MODEL, pinned_model_note, resolve_model, unlearned_note
    from earsight.engine.runtime import RuntimeOptions, load

    opts = describe_options(args)  # flags over the config file, as `earsight live` reads them
    gate = ConfidenceGate(opts.threshold, opts.gate)  # bad values fail before the model loads
    if not any(Path(p).exists() for p in args.images):  # a typo: say so before loading a model
        missing = ", ".join(map(str, args.images))
        raise UsageError(f"no such file or folder: {missing}", "check the image paths")
    model = resolve_model(opts.model)
    if opts.model == AUTO_MODEL and (note := unlearned_note()) is not None:
        log.info("%s; the shipped words answer meanwhile", note)
    if (note := pinned_model_note(opts.model, getattr(args, "config", None))) is not None:
        print(note, file=sys.stderr, flush=True)  # a model pinned before teach mode
    options = RuntimeOptions(threads=opts.threads, cpu_int8=opts.int8)
    done = failed = wrote = 0
    with stop_on_sigterm(threading.Event()) as stop, load(model, opts.backend, options) as rt:
        for d in iter_descriptions(args.images, rt, args.out, gate, stop):
            done, failed, wrote = done + 1, failed + (not d.ok), wrote + (d.wav is not None)
            if d.ok:
                print(describe_line(d), flush=True)
            else:
                print(f"error: {d.error}", file=sys.stderr, flush=True)
    if args.out is not None:
        print(wrote_line(wrote, args.out), flush=True)
    for sub in skipped_subfolders(args.images):
        n = len(folder_images(sub))
        images = f"{n} image{'s' * (n != 1)}"
        print(f"not looked into: the subfolder {sub} ({images}); give it too to describe them")
    if stop.is_set():
        total = len(expand_images(args.images))
        print(f"stopped by SIGTERM after {done} of {total} images", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    return 1 if failed else 0  # 1: some images failed, the rest spoken
