"""Teach mode's learning: the user's own words added to a trained backbone MT-Net, on a CPU.

    base = load_teach_base(path)                          # trainer/teach/base.py
    model = learn_classifier(base, taught)                # a second: the new words are recognised
    refine_classifier(base, model, taught)                # seconds: …and better from few views
    model = learn_voice(base, model, taught, options)     # minutes (trainer/teach/voice.py)

What is learned here (issue #13; not in the paper, which fixes its classes at training time):

1. **Classifier** — the taught words' logits (``TaughtHead``: a linear layer on the
   square-rooted, centred, unit-length pooled backbone features and, from a base with them,
   the frame's colour histogram: trainer/mtnet/colour.py), fitted by L-BFGS as a logistic
   regression over all K words at once, with the shipped classes' rows fixed and *replay*
   features of their training images as the other side: known words keep their decisions
   unless a taught object is nearer.
2. **Gate** — the taught words' own familiarity gate (``taught_gate``): a frame unlike every
   taught photo and every shipped class is "not sure", not a taught word.
3. **Refinement** — a residual MLP adapter on u learned with the taught rows by Adam
   (``refine_classifier``), label-smoothed so that things never taught stay unsure.

The voice (trainer/teach/voice.py) comes next. The backbone, FC_1^1/FC_2^1 and the cross-modal
mapping stay frozen, so the shipped classes' φ^I are untouched. Shapes: R replay rows, N taught
photos (mirrors included), D = 1280 pooled features (+ bins³ colour cells: TeachBase.colour_bins).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from earsight.errors import UsageError
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.model import MTNet
from earsight.trainer.mtnet.open_set import class_exemplars
from earsight.trainer.teach.base import PHOTO_BATCH, TeachBase

log = logging.getLogger(__name__)

# Taught gate memory rows per word: its photos and mirrors themselves up to this many (the
# gate is calibrated on those rows), k-means centres beyond. 64 × 1280 fp16 = 160 kB a word.
EXEMPLARS_PER_WORD = 64
# On the taught rows. Their inputs are unit length, so a confident logit needs |w| ≈ 10: 1e-3
# held every logit near 0 (COIL-100, 100 objects × 10 views: 0 % answered), 1e-5 does not.
CLASSIFIER_WEIGHT_DECAY = 1e-5
TAUGHT_KEEP = 0.95  # share of unseen views of a taught thing its gate lets through
STRANGERS_BELOW = 0.99  # …and midway to where 99 % of other things' familiarity ends
CLASSIFIER_ITERATIONS = 200  # L-BFGS iterations; ~1 s for 100 words × 20 photos here
# The feature adapter (refine_classifier): hidden units, Adam steps of ADAPTER_BATCH rows at
# ADAPTER_LR with ADAPTER_DECAY; 1,024 hidden units gave +0.2 points for 4× the time.
ADAPTER_WIDTH = 256
ADAPTER_STEPS = 500
ADAPTER_BATCH = 512
ADAPTER_LR = 1e-3
ADAPTER_DECAY = 1e-2
# Label smoothing of the refined logits: without it the adapter makes every COIL-like frame
# confident, and untaught objects were "not sure" 72 % of the time (0.1: 93 %; 0.2: 95 %, but
# taught views answered 95 %): COIL-100, 10 objects × 5 spread views. It costs thumbnails: 0
# gives 79.7 % (ship/truck) and 58.9 % (cat/truck) taught against 71.5 / 53.6 %, but untaught
# COIL objects "not sure" 76 %; spread over the taught words only, 80.2 / 67.5 % and 90 %, but
# the known words lose 1.2 / 1.6 points (docs/BENCHMARKS.md, 2026-12-03). Rejection wins.
ADAPTER_SMOOTHING = 0.1
ADAPTER_SEED = 0  # its initial weights: a learn of the same photos gives the same model
# The taught words' features raised to this power before centring (TaughtHead.powered).
# Thumbnails, 2 classes taught from 30 photos: linear fit 62.0 → 63.7 %, refined 50.6–51.6 →
# 53.8 %, the known words within 0.3 points; COIL-100 100 objects × 10 consecutive views
# 93.5 → 94.3 % (docs/BENCHMARKS.md).
TAUGHT_POWER = 0.5


@dataclass(frozen=True)
class TaughtSet:
    """The user's words: pooled features of their photos and one recording per word."""

    words: tuple[str, ...]
    pooled: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64 index into words
    voices: np.ndarray  # (len(words), L_s) float32 at the model's sample rate
    # (N,) which photo each row comes from, numbered in capture order (a mirror shares its
    # photo's number); None = every row a photo of its own
    photos: np.ndarray | None = None


