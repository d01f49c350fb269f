"""``earsight teach``: store the user's own object (views + the spoken word) for learning.

    store = TeachStore(paths.taught_root())
    teach_word(TeachRequest("mug", source="0"), store, say=voice.say)   # camera, two sides
    teach_word(TeachRequest("mug", photos_dir=Path("pics"), espeak_voice="en-gb"), store, say)

Every step is said and printed (``say``), so the whole path works without a screen. The order
fails early: the word and the voice option are checked (and a voice file or espeak-ng word made)
before the camera asks the user to hold anything up; the microphone records after the photos.
Learning is not here: ``earsight teach --learn`` (trainer/teach/learn.py) reads the store.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from earsight import paths
from earsight.app.modes.teach_inputs import (
    MIN_VIEWS,
    Say,
    TeachInputError,
    TeachRequest,
    Voice,
    WaitKey,
    check_microphone_first,
    photos_from_camera,
    photos_from_dir,
    voice_from_espeak,
    voice_from_file,
    voice_from_microphone,
    wait_for_key,
)
from earsight.app.modes.teach_lines import plural, print_only
from earsight.errors import (
    TRAIN_EXTRA_FIX,
    EarSightError,
    Interrupted,
    trainer_not_installed,
)
from earsight.trainer.teach.store import TaughtWord, TeachStore, taught_model_path
from earsight.trainer.teach.words import WordExistsError, check_word

log = logging.getLogger(__name__)


FLUSH_S = 10.0  # the last message (or an error) is spoken to the end, up to this
# What learning imports (teach_fit, its ONNX export, its report's recognizer and STOI), torch
# first: the one a runtime-only install names.
LEARNING_MODULES = ("torch", "onnxscript", "pocketsphinx", "pystoi")


# --- the commands -------------------------------------------------------------------------


def _voice_before_photos(request: TeachRequest, word: str, say: Say) -> Voice | None:
    if request.voice_file is not None:
        return voice_from_file(request.voice_file)
    if request.espeak_voice is not None:
        return voice_from_espeak(word, request.espeak_voice)
    check_microphone_first()  # no microphone or no Enter: say so before anything is held up
    return None


def teach_word(
    request: TeachRequest, store: TeachStore, say: Say, wait_key: WaitKey = wait_for_key
) -> TaughtWord:
    """Capture or read the photos, get the voice, store the word; says every step."""
    if request.more:
        word = store.word(request.word).name  # UnknownWordError before any capture
        store.check_writable(f"adding views of {word!r}")
        say(f"adding views of {word!r}")
    else:
        word = store.check_new(request.word)
        say(f"teaching {word!r}")
    try:
        voice = None if request.more else _voice_before_photos(request, word, say)
        if request.photos_dir is not None:
            least = 1 if request.more else MIN_VIEWS  # more views of a word: any number
            photos = photos_from_dir(request.photos_dir, say, least)
        else:
            photos = photos_from_camera(request, say, wait_key)
        if voice is None and not request.more:
            say(f"now the sound of {word!r}")
            voice = voice_from_microphone(say)
    except KeyboardInterrupt:  # before anything is written: the store is as it was
        raise Interrupted(
            f"nothing of {word!r} was stored", "run the same `earsight teach` again"
        ) from None
    if request.more:
        taught = store.add_photos(word, photos)
        say(f"added {plural(len(photos), 'photo')} of {word!r}: {taught.photo_count} in all")
        _say_look_alike(photos, word, say)
        return taught
    assert voice is not None
    try:
        taught = store.add_word(
            word, photos, voice.wave, voice.sample_rate, voice.source, voice.espeak_voice
        )
    except WordExistsError:  # another `teach` stored the word while these photos were taken
        taught = store.add_photos(word, photos)
        say(
            f"{word!r} was stored meanwhile (by another teach): these {len(photos)} photos were "
            f"added to it, {taught.photo_count} in all; its voice is the one stored first"
        )
        return taught
    photos_said = plural(taught.photo_count, "photo")
    say(f"stored {word!r}: {photos_said} and its voice ({describe_voice(taught)})")
    print_only(say, f"(in {taught.folder})")
    _say_look_alike(photos, word, say)
    return taught


def _say_look_alike(photos: list, word: str, say: Say) -> None:
    """Says when the model already names most of the new photos with another word. The word
    is stored by now: a Ctrl-C here (seconds of running the model) says so, not only
    "interrupted"."""
    from earsight.app.modes.teach_overlap import look_alike_line

    try:
        line = look_alike_line(photos, word)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{word!r} is stored, not learned yet", "`earsight teach --learn` learns it"
        ) from None
    if line is not None:
        say(line)


def learning_unavailable() -> TeachInputError | None:
    """The one-line error when this install cannot learn (a runtime-only install: no torch,
    the ``train`` extra), else None. Taught words are stored either way."""
    import importlib.util

    # find_spec, not import: --list asks too, and importing torch takes seconds
    for module in LEARNING_MODULES:
        if importlib.util.find_spec(module) is None:
            missing = trainer_not_installed(ModuleNotFoundError(name=module), "learning")
            assert missing is not None  # a trainer module, by construction
            return TeachInputError(missing.what, f"{missing.fix}; the taught words are kept")
    return None


def learn_words(
    store: TeachStore,
    say: Say,
    base: Path | None = None,
    steps: int | None = None,
    progress: Say | None = None,
):
    """Learn every taught word (trainer/teach/fit.py) and say how well it went; returns the
    TeachReport. ``progress`` hears the lines said while learning (``say`` by default).
    TeachInputError when torch (the train extra) or the teach base is missing."""
    from earsight.app.models import pinned_model_note, teach_base_path

    unavailable = learning_unavailable()
    if unavailable is not None:  # a runtime-only install (no torch): the words stay stored
        raise unavailable
    from earsight.trainer.teach.fit import teach_fit
    from earsight.trainer.teach.voice import VoiceOptions

    given, base = base is not None, base or teach_base_path()
    if not base.is_file():
        fix = "check the --base path" if given else "reinstall EarSight"
        raise TeachInputError(f"the teach base {base} is missing", fix)
    if not store.words():  # before saying that learning starts
        raise TeachInputError(
            "nothing has been taught yet", "teach a word first: earsight teach WORD"
        )
    options = VoiceOptions() if steps is None else VoiceOptions(steps=steps)
    with store.learning(
        "wait for it to finish, then `earsight teach --learn`; stored words are kept",
        words=[word.name for word in store.words()],
    ):
        say("learning the taught words; this takes a few minutes")
        out_dir = taught_model_path(store.root).parent
        started = time.monotonic()  # the whole learn, as the user waited for it
        try:
            report = teach_fit(store, base, out_dir, progress or say, options)
        except KeyboardInterrupt:  # the model is written last, whole (or not at all)
            if taught_model_path(store.root).is_file():
                kept = "the taught words are kept and the learned model is as it was"
            else:  # after --forget or --rename there is none: "as it was" would mislead
                kept = "the taught words are kept; none is learned, so live and describe use "
                kept += "the shipped words"
            raise Interrupted(kept, _learn_again(out_dir)) from None
    pinned = pinned_model_note(None)  # the config's model keeps the taught words out
    for line in report_lines(report, time.monotonic() - started):
        say(pinned if pinned is not None and line == TAUGHT_IN_USE else line)
    meanwhile = [w.name for w in store.words() if w.name not in report.words]
    if meanwhile:  # taught while this learn ran: the model does not say them yet
        say(f"taught meanwhile, not learned yet: {', '.join(meanwhile)} — earsight teach --learn")
    return report


def _learn_again(out_dir: Path) -> str:
    """What to do after an interrupted learn: run it again, which resumes it when its progress
    was saved (trainer/teach/resume.py)."""
    from earsight.trainer.teach.resume import RESUME_NAME

    if (out_dir / RESUME_NAME).is_file():
        return "`earsight teach --learn` picks up where this learn stopped"
    return "`earsight teach --learn` learns them"


TAUGHT_IN_USE = "live and describe now use the taught words"  # the report's last line
ANSWERED_DROP_SAY = 0.02  # shipped words answered this much less often after learning: said
CONFUSED_SAY = 0.2  # a taught word taken for another on this share of its checks is said


def report_lines(report, wall_s: float | None = None) -> list[str]:
    """How the learning went, in a few plain sentences (printed and spoken). ``wall_s``: the
    whole learn as waited for (reading the photos and checking included), else the
    classifier's and the voice's seconds alone."""
    words = ", ".join(report.words)
    took = wall_s if wall_s is not None else report.classifier_s + report.voice_s
    lines = [f"learned {words} in {_duration(took)}"]
    if report.held_back_right is not None:
        # Plain words first; the measure's name last, for whoever wants to look it up. Not STOI:
        # on a word under a second it is unreliable (pystoi warns "not enough STFT frames").
        lines.append(
            f"of {report.photos_held_back} photos kept aside to check, "
            f"{report.held_back_right:.0%} were named with their word"
        )
        heard = (
            f"a speech recognizer understood the spoken word {report.word_accuracy:.0%} of the "
            "time; it"
            if report.word_accuracy is not None
            else "the spoken word"  # only live's "object N" words: their names are not said
        )
        lines.append(
            f"{heard} sounds {_closeness(report.corr2d)} your recording "
            f"(Corr2D {report.corr2d:.2f} of 1)"
        )
        lines += _words_not_heard(report)
    else:
        lines.append("too few photos to hold some back for a check: give 10 or more")
    said: set[frozenset[str]] = set()
    for word, other, share in report.confused or ():
        if share < CONFUSED_SAY or frozenset((word, other)) in said:
            continue  # each pair once: "a taken for b" says the most of "b taken for a" too
        said.add(frozenset((word, other)))
        lines.append(
            f"{word!r} was taken for {other!r} on {share:.0%} of its photos kept aside: if they "
            f"are one object, forget one (earsight teach --forget {word!r}); else add views from "
            "other sides (--more)"
        )
    shipped = (
        f"the shipped words are named right {report.known_right_after:.0%} of the time "
        f"now, {report.known_right_before:.0%} before"
    )
    before = getattr(report, "known_answered_before", None)
    after = getattr(report, "known_answered_after", None)
    if before is not None and after is not None and before - after >= ANSWERED_DROP_SAY:
        # right when answered, but answered less: more "not sure" for ordinary things
        shipped += f"; they are answered rather than 'not sure' {after:.0%} of the time, "
        shipped += f"{before:.0%} before"
    lines.append(shipped)
    lines.append(TAUGHT_IN_USE)
    return lines


HEARD_SAY = 0.5  # a taught word heard as itself on less than this share of its checks: said


def _words_not_heard(report) -> list[str]:
    """A line for each taught word the recognizer seldom heard as itself (a recording of
    another word, or of noise, is learned as faithfully as the right one: the pooled figure
    hid which), and one for live's "object N" words, whose names no recording says."""
    from earsight.trainer.teach.words import is_placeholder

    lines = [
        f"{word!r} was heard as itself on only {share:.0%} of its checks: if its recording says "
        "something else, forget it and teach it again"
        for word, share in getattr(report, "heard_by_word", ())
        if share < HEARD_SAY
    ]
    unnamed = [word for word in report.words if is_placeholder(word)]
    if unnamed:
        lines.append(
            f"{', '.join(unnamed)}: not checked by ear (a name from the teach key); rename "
            f"{'them' if len(unnamed) > 1 else 'it'} to what the recording says: "
            "earsight teach --rename OLD NEW"
        )
    return lines


