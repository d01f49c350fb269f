"""MT-Net's architecture as data: ``MTNetConfig``, stored in every checkpoint and sidecar, so
export and runtime need no flags; the presets (``paper``, ``compact``, ``efficientnet-lite0``)
and ``--arch KEY=VALUE`` overrides. No torch here: the engine reads configs without it.
The network these fields build: trainer/mtnet/model.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    # ImageNet's own view (trainer/mtnet/imagenet_check.py): per shipped word, the ImageNet-1k
    # classes that are kinds of it; the word is answered when the gate passes or ImageNet's
    # softmax puts that much mass on its kinds. () = no check.
    imagenet_kinds: tuple[tuple[int, ...], ...] = ()
    # Word codes for the shipped words (CrossModalMapping.codes): at inference φ is the codes
    # weighted by the sharpened class probabilities, as taught words' are, so a frame the
    # classifier gives to one word by a margin says that word rather than a blend of two.
    # False = φ straight from the mapping (the paper's inference; training always is).
    shipped_codes: bool = False
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
    # Bins per channel of the colour histogram joined to the taught words' pooled features
    # (trainer/mtnet/colour.py, computed in the graph); 0 = none (models taught before it).
    taught_colour: int = 0
    # The power the taught words' pooled features are raised to before centring: 0.5 =
    # Tukey's square root (trainer/mtnet/taught.py); 1.0 = none (models taught before it).
    taught_power: float = 1.0

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
        if not 0.0 < self.taught_power <= 1.0:
            raise ValueError(f"taught_power must be in (0, 1], got {self.taught_power}")
        if self.taught_colour and not (self.taught_words and self.taught_colour >= 2):
            raise ValueError("taught_colour needs taught words and at least 2 bins")
        if self.imagenet_kinds and not (
            self.backbone and len(self.imagenet_kinds) == self.n_classes - self.taught_words
        ):
            raise ValueError("imagenet_kinds needs a backbone and one entry per shipped word")
        if not 0.0 < self.softmax_temperature < float("inf"):
            raise ValueError(f"softmax_temperature must be > 0, got {self.softmax_temperature}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MTNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: _tuples(v) for k, v in d.items() if k in known}
        return cls(**kw)


def _tuples(value: object) -> object:
    """JSON's lists (nested too) → the config's tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
            keys = ", ".join(ARCH_FIELDS)
            raise ValueError(f"--arch {item!r}: write KEY=VALUE with KEY one of {keys}")
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
