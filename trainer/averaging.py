"""Exponential moving average of the weights (Polyak averaging), for validation and export.

A short schedule ends with noisy weights; their running average generalizes better at no
training cost. The average covers every float tensor of the state dict, BatchNorm statistics
included, so the averaged copy is a complete model that ``validate`` and ``best.pt`` can use.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """avg ← decay · avg + (1 − decay) · current, after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        # Pair the tensors once: state_dict() entries share storage with the live modules.
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        pairs = list(pairs)
        self._floats = [(a, c) for a, c in pairs if a.is_floating_point()]
        self._others = [(a, c) for a, c in pairs if not a.is_floating_point()]  # BN step counts

    @torch.no_grad()
    def update(self) -> None:
        for a, c in self._floats:
            a.lerp_(c, 1.0 - self.decay)
        for a, c in self._others:
            a.copy_(c)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
