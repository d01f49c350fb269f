"""The taught words as a user manages them: ``earsight teach --list``, ``--forget``,
``--rename``, and what each does to the learned model (kept, renamed inside, or removed).

    list_words(store, say)                       # one line a word: photos, voice, learned or not
    if change_word(store, None, ("mug", "my mug"), say):
        ...                                      # the words left must be learned again
"""

from __future__ import annotations

from pathlib import Path

from earsight.app.modes.teach import describe_voice, learning_unavailable
from earsight.app.modes.teach_inputs import Say, TeachInputError, voice_from_espeak
from earsight.app.modes.teach_lines import plural, print_only, spoken_date
from earsight.errors import TRAIN_EXTRA_FIX
from earsight.trainer.teach.store import TaughtWord, TeachStore
from earsight.trainer.teach.words import check_word


def list_words(store: TeachStore, say: Say) -> list[TaughtWord]:
    """One line per taught word (photos, voice, date), after a line with how many and where."""
    words = store.words()
    if not words:
        say("no words taught yet")
        print_only(say, f"(in {store.root})")
        return words
    say(f"{plural(len(words), 'taught word')}:")
    print_only(say, f"(in {store.root})")
    learned = learned_words(store)
    learning = store.is_learning()
    being = store.words_being_learned() if learning else None
    if learning_unavailable() is not None:
        pending = f"; not learned: learning needs the trainer ({TRAIN_EXTRA_FIX})"
    elif learning:  # taught after the running learn read the words
        pending = "; not learned yet: `earsight teach --learn` once the learn running now ends"
    else:
        pending = "; not learned yet: `earsight teach --learn`"
    learned_at = _learned_at(store) if learned else None
    for word in words:
        if word.name in learned and learned_at and word.updated > learned_at:
            state = "; photos added since the last learn: `earsight teach --learn`"
        elif word.name in learned:
            state = ""
        elif learning and (being is None or word.name in being):
            state = "; being learned now"
        else:
            state = pending
        say(
            f"{word.name}: {plural(word.photo_count, 'photo')}, voice {describe_voice(word)}, "
            f"taught {spoken_date(word.created)}{state}"
        )
    from earsight.app.models import pinned_model_note

    if learned and (note := pinned_model_note(None)) is not None:
        say(note)  # learned, yet the config's model keeps them out of live and describe
    return words


def _learned_at(store: TeachStore) -> str:
    """When the learned model was last written (its sidecar's mtime), as word.json writes
    times (ISO 8601, seconds, local zone), so the two compare as text; "" without one."""
    from datetime import datetime

    from earsight.trainer.teach.store import taught_model_path

    try:
        mtime = Path(f"{taught_model_path(store.root)}.json").stat().st_mtime
    except OSError:
        return ""
    return datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")


def learned_words(store: TeachStore) -> set[str]:
    """The words the learned model (``<root>/.model/taught.onnx``) says; empty without one."""
    from earsight.engine.errors import ModelFileError
    from earsight.engine.sidecar import read_sidecar, taught_words
    from earsight.trainer.teach.store import taught_model_path

    model = taught_model_path(store.root)
    if not model.is_file():
        return set()
    try:
        side = read_sidecar(model, verify_sha256=False)
    except ModelFileError:  # half-written or damaged: not learned, as far as a user can tell
        return set()
    # the taught words only: a taught "cat" is not learned because the shipped model says "cat"
    return set(taught_words(side))


def forget_word(store: TeachStore, name: str, say: Say) -> None:
    """Remove a word (a broken word.json too: forgetting is the way out of one)."""
    folder = store.find(name)
    store.forget(name)  # UnknownWordError when folder is None
    say(f"forgot {folder.name if folder else name!r}")


def rename_word(store: TeachStore, old: str, new: str, say: Say) -> TaughtWord:
    """Call a word ``new``. A voice espeak-ng made says the new word from now on (same
    espeak-ng voice); a recorded one stays as it was recorded."""
    word = store.word(old)  # UnknownWordError first, before espeak-ng runs
    if check_word(new).casefold() == word.name.casefold():  # capitals are not heard
        raise TeachInputError(f"{word.name!r} is already called that", "give a different NEW name")
    wave, rate = None, 0
    if word.voice_source == "espeak-ng" and word.espeak_voice:
        voice = voice_from_espeak(check_word(new), word.espeak_voice)
        wave, rate = voice.wave, voice.sample_rate
    taught = store.rename(old, new, wave, rate)
    say(f"{word.name!r} is now {taught.name!r}")
    return taught


def change_word(
    store: TeachStore, forget: str | None, rename: tuple[str, str] | None, say: Say
) -> bool:
    """--forget or --rename, and what it does to the learned model; True when the words left
    must be learned again. A word the model never said leaves it as it is; a renamed word whose
    voice stays (a recording) is renamed inside the model (trainer/teach/relabel.py); otherwise
    the word is withdrawn from the model (its object "not sure", the other taught words still
    answered until the words left are learned again), or with no other taught word left the
    model is removed (live and describe fall back to the shipped words)."""
    from earsight.trainer.teach.relabel import relabel_model, withdraw_word
    from earsight.trainer.teach.store import taught_model_path

    with store.learning():  # no learn may run, and write the old words, meanwhile
        folder = store.find(forget if forget is not None else rename[0])  # a broken json too
        learned = learned_words(store)
        if forget is not None:
            forget_word(store, forget, say)
        else:
            renamed = rename_word(store, *rename, say)
            same_voice = renamed.voice_source != "espeak-ng" or not renamed.espeak_voice
            old = folder.name if folder is not None else rename[0]
            if same_voice and relabel_model(taught_model_path(store.root), old, renamed.name):
                say(
                    f"the taught model now names it {renamed.name!r}, nothing to learn again; "
                    "its voice is your recording as it was (a word taught in live is 'object N' "
                    f"but says what you said): if it does not say {renamed.name!r}, forget it "
                    "and teach it again with a new recording"
                )
                return False
        if learned and folder is not None and folder.name not in learned:
            return False  # the learned model never said it: it stays as it is
        said = folder.name if folder is not None else forget or rename[0]
        if withdraw_word(taught_model_path(store.root), said):
            now = "" if forget is not None else f"; {rename[1]!r} is answered once learned again"
            # its photos and voice are deleted, but the model's weights learned from them stay
            # until the words left are learned again: said, not left for the user to assume
            held = (
                f"; the model still holds what it learned from {said!r}'s photos and voice "
                "until the words left are learned again, which replaces it"
                if forget is not None
                else ""
            )
            say(
                f"the learned model no longer answers {said!r}{now}; the other taught words "
                f"are still answered meanwhile{held}"
            )
        elif store.drop_model():
            say(
                f"the learned model still said {said!r}: removed; live and describe use the "
                "shipped words until the words left are learned again"
            )
    return True
