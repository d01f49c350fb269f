"""MT-Net's image feature learning (§3.1.1, Eq. 1–3, Table 1): images → pooled features →
the image semantic feature φ_i (FC_1^1 → FC_2^1), from scratch (``ImageEncoder``) or on an
ImageNet-pretrained backbone (``PretrainedImageEncoder``, trainer/mtnet/backbone.py).

Shapes: B = batch, C = channels, H×W = image size, D_i = image feature size (FC_2^1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from earsight.trainer.mtnet.config import MTNetConfig


def mirror(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → the left-right mirror images. A Gather of reversed column indices, not
    ``flip``: flip exports as an ONNX Slice with step −1, which TensorRT's ONNX parser does not
    promise to build; Gather it does (docs/ENGINE.md, operator check)."""
    columns = torch.arange(images.shape[-1] - 1, -1, -1, device=images.device)  # (W,)
    return images.index_select(-1, columns)


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Eq. 1: per-image (I − μ) / max(σ, 1/√P). (B, C, H, W) any dtype → float32."""
    x = images.float()
    n_pixels = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.clamp(std, min=1.0 / math.sqrt(n_pixels))


class Transition(nn.Module):
    """Eq. 2: ReLU(BN(1×1 conv)), adjusting the channel count; optional 2×2 average pool."""

    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))


class DilatedResidualBlock(nn.Module):
    """Eq. 3: ReLU(F(x) + x), F = two 3×3 convs with holes (dilation), BN after each conv."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        pad = dilation  # keeps H×W for a 3×3 kernel
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=pad, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + x)


