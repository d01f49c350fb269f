"""Teach benchmark on COIL-100: how well teach mode's classifier learns objects from few views.

    python -m earsight.trainer.teach.bench --base assets/models/cifar10-ad-lite0.teach.pt \\
        --coil ../shared/data/coil100/coil-100.zip [--objects 10,100] [--views 1,3,5,10]

COIL-100 (Nene, Nayar & Murase 1996): 100 objects × 72 turntable views 5° apart, 128×128 on
black. For each K taught objects and N views per object, taken *spread* around the turntable
(N views 360/N° apart) or *consecutive* (a short turn of the object, as a camera gives), the
classifier is learned exactly as ``earsight teach`` learns it (trainer/teach/learn.py: photos
and their mirrors) and tested on every other view of the taught objects, and on every view of
the objects not taught, which must be answered "not sure". Seeded: which objects, where each
turn starts.

Columns: taught views right after the linear fit alone (``learn_classifier``, the first
second) and after its refinement (``refine_classifier``; the taught word is the most probable
of all words); answered (top probability ≥ the app's threshold) and right among the answered;
untaught views "not sure"; seconds to learn the linear fit and the refinement (without the
backbone passes, which the cache makes once). All but the first column: the refined model.
Rows are means over ``--trials`` draws. Figures go to docs/BENCHMARKS.md and the model card.

``--backgrounds``: the objects pasted on real photos (trainer/teach/backgrounds.py), the taught
views of each on one background (where it was taught), every asked-about view on another: what
a cue that learns the place instead of the thing would lose; and each taught object's home
without it (the empty place where it was taught), which must be answered "not sure".
"""

from __future__ import annotations

import io
import logging
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from earsight.arguments import OneLineParser
from earsight.errors import EarSightError, UsageError
from earsight.trainer.teach.base import TeachBase, input_batches, load_teach_base
from earsight.trainer.teach.learn import (
    TaughtSet,
    answer_pooled,
    learn_classifier,
    refine_classifier,
)

log = logging.getLogger(__name__)

VIEWS_PER_OBJECT = 72
THRESHOLD = 0.5  # the app's default confidence threshold (app/modes/describe.py)
_NAME = re.compile(r"obj(\d+)__(\d+)\.png$")


@dataclass(frozen=True)
class Coil:
    images: np.ndarray  # (7200, 128, 128, 3) uint8, sorted by object then angle
    objects: np.ndarray  # (7200,) 1..100
    angles: np.ndarray  # (7200,) degrees 0..355


def load_coil(path: Path) -> Coil:
    """COIL-100 from its zip (``coil-100/obj<O>__<A>.png``); UsageError if it is not that."""
    from PIL import Image

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if _NAME.search(n)]
            images = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in names]
    except (OSError, zipfile.BadZipFile) as err:
        raise UsageError(f"cannot read COIL-100 from {path}: {err}", "pass --coil ZIP") from err
    if len(names) != 100 * VIEWS_PER_OBJECT:
        raise UsageError(f"{path} holds {len(names)} COIL views, not 7200", "pass coil-100.zip")
    keys = np.array([[int(g) for g in _NAME.search(n).groups()] for n in names])
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    return Coil(np.stack(images)[order], keys[order, 0], keys[order, 1])


@torch.no_grad()
def cached_pooled(
    model,
    images: np.ndarray,
    mirrored: bool,
    label: str,
    crop: float | None = None,
    colour_bins: int = 0,
) -> np.ndarray:
    """Pooled features (N, D) of ``images`` (N, H, W, C) uint8 fitted to the model's input
    (centre ``crop``: default the camera's ``input_crop``; 1.0 for dataset thumbnails, used
    whole as in training), or of their mirrors; the frozen trunk's activations are cached
    (trainer/data/feature_cache.py), the fine-tuned tail runs each time. ``colour_bins``:
    each row ends with its colour histogram (a base's TeachBase.colour_bins; a mirror's is
    its image's)."""
    from earsight.trainer.data.feature_cache import cached_activations

    enc, cfg = model.eval().image_encoder, model.cfg
    acts = cached_activations(
        enc.backbone,
        images,
        cut=enc.cut,
        resolution=cfg.image_size,
        crop=cfg.input_crop if crop is None else crop,
        mirrored=mirrored,
        label=label,
    )
    rows = [
        enc.backbone.tail(torch.from_numpy(np.asarray(acts[s : s + 256], np.float32)), enc.cut)
        for s in range(0, len(acts), 256)
    ]
    pooled = torch.cat(rows).numpy()
    if not colour_bins:
        return pooled
    return np.concatenate([pooled, colour_rows(model, images, crop, colour_bins)], axis=1)


