"""``earsight teach --learn``: every taught word in the store → one taught model, checked.

    report = teach_fit(TeachStore(root), base_path, out_dir, say=print)

Steps, each said through ``say`` (the CLI prints and speaks it):

1. read every word's photos and recording from the store (trainer/teach/store.py); every
   HOLD_OUT_EVERY-th photo of a word is held back to check the result, never learned from;
2. pooled backbone features of the photos and their mirrors (one backbone pass each);
3. the classifier and its refinement (seconds) and the voice (minutes) — trainer/teach/learn.py;
   an interrupted learn of the same words and photos picks up where it stopped
   (trainer/teach/resume.py);
4. the model saved as ``taught.pt`` and exported as ``taught.onnx`` (fp16, parity-checked, with
   its sidecar) into ``out_dir``, replacing the previous ones only once complete;
5. the report: held-back photos answered with the right word; the generated word heard as
   that word by pocketsphinx; its Corr2D and STOI against the recording (paper Eq. 12; Taal
   et al. 2011).

Every run starts from the shipped model and re-learns all taught words, so a word taught
earlier is kept exactly as well as a new one, and forgetting a word is a re-run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from earsight.errors import UsageError
from earsight.logs import quieter
from earsight.trainer.teach.base import TeachBase, load_teach_base
from earsight.trainer.teach.learn import (
    TaughtSet,
    answer_pooled,
    learn_classifier,
    refine_classifier,
)
from earsight.trainer.teach.photo_rows import CACHE_NAME, PhotoFeatureCache, word_rows
from earsight.trainer.teach.resume import RESUME_NAME, LearnResume, learn_key
from earsight.trainer.teach.store import MODEL_FOLDER, MODEL_NAME  # noqa: F401 (re-exported)
from earsight.trainer.teach.voice import VoiceOptions, fit_voice_clip, learn_voice
from earsight.trainer.teach.words import is_placeholder

log = logging.getLogger(__name__)

HOLD_OUT_EVERY = 5  # every 5th photo of a word checks the result (with ≥ MIN_HELD_OUT_PHOTOS)
MIN_HELD_OUT_PHOTOS = 10  # fewer photos than this: all are learned from, nothing is checked
KNOWN_HEARD_PER_CLASS = 5  # check images per shipped word whose generated word is recognized
Say = Callable[[str], None]


@dataclass(frozen=True)
class TeachReport:
    words: tuple[str, ...]
    photos_learned: int
    photos_held_back: int
    held_back_right: float | None  # share of held-back photos answered with their own word
    word_accuracy: float | None  # generated word heard as the right one (pocketsphinx)
    corr2d: float | None  # generated vs recorded word, mean over words
    stoi: float | None
    known_right_before: float  # shipped words: check images answered right by the shipped model
    known_right_after: float  # … by the taught model (issue #13: within 1 point)
    known_heard_before: float  # shipped words: generated word heard right, shipped model
    known_heard_after: float  # … taught model
    classifier_s: float  # the linear fit and its refinement; 0 when a resumed learn had them
    voice_s: float
    onnx: Path
    # each taught word taken for another taught word on its held-back photos (confused_pairs)
    confused: tuple[tuple[str, str, float], ...] = ()  # (word, taken for, share), worst first
    # shipped words: check images answered at all (top probability ≥ ½, the app's default
    # threshold; the rest are "not sure"), by the shipped model and by the taught one
    known_answered_before: float | None = None
    known_answered_after: float | None = None
    # each taught word's generated word heard as itself on its held-back photos (not the
    # "object N" of live's teach key: its recording says another name); word_accuracy pools them
    heard_by_word: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class _Split:
    learn: TaughtSet
    held_pooled: np.ndarray  # (H, D) held-back photos
    held_labels: np.ndarray  # (H,)
    held_mirrored: np.ndarray | None  # (H, D) their mirrors, when the model answers mirror-averaged


def _read_store(store, base: TeachBase, say: Say, cache: PhotoFeatureCache) -> _Split:
    """Photos → pooled features (learned ones with mirrors; from ``cache`` where it has them),
    recordings → targets."""
    cfg = base.model.cfg
    words = tuple(w.name for w in store.words())
    if not words:
        raise UsageError("nothing has been taught yet", "teach a word first: earsight teach WORD")
    learn_rows, learn_labels, held_rows, held_labels, voices = [], [], [], [], []
    held_mirrors = []  # filled when cfg.flip_tta: held-back photos are answered as the app would
    numbers = []  # which photo each learned row is (TaughtSet.photos)
    for j, word in enumerate(words):
        rows = word_rows(store.photos(word), base, cache, say)  # (N, 2, D): photo, mirror
        if not len(rows):
            raise UsageError(
                f"{word!r} has no photo that can be read",
                f"take new ones with `earsight teach {word!r} --more`, or forget it",
            )
        held = np.zeros(len(rows), bool)
        if len(rows) >= MIN_HELD_OUT_PHOTOS:
            held[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY] = True
        learn = rows[~held]
        learn_rows.append(np.concatenate([learn[:, 0], learn[:, 1]]))  # photos, then mirrors
        learn_labels.append(np.full(2 * len(learn), j))
        first = sum(len(n) // 2 for n in numbers)
        numbers.append(np.tile(np.arange(first, first + len(learn)), 2))
        if held.any():
            held_rows.append(rows[held, 0])
            if cfg.flip_tta:
                held_mirrors.append(rows[held, 1])
            held_labels.append(np.full(int(held.sum()), j))
        wave, rate = store.voice(word)
        voices.append(fit_voice_clip(wave, rate, cfg.sample_rate, cfg.audio_length))
        n = len(learn)
        say(f"{word}: {n} photo{'s' * (n != 1)} to learn from, {int(held.sum())} to check with")
    dim = learn_rows[0].shape[1]
    return _Split(
        TaughtSet(
            words,
            np.concatenate(learn_rows),
            np.concatenate(learn_labels),
            np.stack(voices),
            np.concatenate(numbers),
        ),
        np.concatenate(held_rows) if held_rows else np.zeros((0, dim), np.float32),
        np.concatenate(held_labels) if held_labels else np.zeros(0, np.int64),
        np.concatenate(held_mirrors) if held_mirrors else None,
    )


def teach_fit(
    store,
    base_path: Path,
    out_dir: Path,
    say: Say = print,
    options: VoiceOptions | None = None,
) -> TeachReport:
    """Learn every word in ``store`` on top of the teach base at ``base_path``; write
    ``out_dir/taught.pt`` and ``taught.onnx`` (+ sidecar); return the report. UsageError for an
    empty store, a base that cannot be read, or a recording the model cannot say."""
    base = load_teach_base(base_path)
    cache = PhotoFeatureCache.open(out_dir / CACHE_NAME, base_path)
    split = _read_store(store, base, say, cache)
    cache.save()  # before minutes of learning: an interrupted learn keeps the photos' rows
    options = options or VoiceOptions()
    resume = LearnResume(out_dir / RESUME_NAME, learn_key(cache.base_sha256, split.learn, options))
    saved = resume.load()
    if saved is None:
        model, classifier_s = _learn_classifier(base, split.learn, resume, say)
    else:  # an interrupted learn of these very words and photos
        model, classifier_s = resume.model(saved, base), 0.0
        step = int(saved["step"])
        where = f"at step {step} of the voice" if step else "after the classifier"
        say(f"picking up the last learn where it stopped, {where}")
    start = time.perf_counter()
    learn_voice(base, model, split.learn, options, on_progress=say, resume=resume, saved=saved)
    voice_s = time.perf_counter() - start
    # Saying each step: export and check take ~half a minute on 2 cores, silence a user
    # would take for a hang after "about 11 s left".
    say("saving the learned model")
    onnx = _save_and_export(model, out_dir)
    resume.clear()  # taught.onnx is whole: nothing left to pick up
    held = len(split.held_labels)
    say(f"checking it: {held} photo{'s' * (held != 1)} kept aside, and the words it knew before")
    return _report(base, model, split, classifier_s, voice_s, onnx)


def _learn_classifier(base, taught: TaughtSet, resume: LearnResume, say: Say):
    """The linear fit and its refinement (trainer/teach/learn.py), saved to ``resume``; the
    model and the seconds they took."""
    start = time.perf_counter()
    model = learn_classifier(base, taught)
    linear_s = time.perf_counter() - start
    n = len(taught.words)
    say(f"the classifier learned {n} word{'s' * (n != 1)} in {linear_s:.1f} s")
    refine_classifier(base, model, taught)
    classifier_s = time.perf_counter() - start
    say(f"the classifier refined from the photos, {classifier_s:.0f} s in all")
    resume.save(model)
    return model, classifier_s


def _save_and_export(model, out_dir: Path) -> Path:
    from earsight.engine.export import export_onnx
    from earsight.trainer.checkpoint import save_checkpoint, training_only_prefixes

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / f"{MODEL_NAME}.pt"
    # Slim, as its flag says: the audio autoencoder's stage-1 parts and ImageNet's classifier
    # are never read (and here only random), 93 of the full file's 153 MB in the user's data.
    drop = training_only_prefixes(model.cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(drop)}
    save_checkpoint(
        checkpoint, {"config": model.cfg.to_dict(), "model": state, "inference_only": True}
    )
    # The export's own lines (parity, exporter, file names) are for `earsight export`; a user
    # teaching hears how it went from the report instead. `earsight -v` keeps them.
    verbose = logging.getLogger("earsight.engine.export").isEnabledFor(logging.DEBUG)
    with quieter("earsight.engine.export", level=logging.DEBUG if verbose else logging.WARNING):
        return export_onnx(checkpoint, out_dir / f"{MODEL_NAME}.onnx", precision="fp16").path


@torch.no_grad()
def _report(base, model, split: _Split, classifier_s: float, voice_s: float, onnx: Path):
    words = split.learn.words
    scores = _held_back_scores(model, split) if len(split.held_labels) else {}
    before = _known_scores(base.model, base.check_pooled, base.check_labels)
    after = _known_scores(model, base.check_pooled, base.check_labels)
    return TeachReport(
        words=words,
        photos_learned=len(split.learn.labels) // 2,  # the other half are their mirrors
        photos_held_back=len(split.held_labels),
        held_back_right=scores.get("right"),
        word_accuracy=scores.get("word_accuracy"),
        heard_by_word=scores.get("heard_by_word", ()),
        corr2d=scores.get("corr2d"),
        stoi=scores.get("stoi"),
        known_right_before=before["right"],
        known_right_after=after["right"],
        known_heard_before=before["heard"],
        known_heard_after=after["heard"],
        classifier_s=classifier_s,
        voice_s=voice_s,
        onnx=onnx,
        confused=scores.get("confused", ()),
        known_answered_before=before["answered"],
        known_answered_after=after["answered"],
    )


ANSWER_THRESHOLD = 0.5  # app.modes.answer.DEFAULT_THRESHOLD: below it the app says "not sure"


def _known_scores(model, pooled: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Shipped words on check images: answered right; generated word heard right (on a
    class-balanced KNOWN_HEARD_PER_CLASS of them: the recognizer takes ~0.1 s a clip)."""
    from earsight.trainer.evaluation.metrics import WordRecognizer

    cfg = model.cfg
    probs, phi = answer_pooled(model, pooled)
    right = float((probs.argmax(1) == labels).mean())
    some = np.concatenate(
        [np.flatnonzero(labels == k)[:KNOWN_HEARD_PER_CLASS] for k in np.unique(labels)]
    )
    waves = model.generate(phi[torch.from_numpy(some)]).numpy()
    shipped = cfg.labels[: cfg.n_classes - cfg.taught_words]
    recognizer = WordRecognizer(shipped, sample_rate_in=cfg.sample_rate)
    spelled = [" ".join(w.lower().split()) for w in shipped]
    heard = [
        recognizer.recognize(w) == spelled[labels[i]] for w, i in zip(waves, some, strict=True)
    ]
    answered = float((probs.max(1) >= ANSWER_THRESHOLD).mean())
    return {"right": right, "heard": float(np.mean(heard)), "answered": answered}


