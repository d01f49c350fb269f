"""Knowing what it does not know: the open-set gate of backbone models.

A softmax over ten words always names one of them, confidently even for a rocket or a person.
The gate asks a different question: does this frame look like anything the model was trained on?
It keeps a memory of exemplars of the backbone's pooled features (per class, the centres of a
k-means over its training images, unit length) and scores a frame by its highest cosine
similarity to one of them — nearest-prototype rejection, as personal object recognisers do
(Seeing AI's "Find My Things", ORBIT's baselines). The score becomes P(known) through a logistic
curve calibrated on the validation split: P(known) = ½ at the familiarity that ``KEEP_KNOWN`` of
validation images exceed, and the model's probs are P(known) · softmax (MTNet.infer). A frame the
gate doubts has no class above ½, so the app's threshold says "not sure". The softmax itself is
calibrated on the same split (temperature scaling): trained with label smoothing, the raw softmax
is under-confident (a sure 0.55 on a real photo of a cat), and the gate multiplies it.

Shapes: N images, D = 1280 pooled features, M = exemplars.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

from earsight.arguments import OneLineParser
from earsight.errors import EarSightError, UsageError
from earsight.trainer.data.inputs import CachedInputs
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.imagenet_check import with_imagenet_check
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)

EXEMPLARS_PER_CLASS = 16  # k-means centres per class (a class of CIFAR holds many looks)
KEEP_KNOWN = 0.99  # share of validation images whose P(known) is above ½ (why: the model card)
SLOPE_SPAN = 4.0  # logit of P(known) at the validation median: σ(4) ≈ 0.98
BATCH = 512
TEMPERATURE_RANGE = (0.05, 20.0)  # searched for the softmax temperature


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


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the negative log-likelihood of softmax(logits / T) on held-out images
    (temperature scaling, Guo et al., "On calibration of modern neural networks", ICML 2017).
    logits (N, K), labels (N,) → T > 0; T < 1 sharpens an under-confident model."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(labels))

    def nll(t: float) -> float:
        return float(-log_softmax(logits / t, axis=1)[rows, labels].mean())

    return float(minimize_scalar(nll, bounds=TEMPERATURE_RANGE, method="bounded").x)


@torch.no_grad()
def class_logits(model: MTNet, pooled: np.ndarray) -> np.ndarray:
    """Pooled features (N, D) → the classifier's logits (N, K) float32."""
    enc = model.eval().image_encoder
    return enc.classifier(enc.head(torch.from_numpy(pooled))).numpy()


