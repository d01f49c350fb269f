"""Knowing what it does not know: the open-set gate of backbone models.

A softmax over ten words always names one of them, confidently even for a rocket or a person.
The gate asks a different question: does this frame look like anything the model was trained on?
It keeps a memory of exemplars of the backbone's pooled features (per class, the centres of a
k-means over its training images, unit length) and scores a frame by its highest cosine
similarity to one of them — nearest-prototype rejection, as personal object recognisers do
(Seeing AI's "Find My Things", ORBIT's baselines). The score becomes P(known) through a logistic
curve calibrated on the validation split: P(known) = ½ at the familiarity that ``KEEP_KNOWN`` of
validation images exceed, and the model's probs are P(known) · softmax (MTNet.infer). A frame the
gate doubts has no class above ½, so the app's threshold says "not sure".

Shapes: N images, D = 1280 pooled features, M = exemplars.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from trainer.inputs import CachedInputs
from trainer.model import MTNet

log = logging.getLogger(__name__)

EXEMPLARS_PER_CLASS = 16  # k-means centres per class (a class of CIFAR holds many looks)
KEEP_KNOWN = 0.99  # share of validation images whose P(known) is above ½ (why: the model card)
SLOPE_SPAN = 4.0  # logit of P(known) at the validation median: σ(4) ≈ 0.98
BATCH = 512


@torch.no_grad()
def pooled_features(model: MTNet, inputs: CachedInputs) -> np.ndarray:
    """The backbone's pooled features (N, D) float32 of a split, from its cached trunk."""
    model.eval()
    enc, out = model.image_encoder, []
    for start in range(0, len(inputs.split), BATCH):
        acts = inputs.batch(slice(start, start + BATCH), torch.device("cpu"), None)
        out.append(enc.backbone.tail(acts, enc.cut).numpy())
    return np.concatenate(out)


def class_exemplars(
    features: np.ndarray, labels: np.ndarray, n_classes: int, per_class: int, seed: int = 0
) -> np.ndarray:
    """Unit-length k-means centres of each class's unit-length features: (K · per_class, D).

    A class with fewer images than ``per_class`` keeps its images themselves (teach mode's few
    photos). ValueError when a class has no image at all.
    """
    from sklearn.cluster import KMeans

    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    rows = []
    for k in range(n_classes):
        members = unit[labels == k]
        if len(members) == 0:
            raise ValueError(f"class {k} has no images to take exemplars from")
        if len(members) <= per_class:
            rows.append(members)
            continue
        km = KMeans(per_class, n_init=3, random_state=seed).fit(members)
        rows.append(km.cluster_centers_)
    memory = np.concatenate(rows).astype(np.float32)
    return memory / np.linalg.norm(memory, axis=1, keepdims=True).clip(1e-12)


def familiarity(features: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Highest cosine similarity of each feature row to an exemplar: (N, D) × (M, D) → (N,)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    return (unit @ memory.T).max(axis=1)


def calibrate(known: np.ndarray, keep: float = KEEP_KNOWN) -> tuple[float, float]:
    """(centre, slope) of P(known) = σ(slope · (familiarity − centre)) from validation images'
    familiarity: ``keep`` of them lie above the centre, their median at logit SLOPE_SPAN."""
    centre = float(np.quantile(known, 1.0 - keep))
    spread = max(float(np.median(known)) - centre, 1e-3)
    return centre, SLOPE_SPAN / spread


def with_gate(model: MTNet, memory: np.ndarray, centre: float, slope: float) -> MTNet:
    """A copy of ``model`` whose config and buffers carry the gate (M = len(memory))."""
    cfg = dataclasses.replace(model.cfg, gate_exemplars=len(memory))
    gated = MTNet(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.gate_")}
    enc = "image_encoder."
    state[enc + "gate_memory"] = torch.from_numpy(memory)
    state[enc + "gate_centre"] = torch.tensor(centre)
    state[enc + "gate_slope"] = torch.tensor(slope)
    gated.load_state_dict(state)
    return gated.eval()


def fit_gate(model: MTNet, train: CachedInputs, val: CachedInputs, seed: int = 0):
    """The gate for a trained backbone model: exemplars from the training split, calibration on
    the validation split. Returns (gated model, summary dict for the logs and the card)."""
    n_classes = model.cfg.n_classes
    memory = class_exemplars(
        pooled_features(model, train), train.split.labels, n_classes, EXEMPLARS_PER_CLASS, seed
    )
    known = familiarity(pooled_features(model, val), memory)
    centre, slope = calibrate(known)
    summary = {
        "exemplars": len(memory),
        "centre": centre,
        "slope": slope,
        "validation_kept": float((known > centre).mean()),
        "validation_median": float(np.median(known)),
    }
    log.info("open-set gate: %s", summary)
    return with_gate(model, memory, centre, slope), summary
