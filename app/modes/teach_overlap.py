"""Does the model already name the new photos with another word? Said right after teaching.

A user who teaches "kitty" from photos of their cat, or "my mug" twice under two names, learns
only after minutes of learning — from the report's confused pair, or from wrong answers — that
the model already had a word for it. The model that answers now (the taught model, else the
shipped default: ``--model auto``) looks at the new photos the way ``describe`` does, and when
it names most of them with one other word, one line says so before any learning. It runs the
exported ONNX, so a runtime-only install (no torch) says it too.

Shapes: N photos (H, W, 3) uint8 RGB; probs (N, K).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

LOOK_ALIKE_SHARE = 0.5  # said when one other word is the confident answer for this share or more
BATCH = 32  # photos per inference call (the runtime's batch; ~30 photos in all)


@dataclass(frozen=True)
class LookAlike:
    """``count`` of ``total`` photos were answered ``word`` (top probability ≥ threshold)."""

    word: str
    count: int
    total: int

    def line(self, taught: str) -> str:
        which = "this photo" if self.total == 1 else f"{self.count} of these {self.total} photos"
        return (
            f"note: the model already calls {which} "
            f"{self.word!r}: if {taught!r} means the same, {self.word!r} already says it; if "
            f"not, learning tells them apart and says how well"
        )


def answers(photos: Sequence[np.ndarray], model: str = "auto") -> tuple[list[str], np.ndarray]:
    """The vocabulary of ``model`` (a name or path, as ``--model``) and its probs (N, K) for
    ``photos``, each fitted to the model's input as ``describe`` fits a file. EarSightError
    when the model cannot be loaded."""
    from earsight.app.models import resolve_model
    from earsight.engine.runtime import load
    from earsight.logs import quieter
    from earsight.trainer.data.preprocess import fit_to_input

    with quieter("earsight.engine.runtime"):  # not "backend … on cpu": teach runs no model
        runtime = load(resolve_model(model))
    info = runtime.info
    height, width, _ = info.input_shape
    images = np.stack([fit_to_input(p, height, width, info.input_crop) for p in photos])
    probs = [runtime.infer(images[i : i + BATCH])[1] for i in range(0, len(images), BATCH)]
    return list(info.labels), np.concatenate(probs)


def look_alike(
    labels: Sequence[str], probs: np.ndarray, word: str, threshold: float
) -> LookAlike | None:
    """The other word that is the confident answer (top prob ≥ ``threshold``) for at least
    LOOK_ALIKE_SHARE of the photos, the most often given one; None when there is none.
    ``word`` itself (photos added to a taught word with --more) does not count."""
    top = probs.argmax(axis=1)
    confident = probs[np.arange(len(probs)), top] >= threshold
    given = Counter(labels[k] for k, sure in zip(top, confident, strict=True) if sure)
    given.pop(word, None)
    if not given:
        return None
    other, count = given.most_common(1)[0]
    if count < LOOK_ALIKE_SHARE * len(probs):
        return None
    return LookAlike(other, count, len(probs))


def look_alike_line(
    photos: Sequence[np.ndarray], word: str, threshold: float | None = None
) -> str | None:
    """The note for ``photos`` of ``word``, or None; ``threshold`` as the app's confidence gate
    (its default when None). Never raises: the photos are stored already, and a model that
    cannot be loaded here is said by ``describe`` and ``live``."""
    from earsight.app.modes.answer import DEFAULT_THRESHOLD
    from earsight.errors import EarSightError

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold

    if not photos:
        return None
    try:
        labels, probs = answers(photos)
    except (EarSightError, OSError, ValueError) as err:
        log.info("not checked whether the photos look like another word: %s", err)
        return None
    found = look_alike(labels, probs, word, threshold)
    return None if found is None else found.line(word)