def _duration(seconds: float) -> str:
    """``42 s``, ``4 min 10 s``: minutes said as minutes."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _closeness(corr2d: float) -> str:
    """Corr2D of the generated and recorded log-mel spectrograms in words (shipped words: 0.95)."""
    if corr2d >= 0.9:
        return "close to"
    return "somewhat like" if corr2d >= 0.75 else "unlike"


def describe_voice(word: TaughtWord) -> str:
    """E.g. ``microphone, 0.8 seconds`` or ``espeak-ng en-gb, 0.6 seconds``."""
    source = word.voice_source + (f" {word.espeak_voice}" if word.espeak_voice else "")
    return f"{source}, {word.voice_seconds:.1f} seconds"


def relearn_after_change(
    store: TeachStore, say: Say, learn_now: bool, base: Path | None, steps: int | None
) -> None:
    """After --forget or --rename (the changed word withdrawn from the learned model, or the
    model removed) the words left are learned again unless ``learn_now`` is False.
    TeachInputError as ``learn_words``."""
    if not store.words():
        say("no taught words left: live and describe use the shipped words")
    elif learn_now:
        learn_or_say_why_not(store, say, base, steps, "the words left are not learned again")
    else:
        say(f"live and describe use {answered_meanwhile(store)} until `earsight teach --learn`")


def learn_or_say_why_not(
    store: TeachStore,
    say: Say,
    base: Path | None,
    steps: int | None,
    not_learned: str = "stored, not learned",
) -> None:
    """Learn after a change; on an install that cannot learn, say so instead of failing: the
    word was stored, which is what the command was asked (exit 0). ``--learn`` itself still
    fails when it cannot learn."""
    unavailable = learning_unavailable()
    if unavailable is None:
        learn_words(store, say, base, steps)
        return
    say(f"{not_learned}: {unavailable.what} — {TRAIN_EXTRA_FIX}")
    say(f"live and describe use {answered_meanwhile(store)} until the words are learned")


def answered_meanwhile(store: TeachStore) -> str:
    """What live and describe answer with until the next learn: the words learned before (a
    learned model, perhaps with a word withdrawn), else the shipped words."""
    if taught_model_path(store.root).is_file():
        return "the shipped words and the taught words learned before"
    return "the shipped words"


TEACH_OPTIONS = ("learn", "list", "forget", "rename", "more")  # teach's options, without "--"


def check_not_an_option(word: str) -> None:
    """TeachInputError for a word that is one of teach's options without its dashes: a
    screen reader (and espeak-ng) says "earsight teach --learn" without them, and the word
    typed as heard started teaching a thing called "learn"."""
    option = check_word(word).casefold()
    if option in TEACH_OPTIONS:
        raise TeachInputError(
            f"{word!r} is also the option --{option} (dash dash {option})",
            f"for the option type earsight teach --{option}; to teach a thing of that name, "
            f"call it e.g. 'my {option}'",
        )


def check_not_shipped(word: str) -> None:
    """TeachInputError when ``word`` is (capitals aside) one of the default model's own words,
    which a taught model keeps: a second "cat" beside the shipped one splits every cat's answer
    between the two, and real cats become "not sure". A model that cannot be read: no check."""
    from earsight.app.models import DEFAULT_MODEL, resolve_model
    from earsight.engine.sidecar import read_sidecar

    try:
        vocabulary = read_sidecar(resolve_model(DEFAULT_MODEL), verify_sha256=False)["vocabulary"]
    except (EarSightError, KeyError):
        return
    folded = check_word(word).casefold()  # as the store compares words: BadWordError first
    same = next((w for w in vocabulary if w.casefold() == folded), None)
    if same is not None:
        raise TeachInputError(
            f"{same!r} is already one of the model's words: a second {same!r} would split its "
            "answers in two",
            f"teach it under a name of its own, e.g. 'my {same}'",
        )


def _camera(args: argparse.Namespace) -> str | None:
    """--source, else the config file's ``source`` (the camera live uses: a service's
    /etc/earsight/config.toml names it), else None (camera 0). Not read for --photos."""
    if args.source is not None or args.photos is not None:
        return args.source
    from earsight.app.config import resolve_options

    return resolve_options({}, getattr(args, "config", None)).source


def run_teach(args: argparse.Namespace) -> int:
    """The ``earsight teach`` command; errors are also spoken, then raised for cli.main."""
    from earsight.app.modes.teach_words import change_word, list_words
    from earsight.app.sound.voice import StatusVoice

    store = TeachStore(paths.taught_root())
    voice = StatusVoice(enabled=args.speak)
    try:
        if args.list:
            list_words(store, voice.say)
        elif args.forget is not None or args.rename is not None:
            if args.rename is not None and args.base is None:
                check_not_shipped(args.rename[1])
            if change_word(store, args.forget, args.rename, voice.say):
                relearn_after_change(store, voice.say, args.learn_now, args.base, args.voice_steps)
        elif args.learn:
            learn_words(store, voice.say, args.base, args.voice_steps)
        else:
            if not args.more:
                check_not_an_option(args.word)
            if not args.more and args.base is None:  # another base has words of its own
                check_not_shipped(args.word)
            request = TeachRequest(
                args.word,
                _camera(args),
                args.photos,
                args.voice_file,
                args.espeak_voice,
                args.more,
                args.views,
                args.seconds,
            )
            teach_word(request, store, voice.say)
            if args.learn_now:
                learn_or_say_why_not(store, voice.say, args.base, args.voice_steps)
    except EarSightError as err:
        voice.say(str(err), printed=False)  # cli.main prints it on stderr
        raise
    finally:
        voice.flush(FLUSH_S)
        voice.close()
    return 0
