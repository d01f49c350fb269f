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
    """avg ← d · avg + (1 − d) · current after every optimizer step, d = min(decay, (1 + t) /
    (10 + t)) at step t (TensorFlow's warm-up): the average starts at the stage's freshly
    initialized weights, and a fixed 0.995 would still hold a third of them after 200 steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        # Pair the tensors once: state_dict() entries share storage with the live modules.
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        pairs = list(pairs)
        self._floats = [(a, c) for a, c in pairs if a.is_floating_point()]
        self._others = [(a, c) for a, c in pairs if not a.is_floating_point()]  # BN step counts

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        for a, c in self._floats:
            a.lerp_(c, weight)
        for a, c in self._others:
            a.copy_(c)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.model.load_state_dict(state["model"])
