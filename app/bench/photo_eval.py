"""How a shipped model does on real photographs: the open-set table of its model card.

    python -m earsight.app.bench.photo_eval --model cifar10-ad-lite0 ../shared/photos-dev \
        [--bundled]

A photo is *in the vocabulary* when its file name starts with one of the model's words
(``cat_02.jpg``), *out of it* when it lies in a folder named ``OOD`` or its name starts with
``ood_``; other files are skipped. ``--bundled`` adds the photographs that ship inside installed
packages (scikit-image, scikit-learn, matplotlib), none of which shows a CIFAR-10 thing except
scikit-image's cat. Each photo goes through ``earsight describe``'s own path (decode, centre crop,
resize, runtime); the generated waveform is scored by an independent recognizer (pocketsphinx,
limited to the vocabulary: trainer/evaluation/metrics.py).

Columns: in-vocabulary photos — answered (top probability ≥ threshold), the generated word heard
as the right word among all of them (a "not sure" counts as not right), and among the answered;
out-of-vocabulary photos — share answered "not sure". ``--degrade N`` first shrinks each photo to
N×N and back (a CIFAR-like thumbnail), to measure whether real frames should be degraded like
the training images.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from earsight.arguments import OneLineParser
from earsight.errors import EarSightError
from earsight.trainer.data.image_io import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from earsight.engine.runtime import Runtime

log = logging.getLogger(__name__)

# (loader, file name, vocabulary word or None = out of vocabulary). None of these shows one of
# CIFAR-10's things except scikit-image's cat (chelsea, also in photos-dev as cat_02).
BUNDLED = (
    ("skimage", "camera", None),  # a man with a camera (grey)
    ("skimage", "clock", None),
    ("skimage", "coins", None),
    ("skimage", "moon", None),
    ("skimage", "brick", None),
    ("skimage", "grass", None),
    ("skimage", "gravel", None),
    ("sklearn", "china.jpg", None),  # a temple
    ("sklearn", "flower.jpg", None),
    ("matplotlib", "grace_hopper.jpg", None),  # a portrait
)


@dataclass(frozen=True)
class Photo:
    path: Path
    word: str | None  # None: out of the vocabulary


@dataclass(frozen=True)
class Outcome:
    photo: Photo
    top_word: str
    top_prob: float
    heard: str  # what the recognizer heard in the generated waveform


def find_photos(folders: list[Path], vocabulary: tuple[str, ...]) -> list[Photo]:
    """Labelled photos under ``folders`` (recursively), sorted by path."""
    photos = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            stem = path.stem.lower()
            if "OOD" in path.parts or stem.startswith("ood_"):
                photos.append(Photo(path, None))
            elif (word := stem.rsplit("_", 1)[0]) in vocabulary:
                photos.append(Photo(path, word))
    return photos


def bundled_photos(out_dir: Path) -> list[Photo]:
    """Write the packages' sample photographs that are installed to ``out_dir`` as PNG."""
    import cv2

    photos = []
    for source, name, word in BUNDLED:
        try:
            pixels = _bundled_pixels(source, name)
        except Exception as err:
            log.info("skipping bundled %s %s: %s", source, name, err)
            continue
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        path = out_dir / f"{source}-{Path(name).stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(pixels[..., :3].astype(np.uint8), cv2.COLOR_RGB2BGR))
        photos.append(Photo(path, word))
    return photos


def _bundled_pixels(source: str, name: str) -> np.ndarray:
    if source == "skimage":
        import skimage.data

        return getattr(skimage.data, name)()
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    import cv2
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data(name, asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def degrade(pixels: np.ndarray, side: int) -> np.ndarray:
    """(H, W, C) → the same size after a trip through side×side (INTER_AREA down, linear up)."""
    import cv2

    h, w = pixels.shape[:2]
    small = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(pixels.shape)


def run(runtime: Runtime, photos: list[Photo], degrade_to: int | None) -> list[Outcome]:
    from earsight.app.modes.describe import load_image
    from earsight.trainer.evaluation.metrics import WordRecognizer

    info = runtime.info
    recognizer = WordRecognizer(info.labels, sample_rate_in=info.sample_rate)
    outcomes = []
    for photo in photos:
        pixels = load_image(photo.path, info.input_shape, info.input_crop)
        if degrade_to:
            pixels = degrade(pixels, degrade_to)
        waves, probs = runtime.infer(pixels[None])
        top = int(np.argmax(probs[0]))
        heard = recognizer.recognize(waves[0])
        outcomes.append(Outcome(photo, info.labels[top], float(probs[0, top]), heard))
    return outcomes


def summarize(outcomes: list[Outcome], threshold: float) -> dict[str, float]:
    known = [o for o in outcomes if o.photo.word is not None]
    unknown = [o for o in outcomes if o.photo.word is None]
    answered = [o for o in known if o.top_prob >= threshold]
    right = [o for o in answered if o.heard == o.photo.word]
    rejected = [o for o in unknown if o.top_prob < threshold]
    return {
        "in_vocabulary": len(known),
        "answered": len(answered) / max(1, len(known)),
        "heard_right": len(right) / max(1, len(known)),
        "heard_right_of_answered": len(right) / max(1, len(answered)),
        "classifier_right_ungated": sum(o.top_word == o.photo.word for o in known)
        / max(1, len(known)),
        "out_of_vocabulary": len(unknown),
        "not_sure": len(rejected) / max(1, len(unknown)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earsight.app.bench.photo_eval", description=__doc__)
    parser.add_argument("folders", nargs="*", type=Path, help="folders of labelled photos")
    from earsight.app.models import DEFAULT_MODEL
    from earsight.app.modes.answer import DEFAULT_THRESHOLD

    parser.add_argument("--model", default=DEFAULT_MODEL, help="shipped model name or a path")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--bundled", action="store_true", help="add the packages' photographs")
    parser.add_argument("--degrade", type=int, metavar="N", help="shrink each photo to N×N first")
    parser.add_argument("--list", action="store_true", help="print one line per photo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from earsight.app.models import resolve_model
        from earsight.engine.runtime import load

        runtime = load(resolve_model(args.model))  # read and verified once
        with tempfile.TemporaryDirectory(prefix="earsight-photos-") as tmp:
            photos = find_photos(args.folders, runtime.info.labels)
            if args.bundled:
                photos += bundled_photos(Path(tmp))
            outcomes = run(runtime, photos, args.degrade)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        for o in outcomes:
            print(f"{o.photo.path.name}: {o.top_word} ({o.top_prob:.2f}), heard {o.heard!r}")
    for key, value in summarize(outcomes, args.threshold).items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
