"""Each MT-Net loss against a hand computation of the paper's equation on tiny tensors."""

import math

import pytest
import torch
from torch import nn

from earsight.trainer.mtnet import losses


def test_perceptual_loss_is_eq4_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    # −(1/N) Σ y_iᵀ log softmax(z_i), by hand.
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    p1 = 1 / (1 + math.e + 1)
    expected = -(math.log(p0) + math.log(p1)) / 2
    assert losses.perceptual_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_reconstruction_loss_is_eq6_half_mean_of_sum_of_squares():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    a_hat = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5]])
    # (1/2N) Σ_i ‖a_i − â_i‖² = (1/4)((0+1+4) + (1+1+0.25))
    assert losses.reconstruction_loss(a, a_hat).item() == pytest.approx((5 + 2.25) / 4)


def test_representation_loss_is_eq7_batch_cosine():
    phi_a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    phi = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # 1 − Σ_i φ^A_i·φ_i / (√Σ_i |φ^A_i|² √Σ_i |φ_i|²) = 1 − (1 + 2) / (√5 · √3)
    expected = 1 - 3 / (math.sqrt(5) * math.sqrt(3))
    assert losses.representation_loss(phi_a, phi).item() == pytest.approx(expected, rel=1e-6)
    # Scale-invariant and zero for identical directions.
    assert losses.representation_loss(phi_a, 3 * phi_a).item() == pytest.approx(0, abs=1e-6)


def test_smooth_l1_is_eq10_piecewise():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.999, 1.0, 3.0])
    expected = torch.tensor([1.5, 0.125, 0.0, 0.5 * 0.999**2, 0.5, 2.5])
    torch.testing.assert_close(losses.smooth_l1(x), expected)


def test_generation_loss_is_eq9_sum_over_samples_mean_over_batch():
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    g = torch.tensor([[0.5, -2.0, 0.0], [1.0, 1.0, -1.0]])
    # sample 1: Γ(-0.5)+Γ(2)+Γ(0) = 0.125 + 1.5; sample 2: Γ(2) = 1.5 → mean = (1.625+1.5)/2
    assert losses.generation_loss(a, g).item() == pytest.approx((1.625 + 1.5) / 2)


def test_weight_penalty_counts_weights_not_biases():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
        layer.bias.fill_(100.0)
    assert losses.weight_penalty(layer.parameters()).item() == pytest.approx(14.0)


def test_joint_loss_is_eq11_weighted_sum():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    kw = dict(
        logits=torch.randn(4, 3),
        labels=torch.tensor([0, 1, 2, 1]),
        phi=torch.randn(4, 5),
        phi_a=torch.randn(4, 5),
        generated=torch.randn(4, 7) * 0.3,
        audio=torch.randn(4, 7) * 0.3,
        params=list(layer.parameters()),
    )
    w = losses.JointLossWeights()
    total, parts = losses.joint_loss(w, **kw)
    per = losses.perceptual_loss(kw["logits"], kw["labels"]).item()
    rep = losses.representation_loss(kw["phi_a"], kw["phi"]).item()
    gen = losses.generation_loss(kw["audio"], kw["generated"]).item()
    pen = (layer.weight**2).sum().item()
    expected = 0.5 * per + 1.0 * rep + 1.0 * gen + 0.8 * 5e-4 * pen
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["per"] == pytest.approx(per) and parts["pen"] == pytest.approx(pen)


def test_ablation_weights_switch_terms_off():
    assert losses.JointLossWeights.for_ablation("gen").per == 0
    assert losses.JointLossWeights.for_ablation("gen").rep == 0
    assert losses.JointLossWeights.for_ablation("gen+rep").per == 0
    assert losses.JointLossWeights.for_ablation("gen+rep").rep == 1.0
    with pytest.raises(ValueError, match="losses must be one of"):
        losses.JointLossWeights.for_ablation("everything")
