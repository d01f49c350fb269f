"""The exported graph: the ONNX contract's body around MTNet.forward (docs/ENGINE.md).

    graph = InferenceGraph(model)                  # fp32 file
    graph = InferenceGraph(model, torch.float16)   # fp16 file: fp16 body, fp32 boundaries
    wave, probs = graph(torch.from_numpy(frames))  # uint8 (B, H, W, C) → (B, L_s), (B, K)

One class for both precisions, so the fp16 file cannot drift from the fp32 one: both run
MTNet.forward (prepare, then MTNet.infer), the fp16 one with the prepared images cast to fp16
between the two (prepare's outputs are O(1): Eq. 1's standardization or the backbone's
(x − 127) / 128, safe in fp16; raw 0..255 pixels are kept out of fp16 arithmetic).
"""

from __future__ import annotations

import torch
from torch import nn

from earsight.trainer.mtnet.model import MTNet


class InferenceGraph(nn.Module):
    """uint8 NHWC frames (B, H, W, C) → waveform (B, L_s) and probs (B, K), both float32:
    ``MTNet.forward`` on NCHW with its body in ``dtype`` (the model is converted in place)."""

    def __init__(self, model: MTNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(images.permute(0, 3, 1, 2), body_dtype=self.dtype)
