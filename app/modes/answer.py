"""One answer path: a frame's class probabilities and generated clip → what EarSight says.

    gate = ConfidenceGate()                       # --threshold / --gate
    a = answer(clip, probs, runtime.info.labels, gate, rate, runtime.options.postprocess)
    play(a.clip, rate); print(a.said)

``earsight describe`` (WAVs) and ``earsight live`` (the speaker) both answer through here, so a
photo gets the same words and the same sound in either: the two most probable words (ties go
to the earlier word in the vocabulary, numpy's stable sort), the confidence gate, and for a
doubted frame the "not sure" earcon (app/sound/earcons.py) followed by the spoken phrase, never the
doubted word's clip.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from earsight.app.sound import earcons
from earsight.engine.postprocess import PostprocessOptions, postprocess_one
from earsight.errors import UsageError

log = logging.getLogger(__name__)

GATE_MODES = ("not-sure", "top-two")
NOT_SURE = "not sure"
# Below 0.5 no word holds a majority of the probability, so the answer is closer to a guess than
# to a reading. On the MNIST test set (mnist-ad, 10,000 images, 60 errors) 0.5 gates 0.35% of
# images, and about half of those were wrong (17 errors caught, 18 right answers withheld);
# 0.9 would catch 43 errors but withhold 156 right answers, 0.99 withhold 766. A blind user who
# hears "not sure" presses again: cheap when it is rare, annoying when it is routine. On the
# CIFAR-10 test set (cifar10-ad, 85.1% right) 0.5 answers 89.4% of images, 89.9% of them right;
# 0.7 answers 76.8% (94.1% right); 0.9 answers 49.2% (98.3% right): `--threshold` trades.
DEFAULT_THRESHOLD = 0.5
TOP_K = 2  # words kept per answer: the best, and the runner-up "top-two" mode names


@dataclass(frozen=True)
class ConfidenceGate:
    """Say "not sure" (or "maybe X or Y") instead of a word the classifier head doubts.

    With an open-set gate in the model (trainer/mtnet/open_set.py) the probabilities already sum to
    P(the frame shows one of the vocabulary's things), so this threshold also rejects frames
    of other things; without one (mnist-ad, cifar10-ad) it only catches ambiguous frames.
    Raises UsageError for a threshold outside [0, 1] or an unknown mode.
    """

    threshold: float = DEFAULT_THRESHOLD  # top probability below this → not confident
    mode: str = "not-sure"  # "not-sure" | "top-two"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:  # also rejects NaN
            raise UsageError(
                f"confidence threshold must be between 0 and 1, got {self.threshold}",
                f"e.g. --threshold {DEFAULT_THRESHOLD}",
            )
        if self.mode not in GATE_MODES:
            raise UsageError(f"unknown gate mode {self.mode!r}", f"use {' or '.join(GATE_MODES)}")

    def decide(self, top: Sequence[tuple[str, float]]) -> tuple[str, bool]:
        """Best-first (word, probability) pairs → (what to say, confident?): the best word at
        or above the threshold; else, in top-two mode, "maybe X or Y" when the two together
        reach it; else "not sure"."""
        word, prob = top[0]
        if prob >= self.threshold:
            return word, True
        # "maybe X or Y" only when the two together hold the threshold: with an open-set
        # model two words at 0.04 each are a frame of something else ("not sure"), not a guess
        if self.mode == "top-two" and len(top) > 1 and prob + top[1][1] >= self.threshold:
            return f"maybe {word} or {top[1][0]}", False
        return NOT_SURE, False


@dataclass(frozen=True)
class Answer:
    """What is said about one frame."""

    said: str  # the top word, "not sure" or "maybe X or Y"
    top: tuple[tuple[str, float], ...]  # the TOP_K most probable (word, probability), best first
    confident: bool
    clip: np.ndarray  # (L,) float32 at the output rate: the word, or earcon + spoken phrase


def top_words(
    probs: np.ndarray, labels: Sequence[str], k: int = TOP_K
) -> tuple[tuple[str, float], ...]:
    """One frame's probabilities (K,) → the ``k`` most probable (word, probability), best first;
    equal probabilities in vocabulary order."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return tuple((labels[i], float(probs[i])) for i in order)


@functools.lru_cache(maxsize=32)
def phrase_clip(text: str, output_rate: int, opts: PostprocessOptions) -> np.ndarray:
    """espeak-ng speaking ``text``, post-processed exactly like the model's words (L,) float32.

    The same chain (resample_poly to ``output_rate`` Hz, fades, peak level) makes "not sure" as
    loud as the words around it. Cached: a run gating many images synthesizes it once.
    """
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, synthesize

    clip = postprocess_one(synthesize(text), SAMPLE_RATE_HZ, replace(opts, output_rate=output_rate))
    clip.setflags(write=False)  # shared by every caller of the cache
    return clip


def answer(
    clip: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    gate: ConfidenceGate,
    rate: int,
    opts: PostprocessOptions,
) -> Answer:
    """A frame's generated, post-processed ``clip`` (L,) at ``rate`` Hz and its ``probs`` (K,)
    → the Answer. A doubted frame never plays the doubted word: the "not sure" earcon and the
    phrase (``opts`` post-processing, so it is as loud as a word) replace its clip."""
    top = top_words(probs, labels)
    said, confident = gate.decide(top)
    if not confident:
        clip = np.concatenate([earcons.not_sure_tone(rate), phrase_clip(said, rate, opts)])
    if log.isEnabledFor(logging.DEBUG):  # -v: "cat (top cat 0.97, ship 0.00; 30150 samples)"
        best = ", ".join(f"{word} {p:.2f}" for word, p in top)
        log.debug("%s (top %s; %d samples)", said, best, len(clip))
    return Answer(said, top, confident, clip)
