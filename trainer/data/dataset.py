"""Audio-description datasets: images paired with the spoken word of their class (paper §4.1).

An ``ADDataset`` holds the image splits (uint8), one voice index per image, and the clips
``spoken.clips[class, voice]`` (n_classes, n_voices, L_s). The paper's datasets pair every image
with a recording of its class word; ours synthesize the word with espeak-ng (one canonical voice
by default, which makes the target a function of the class, as with the paper's MNIST-AD).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earsight.trainer.data.images import ImageSet, ImageSplit, load_images
from earsight.trainer.errors import DatasetError
from earsight.trainer.speech.synth import DEFAULT_WORDS_PER_MIN, SpokenWords, speak_words, voice_set

log = logging.getLogger(__name__)

VAL_FRACTION = 1 / 12  # held out of train for best-checkpoint selection (5,000 of MNIST's 60,000)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to rebuild a dataset exactly; stored in every checkpoint."""

    source: str  # "mnist" | "cifar10" | "cifar100" | "digits" | "folder"
    data_root: str | None = None  # None = the default data folder
    voices: int = 1  # 1 = one canonical voice (paper-like); N = N voices/speeds/pitches
    words_per_min: int = DEFAULT_WORDS_PER_MIN
    limit_train: int | None = None  # keep N train images, classes in turn (quick runs, tests)
    limit_test: int | None = None
    seed: int = 0
    # Class words dropped from every split (the teach benchmark's "thumbnails" base model is
    # the default recipe without two CIFAR-10 classes, which are then taught from photos).
    leave_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", tuple(self.leave_out))  # JSON gives a list
        # Stored absolute: a checkpoint's spec is read again by evaluate.py and
        # `earsight export --int8`, often from another folder than training ran in.
        if self.data_root:
            absolute = str(Path(self.data_root).expanduser().resolve())
            object.__setattr__(self, "data_root", absolute)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """DatasetError (one line) for limits that keep no image or mean nothing."""
        if self.voices < 1:
            raise DatasetError(f"--voices must be at least 1, got {self.voices}", "use --voices 1")
        for flag, value in (("--limit-train", self.limit_train), ("--limit-test", self.limit_test)):
            if value is not None and value < 1:
                raise DatasetError(
                    f"{flag} must be at least 1, got {value}", f"drop {flag} to use every image"
                )


def _leave_out(images: ImageSet, words: tuple[str, ...]) -> ImageSet:
    """``images`` without the classes named ``words``; labels renumbered in the source's order.

    DatasetError (one line) for a word that is not a class, or for leaving fewer than 2 classes.
    """
    if not words:
        return images
    unknown = [w for w in words if w not in images.classes]
    if unknown:
        raise DatasetError(
            f"--leave-out {','.join(unknown)}: not a class of {images.name}",
            f"use words from: {', '.join(images.classes)}",
        )
    kept = [c for c, w in enumerate(images.classes) if w not in words]
    if len(kept) < 2:
        raise DatasetError(f"--leave-out leaves {len(kept)} class of {images.name}", "keep two")
    new_label = np.full(len(images.classes), -1, dtype=np.int64)
    new_label[kept] = np.arange(len(kept))

    def keep(split: ImageSplit) -> ImageSplit:
        mask = np.isin(split.labels, kept)
        return ImageSplit(split.images[mask], new_label[np.asarray(split.labels)[mask]])

    classes = tuple(images.classes[c] for c in kept)
    return ImageSet(images.name, classes, keep(images.train), keep(images.test))


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64
    voices: np.ndarray  # (N,) int64 index into spoken.voices

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ADDataset:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    spoken: SpokenWords

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # (H, W, C)

    @property
    def audio_length(self) -> int:
        return int(self.spoken.clips.shape[-1])

    def audio(self, labels: np.ndarray, voices: np.ndarray) -> np.ndarray:
        """Ground-truth waveforms for (label, voice) pairs: (B,) × (B,) → (B, L_s) float32."""
        return self.spoken.clips[labels, voices]


