"""MT-Net (Ning et al., "Audio description from image by modal translation network", 2021).

Read top to bottom: config → image feature learning (§3.1.1) → audio feature learning (§3.1.2)
→ cross-modal mapping (§3.2) → audio generation (§3.3) → the assembled network.

Shapes use B = batch, C = channels, H×W = image size, L_s = padded audio length in samples,
D_a = audio semantic feature size (output of FC_3^2), D_i = image feature size (FC_2^1).

The architecture is a ``MTNetConfig`` stored in every checkpoint, so export and runtime need no
flags. Two presets: ``paper`` (Table 1 / Table 2 exactly; the image encoder never downsamples,
≈26 GMAC per 32×32 image) and ``compact`` (DenseNet-style average-pool downsampling in the
transition layers and far fewer channels, for a 2-core CPU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

GENERATORS = ("gated", "autoencoder")  # "autoencoder" = Table 3's "proposed(autoencoder)" ablation


@dataclass(frozen=True)
class MTNetConfig:
    preset: str = "paper"
    image_size: int = 28  # H = W of the network input, pixels
    image_channels: int = 1  # 1 = grey, 3 = RGB
    n_classes: int = 10
    audio_length: int = 18_140  # L_s, samples at sample_rate (paper: 18140 for MNIST-AD)
    sample_rate: int = 22_050  # Hz, the rate of the waveform the generator emits
    # Image feature learning (Table 1): one transition (1×1 conv) + residual block per stage.
    enc_widths: tuple[int, ...] = (32, 128, 256, 512, 1024)
    enc_pool: tuple[bool, ...] = (False, False, False, False, False)  # 2×2 avg-pool after trans k
    dilation: int = 2  # "holes" of the 3×3 convs (1 = Table 3's "no holes" ablation)
    image_feature: int = 1024  # D_i: FC_1^1 and FC_2^1 width
    # Audio feature learning (Table 2): L_s → h1 → h2 → D_a → h2 → h1 → L_s, tanh.
    ae_hidden: tuple[int, int] = (4096, 2048)
    audio_feature: int = 1024  # D_a
    # Cross-modal mapping (§3.2): two coupled FC layers D_i → map_hidden → D_a.
    map_hidden: int = 1024
    # Audio generation (§3.3): reshape φ to (gen_channels, D_a / gen_channels), 3 gated residual
    # 1-D blocks (kernel 3, dilation gen_dilation), then FC D_a → gen_hidden → L_s with tanh.
    generator: str = "gated"
    gen_channels: int = 16
    gen_blocks: int = 3
    gen_dilation: int = 2
    gen_hidden: int = 1024
    labels: tuple[str, ...] = field(default_factory=tuple)  # spoken word per class
    # Inference only (test-time augmentation): φ^I is the mean over the image and its mirror.
    # For models trained on mirrored images (photos, not digits); costs a second encoder pass.
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if len(self.enc_widths) != len(self.enc_pool):
            raise ValueError("enc_widths and enc_pool must have the same length")
        if len(self.ae_hidden) != 2:
            raise ValueError("ae_hidden takes two widths (the autoencoder's two hidden layers)")
        if self.audio_feature % self.gen_channels:
            raise ValueError("audio_feature must be divisible by gen_channels (reshape of φ)")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MTNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)


PRESETS: dict[str, dict] = {
    # Table 1 / Table 2 of the paper, the encoder at full resolution throughout.
    "paper": {},
    # Downsample 28/32 px → 14/16 → 7/8 → 4, narrow widths, small audio autoencoder: a few
    # tens of MMAC per image so a 2-core CPU answers a key press in milliseconds.
    "compact": dict(
        enc_widths=(16, 32, 64, 128, 128),
        enc_pool=(False, True, True, True, False),
        image_feature=256,
        ae_hidden=(512, 256),
        audio_feature=128,
        map_hidden=256,
        gen_channels=8,
        gen_hidden=256,
    ),
}


def make_config(preset: str, **overrides) -> MTNetConfig:
    """A preset's config with dataset-specific fields (image size, L_s, labels…) overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return MTNetConfig(preset=preset, **{**PRESETS[preset], **overrides})


