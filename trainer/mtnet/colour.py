"""Teach mode's colour cue: a joint RGB histogram of the frame the backbone sees.

Not in the paper (teach mode is not). A user's own things differ in colour more than in shape
(a red mug and a blue one, two pill boxes), and the backbone's pooled features, trained to be
blind to colour shifts by ImageNet's augmentation, keep little of it. Joined to the pooled
features of the taught words' head (``TaughtHead``), it told 100 COIL-100 objects taught from
10 consecutive views apart 94 % of the time against 87 % without (a logistic regression, one
draw), and 82 % against 76 % with the objects pasted on real backgrounds, taught on one and
tested on others (docs/BENCHMARKS.md): so it is not only COIL's black background.

The descriptor: each pixel of the 2×2-averaged input falls into one of ``bins³`` colour cells
(``bins`` equal steps of 0..255 per channel); the cell shares, square-rooted (the Hellinger
map: the dot product of two is the Bhattacharyya coefficient of the histograms), are unit
length. Computed in float32 in the graph (ONNX: Floor, Equal, ReduceMean, Sqrt), so the
exported model needs no second input and TensorRT builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOUR_BINS = 6  # per channel: 216 cells; 4 (64): 91 %, 8 (512): 94 %, COIL 1-NN, one draw
COLOUR_WEIGHT = 0.5  # the colour part's length in the joined unit vector, the pooled part 1
_DOWNSAMPLE = 2  # 2×2 average before counting: 6,400 pixels at 160 px, the same histogram


def colour_histogram(x: torch.Tensor, bins: int = COLOUR_BINS) -> torch.Tensor:
    """Prepared images (B, 3, H, W), (rgb − 127) / 128 as the backbone's input (any float
    dtype) → square-rooted colour cell shares (B, bins³) float32, each row unit length.

    Cell index r·bins² + g·bins + b of the channel steps ⌊rgb · bins / 256⌋."""
    rgb = (x.float() * 128 + 127).clamp(0, 255)
    rgb = F.avg_pool2d(rgb, _DOWNSAMPLE)  # (B, 3, H/2, W/2)
    steps = torch.floor(rgb * (bins / 256.0)).clamp(max=bins - 1)  # (B, 3, h, w) in 0..bins-1
    cell = (steps[:, 0] * bins + steps[:, 1]) * bins + steps[:, 2]  # (B, h, w)
    cells = torch.arange(bins**3, dtype=cell.dtype, device=cell.device)
    shares = (cell.flatten(1)[:, :, None] == cells).float().mean(dim=1)  # (B, bins³)
    return shares.sqrt()


def join_colour(pooled: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features (B, 1280) and ``colour_histogram`` (B, bins³) → (B, 1280 +
    bins³), the layout a base with colour stores and TaughtHead reads."""
    return torch.cat([pooled, colour.to(pooled.dtype)], dim=1)
