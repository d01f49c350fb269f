"""What a training run is asked for: ``TrainOptions`` (fit.py's flags, stored in every
checkpoint so --resume can refuse a changed run) and the model configuration they give for a
dataset (the preset, ``--arch`` changes, the Table 3 ablation's switch).

Apart from trainer/training/train.py, so the training plumbing (trainer/training/plumbing.py) can
read the
options without importing the training loop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from earsight.errors import UsageError
from earsight.trainer.mtnet.config import MTNetConfig, make_config, parse_arch

if TYPE_CHECKING:
    from earsight.trainer.data.dataset import ADDataset

ABLATIONS = ("full", "gen", "gen+rep", "no-holes", "autoencoder")  # paper Table 3 rows


@dataclass(frozen=True)
class TrainOptions:
    preset: str = "compact"
    ablation: str = "full"
    arch: tuple[str, ...] = ()  # "KEY=VALUE" changes to the preset (model.parse_arch)
    ae_epochs: int = 2  # stage 1 passes over the training audio
    epochs: int = 3  # stage 2 passes over the training images
    batch_size: int = 128  # global batch (split across ranks under torchrun)
    lr: float = 1e-3  # paper §4.3
    momentum: float = 0.9  # paper §4.3
    rms_alpha: float = 0.9  # RMSprop decay (TensorFlow's default, the paper's library)
    schedule: str = "cosine"  # "cosine" (warm-up then cosine decay) or "constant"
    warmup_steps: int = 100
    augment: str = "auto"  # "none" | "shift" | "shift+flip" | "auto" (by dataset)
    label_smoothing: float = 0.0
    cutout: int = 0  # side (px) of a square blanked in each training image; 0 = off
    ema: float = 0.0  # per-step decay of the weight average used for validation/best.pt; 0 = off
    # Pretrained backbone layers learn at this share of lr (the head and generator at lr), and
    # only after the first backbone_frozen_steps: until the generator stops emitting the mean
    # waveform (~30–100 steps), the gradient into the backbone only erases ImageNet's features
    # (a run training them from step 1 at full lr stayed at chance for a whole epoch).
    backbone_lr: float = 0.1
    backbone_frozen_steps: int = 300
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """UsageError (one line) for values no run can train with: a NaN or ≤ 0 learning rate
        would reach torch's optimizer as a ValueError traceback, or train nothing."""
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}", "e.g. --lr 1e-3")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be ≥ 1, got {self.batch_size}", "e.g. 64")
        if self.epochs < 0 or self.ae_epochs < 0:
            raise UsageError(
                f"--epochs and --ae-epochs must be ≥ 0, got {self.epochs} and {self.ae_epochs}",
                "e.g. --epochs 20",
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}", "e.g. 0.1"
            )
        if self.cutout < 0 or not 0.0 <= self.ema < 1.0:
            raise UsageError("--cutout must be ≥ 0 and --ema in [0, 1)", "e.g. --cutout 8")
        if not (math.isfinite(self.backbone_lr) and self.backbone_lr >= 0):
            raise UsageError(f"--backbone-lr must be ≥ 0, got {self.backbone_lr}", "e.g. 0.1")
        if self.backbone_frozen_steps < 0:
            raise UsageError("--backbone-frozen-steps must be ≥ 0", "e.g. 300")


def model_config(data: ADDataset, opts: TrainOptions) -> MTNetConfig:
    """The preset, sized to the dataset, with the ablation's architectural switch applied."""
    h, _w, c = data.image_shape
    overrides = dict(
        image_size=h,
        image_channels=c,
        n_classes=len(data.classes),
        audio_length=data.audio_length,
        sample_rate=data.spoken.sample_rate,
        labels=data.classes,
    )
    overrides.update(arch_changes(opts.arch))
    if opts.ablation == "no-holes":
        overrides.update(dilation=1, gen_dilation=1)
    if opts.ablation == "autoencoder":
        overrides["generator"] = "autoencoder"
    return checked_config(opts.preset, **overrides)


def checked_config(preset: str, **fields) -> MTNetConfig:
    """make_config, with a --arch combination the model cannot be built from as a UsageError."""
    try:
        return make_config(preset, **fields)
    except ValueError as err:
        raise UsageError(str(err), "fix the --arch values") from None


def fit_command() -> str:
    """How the user ran the trainer: ``earsight-train`` (the console script, the only one a
    wheel install has) or ``python trainer/fit.py`` (the checkout's), for "see … --help"."""
    import sys
    from pathlib import Path

    script = Path(sys.argv[0]).name
    return "earsight-train" if script == "earsight-train" else "python trainer/fit.py"


def arch_changes(items: tuple[str, ...] | list[str]) -> dict:
    """``--arch KEY=VALUE`` items as config overrides; a malformed one is a UsageError."""
    try:
        return parse_arch(items)
    except ValueError as err:
        raise UsageError(str(err), f"see {fit_command()} --help") from None