def _voices_for(n_images: int, n_voices: int, seed: int) -> np.ndarray:
    # Each image gets one voice, fixed by the seed, so an image's target never changes.
    return np.random.default_rng(seed).integers(0, n_voices, size=n_images).astype(np.int64)


def _limit(split: ImageSplit, n: int | None) -> ImageSplit:
    """``n`` images taking each class's first in turn, kept in the source's order.

    Not simply the first ``n``: the CIFAR-10 JPEG zips and image folders are stored class by
    class, where the first 10,000 would be two classes of ten.
    """
    if n is None or n >= len(split.labels):
        return split
    labels = np.asarray(split.labels)
    rank = np.empty(len(labels), dtype=np.int64)  # position of each image within its class
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    keep = np.sort(np.lexsort((labels, rank))[:n])  # round-robin over classes, then source order
    return ImageSplit(images=split.images[keep], labels=split.labels[keep])


def _train_val(split: ImageSplit, voices: np.ndarray, seed: int) -> tuple[Split, Split]:
    n = len(split.labels)
    order = np.random.default_rng(seed + 1).permutation(n)
    n_val = max(1, round(n * VAL_FRACTION))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def take(idx: np.ndarray) -> Split:
        return Split(split.images[idx], split.labels[idx].astype(np.int64), voices[idx])

    return take(train_idx), take(val_idx)


def build_dataset(spec: DatasetSpec, speech_cache: Path | None = None) -> ADDataset:
    """Load images, synthesize (or reuse cached) class words, pad to L_s, assign voices.

    DatasetError (one line) for bad limits, and when the training split would be empty (too
    few images to hold out a validation set).
    """
    spec.check()
    root = Path(spec.data_root).expanduser() if spec.data_root else None
    images: ImageSet = _leave_out(load_images(spec.source, root), spec.leave_out)
    voices = tuple(
        dataclasses.replace(v, words_per_min=spec.words_per_min) if spec.voices == 1 else v
        for v in voice_set(spec.voices)
    )
    spoken = speak_words(images.classes, voices, cache_dir=speech_cache)
    log.debug("spoken words: %s", spoken.describe())  # fit.py's first line says it too
    train_images = _limit(images.train, spec.limit_train)
    test_images = _limit(images.test, spec.limit_test)
    train_voices = _voices_for(len(train_images.labels), spec.voices, spec.seed)
    train, val = _train_val(train_images, train_voices, spec.seed)
    if len(train) == 0 or len(test_images.labels) == 0:
        raise DatasetError(*_too_few(images, len(train), len(test_images.labels), spec))
    test = Split(
        test_images.images,
        test_images.labels.astype(np.int64),
        _voices_for(len(test_images.labels), spec.voices, spec.seed + 2),
    )
    return ADDataset(images.name, tuple(images.classes), train, val, test, spoken)


def _too_few(images: ImageSet, n_train: int, n_test: int, spec: DatasetSpec) -> tuple[str, str]:
    """(what, fix) for a dataset that leaves no training or test image: a limit too small, or
    (no limits) the data itself: too few images, or a folder of another layout."""
    what = f"{images.name}: {n_train} training and {n_test} test images left"
    if spec.limit_train is not None or spec.limit_test is not None:
        limits = f"--limit-train {spec.limit_train}, --limit-test {spec.limit_test}"
        return f"{what} ({limits}; one in 12 held out for validation)", (
            "use a larger --limit-train / --limit-test, or none"
        )
    return f"{what} (one in 12 training images is held out for validation)", (
        "give more images: a --dataset folder needs DIR/<word>/*.jpg with a dozen or more each"
        if spec.source == "folder"
        else "check --data-root holds the whole dataset"
    )


def build_from_args(source: str, data_root: str | None, **kw) -> tuple[DatasetSpec, ADDataset]:
    spec = DatasetSpec(source=source, data_root=data_root, **kw)
    return spec, build_dataset(spec)