# Fields a user may change with ``fit.py --arch KEY=VALUE``; the rest follow from the dataset.
ARCH_FIELDS = (
    "enc_widths",
    "enc_pool",
    "dilation",
    "image_feature",
    "ae_hidden",
    "audio_feature",
    "map_hidden",
    "gen_channels",
    "gen_blocks",
    "gen_dilation",
    "gen_hidden",
)


def parse_arch(items: Sequence[str]) -> dict:
    """``["enc_widths=32,64,128,256,256", "enc_pool=0,0,1,1,1"]`` → typed config overrides.

    Types follow the field's default: int, or a tuple of int/bool written with commas.
    ValueError (one line, what to write instead) on an unknown key or a malformed value.
    """
    defaults = MTNetConfig()
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in ARCH_FIELDS:
            raise ValueError(f"--arch {item!r}: write KEY=VALUE with KEY one of {ARCH_FIELDS}")
        default = getattr(defaults, key)
        try:
            if isinstance(default, tuple):
                kind = bool if isinstance(default[0], bool) else int
                out[key] = tuple(kind(int(v)) for v in text.split(","))
            else:
                out[key] = int(text)
        except ValueError:
            raise ValueError(f"--arch {item!r}: {key} takes {_arch_example(default)}") from None
    return out


def _arch_example(default: object) -> str:
    if isinstance(default, tuple):
        return "comma-separated " + ("0/1 flags" if isinstance(default[0], bool) else "integers")
    return "an integer"