def with_gate(
    model: MTNet, memory: np.ndarray, centre: float, slope: float, temperature: float = 1.0
) -> MTNet:
    """A copy of ``model`` whose config and buffers carry the gate (M = len(memory)) and the
    softmax temperature."""
    gate = {"gate_exemplars": len(memory), "softmax_temperature": temperature}
    cfg = MTNetConfig.from_dict({**model.cfg.to_dict(), **gate})
    gated = MTNet(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.gate_")}
    enc = "image_encoder."
    state[enc + "gate_memory"] = torch.from_numpy(memory)
    state[enc + "gate_centre"] = torch.tensor(centre)
    state[enc + "gate_slope"] = torch.tensor(slope)
    gated.load_state_dict(state)
    return gated.eval()


@torch.no_grad()
def fit_word_codes(model: MTNet, pooled: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """Each shipped word's code (K_s, D_a): the mapped φ of its medoid image — among the
    images (pooled features (N, 1280), labels (N,)) the classifier gets right, the one whose φ
    is nearest their mean. A real image's φ, so the generator says the word cleanly (the mean
    φ itself lies off the tanh manifold: CIFAR-10 test words heard right 84 % from means, 93 %
    from medoids, 92 % without codes; docs/TRAINING.md)."""
    enc = model.eval().image_encoder
    phi_i = enc.head(torch.from_numpy(pooled).float())
    phi, right = model.mapping(phi_i), enc.classifier(phi_i).argmax(dim=1).numpy() == labels
    codes = []
    for k in range(model.cfg.n_classes - model.cfg.taught_words):
        rows = np.flatnonzero((labels == k) & right)
        rows = rows if len(rows) else np.flatnonzero(labels == k)
        if not len(rows):
            raise UsageError(f"no image of {model.cfg.labels[k]!r} to take its code from")
        own = phi[torch.from_numpy(rows)]  # (n_k, D_a)
        codes.append(own[(own - own.mean(dim=0)).norm(dim=1).argmin()])
    return torch.stack(codes)


def with_word_codes(model: MTNet, codes: torch.Tensor) -> MTNet:
    """A copy of ``model`` whose config says shipped_codes and whose mapping holds ``codes``."""
    cfg = MTNetConfig.from_dict({**model.cfg.to_dict(), "shipped_codes": True})
    coded = MTNet(cfg)
    state = {k: v for k, v in model.state_dict().items() if k != "mapping.codes"}
    coded.load_state_dict({**state, "mapping.codes": codes.float()})
    return coded.eval()


def fit_gate(model: MTNet, train: CachedInputs, val: CachedInputs, seed: int = 0):
    """The gate for a trained backbone model: exemplars from the training split, calibration on
    the validation split, and ImageNet's own view where the vocabulary has a kinds table
    (trainer/mtnet/imagenet_check.py). Returns (gated model, summary dict for the logs and the
    card)."""
    n_classes = model.cfg.n_classes
    train_pooled = pooled_features(model, train)
    memory = class_exemplars(train_pooled, train.split.labels, n_classes, EXEMPLARS_PER_CLASS, seed)
    val_pooled = pooled_features(model, val)
    known = familiarity(val_pooled, memory)
    centre, slope = calibrate(known)
    temperature = fit_temperature(class_logits(model, val_pooled), val.split.labels)
    summary = {
        "softmax_temperature": temperature,
        "exemplars": len(memory),
        "centre": centre,
        "slope": slope,
        "validation_kept": float((known > centre).mean()),
        "validation_median": float(np.median(known)),
    }
    gated = with_gate(model, memory, centre, slope, temperature)
    gated = with_word_codes(gated, fit_word_codes(gated, train_pooled, train.split.labels))
    gated = with_imagenet_check(gated)
    summary["imagenet_check"] = bool(gated.cfg.imagenet_kinds)
    summary["shipped_codes"] = True
    log.info("open-set gate: %s", summary)
    return gated, summary


def refit(best: Path, data_root: str | None = None) -> dict:
    """Fit the gate and the temperature of a trained backbone run's best.pt again, in place
    (after a change to this module; training does it itself). Rebuilds the run's dataset split
    from the checkpoint and reads the cached trunk activations. Returns the summary."""
    from earsight.trainer.checkpoint import read_checkpoint
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.data.inputs import stage2_inputs
    from earsight.trainer.training.run import add_open_set_gate
    from earsight.trainer.training.train import TrainOptions

    ckpt = read_checkpoint(best)
    if not ckpt["config"].get("backbone"):
        raise UsageError(f"{best} has no pretrained backbone: it has no gate", "pick a lite0 run")
    if "train" not in ckpt or "dataset" not in ckpt:  # e.g. teach.base --to-checkpoint's file
        raise UsageError(
            f"{best} does not record how it was trained", "pass a trainer/fit.py run's best.pt"
        )
    spec = DatasetSpec(**ckpt["dataset"])
    if data_root is not None:
        spec = DatasetSpec(**{**spec.to_dict(), "data_root": data_root})
    known = TrainOptions().to_dict().keys()
    opts = TrainOptions(**{k: v for k, v in ckpt["train"].items() if k in known})
    model = MTNet(MTNetConfig.from_dict(ckpt["config"]))
    train, val = stage2_inputs(model, build_dataset(spec), opts, torch.device("cpu"))
    return add_open_set_gate(best, train, val)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m earsight.trainer.mtnet.open_set", description=refit.__doc__
    )
    parser.add_argument("checkpoint", type=Path, help="a backbone run's best.pt")
    parser.add_argument("--data-root", help="where the dataset files are, if moved")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        refit(args.checkpoint, args.data_root)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
