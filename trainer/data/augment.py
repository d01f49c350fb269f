"""Training images as tensors, and their augmentation (shapes: B, C, H, W unless noted)."""

from __future__ import annotations

import numpy as np
import torch


def augment(images: torch.Tensor, mode: str, gen: torch.Generator, cutout: int = 0) -> torch.Tensor:
    """Random shift by up to 1/8 of the side (zero fill), optional horizontal flip, optional
    cutout (a ``cutout``-pixel square set to 0). (B, C, H, W) → (B, C, H, W).

    The draws come from ``gen`` (a CPU generator, so a run repeats on any device); the crops are
    one gather on the images' own device, no per-image Python loop (the GPU trainer's host cost).
    """
    shifted = shift_and_flip(images, mode, gen)
    return blank_squares(shifted, cutout, gen) if cutout > 0 else shifted


def blank_squares(images: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero one side×side square per image, centred anywhere
    in the image and clipped at its border, so the net cannot lean on one small region."""
    b, _, h, w = images.shape
    cy, cx = torch.randint(0, h, (b,), generator=gen), torch.randint(0, w, (b,), generator=gen)
    top, left = (cy - side // 2).to(images.device), (cx - side // 2).to(images.device)
    rows = torch.arange(h, device=images.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=images.device)[None, :]  # (1, W)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)  # (B, W)
    return images.masked_fill(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0.0)


def shift_and_flip(images: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to 1/8 of the side (zero fill), and a horizontal flip if ``mode`` says."""
    if mode == "none":
        return images
    b, c, h, w = images.shape
    pad = max(1, h // 8)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=gen).to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (B, H) rows of each crop
    cols = dx[:, None] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    out = padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
    if mode == "shift+flip":
        flip = (torch.rand(b, generator=gen) < 0.5).to(images.device)
        out[flip] = out[flip].flip(-1)
    return out


def augment_mode(requested: str, dataset: str) -> str:
    """ "auto": shifts for digits (a flipped 2 is not a 2), shifts and flips for photos."""
    if requested != "auto":
        return requested
    return "shift+flip" if dataset.startswith("cifar") else "shift"


def to_tensor_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, C) uint8 → (B, C, H, W) float32 in 0..255 (Eq. 1 standardizes inside)."""
    # Copy read-only arrays (np.frombuffer-decoded MNIST is read-only): torch wants writable.
    return (
        torch.as_tensor(np.array(images, copy=not images.flags.writeable))
        .to(device)
        .permute(0, 3, 1, 2)
        .float()
    )


def trained_with_flips(ckpt: dict) -> bool:
    """Whether a checkpoint (fit.py's dict) saw mirrored images in training.

    Only then may inference average an image with its mirror (``MTNetConfig.flip_tta``).
    """
    source = ckpt.get("dataset", {}).get("source", "")
    return "flip" in augment_mode(ckpt.get("train", {}).get("augment", "auto"), source)
