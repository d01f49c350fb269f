"""What stage 2 feeds the image encoder: augmented images, or a pretrained backbone's cached
activations (trainer/data/feature_cache.py), behind one small interface used by training and
validation. Shapes: B = batch; images (B, C, H, W) float 0..255; activations (B, C, h, w).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from earsight.trainer.data.augment import augment, augment_mode, to_tensor_images
from earsight.trainer.data.dataset import ADDataset, Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageInputs:
    """A split's images, augmented on the device when training (the paper's encoders)."""

    split: Split
    mode: str = "none"  # trainer/data/augment.py: "none" | "shift" | "shift+flip"
    cutout: int = 0
    cached: bool = False  # MTNet.forward_train eats these

    def batch(self, idx: np.ndarray | slice, device: torch.device, gen: torch.Generator | None):
        images = to_tensor_images(self.split.images[idx], device)
        return images if gen is None else augment(images, self.mode, gen, cutout=self.cutout)


@dataclass(frozen=True)
class CachedInputs:
    """A split's frozen-trunk activations; with ``mirrored``, each training image is drawn as
    itself or its mirror (the one augmentation a cache can hold), like "shift+flip"'s flips."""

    split: Split  # labels and voices; its images are what ``acts`` came from
    acts: np.ndarray  # (N, C, h, w) float16 memory map
    mirrored: np.ndarray | None = None
    cached: bool = True  # MTNet.forward_train_cached eats these

    def batch(self, idx: np.ndarray | slice, device: torch.device, gen: torch.Generator | None):
        x = torch.from_numpy(np.asarray(self.acts[idx], dtype=np.float32))
        if gen is not None and self.mirrored is not None:
            flip = torch.rand(len(x), generator=gen) < 0.5  # (B,) bool
            mirror = torch.from_numpy(np.asarray(self.mirrored[idx], dtype=np.float32))
            x = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), mirror, x)
        return x.to(device)


Inputs = ImageInputs | CachedInputs


def stage2_inputs(model, data: ADDataset, opts, device: torch.device) -> tuple[Inputs, Inputs]:
    """(train, validation) inputs for ``model``: cached activations when its config names a
    backbone (computed now when missing: a progress bar, resumable), else the images."""
    mode = augment_mode(opts.augment, data.name)
    if not model.cfg.backbone:
        return ImageInputs(data.train, mode, opts.cutout), ImageInputs(data.val)
    from earsight.trainer.data.feature_cache import cached_activations

    if "shift" in mode or opts.cutout:
        log.info("cached backbone: shifts and cutout are not applied (flips are, as mirrors)")
    encoder = model.image_encoder
    net = encoder.backbone.to(memory_format=torch.channels_last)
    cut, res = encoder.cut, model.cfg.image_size

    def acts(split: Split, label: str, mirrored: bool = False) -> np.ndarray:
        # A dataset's images are whole thumbnails, framed around their subject when the
        # dataset was made: no centre crop (input_crop is for camera frames and photos).
        return cached_activations(
            net, split.images, cut=cut, resolution=res, mirrored=mirrored, label=label
        )

    train, val = acts(data.train, "train"), acts(data.val, "validation")
    mirrors = acts(data.train, "train mirrored", True) if "flip" in mode else None
    net.to(memory_format=torch.contiguous_format)
    return CachedInputs(data.train, train, mirrors), CachedInputs(data.val, val)