@torch.no_grad()
def pooled_features(
    model: MTNet,
    photos: Sequence[np.ndarray],
    mirrored: bool = True,
    colour_bins: int | None = None,
) -> np.ndarray:
    """Photos (H, W, 3) uint8 of any size → pooled backbone features (N or 2N, D) float32, in
    the order photos then their mirrors; fitted as the app fits a camera frame. With
    ``colour_bins`` (a base's TeachBase.colour_bins; None: a taught model's own) each row ends
    with its colour histogram."""
    from earsight.trainer.data.preprocess import fit_to_input
    from earsight.trainer.mtnet.colour import colour_histogram, join_colour

    cfg, enc = model.cfg, model.eval().image_encoder
    colour_bins = cfg.taught_colour if colour_bins is None else colour_bins
    fitted = np.stack(
        [fit_to_input(p, cfg.image_size, cfg.image_size, cfg.input_crop) for p in photos]
    )
    views = [fitted, fitted[:, :, ::-1]] if mirrored else [fitted]
    out = []
    for view in views:
        for start in range(0, len(view), PHOTO_BATCH):
            x = torch.from_numpy(np.ascontiguousarray(view[start : start + PHOTO_BATCH]))
            x = enc.prepare(x.permute(0, 3, 1, 2).float())  # (B, 3, H, W)
            pooled = enc.pool(x)
            if colour_bins:
                pooled = join_colour(pooled, colour_histogram(x, colour_bins))
            out.append(pooled.numpy())
    return np.concatenate(out)


def photo_features(base: TeachBase, photos: Sequence[np.ndarray], mirrored: bool = True):
    """``pooled_features`` as the base's replay rows are: with its colour cells, if any."""
    return pooled_features(base.model, photos, mirrored, base.colour_bins)