# --------------------------------------------------------------------------------------------
# Image feature learning (§3.1.1, Eq. 1–3, Table 1)
# --------------------------------------------------------------------------------------------


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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1-standardized images (B, C, H, W), any float dtype → φ^I (B, D_i)."""
        x = self.stages(x)  # (B, C_5, H', W')
        x = x.mean(dim=(2, 3))  # global average pooling → (B, C_5)
        return F.relu(self.fc2(F.relu(self.fc1(x))))  # (B, D_i)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi_i = self.embed(standardize(images))
        return phi_i, self.classifier(phi_i)


# --------------------------------------------------------------------------------------------
# Audio feature learning (§3.1.2, Eq. 5–6, Table 2)
# --------------------------------------------------------------------------------------------


class AudioAutoencoder(nn.Module):
    """6-FC tanh autoencoder: waveform (B, L_s) → φ^A (B, D_a) → reconstruction (B, L_s)."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        h1, h2 = cfg.ae_hidden
        self.encoder = nn.Sequential(
            nn.Linear(cfg.audio_length, h1),
            nn.Tanh(),
            nn.Linear(h1, h2),
            nn.Tanh(),
            nn.Linear(h2, cfg.audio_feature),
            nn.Tanh(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(cfg.audio_feature, h2),
            nn.Tanh(),
            nn.Linear(h2, h1),
            nn.Tanh(),
            nn.Linear(h1, cfg.audio_length),
            nn.Tanh(),
        )

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi_a = self.encoder(audio)
        return phi_a, self.decoder(phi_a)


# --------------------------------------------------------------------------------------------
# Cross-modal mapping (§3.2) and audio generation (§3.3, Eq. 8)
# --------------------------------------------------------------------------------------------


class CrossModalMapping(nn.Module):
    """Two coupled FC layers: φ^I (B, D_i) → φ (B, D_a), tanh so φ lives where φ^A lives."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.image_feature, cfg.map_hidden)
        self.fc2 = nn.Linear(cfg.map_hidden, cfg.audio_feature)

    def forward(self, phi_i: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc2(F.relu(self.fc1(phi_i))))


class GatedResidualBlock1d(nn.Module):
    """Eq. 8: E_n = tanh(G(E_{n-1}) + E_{n-1}); G = tanh(W_f ∗ E) ⊙ σ(W_g ∗ E), k = 3, holes."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        # One conv emits filter and gate halves: (B, C, T) → (B, 2C, T).
        self.conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        filt, gate = self.conv(e).chunk(2, dim=1)
        return torch.tanh(torch.tanh(filt) * torch.sigmoid(gate) + e)


class AudioGenerator(nn.Module):
    """φ (B, D_a) → (B, C_g, D_a/C_g) → gated residual blocks → FC → FC → waveform (B, L_s)."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        self.channels = cfg.gen_channels
        self.blocks = nn.Sequential(
            *[
                GatedResidualBlock1d(cfg.gen_channels, cfg.gen_dilation)
                for _ in range(cfg.gen_blocks)
            ]
        )
        self.fc1 = nn.Linear(cfg.audio_feature, cfg.gen_hidden)
        self.fc2 = nn.Linear(cfg.gen_hidden, cfg.audio_length)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        e = self.blocks(phi.reshape(phi.shape[0], self.channels, -1))  # (B, C_g, D_a / C_g)
        return torch.tanh(self.fc2(torch.tanh(self.fc1(e.flatten(1)))))


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class MTNet(nn.Module):
    """Image → (waveform, class logits). Training also uses φ (for Eq. 7) via ``forward_train``."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoder(cfg)
        self.audio_autoencoder = AudioAutoencoder(cfg)  # stage 1; frozen in stage 2
        self.mapping = CrossModalMapping(cfg)
        # Table 3 "proposed(autoencoder)": the stage-1 decoder generates (fine-tuned in stage 2).
        self.generator = AudioGenerator(cfg) if cfg.generator == "gated" else None
        self.apply(_init_weights)

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return self.audio_autoencoder.decoder(phi)
        return self.generator(phi)

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, C, H, W) → waveform (B, L_s), logits (B, n_classes), φ (B, D_a)."""
        phi_i, logits = self.image_encoder(images)
        phi = self.mapping(phi_i)
        return self.generate(phi), logits, phi

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Inference φ^I: standardized (B, C, H, W) → (B, D_i), mirror-averaged if cfg.flip_tta."""
        if not self.cfg.flip_tta:
            return self.image_encoder.embed(x)
        both = self.image_encoder.embed(torch.cat([x, x.flip(-1)]))  # (2B, D_i), one pass
        return both.unflatten(0, (2, x.shape[0])).mean(dim=0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: images (B, C, H, W) → waveform (B, L_s), class probabilities (B, K)."""
        phi_i = self.image_features(standardize(images))
        logits = self.image_encoder.classifier(phi_i)
        return self.generate(self.mapping(phi_i)), logits.softmax(dim=-1)

    def joint_parameters(self) -> list[nn.Parameter]:
        """W^J of Eq. 11: all but the audio autoencoder (whose decoder joins if it generates)."""
        params = [*self.image_encoder.parameters(), *self.mapping.parameters()]
        if self.generator is not None:
            return params + list(self.generator.parameters())
        return params + list(self.audio_autoencoder.decoder.parameters())


def _init_weights(module: nn.Module) -> None:
    # Algorithm 1: "all weights are randomly sampled by truncated_normal distribution".
    # std = 1/sqrt(fan_in) keeps activations O(1) through the tanh stacks. Tails beyond 2σ are
    # folded back (fmod) rather than resampled: the same support, and 20× faster than
    # nn.init.trunc_normal_ on the paper preset's 219 M parameters.
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
        std = 1.0 / math.sqrt(module.weight[0].numel())
        with torch.no_grad():
            module.weight.normal_().fmod_(2.0).mul_(std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def inference_macs(cfg: MTNetConfig) -> int:
    """Multiply-accumulates of one image through the inference graph (convs + linears).

    Runs on the meta device: shapes only, no memory, no arithmetic, instant for any preset.
    """
    total = 0

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv1d | nn.Conv2d):
            total += out.numel() * mod.weight[0].numel()  # per output element: C_in/g × k
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    with torch.device("meta"):
        model = MTNet(cfg).eval()
        for m in model.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
                m.register_forward_hook(hook)
        model(torch.zeros(1, cfg.image_channels, cfg.image_size, cfg.image_size))
    return total
