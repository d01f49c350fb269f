"""Teach benchmark on thumbnails: classes the model never saw, taught from a few of their photos.

    python trainer/fit.py --dataset cifar10 --data-root DIR --preset efficientnet-lite0 \\
        --leave-out cat,truck ... --out runs/cifar8-lite0       # the default recipe, 8 classes
    python -m earsight.trainer.teach.bench_thumbs runs/cifar8-lite0/best.pt [--photos 30]

Issue #13's hard case: CIFAR-10 thumbnails (32×32) are far from the camera photos the ImageNet
backbone knows, and the left-out classes have near neighbours among the known ones (cat/dog,
truck/automobile). The run's left-out classes (``--leave-out`` stored in its checkpoint) are
taught exactly as ``earsight teach`` teaches (trainer/teach/learn.py): ``--photos`` seeded
training images of each, and their mirrors; each word spoken by a voice that is not the
training voice (an espeak-ng accent, then sox effects: a recording-like voice the generator
must learn). Scored on the test split: the left-out classes' images (answered with their taught
word among all words) and the known classes' images before and after teaching; frozen
prototypes (nearest class mean of the centred, unit-length pooled features) as the baseline;
the generated word as heard by pocketsphinx, its Corr2D and STOI against the taught voice;
seconds to learn the classifier and the voice on this CPU. Test images go through the trunk
cache (trainer/data/feature_cache.py), so a second run skips the backbone.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from earsight.arguments import OneLineParser
from earsight.errors import EarSightError, UsageError
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.teach.base import TeachBase, build_teach_base, load_teach_base
from earsight.trainer.teach.bench import THRESHOLD, cached_pooled
from earsight.trainer.teach.learn import (
    TaughtSet,
    answer_pooled,
    learn_classifier,
    refine_classifier,
)
from earsight.trainer.teach.voice import VoiceOptions, fit_voice_clip, learn_voice

log = logging.getLogger(__name__)

HEARD_PER_CLASS = 40  # test images per class whose generated word pocketsphinx listens to
DEFAULT_VOICE = "en-gb-x-rp"  # not the training voice (en-us); pocketsphinx hears it right
DEFAULT_SOX = "pitch -200"  # a lower voice: sox effects, as `sox in.wav out.wav EFFECTS`


def left_out_images(spec, photos: int, seed: int):
    """The run's left-out classes from the full image set: ``photos`` seeded training images
    of each (P·k, H, W, C), their labels 0..k−1, and every test image of them with labels."""
    from earsight.trainer.data.images import load_images

    if not spec.leave_out:
        raise UsageError("this run left no class out", "train with fit.py --leave-out WORD,WORD")
    full = load_images(spec.source, Path(spec.data_root) if spec.data_root else None)
    rng = np.random.default_rng(seed)
    train, train_labels, test, test_labels = [], [], [], []
    for j, word in enumerate(spec.leave_out):
        k = full.classes.index(word)
        members = np.flatnonzero(full.train.labels == k)
        if len(members) < photos:
            raise UsageError(f"{word}: {len(members)} training images", "use fewer --photos")
        train.append(full.train.images[np.sort(rng.choice(members, photos, replace=False))])
        test.append(full.test.images[full.test.labels == k])
        train_labels += [j] * photos
        test_labels += [j] * len(test[-1])
    return (
        np.concatenate(train),
        np.array(train_labels),
        np.concatenate(test),
        np.array(test_labels),
    )


def taught_voice(word: str, espeak_voice: str, sox_effects: str, rate: int, length: int):
    """``word`` by espeak-ng ``espeak_voice``, through ``sox_effects``, fitted to the model's
    clip (length,) float32 at ``rate`` Hz. UsageError when sox rejects the effects."""
    from earsight.trainer.speech.synth import SAMPLE_RATE_HZ, Voice, synthesize

    wave = synthesize(word, Voice(name=espeak_voice))
    if sox_effects.strip():
        raw = (wave * 32767).astype("<i2").tobytes()
        fmt = ["-t", "raw", "-r", str(SAMPLE_RATE_HZ), "-e", "signed", "-b", "16", "-c", "1"]
        proc = subprocess.run(
            ["sox", *fmt, "-", *fmt, "-", *sox_effects.split()],
            input=raw,
            capture_output=True,
            check=False,
        )
        if proc.returncode:
            raise UsageError(f"sox {sox_effects}: {proc.stderr.decode().strip()}", "fix --sox")
        wave = np.frombuffer(proc.stdout, "<i2").astype(np.float32) / 32767
    return fit_voice_clip(wave, SAMPLE_RATE_HZ, rate, length)


def prototype_accuracy(base: TeachBase, taught: TaughtSet, pooled, labels) -> float:
    """Frozen-feature baseline: nearest class mean (cosine, features centred on the replay
    mean) over known ∪ taught classes; share of ``pooled`` (N, D) given their ``labels``."""
    centre = base.replay_pooled.mean(axis=0)

    def unit(x: np.ndarray) -> np.ndarray:
        x = x - centre
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    known = int(base.replay_labels.max()) + 1
    rows = np.concatenate([base.replay_pooled, taught.pooled])
    row_labels = np.concatenate([base.replay_labels, taught.labels + known])
    protos = np.stack([unit(rows)[row_labels == c].mean(0) for c in range(row_labels.max() + 1)])
    return float(((unit(pooled) @ protos.T).argmax(1) == labels).mean())


@torch.no_grad()
def heard_scores(model, pooled, mirrored, labels, voices: np.ndarray | None) -> dict[str, float]:
    """Generated words of HEARD_PER_CLASS images a class: heard right by pocketsphinx, over
    all of them and over those answered with their own word; with ``voices`` (k, L_s), Corr2D
    and STOI against the class's taught voice, and that voice itself heard right (a ceiling).
    ``mirrored``: the images' mirrors' pooled features (mirror-averaged answers) or None."""
    from earsight.trainer.evaluation.metrics import WordRecognizer, corr2d, stoi

    cfg = model.cfg
    some = np.concatenate(
        [np.flatnonzero(labels == k)[:HEARD_PER_CLASS] for k in np.unique(labels)]
    )
    probs, phi = answer_pooled(model, pooled[some], None if mirrored is None else mirrored[some])
    waves = model.generate(phi).numpy()
    recognizer = WordRecognizer(cfg.labels, sample_rate_in=cfg.sample_rate)
    words = [" ".join(w.lower().split()) for w in cfg.labels]
    heard = np.array(
        [recognizer.recognize(w) == words[labels[i]] for w, i in zip(waves, some, strict=True)]
    )
    own = probs.argmax(axis=1) == labels[some]
    out = {"heard": float(heard.mean()), "heard_own": float(heard[own].mean()) if own.any() else 0}
    if voices is not None:
        known = cfg.n_classes - cfg.taught_words
        pairs = [(w, voices[labels[i] - known]) for w, i in zip(waves, some, strict=True)]
        out["corr2d"] = float(np.nanmean([corr2d(g, t, cfg.sample_rate) for g, t in pairs]))
        out["stoi"] = float(np.mean([stoi(g, t, cfg.sample_rate) for g, t in pairs]))
        taught_words = words[known:]
        out["voice_heard"] = float(
            np.mean(
                [recognizer.recognize(v) == w for v, w in zip(voices, taught_words, strict=True)]
            )
        )
    return out


def taught_thumbnails(
    words: tuple[str, ...],
    features: list[np.ndarray],
    labels: np.ndarray,
    voice: str,
    sox: str,
    cfg: MTNetConfig,
) -> TaughtSet:
    """The left-out words as `earsight teach` would store them: the pooled features of the
    photos, then of their mirrors ([(N, D), (N, D)]), labels (N,) 0-based among the taught words,
    and each word's voice (espeak-ng ``voice`` through ``sox`` effects)."""
    voices = [taught_voice(w, voice, sox, cfg.sample_rate, cfg.audio_length) for w in words]
    return TaughtSet(
        words,
        np.concatenate(features),
        np.concatenate([labels, labels]),
        np.stack(voices),
        np.tile(np.arange(len(labels)), 2),  # photos, then their mirrors
    )


