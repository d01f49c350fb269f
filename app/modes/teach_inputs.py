"""Where a taught word's photos and sound come from: the camera (two turns of the object, or a
video or folder standing in), a folder of photos, the microphone, a WAV file or espeak-ng; each
checked (level, clipping, length; readable, not too dark) with one line saying what to do."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from earsight.app.modes.teach_capture import capture_views, frame_quality
from earsight.app.modes.teach_lines import plural
from earsight.trainer.teach.words import TeachError

Say = Callable[[str], None]


WaitKey = Callable[[Say], None]  # waits for the user's go-ahead; says what to press on a wrong key


DEFAULT_VIEWS = 30  # frames kept per side: Teachable Machine asks 15–50 a class


DEFAULT_SECONDS = 6.0  # per side: a slow half-turn of an object held in the hand


MIN_VIEWS = 3  # fewer than this over both sides is too little to learn from


MAX_PHOTO_SIDE_PX = 1024  # stored photos are scaled down to this: the backbone sees 160 px


GRABBER_FPS = 15.0  # video files and folders standing in for a camera are read this fast


WRONG_KEY = (
    "that key does nothing here: press space when the object is in front of the camera, "
    "or Ctrl-C to stop"
)


WRONG_KEY_REPEAT_S = 3.0  # a held or repeated wrong key is answered again only after this long


# A recording whose peak is below -40 dBFS is silence (a muted or wrong input); one with more
# than 0.1 % of its samples at full scale was clipped (too loud, distorted).
SILENT_PEAK = 0.01


CLIP_LEVEL = 0.999


CLIP_FRACTION = 0.001


MAX_VOICE_FILE_S = 60.0  # a voice memo of the word with room around it; 2 h of silence took 5.5 GB


MIN_VOICE_S = 0.1  # after trimming silence: shorter is a click, not a word


HOLD_UP = "hold the object in front of the camera and turn it slowly; press space"


OTHER_SIDE = "now from another side; press space"


KEEP_OR_AGAIN = "keep it? press Enter to keep it, or r then Enter to record it again"


AGAIN_ANSWERS = ("r", "again", "n", "no")  # typed before Enter: record the word again


RECORD_TRIES = 3  # a bad recording is recorded again this many times in all before giving up


NO_MICROPHONE_FIX = (
    "give the word's sound with --voice-file WAV or --espeak-voice VOICE (e.g. en-us)"
)


class TeachInputError(TeachError):
    """A voice file, photo folder or capture that gives nothing usable to teach."""


@dataclass(frozen=True)
class TeachRequest:
    """What ``earsight teach WORD`` was asked to do."""

    word: str
    source: str | None = None  # camera/video/folder for the grabber; None: camera 0
    photos_dir: Path | None = None  # read these instead of capturing
    voice_file: Path | None = None
    espeak_voice: str | None = None
    more: bool = False  # add photos to a taught word; no voice
    views: int = DEFAULT_VIEWS  # per side
    seconds: float = DEFAULT_SECONDS  # per side


@dataclass(frozen=True)
class Voice:
    wave: np.ndarray  # float32 mono, -1..1, silence trimmed
    sample_rate: int  # Hz
    source: str  # "microphone" | "file" | "espeak-ng"
    espeak_voice: str | None = None


def check_level(wave: np.ndarray, sample_rate: int, where: str) -> np.ndarray:
    """A recorded word, trimmed of silence; TeachInputError if silent, clipped, too short or
    longer than a word (app/sound/recording.MAX_SPEECH_S)."""
    from earsight.app.sound.recording import MAX_SPEECH_S, trim_background
    from earsight.trainer.speech.synth import trim_silence

    wave = np.asarray(wave, np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak < SILENT_PEAK:
        raise TeachInputError(
            f"{where} is silent (peak {20 * np.log10(max(peak, 1e-9)):.0f} dBFS)",
            "record the word again closer to the microphone, or check the input level",
        )
    clipped = float(np.mean(np.abs(wave) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise TeachInputError(
            f"{where} is clipped ({100 * clipped:.1f} % of its samples at full scale)",
            "record it again a little further from the microphone or with a lower input level",
        )
    # against the recording's own background first: a phone memo's room noise (-53 dBFS) lies
    # above a threshold set from the peak alone, and was kept in the word (or made it too long)
    trimmed = trim_silence(trim_background(wave, sample_rate), sample_rate=sample_rate)
    if trimmed.size < MIN_VOICE_S * sample_rate:
        raise TeachInputError(
            f"{where} holds only {1000 * trimmed.size / sample_rate:.0f} ms of sound",
            "say the whole word",
        )
    if trimmed.size > MAX_SPEECH_S * sample_rate:  # as the microphone's limit: not a sentence
        raise TeachInputError(
            f"{where} holds {trimmed.size / sample_rate:.1f} s of sound above its background; "
            f"a word is {MAX_SPEECH_S:g} s at most",
            "give a recording of the word alone (if it is, a quieter place helps)",
        )
    return trimmed


def voice_from_file(path: Path) -> Voice:
    """Any file soundfile reads (WAV, FLAC, OGG…), mixed to mono and level-checked."""
    import soundfile

    try:
        info = soundfile.info(str(path))  # the header only: a long file is refused undecoded
        if info.samplerate > 0 and info.frames / info.samplerate > MAX_VOICE_FILE_S:
            raise TeachInputError(
                f"the voice file {path} lasts {info.frames / info.samplerate:,.0f} s: the word "
                f"alone is a second or two (at most {MAX_VOICE_FILE_S:g} s are read)",
                "record or cut the word alone, e.g. sox in.wav word.wav trim 0 5",
            )
        pcm, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except TeachInputError:
        raise
    except Exception as err:  # missing, a folder, not audio: soundfile raises several types
        reason = "no such file" if not Path(path).exists() else str(err).split(": ")[-1]
        raise TeachInputError(
            f"cannot read the voice file {path} ({reason})", "give a WAV file of the spoken word"
        ) from err
    wave = pcm.mean(axis=1)
    return Voice(check_level(wave, int(rate), f"the voice file {path}"), int(rate), "file")


def voice_from_espeak(word: str, voice_name: str) -> Voice:
    """The word spoken by espeak-ng in ``voice_name``, as the training data is
    (trainer.speech.synth)."""
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, synthesize
    from earsight.trainer.speech.synth import Voice as EspeakVoice

    wave = synthesize(word, EspeakVoice(name=voice_name))
    return Voice(wave, SAMPLE_RATE_HZ, "espeak-ng", voice_name)


def check_microphone_first() -> None:
    """Before any photo is taken: a microphone that opens, and a terminal to press Enter in.
    TeachInputError (one line, naming --voice-file and --espeak-voice) otherwise."""
    microphone_recorder()  # its audio library
    from earsight.app.sound.microphone import MicrophoneError, check_microphone

    try:
        check_microphone()
    except MicrophoneError as err:
        raise TeachInputError(err.what, NO_MICROPHONE_FIX) from err
    if _stdin_closed():
        raise TeachInputError(
            "no terminal to press Enter in for the recording (standard input is closed)",
            NO_MICROPHONE_FIX,
        )


def _stdin_closed() -> bool:
    """stdin is absent or /dev/null (``< /dev/null``, a service's StandardInput=null)."""
    import os

    if sys.stdin is None:
        return True
    try:
        return os.path.samestat(os.fstat(sys.stdin.fileno()), os.stat(os.devnull))
    except (OSError, ValueError):  # a closed or replaced stdin
        return True


def microphone_recorder() -> Callable[..., Any]:
    """``app.sound.microphone.record_voice``; TeachInputError in one line if there is none here."""
    try:
        from earsight.app.sound.microphone import record_voice
    except ImportError as err:
        built = (
            err.name != "earsight.app.sound.microphone"
        )  # the module is there but its audio library is not
        reason = f" ({err})" if built else ""
        raise TeachInputError(
            f"the microphone is not available here{reason}", NO_MICROPHONE_FIX
        ) from err
    return record_voice


def voice_from_microphone(say: Say, tries: int = RECORD_TRIES) -> Voice:
    """Record the word (press-to-talk, app.sound.microphone; it trims and checks the level),
    played back when a speaker is there, then kept or recorded again as the user answers
    (KEEP_OR_AGAIN). A silent, clipped, too short or too long recording is said and recorded
    again, up to ``tries`` times: the photos taken are not thrown away."""
    from earsight.app.sound.recording import BadRecording

    record = microphone_recorder()
    bad = 0
    with _playback_output() as playback:
        while True:
            try:
                recording = record(on_status=say, playback=playback)
            except BadRecording as err:
                bad += 1
                if bad == tries:  # the capture's photos go with it: said, not found later
                    raise TeachInputError(
                        f"{err.what} ({tries} tries): nothing was stored, its photos neither",
                        f"{err.fix}; then teach it again, or give its sound with --voice-file "
                        "or --espeak-voice",
                    ) from err
                say(f"{err.what}: {err.fix}; once more")
                continue
            if playback is None or _keep(say):
                return Voice(recording.wave, int(recording.sample_rate), "microphone")
            say("recording it again")


def _keep(say: Say) -> bool:
    """Asks whether the recording just played back is the one to keep: Enter keeps it, "r"
    then Enter records again (a stumble, a cough, a word said too fast); the end of input (a
    script's answers ran out) keeps it."""
    from earsight.app.sound.microphone import read_answer

    answer = read_answer(prompt=lambda: say(KEEP_OR_AGAIN))
    return answer is None or answer.strip().lower() not in AGAIN_ANSWERS


@contextlib.contextmanager
def _playback_output() -> Iterator[Any]:
    """The audio output to play the recording back through, or None without one (no WAV
    files: a recording played into a file helps nobody)."""
    from earsight.app.sound.audio import AudioOptions, AudioOut, AudioUnavailable

    try:
        out = AudioOut(AudioOptions())
    except AudioUnavailable:
        yield None
        return
    try:
        yield out
    finally:
        out.close()


def storable_photo(image: np.ndarray) -> np.ndarray:
    """Grey → RGB; scaled so the long side is at most MAX_PHOTO_SIDE_PX."""
    from earsight.app.camera.sources import import_cv2

    cv2 = import_cv2()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    scale = MAX_PHOTO_SIDE_PX / max(image.shape[:2])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


PHONE_FORMATS = {".heic": "HEIC", ".heif": "HEIF"}  # an iPhone's photos: no decoder here
SAID_NAMES = 3  # photo names said in one line at most; the rest are counted


def photos_from_dir(folder: Path, say: Say, least: int = 1) -> list[np.ndarray]:
    """Every image of ``folder`` (trainer.data.image_io), name order; unreadable ones are skipped
    with a line each, files of other kinds counted in one line (a HEIC named as such). A dark
    or blurred photo is kept (the user chose it), said in one line for all. TeachInputError when
    fewer than ``least`` photos are read (a new word: MIN_VIEWS)."""
    from earsight.app.camera.sources import folder_images
    from earsight.trainer.data.image_io import ImageFileError, read_image

    if not folder.is_dir():
        raise TeachInputError(f"{folder} is not a folder", "give a folder of photos: --photos DIR")
    _say_other_files(folder, say)
    photos, doubtful = [], {}
    for path in folder_images(folder):
        try:
            photo = storable_photo(read_image(path))
        except ImageFileError as err:
            say(f"skipped: {err}")
            continue
        problem = frame_quality(photo).problem
        if problem is not None:
            doubtful.setdefault(problem.split(":")[0], []).append(path.name)
        photos.append(photo)
    for problem, names in doubtful.items():
        shown = ", ".join(names[:SAID_NAMES]) + (
            f" and {len(names) - SAID_NAMES} more" if len(names) > SAID_NAMES else ""
        )
        say(f"{shown} {'looks' if len(names) == 1 else 'look'} {problem}; kept")
    if not photos:
        raise TeachInputError(f"no readable photos in {folder}", "use PNG, JPEG, BMP, TIFF or WebP")
    say(f"read {plural(len(photos), 'photo')} from {folder}")
    if len(photos) < least:
        raise TeachInputError(
            f"only {plural(len(photos), 'photo')} in {folder}: {least} is the least to learn an "
            "object from",
            "add photos from other sides (10 or more teach it well), then teach it again",
        )
    return photos


def _say_other_files(folder: Path, say: Say) -> None:
    """One line for the files that are not photos EarSight reads (a phone's .HEIC, a .MOV), one
    for the subfolders, which are not read (a phone's DCIM/)."""
    from earsight.trainer.data.image_io import IMAGE_SUFFIXES

    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        others = [p for p in entries if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]
        subfolders = sorted(p.name for p in entries if p.is_dir())
    except OSError:
        return
    if others:
        kinds = sorted({p.suffix.lower() or "(no suffix)" for p in others})
        are = "is" if len(others) == 1 else "are"
        line = f"skipped {plural(len(others), 'file')} that {are} not a photo: {', '.join(kinds)}"
        phone = sorted({PHONE_FORMATS[k] for k in kinds if k in PHONE_FORMATS})
        if phone:
            line += f" ({' and '.join(phone)} cannot be read here: save them as JPEG)"
        say(line)
    if subfolders:
        named = ", ".join(subfolders[:SAID_NAMES])
        say(f"not read: the folder{'s' * (len(subfolders) != 1)} {named} inside it")


def photos_from_camera(request: TeachRequest, say: Say, wait_key: WaitKey) -> list[np.ndarray]:
    """Two turns of the object in front of the camera (or a video or folder standing in)."""
    from earsight.app.camera.grabber import FrameGrabber, GrabberOptions, parse_source

    spec = parse_source(request.source or "0", loop=True)  # a video keeps playing while we wait
    options = GrabberOptions(fps=None if spec.live else GRABBER_FPS)
    views: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []  # every kept view's: the other side must look different
    with FrameGrabber(spec, options, on_status=say) as grabber:
        for prompt in (HOLD_UP, OTHER_SIDE):
            say(prompt)
            wait_key(say)
            result = capture_views(
                grabber, request.views, request.seconds, on_status=say, kept_before=thumbs
            )
            say(result.summary())
            views.extend(result.frames)
            thumbs = result.thumbs
    if len(views) < MIN_VIEWS:
        raise TeachInputError(
            f"only {len(views)} usable view{'s' * (len(views) != 1)} of {request.word!r}",
            "more light, a steadier hand, and turn the object as you hold it; then teach again",
        )
    return [storable_photo(v) for v in views]


def wait_for_key(say: Say | None = None, stream: TextIO | None = None) -> None:
    """Space or Enter on a terminal (single key, no echo); a line, or end of input, from a pipe.

    Any other key on a terminal is answered with WRONG_KEY through ``say`` (a blind user hears
    why nothing happens), at most once per WRONG_KEY_REPEAT_S seconds."""
    import time

    stream = stream or sys.stdin
    if not stream.isatty():
        stream.readline()  # a script's newline, or EOF: go on
        return
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    said_at = -WRONG_KEY_REPEAT_S
    try:
        tty.setcbreak(fd)  # Ctrl-C still interrupts
        while stream.read(1) not in (" ", "\n", "\r", ""):
            if say is not None and time.monotonic() - said_at >= WRONG_KEY_REPEAT_S:
                said_at = time.monotonic()
                say(WRONG_KEY)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