@torch.no_grad()
def answer_pooled(
    model: MTNet, pooled: np.ndarray, mirrored: np.ndarray | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """Pooled backbone features (N, D) → the model's probs (N, K) as ``MTNet.infer`` gives
    them, and φ (N, D_a) for ``generate``: what a frame with those features is answered.
    ``mirrored`` (N, D), the frames' mirrors' features: the answer mirror-averaged by
    ``MTNet.average_views``, as the exported model averages with cfg.flip_tta."""
    views = [pooled] if mirrored is None else [pooled, mirrored]
    p, phi_i = model.average_views(torch.from_numpy(np.concatenate(views)), len(views))
    logits, phi = model.logits_and_phi(p, phi_i)
    return model.class_probs(logits, p).numpy(), phi


def taught_config(
    base: MTNetConfig, words: Sequence[str], exemplars: int, colour_bins: int = 0
) -> MTNetConfig:
    """The base config with ``words`` appended. A taught word may repeat a shipped one (the
    user's own cat is still "cat"): two classes, one label, each with its own voice.
    ``colour_bins``: their head reads the frame's colour histogram too (TeachBase's)."""
    if base.taught_words or not base.backbone:
        raise UsageError("teach mode starts from a shipped backbone model", "use the default")
    return dataclasses.replace(
        base,
        n_classes=len(base.labels) + len(words),
        labels=(*base.labels, *words),
        taught_words=len(words),
        taught_exemplars=exemplars,
        taught_adapter=ADAPTER_WIDTH,
        taught_colour=colour_bins,
        taught_power=TAUGHT_POWER,
    )


def _nearest(sims: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Each row's highest similarity among the ``allowed`` columns, for rows with any (S,)."""
    return np.where(allowed, sims, -np.inf).max(axis=1)[allowed.any(axis=1)]


def taught_gate(
    model: MTNet, base: TeachBase, taught: TaughtSet
) -> tuple[np.ndarray, float, float]:
    """The taught words' gate: exemplars (M_t, D) of their centred, unit photos, a centre and
    a slope. Own views: each photo's similarity to its word's other photos (itself and its
    mirror left out), the centre below TAUGHT_KEEP of them (trainer/mtnet/open_set.calibrate).
    Strangers: the replay rows and the other words' photos; where STRANGERS_BELOW of them end.
    The centre lies midway between the two, never above the own views' (a few neighbouring
    views of one side would otherwise make every other side of the thing a stranger). With one
    photo per word nothing measures a new view: the centre is the strangers' end.
    """
    from earsight.trainer.mtnet.open_set import SLOPE_SPAN, calibrate

    with torch.no_grad():
        u = model.taught.unit(torch.from_numpy(taught.pooled)).numpy()
        replay_u = model.taught.unit(torch.from_numpy(base.replay_pooled)).numpy()
    memory = class_exemplars(u, taught.labels, len(taught.words), EXEMPLARS_PER_WORD)
    sims = u @ u.T  # (N, N); N ≤ a few thousand rows
    same_word = taught.labels[:, None] == taught.labels[None, :]
    # What other things look like to the memory: the shipped classes' replay rows, and each
    # taught photo against the other words' photos. No centre above where they end is needed.
    strangers = np.concatenate([(replay_u @ memory.T).max(axis=1), _nearest(sims, ~same_word)])
    ceiling = float(np.quantile(strangers, STRANGERS_BELOW))
    # Own views: a photo against its word's other photos (its own mirror left out).
    photos = taught.photos if taught.photos is not None else np.arange(len(u))
    views = _nearest(sims, same_word & (photos[:, None] != photos[None, :]))
    if not len(views):
        return memory.astype(np.float32), ceiling, float(model.image_encoder.gate_slope)
    centre, _ = calibrate(views, keep=TAUGHT_KEEP)
    centre = (min(centre, ceiling) + centre) / 2  # midway between strangers and own views
    slope = SLOPE_SPAN / max(float(np.median(views)) - centre, 1e-3)
    return memory.astype(np.float32), centre, slope


def learn_classifier(base: TeachBase, taught: TaughtSet) -> MTNet:
    """The base model with the taught words appended: their logits fitted, the gate extended.

    A logistic regression over all K words on replay ∪ taught rows, each class weighted by the
    inverse of its row count (30 photos of a mug against 100 replay rows of each known class).
    Only the taught rows (W_t, b_t) learn; known logits come from the frozen base classifier.
    """
    src = base.model
    counts = np.bincount(taught.labels, minlength=len(taught.words))
    n_exemplars = int(np.minimum(counts, EXEMPLARS_PER_WORD).sum())  # class_exemplars' rows
    cfg = taught_config(src.cfg, taught.words, n_exemplars, base.colour_bins)
    with torch.random.fork_rng(devices=[]):  # the adapter's first layer starts random: the
        torch.manual_seed(ADAPTER_SEED)  # same for every learn of the same photos (resumable)
        model = MTNet(cfg).eval()
    state = {**model.state_dict(), **src.state_dict()}
    model.load_state_dict(state)
    replay = model.taught.powered(torch.from_numpy(base.replay_pooled))  # (R, D_u)
    model.taught.centre.copy_(replay.mean(dim=0))
    for p in model.taught.adapter[-1].parameters():
        torch.nn.init.zeros_(p)  # the identity until refine_classifier learns it
    memory, centre, slope = taught_gate(model, base, taught)
    model.taught.memory.copy_(torch.from_numpy(memory))
    model.taught.gate_centre.fill_(centre)
    model.taught.gate_slope.fill_(slope)
    _fit_taught_rows(model, base, taught)
    return model


@dataclass(frozen=True)
class _Rows:
    """What the taught rows learn from: replay ∪ taught photos, R + N rows."""

    fixed: torch.Tensor  # (R+N, K_known) the frozen shipped logits
    u: torch.Tensor  # (R+N, D) centred, unit pooled features
    labels: torch.Tensor  # (R+N,) class index among all K words
    weights: torch.Tensor  # (K,) inverse class frequency: 30 photos weigh as 100 replay rows


@torch.no_grad()
def _rows(model: MTNet, base: TeachBase, taught: TaughtSet) -> _Rows:
    enc, known = model.image_encoder, model.cfg.n_classes - model.cfg.taught_words
    pooled = torch.from_numpy(np.concatenate([base.replay_pooled, taught.pooled]))  # (R+N, D)
    labels = torch.from_numpy(np.concatenate([base.replay_labels, taught.labels + known]))
    counts = torch.bincount(labels, minlength=model.cfg.n_classes).clamp_min(1).float()
    weights = counts.sum() / (len(counts) * counts)
    return _Rows(enc.classifier(enc.head(pooled)), model.taught.unit(pooled), labels, weights)


def _loss(
    model: MTNet,
    rows: _Rows,
    index: torch.Tensor | slice = slice(None),
    adapted: bool = True,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Class-balanced cross-entropy of all K words' calibrated logits on ``rows[index]``;
    ``adapted=False`` skips the adapter (the identity before refine_classifier: cheaper)."""
    u, head = rows.u[index], model.taught
    taught_logits = head.logits(u) if adapted else head.classifier(u)
    logits = torch.cat([rows.fixed[index], taught_logits], dim=1) / model.cfg.softmax_temperature
    return F.cross_entropy(
        logits, rows.labels[index], weight=rows.weights, label_smoothing=smoothing
    )


def _fit_taught_rows(model: MTNet, base: TeachBase, taught: TaughtSet) -> None:
    head, rows = model.taught, _rows(model, base, taught)
    params = [head.classifier.weight, head.classifier.bias]
    for p in params:
        torch.nn.init.zeros_(p)
    opt = torch.optim.LBFGS(params, max_iter=CLASSIFIER_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        decay = CLASSIFIER_WEIGHT_DECAY * head.classifier.weight.pow(2).sum()
        loss = _loss(model, rows, adapted=False) + decay
        loss.backward()
        return loss

    opt.step(closure)


def refine_classifier(
    base: TeachBase, model: MTNet, taught: TaughtSet, steps: int = ADAPTER_STEPS, seed: int = 0
) -> float:
    """After ``learn_classifier``: the taught words' feature adapter and linear rows learned
    together by Adam on minibatches of the same rows and loss (seconds; the voice's minutes
    follow). The known words' logits and both gates are untouched. Returns the last loss.

    Why: the L-BFGS fit is the best hyperplane on features trained for other things; a few
    photos of one side of a thing tell more when they may bend the features (a residual MLP,
    TaughtHead.adapter). COIL-100, 100 objects × 10 consecutive views: 83 → 87 % right.

    Raises ValueError for a model without the adapter (not from ``learn_classifier``).
    """
    if model.taught is None or model.taught.adapter is None:
        raise ValueError("refine_classifier needs a model from learn_classifier (an adapter)")
    head, rows = model.taught, _rows(model, base, taught)
    params = [*head.adapter.parameters(), *head.classifier.parameters()]
    opt = torch.optim.AdamW(params, lr=ADAPTER_LR, weight_decay=ADAPTER_DECAY)
    draw = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(steps):
        index = torch.randint(len(rows.labels), (ADAPTER_BATCH,), generator=draw)
        loss = _loss(model, rows, index, smoothing=ADAPTER_SMOOTHING)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in params:
        p.grad = None
    return loss.item()