def run(checkpoint: Path, photos: int, voice: str, sox: str, steps: int, seed: int) -> list[str]:
    """The benchmark's markdown table rows (header first); see the module docstring."""
    from earsight.trainer.checkpoint import read_checkpoint
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset

    spec = DatasetSpec(**read_checkpoint(checkpoint)["dataset"])
    train, train_labels, test, test_labels = left_out_images(spec, photos, seed)
    base_path = checkpoint.with_suffix(".teach.pt")
    if not base_path.exists():
        build_teach_base(checkpoint, base_path)
    base = load_teach_base(base_path)
    cfg, known = base.model.cfg, base.model.cfg.n_classes
    known_test = build_dataset(spec).test

    def pool(images: np.ndarray, mirrored: bool, label: str) -> np.ndarray:
        # whole thumbnails, as in training
        return cached_pooled(base.model, images, mirrored, label, 1.0, base.colour_bins)

    features = [pool(train, False, "taught"), pool(train, True, "taught mirrored")]
    taught = taught_thumbnails(tuple(spec.leave_out), features, train_labels, voice, sox, cfg)
    taught_pooled = pool(test, False, "left-out test")
    known_pooled = pool(known_test.images, False, "known test")
    # the taught model answers as the shipped one does: mirror-averaged when cfg.flip_tta
    taught_mirrored = pool(test, True, "left-out test mirrored") if cfg.flip_tta else None
    known_mirrored = pool(known_test.images, True, "known test mirrored") if cfg.flip_tta else None
    start = time.perf_counter()
    model = learn_classifier(base, taught)
    linear_s = time.perf_counter() - start
    target = known + test_labels  # (T,) each test image's word among all words
    linear_right = answer_pooled(model, taught_pooled, taught_mirrored)[0].argmax(1) == target
    truth = known_test.labels
    linear_known = answer_pooled(model, known_pooled, known_mirrored)[0].argmax(1) == truth
    start = time.perf_counter()
    refine_classifier(base, model, taught, seed=seed)
    refine_s = time.perf_counter() - start
    probs = answer_pooled(model, taught_pooled, taught_mirrored)[0]
    right = probs.argmax(1) == target
    answered = probs.max(1) >= THRESHOLD
    before = answer_pooled(base.model, known_pooled, known_mirrored)[0].argmax(1) == truth
    after = answer_pooled(model, known_pooled, known_mirrored)[0].argmax(1) == truth
    start = time.perf_counter()
    learn_voice(base, model, taught, VoiceOptions(steps=steps, seed=seed))
    voice_s = time.perf_counter() - start
    results = {
        "right": right.mean(),
        "linear_right": linear_right.mean(),
        "answered": answered.mean(),
        "right_of_answered": right[answered].mean() if answered.any() else 0.0,
        "prototypes": prototype_accuracy(base, taught, taught_pooled, target),
        "known_before": before.mean(),
        "known_after": after.mean(),
        "known_after_linear": linear_known.mean(),
        "seconds": (linear_s, refine_s, voice_s),
        "taught": heard_scores(model, taught_pooled, taught_mirrored, target, taught.voices),
        "known": heard_scores(model, known_pooled, known_mirrored, known_test.labels, None),
    }
    return table_rows(
        spec.leave_out, photos, len(test_labels), len(before), voice, sox, steps, results
    )


