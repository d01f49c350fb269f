"""MT-Net losses, written as the paper's equations (Eq. 4, 6, 7, 9–10, 11).

Reductions, where the paper leaves them implicit:
- Eq. 6 and Eq. 9/11 sum over the waveform's L_s samples and average over the batch
  (Eq. 11 writes the generation term as an L1 norm of the element-wise Γ).
- Eq. 7 is, as printed, one cosine between the whole batch of φ^A and the whole batch of φ
  (sums over i inside the numerator and both norms), not a mean of per-sample cosines.
- The weight penalty ΣW² covers weight matrices and kernels (not biases or BatchNorm), with
  coefficient λ = the paper's weight decay 5e-4; Eq. 11 scales it by η4.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_DECAY = 5e-4  # λ of Eq. 4/6/7/9 (paper §4.3)
ETAS = (0.5, 1.0, 1.0, 0.8)  # η1..η4 of Eq. 11 (paper §4.3)


def weight_penalty(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """Σ W² over weight tensors (dim ≥ 2); biases and BN scales are not penalized."""
    terms = [p.pow(2).sum() for p in params if p.dim() >= 2]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def perceptual_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0):
    """Eq. 4 (data term): −(1/N) Σ_i y_iᵀ log ŷ_i. logits (B, K), labels (B,) int."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def reconstruction_loss(audio: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Eq. 6 (data term): (1/2N) Σ_i ‖a_i − â_i‖². audio, recon (B, L_s)."""
    return 0.5 * (audio.float() - recon.float()).pow(2).sum(dim=1).mean()


def representation_loss(phi_a: torch.Tensor, phi: torch.Tensor, eps: float = 1e-8):
    """Eq. 7 (data term): 1 − Σ_i φ^A_i·φ_i / (√Σ_i (φ^A_i)² · √Σ_i φ_i²). (B, D_a) each."""
    a, b = phi_a.float().flatten(), phi.float().flatten()
    return 1.0 - (a * b).sum() / (a.norm() * b.norm()).clamp_min(eps)


def smooth_l1(x: torch.Tensor) -> torch.Tensor:
    """Eq. 10, element-wise: 0.5 x² if |x| < 1 else |x| − 0.5."""
    ax = x.abs()
    return torch.where(ax < 1, 0.5 * x * x, ax - 0.5)


def generation_loss(audio: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Eq. 9 (data term): ‖Γ(a_i − a_i^gen)‖₁ averaged over the batch. (B, L_s) each."""
    return smooth_l1(audio.float() - generated.float()).sum(dim=1).mean()


@dataclass(frozen=True)
class JointLossWeights:
    """η1..η4 of Eq. 11; ablations switch terms off (Table 3: gen-only, gen+rep)."""

    per: float = ETAS[0]
    rep: float = ETAS[1]
    gen: float = ETAS[2]
    penalty: float = ETAS[3]
    weight_decay: float = WEIGHT_DECAY

    @classmethod
    def for_ablation(cls, losses: str) -> JointLossWeights:
        """losses = "full" | "gen+rep" | "gen" (which data terms of Eq. 11 are kept)."""
        table = {"full": cls(), "gen+rep": cls(per=0.0), "gen": cls(per=0.0, rep=0.0)}
        if losses not in table:
            raise ValueError(f"losses must be one of {sorted(table)}, got {losses!r}")
        return table[losses]


def joint_loss(
    w: JointLossWeights,
    *,
    logits: torch.Tensor,
    labels: torch.Tensor,
    phi: torch.Tensor,
    phi_a: torch.Tensor,
    generated: torch.Tensor,
    audio: torch.Tensor,
    params: Iterable[nn.Parameter],
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 11: η1 L_per + η2 L_rep + η3 L_gen + η4 λ Σ (W^J)². Returns (loss, parts for logs)."""
    per = perceptual_loss(logits, labels, label_smoothing)
    rep = representation_loss(phi_a, phi)
    gen = generation_loss(audio, generated)
    pen = weight_penalty(params)
    total = w.per * per + w.rep * rep + w.gen * gen + w.penalty * w.weight_decay * pen
    parts = {"per": per.item(), "rep": rep.item(), "gen": gen.item(), "pen": pen.item()}
    return total, parts