class ImageEncoder(nn.Module):
    """Images (B, C, H, W) → image semantic feature φ^I (B, D_i) and class logits (B, n_classes)."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        stages, c_in = [], cfg.image_channels
        for width, pool in zip(cfg.enc_widths, cfg.enc_pool, strict=True):
            stages += [Transition(c_in, width, pool), DilatedResidualBlock(width, cfg.dilation)]
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.fc1 = nn.Linear(c_in, cfg.image_feature)
        self.fc2 = nn.Linear(cfg.image_feature, cfg.image_feature)
        self.classifier = nn.Linear(cfg.image_feature, cfg.n_classes)  # the softmax layer

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1-standardized images (B, C, H, W), any float dtype → pooled (B, C_5)."""
        return self.stages(x).mean(dim=(2, 3))  # global average pooling of (B, C_5, H', W')

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """FC_1^1 → FC_2^1: pooled (B, C_5) → φ^I (B, D_i)."""
        return F.relu(self.fc2(F.relu(self.fc1(pooled))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1-standardized images (B, C, H, W), any float dtype → φ^I (B, D_i)."""
        return self.head(self.pool(x))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw 0..255 pixels (B, C, H, W) → the encoder's input: Eq. 1 standardization."""
        return standardize(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi_i = self.embed(self.prepare(images))
        return phi_i, self.classifier(phi_i)


def _backbone_part(pooled: torch.Tensor) -> torch.Tensor:
    """(B, 1280 [+ colour cells]) → (B, 1280); no Slice in the graph when there is nothing after."""
    from earsight.trainer.mtnet.backbone import HEAD_WIDTH

    return pooled[:, :HEAD_WIDTH] if pooled.shape[1] > HEAD_WIDTH else pooled


class PretrainedImageEncoder(nn.Module):
    """§3.1.1 on an ImageNet backbone: images (B, 3, res, res) → backbone → pooled (B, 1280) →
    FC_1^1 → FC_2^1 → φ^I (B, D_i), and class logits (B, n_classes) — Table 1's head and Eq. 4's
    softmax on features that already know a million photographs.

    The backbone is split at ``cut`` (EfficientNetLite.trunk/tail): the trunk keeps its ImageNet
    weights, the tail (cfg.backbone_trained layers) trains with the head. Its BatchNorm layers
    keep ImageNet's statistics in training too (``train`` below): batches of one dataset's
    thumbnails would otherwise re-centre features the frozen trunk was calibrated with.
    """

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        from earsight.trainer.mtnet.backbone import HEAD_WIDTH, EfficientNetLite, backbone_spec

        self.backbone = EfficientNetLite(backbone_spec(cfg.backbone))
        self.cut = self.backbone.cut_for(cfg.backbone_trained)
        self.fc1 = nn.Linear(HEAD_WIDTH, cfg.image_feature)
        self.fc2 = nn.Linear(cfg.image_feature, cfg.image_feature)
        self.classifier = nn.Linear(cfg.image_feature, cfg.n_classes - cfg.taught_words)
        # Open-set gate (trainer/mtnet/open_set.py fills these after training): unit-norm exemplars
        # of pooled features (M, 1280), and P(known) = σ(slope · (max cosine − centre)).
        self.register_buffer("gate_memory", torch.zeros(cfg.gate_exemplars, HEAD_WIDTH))
        self.register_buffer("gate_centre", torch.zeros(()))
        self.register_buffer("gate_slope", torch.zeros(()))
        # ImageNet's own view of the frame (trainer/mtnet/imagenet_check.py), when configured.
        self.imagenet_check = None
        if cfg.imagenet_kinds:
            from earsight.trainer.mtnet.imagenet_check import ImageNetCheck

            self.imagenet_check = ImageNetCheck(cfg, self.cut)

    def train(self, mode: bool = True) -> PretrainedImageEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics (dropout-free, so nothing else)
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw 0..255 pixels (B, 3, res, res) → (x − 127) / 128, the backbone's input."""
        from earsight.trainer.mtnet.backbone import preprocess

        return preprocess(images)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, 1280) → φ^I (B, D_i). Wider rows (teach mode's colour
        cells joined after the 1280: trainer/mtnet/colour.py) are read up to 1280."""
        pooled = _backbone_part(pooled)
        return F.relu(self.fc2(F.relu(self.fc1(pooled))))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared images (B, 3, res, res) → pooled backbone features (B, 1280)."""
        return self.backbone.features(x)

    def pool_and_kinds(
        self, x: torch.Tensor, first: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prepared images (B, 3, res, res) → pooled features (B, 1280) and, with the ImageNet
        check, ImageNet's mass on each word's kinds for the first ``first`` images (first, K);
        the check reads the same trunk output (views after the first need no second look)."""
        if self.imagenet_check is None:
            return self.pool(x), None
        acts = self.backbone.trunk(x, self.cut)  # (B, C, h, w)
        return self.backbone.tail(acts, self.cut), self.imagenet_check(acts[:first])

    def familiarity(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, 1280) → highest cosine similarity to an exemplar (B,)."""
        return (F.normalize(_backbone_part(pooled), dim=1) @ self.gate_memory.T).amax(dim=1)

    def known_logit(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 1280) → logit of P(known) (B,): slope · (familiarity − centre)."""
        return self.gate_slope * (self.familiarity(pooled) - self.gate_centre)

    def p_known(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 1280) → P(the frame shows one of the vocabulary's things) (B,), in (0, 1)."""
        return torch.sigmoid(self.known_logit(pooled))

    def embed_from_cut(self, acts: torch.Tensor) -> torch.Tensor:
        """Trunk activations (B, C, h, w) or pooled (B, 1280), as cached → φ^I (B, D_i)."""
        return self.head(self.backbone.tail(acts, self.cut))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared images (B, 3, res, res) → φ^I (B, D_i)."""
        return self.head(self.backbone.features(x))

    def trained_parameters(self) -> list[nn.Parameter]:
        """The tail's and the head's parameters (W^J's image part); the trunk stays frozen."""
        head = [*self.fc1.parameters(), *self.fc2.parameters(), *self.classifier.parameters()]
        return self.backbone.tail_parameters(self.cut) + head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi_i = self.embed(self.prepare(images))
        return phi_i, self.classifier(phi_i)


def make_image_encoder(cfg: MTNetConfig) -> ImageEncoder | PretrainedImageEncoder:
    return PretrainedImageEncoder(cfg) if cfg.backbone else ImageEncoder(cfg)
