"""Teach mode's head (not in the paper, which fixes its classes at training time): the user's
own words' logits, voice codes and familiarity gate on the pooled backbone features, added to a
trained MT-Net by trainer/teach/learn.py and read by ``MTNet.logits_and_phi``/``class_probs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earsight.trainer.mtnet.config import MTNetConfig

# The taught words' probabilities that move φ toward their codes come from logits this many
# times sharper than the calibrated ones: a frame the classifier gives to a taught word by a
# small margin says that word, not a blend of two (thumbnails: docs/BENCHMARKS.md).
CODE_SHARPNESS = 4.0


class TaughtHead(nn.Module):
    """Teach mode's words (not in the paper): pooled backbone features (B, D_u) → centred, unit
    length u → logits of the taught words (B, n_taught); their codes φ_k and familiarity gate.

    Why the pooled features and not φ^I: φ^I (Table 1's FC_2^1, 256 wide) was trained to tell
    the dataset's classes apart and keeps little else (a logistic regression on it tells 100
    COIL-100 objects apart 60 % of the time, on the pooled features 87 %: docs/BENCHMARKS.md).
    Centring on the features' mean before normalising (SimpleShot's CL2N) spreads few-shot
    classes apart; taking their square root first (cfg.taught_power) rounds the classes'
    clusters (Tukey's ladder of powers, as in Yang et al. 2021's distribution calibration).
    The voice: each taught word has a code φ_k (K_t, D_a) that the generator
    learns to say in the user's recording; a frame's φ moves from the cross-modal mapping's
    toward the codes by the taught words' (sharpened) probabilities q (B, K_t), so the word heard
    is the word the classifier chose, however unlike the photos the frame's own φ is.
    D_u = 1280, or 1280 + bins³ with cfg.taught_colour's colour cells (trainer/mtnet/colour.py):
    the taught words that read them told 100 COIL-100 objects from 10 consecutive views apart
    93.6 % of the time, against 87.7 % on the pooled features alone (docs/BENCHMARKS.md).
    """

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        from earsight.trainer.mtnet.backbone import HEAD_WIDTH

        self.colour_cells = cfg.taught_colour**3 if cfg.taught_colour else 0
        self.power = cfg.taught_power
        width = HEAD_WIDTH + self.colour_cells  # D_u: pooled features [+ colour cells]
        self.register_buffer("centre", torch.zeros(width))  # (D_u,) mean of powered replay rows
        self.classifier = nn.Linear(width, cfg.taught_words)
        self.codes = nn.Parameter(torch.zeros(cfg.taught_words, cfg.audio_feature))  # φ_k
        # The taught words' gate, like the shipped one but on u (trainer/teach/learn.py fills
        # it): exemplars (M_t, D_u) and P(taught) = σ(slope · (max cosine − centre)).
        self.register_buffer("memory", torch.zeros(cfg.taught_exemplars, width))
        self.register_buffer("gate_centre", torch.zeros(()))
        self.register_buffer("gate_slope", torch.zeros(()))
        # A residual MLP u → u + A(u) (cfg.taught_adapter hidden units), its output layer zero
        # at the start so it begins as the identity (trainer/teach/learn.refine_classifier).
        self.adapter = None
        if cfg.taught_adapter:
            self.adapter = nn.Sequential(
                nn.Linear(width, cfg.taught_adapter),
                nn.ReLU(),
                nn.Linear(cfg.taught_adapter, width),
            )

    def powered(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D_u) → (B, D_u), the pooled part raised to cfg.taught_power (the colour cells
        as they are). Pooled features are ReLU6 outputs averaged, so ≥ 0; the square root
        (Tukey's ladder, λ = ½) makes their class clusters rounder, which a linear fit on few
        photos separates better (Yang et al., ICLR 2021: thumbnails, docs/BENCHMARKS.md)."""
        if self.power == 1.0:
            return pooled
        deep, colour = pooled.split([pooled.shape[1] - self.colour_cells, self.colour_cells], 1)
        return torch.cat([deep.clamp_min(0).pow(self.power), colour], 1)

    def unit(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D_u) → centred, unit-length u (B, D_u) of ``powered(pooled)``. With colour
        cells (cfg.taught_colour) each part is centred and normalised on its own, the colour
        part then weighted by COLOUR_WEIGHT, so neither part's scale decides how much it
        counts."""
        powered = self.powered(pooled)
        centred = powered - self.centre.to(powered.dtype)
        if not self.colour_cells:
            return F.normalize(centred, dim=1)
        from earsight.trainer.mtnet.colour import COLOUR_WEIGHT

        deep, colour = centred.split([centred.shape[1] - self.colour_cells, self.colour_cells], 1)
        u = torch.cat([F.normalize(deep, dim=1), COLOUR_WEIGHT * F.normalize(colour, dim=1)], 1)
        return u / (1 + COLOUR_WEIGHT**2) ** 0.5

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, D_u) → the taught words' logits (B, K_t): W_t · unit(u + A(u)) + b_t.

        The adapter lets the few photos bend the features themselves, not only a hyperplane:
        a linear layer on u tells 100 COIL-100 objects taught from 10 consecutive views apart
        83 % of the time, with the adapter 87 % (docs/BENCHMARKS.md)."""
        if self.adapter is not None:
            u = F.normalize(u + self.adapter(u), dim=1)
        return self.classifier(u)

    def known_logit(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, D_u) → logit of P(the frame shows a taught thing) (B,)."""
        return self.gate_slope * ((u @ self.memory.T).amax(dim=1) - self.gate_centre)