def table_rows(
    words: tuple[str, ...],
    photos: int,
    n_taught: int,
    n_known: int,
    voice: str,
    sox: str,
    steps: int,
    r: dict,
) -> list[str]:
    """The benchmark's markdown table (header first) from ``run``'s results ``r``."""
    taught, known, (linear_s, refine_s, voice_s) = r["taught"], r["known"], r["seconds"]
    return [
        "| measure | value |",
        "|---|---|",
        f"| taught words (photos each, + mirrors) | {', '.join(words)} ({photos}) |",
        f"| taught test images right (of {n_taught}) | {r['right']:.1%} |",
        f"| … after the linear fit alone (before refine_classifier) | {r['linear_right']:.1%} |",
        f"| … answered (top prob ≥ {THRESHOLD}) / right of answered | "
        f"{r['answered']:.1%} / {r['right_of_answered']:.1%} |",
        f"| frozen prototypes, taught test images right | {r['prototypes']:.1%} |",
        f"| known test images right, before → after (of {n_known}) | "
        f"{r['known_before']:.2%} → {r['known_after']:.2%} |",
        f"| … known right after the linear fit alone | {r['known_after_linear']:.2%} |",
        f"| taught generated word heard right (pocketsphinx): all / answered with it | "
        f"{taught['heard']:.1%} / {taught['heard_own']:.1%} |",
        f"| … the taught voice itself heard right | {taught['voice_heard']:.0%} |",
        f"| … Corr2D / STOI against the taught voice | "
        f"{taught['corr2d']:.3f} / {taught['stoi']:.3f} |",
        f"| known generated word heard right after teaching: all / answered with it | "
        f"{known['heard']:.1%} / {known['heard_own']:.1%} |",
        f"| voice: espeak-ng {voice}, sox {sox or '(none)'} | {steps} steps |",
        f"| seconds to learn: linear fit / refinement / voice | "
        f"{linear_s:.1f} / {refine_s:.1f} / {voice_s:.0f} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m earsight.trainer.teach.bench_thumbs", description=__doc__
    )
    parser.add_argument("checkpoint", type=Path, help="best.pt of a run trained with --leave-out")
    parser.add_argument("--photos", type=int, default=30, help="training photos per taught class")
    parser.add_argument("--espeak-voice", default=DEFAULT_VOICE, help="espeak-ng voice name")
    parser.add_argument("--sox", default=DEFAULT_SOX, help="sox effects on the voice ('' = none)")
    parser.add_argument("--voice-steps", type=int, default=VoiceOptions().steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        rows = run(
            args.checkpoint, args.photos, args.espeak_voice, args.sox, args.voice_steps, args.seed
        )
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
