"""The generator's last layer stored as two thin factors in exported files.

MT-Net's generator ends in FC_2: gen_hidden → L_s (256 → 21,101 samples for CIFAR-10-AD,
5.4 M weights, more than half of the Lite0 model). The waveforms it emits are a handful of
words, so its weight matrix is nearly low-rank: keeping the singular directions that hold
``ENERGY`` of its squared singular values (48 of 256 for the shipped model) changes the
generated waveform by ~0.1 % (relative L2) and stores 1.0 M weights instead of 5.4 M.

    W (L_s, H) ≈ U_r (L_s, r) · (S_r V_rᵀ) (r, H)         (truncated SVD, Eckart–Young)

Only exports use it (engine/export.py), and the export's parity check against the full torch
model guards it; training, teach mode and the torch backend keep the full layer.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

ENERGY = 0.999  # share of Σσ² the kept singular directions hold
ROUND = 8  # ranks are rounded up to a multiple of this (kernel-friendly widths)


def energy_rank(weight: torch.Tensor, energy: float = ENERGY) -> int:
    """Smallest rank r (a multiple of ROUND) whose singular values hold ``energy`` of Σσ²."""
    s = torch.linalg.svdvals(weight.detach().float())
    share = (s**2).cumsum(0) / (s**2).sum()
    r = int((share < energy).sum()) + 1
    return min(-(-r // ROUND) * ROUND, len(s))


def factorised(layer: nn.Linear, rank: int) -> nn.Sequential:
    """nn.Linear (out, in) → Linear(in, rank, no bias) then Linear(rank, out, with the bias)."""
    u, s, vt = torch.linalg.svd(layer.weight.detach().float(), full_matrices=False)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(s[:rank, None] * vt[:rank])  # (rank, in)
        second.weight.copy_(u[:, :rank])  # (out, rank)
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach().float())
    return nn.Sequential(first, second).to(layer.weight.dtype)


def factorise_generator(model: nn.Module, energy: float = ENERGY) -> int:
    """Replace ``model.generator.fc2`` in place by its truncated-SVD factors when that stores
    fewer weights; return the rank kept (0: left whole, or no gated generator)."""
    generator = getattr(model, "generator", None)
    layer = getattr(generator, "fc2", None)
    if not isinstance(layer, nn.Linear):
        return 0
    rank = energy_rank(layer.weight, energy)
    if rank * (layer.in_features + layer.out_features) >= layer.in_features * layer.out_features:
        return 0
    generator.fc2 = factorised(layer, rank)
    log.info(
        "generator FC_2 stored as rank %d of %d (%.1f %% of Σσ²): %.1f M weights instead of %.1f M",
        rank,
        min(layer.in_features, layer.out_features),
        100 * energy,
        rank * (layer.in_features + layer.out_features) / 1e6,
        layer.in_features * layer.out_features / 1e6,
    )
    return rank