def _held_back_scores(model, split: _Split) -> dict[str, float]:
    """The held-back photos through the taught model: right word, heard word, closeness."""
    from earsight.trainer.evaluation.metrics import WordRecognizer, corr2d, stoi

    cfg, labels = model.cfg, split.held_labels
    known = cfg.n_classes - cfg.taught_words
    probs, phi = answer_pooled(model, split.held_pooled, split.held_mirrored)
    waves = model.generate(phi).numpy()  # (H, L_s)
    recognizer = WordRecognizer(cfg.labels, sample_rate_in=cfg.sample_rate)
    # the taught words as the recognizer spells them (lower case, single spaces)
    spelled = [" ".join(w.lower().split()) for w in split.learn.words]
    pairs_heard = zip(waves, labels, strict=True)
    heard = np.array([recognizer.recognize(w) == spelled[j] for w, j in pairs_heard], bool)
    by_word = tuple(
        (word, float(heard[labels == j].mean()))
        for j, word in enumerate(split.learn.words)
        if not is_placeholder(word) and (labels == j).any()
    )
    checked = np.array([not is_placeholder(split.learn.words[j]) for j in labels], bool)
    targets = split.learn.voices[labels]  # (H, L_s) the recordings, fitted
    pairs = list(zip(waves, targets, strict=True))
    return {
        "confused": confused_pairs(probs.argmax(1) - known, labels, cfg.labels[known:]),
        "right": float((probs.argmax(1) == known + labels).mean()),
        "word_accuracy": float(heard[checked].mean()) if checked.any() else None,
        "heard_by_word": by_word,
        "corr2d": float(np.nanmean([corr2d(g, t, cfg.sample_rate) for g, t in pairs])),
        "stoi": float(np.mean([stoi(g, t, cfg.sample_rate) for g, t in pairs])),
    }


def confused_pairs(
    answered: np.ndarray, labels: np.ndarray, taught: Sequence[str]
) -> tuple[tuple[str, str, float], ...]:
    """Each taught word whose held-back photos (``labels``, (H,)) were answered with another
    taught word (``answered``: index into ``taught``; < 0 a shipped word): (word, that word,
    share of its photos), the largest share first. Said in the report: two words taught from
    alike photos (one object under two names, a typo taught twice) split its answers."""
    pairs = []
    for j, word in enumerate(taught):
        mine = answered[labels == j]
        for k in set(mine.tolist()) - {j}:
            if 0 <= k < len(taught):
                pairs.append((word, taught[k], float((mine == k).mean())))
    return tuple(sorted(pairs, key=lambda pair: -pair[2]))
