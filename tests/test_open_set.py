"""The open-set gate (trainer/mtnet/open_set.py) and the real-photo table
(app/bench/photo_eval.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from earsight.trainer.mtnet.open_set import calibrate, class_exemplars, familiarity, fit_temperature


def test_exemplars_are_unit_centres_per_class_and_small_classes_keep_their_images():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(40, 8)) + np.eye(8)[0] * 5  # class 0: many images around e0
    small = rng.normal(size=(3, 8)) + np.eye(8)[1] * 5  # class 1: three photos (teach mode)
    feats = np.concatenate([big, small]).astype(np.float32)
    labels = np.array([0] * 40 + [1] * 3)
    memory = class_exemplars(feats, labels, n_classes=2, per_class=4)
    assert memory.shape == (4 + 3, 8)
    np.testing.assert_allclose(np.linalg.norm(memory, axis=1), 1.0, rtol=1e-5)
    # A feature near e0 is familiar, one along an unseen axis is not.
    near, far = np.eye(8)[0:1] * 5, np.eye(8)[5:6] * 5
    assert familiarity(near, memory)[0] > 0.9 > familiarity(far, memory)[0] + 0.5
    with pytest.raises(ValueError, match="class 2 has no images"):
        class_exemplars(feats, labels, n_classes=3, per_class=4)


def test_calibration_keeps_the_asked_share_of_known_images():
    known = np.linspace(0.2, 0.9, 1001)
    centre, slope = calibrate(known, keep=0.95)
    assert np.mean(known > centre) == pytest.approx(0.95, abs=0.002)
    p_median = 1 / (1 + np.exp(-slope * (np.median(known) - centre)))
    assert p_median == pytest.approx(0.982, abs=0.001)  # σ(4)


def test_temperature_recovers_how_much_a_softmax_was_softened():
    # Labels drawn from softmax(z): the calibrated logits are z, so logits z·0.4 (an
    # under-confident model, as label smoothing leaves one) need T = 0.4 to be honest again.
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(4000, 10))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert fit_temperature(z * 0.4, labels) == pytest.approx(0.4, rel=0.08)
    assert fit_temperature(z, labels) == pytest.approx(1.0, rel=0.08)


def test_photo_table_labels_files_by_name_and_folder(tmp_path: Path):
    from earsight.app.bench.photo_eval import Outcome, find_photos, summarize

    (tmp_path / "OOD").mkdir()
    for name in ("cat_01.jpg", "dog_02.png", "OOD/rocket_01.jpg", "ood_cup_01.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "zebra_01.jpg").write_bytes(b"x")  # not a word of the model: skipped
    photos = find_photos([tmp_path], ("cat", "dog"))
    assert {(p.path.name, p.word) for p in photos} == {
        ("cat_01.jpg", "cat"),
        ("dog_02.png", "dog"),
        ("rocket_01.jpg", None),
        ("ood_cup_01.jpg", None),
    }
    by_name = {p.path.name: p for p in photos}
    outcomes = [
        Outcome(by_name["cat_01.jpg"], "cat", 0.9, "cat"),  # answered, heard right
        Outcome(by_name["dog_02.png"], "dog", 0.4, "dog"),  # "not sure": not heard right
        Outcome(by_name["rocket_01.jpg"], "cat", 0.3, "cat"),  # rejected
        Outcome(by_name["ood_cup_01.jpg"], "dog", 0.8, "dog"),  # answered a wrong word
    ]
    table = summarize(outcomes, threshold=0.5)
    assert table["answered"] == 0.5 and table["heard_right"] == 0.5
    assert table["heard_right_of_answered"] == 1.0 and table["not_sure"] == 0.5


@torch.no_grad()
def test_shipped_word_codes_are_medoid_images_and_a_confident_frame_says_its_code():
    """fit_word_codes takes each word's code from a real image's φ (its medoid among the rows
    the classifier gets right); with shipped_codes a frame's φ is the codes weighted by the
    sharpened probabilities, so a confident frame generates exactly its word's code."""
    from earsight.trainer.mtnet.config import make_config
    from earsight.trainer.mtnet.model import MTNet
    from earsight.trainer.mtnet.open_set import fit_word_codes, with_word_codes

    torch.manual_seed(0)
    cfg = make_config(
        "compact", labels=("a", "b", "c"), n_classes=3, image_size=8, image_channels=1,
        audio_length=400,
    )  # fmt: skip
    model = MTNet(cfg).eval()
    enc = model.image_encoder
    pooled = enc.pool(torch.rand(90, 1, 8, 8))
    # a classifier with confident, varied answers, as a trained one gives
    phi_i = enc.head(pooled)
    enc.classifier.weight.copy_(
        torch.randn(3, phi_i.shape[1]) * 40 / phi_i.std(dim=0).clamp_min(1e-6)
    )
    enc.classifier.bias.copy_(-(phi_i.mean(dim=0) @ enc.classifier.weight.T))
    labels = enc.classifier(enc.head(pooled)).argmax(dim=1).numpy()
    assert len(set(labels)) == 3
    codes = fit_word_codes(model, pooled.numpy(), labels)
    mapped = model.mapping(enc.head(pooled))  # (90, D_a)
    for k in range(3):
        own = mapped[torch.from_numpy(labels == k)]
        assert (own - codes[k]).abs().amax(dim=1).min() < 1e-6, "a code is a real image's φ"

    coded = with_word_codes(model, codes)
    assert coded.cfg.shipped_codes
    logits, phi = coded.logits_and_phi(pooled, enc.head(pooled))
    q = (logits * (4.0 / cfg.softmax_temperature)).softmax(dim=-1)
    assert torch.allclose(phi, q @ codes, atol=1e-5)
    sure = q.amax(dim=1) > 0.999
    assert sure.any()
    assert torch.allclose(phi[sure], codes[q[sure].argmax(dim=1)], atol=1e-3)
    _, plain_phi = model.logits_and_phi(pooled, enc.head(pooled))
    assert not torch.allclose(plain_phi, phi, atol=1e-3)  # the paper's φ without the codes