@torch.no_grad()
def colour_rows(model, images: np.ndarray, crop: float | None, bins: int) -> np.ndarray:
    """``colour_histogram``s (N, bins³) of ``images`` fitted as ``cached_pooled`` fits them."""
    from earsight.trainer.mtnet.colour import colour_histogram

    crop = model.cfg.input_crop if crop is None else crop
    batches = input_batches(model, images, crop, batch=256)
    return np.concatenate([colour_histogram(x, bins).numpy() for x in batches])


@dataclass(frozen=True)
class CoilFeatures:
    """Pooled features (7200, D) of every view as taught and as asked about, and of their
    mirrors: the same on COIL's black; two scenes with --backgrounds (teach/backgrounds.py)."""

    taught: np.ndarray
    taught_mirrors: np.ndarray
    tested: np.ndarray
    tested_mirrors: np.ndarray
    bare_homes: np.ndarray | None = None  # (100, D) each object's home without it
    bare_homes_mirrors: np.ndarray | None = None


def coil_features(base: TeachBase, coil: Coil, backgrounds: bool = False) -> CoilFeatures:
    """Every view's pooled features and its mirror's, through the trunk cache; with
    ``backgrounds`` the taught views at their object's home, the asked-about ones elsewhere."""
    bins = base.colour_bins

    def both(images: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
        plain = cached_pooled(base.model, images, False, label, colour_bins=bins)
        return plain, cached_pooled(base.model, images, True, f"{label} mirrored", None, bins)

    if not backgrounds:
        views = both(coil.images, "COIL-100")  # taught and asked about in the same scene
        return CoilFeatures(*views, *views)
    from earsight.trainer.teach.backgrounds import on_backgrounds

    home, elsewhere, bare = on_backgrounds(coil.images, coil.objects)
    return CoilFeatures(
        *both(home, "COIL-100 at home"),
        *both(elsewhere, "COIL-100 elsewhere"),
        *both(bare, "COIL-100 homes bare"),
    )


def pick_views(n: int, mode: str, start: int) -> np.ndarray:
    """Indices 0..71 of ``n`` views: ``spread`` 360/n° apart, ``consecutive`` 5° apart."""
    step = VIEWS_PER_OBJECT / n if mode == "spread" else 1
    return np.array([(start + round(i * step)) % VIEWS_PER_OBJECT for i in range(n)])


def run_case(base, feats: CoilFeatures, coil, k: int, n: int, mode: str, rng) -> dict[str, float]:
    """One draw: teach ``k`` objects from ``n`` views each, score the rest."""
    taught_objects = rng.choice(np.arange(1, 101), k, replace=False)
    train_idx, test_idx, labels, test_labels = [], [], [], []
    for j, obj in enumerate(taught_objects):
        rows = np.flatnonzero(coil.objects == obj)  # its 72 views in angle order
        chosen = np.zeros(VIEWS_PER_OBJECT, bool)
        chosen[pick_views(n, mode, int(rng.integers(VIEWS_PER_OBJECT)))] = True
        train_idx += list(rows[chosen])
        test_idx += list(rows[~chosen])
        labels += [j] * int(chosen.sum())
        test_labels += [j] * int((~chosen).sum())
    train_idx, labels = np.array(train_idx), np.array(labels)
    words = tuple(f"object {o}" for o in taught_objects)
    taught = TaughtSet(
        words,
        np.concatenate([feats.taught[train_idx], feats.taught_mirrors[train_idx]]),
        np.concatenate([labels, labels]),
        np.zeros((k, 1), np.float32),  # the classifier does not need the recordings
        np.tile(np.arange(len(train_idx)), 2),  # the views, then their mirrors
    )
    flip_tta = base.model.cfg.flip_tta
    test = feats.tested[np.array(test_idx)]
    # the taught model answers as the shipped one does: mirror-averaged when cfg.flip_tta
    test_mirrored = feats.tested_mirrors[np.array(test_idx)] if flip_tta else None
    start = time.perf_counter()
    model = learn_classifier(base, taught)
    linear_s = time.perf_counter() - start
    target = model.cfg.n_classes - k + np.array(test_labels)  # each view's word among all
    linear_right = answer_pooled(model, test, test_mirrored)[0].argmax(1) == target
    start = time.perf_counter()
    refine_classifier(base, model, taught)
    refine_s = time.perf_counter() - start
    probs, _ = answer_pooled(model, test, test_mirrored)
    top, conf = probs.argmax(1), probs.max(1)
    right = top == target
    answered = conf >= THRESHOLD
    row = {
        "linear_right": linear_right.mean(),
        "taught_right": right.mean(),
        "answered": answered.mean(),
        "right_of_answered": right[answered].mean() if answered.any() else 0.0,
        "linear_s": linear_s,
        "refine_s": refine_s,
    }
    if feats.bare_homes is not None:  # the taught things' places, empty: "not sure"
        homes = np.searchsorted(np.unique(coil.objects), taught_objects)
        homes_mirrored = feats.bare_homes_mirrors[homes] if flip_tta else None
        probs, _ = answer_pooled(model, feats.bare_homes[homes], homes_mirrored)
        row["bare_home_not_sure"] = (probs.max(1) < THRESHOLD).mean()
    others = ~np.isin(coil.objects, taught_objects)
    if others.any():
        others_mirrored = feats.tested_mirrors[others] if flip_tta else None
        row["untaught_not_sure"] = (
            answer_pooled(model, feats.tested[others], others_mirrored)[0].max(1) < THRESHOLD
        ).mean()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earsight.trainer.teach.bench", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="a teach base (.teach.pt)")
    parser.add_argument("--coil", type=Path, required=True, help="coil-100.zip")
    parser.add_argument("--objects", default="10,100", help="K values, comma-separated")
    parser.add_argument("--views", default="1,3,5,10", help="N values, comma-separated")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backgrounds",
        action="store_true",
        help="objects pasted on real photos: taught on one, asked about on others",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        base = load_teach_base(args.base)
        coil = load_coil(args.coil)
        feats = coil_features(base, coil, args.backgrounds)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        "| objects | views | taken | linear fit right | taught right | answered "
        "| right of answered | untaught not sure | bare home not sure "
        "| seconds: linear / refined |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in map(int, args.objects.split(",")):
        for n in map(int, args.views.split(",")):
            for mode in ("spread", "consecutive") if n > 1 else ("spread",):
                rng = np.random.default_rng([args.seed, k, n])
                rows = [run_case(base, feats, coil, k, n, mode, rng) for _ in range(args.trials)]
                mean = {key: np.mean([r[key] for r in rows]) for key in rows[0]}
                untaught, bare = (
                    "–" if mean.get(key) is None else f"{mean[key]:.1%}"
                    for key in ("untaught_not_sure", "bare_home_not_sure")
                )
                print(
                    f"| {k} | {n} | {mode if n > 1 else '–'} | {mean['linear_right']:.1%} "
                    f"| {mean['taught_right']:.1%} | {mean['answered']:.1%} "
                    f"| {mean['right_of_answered']:.1%} | {untaught} | {bare} "
                    f"| {mean['linear_s']:.1f} / {mean['refine_s']:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
