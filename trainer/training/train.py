"""Algorithm 1: stage 1 trains the audio autoencoder (Eq. 6); stage 2 trains image encoder,
cross-modal mapping and generator jointly (Eq. 11) against the frozen audio features Φ^A.

Every epoch ends with ``last.pt`` (for --resume) and, when validation improves, ``best.pt``.
Batches and augmentation are drawn from generators seeded by (seed, stage, epoch), so a run
resumed after a kill repeats exactly what the uninterrupted run would have done.
Multi-GPU/multi-process through torchrun: each rank takes its slice of every global batch.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn

from earsight.errors import EarSightError
from earsight.trainer.data.dataset import ADDataset
from earsight.trainer.data.inputs import Inputs
from earsight.trainer.mtnet import losses
from earsight.trainer.mtnet.model import MTNet
from earsight.trainer.training.averaging import WeightAverage
from earsight.trainer.training.options import TrainOptions
from earsight.trainer.training.plumbing import (
    autocast_for,
    epoch_batches,
    gpu_memory,
    lr_at,
    progress_bar,
    steps_per_epoch,
    wrap_for_ranks,
)

log = logging.getLogger(__name__)

EVAL_BATCH = 256  # images per forward pass in validation


class TrainingDiverged(EarSightError):
    """A loss or the weights became NaN/inf: the run stops, the last good checkpoint stays."""


def check_finite_loss(loss: torch.Tensor, stage: int, epoch: int, step: int, lr: float) -> None:
    """TrainingDiverged at the first NaN/inf loss, before the optimizer step could spread it."""
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training diverged: the loss is {value} at stage {stage} epoch {epoch + 1} step "
            f"{step + 1} (--lr {lr:g}); last.pt and best.pt keep the last good epoch",
            "start again with a lower --lr (e.g. 1e-3) and a new --out",
        )


def check_finite_weights(model: nn.Module, stage: int, epoch: int) -> None:
    """TrainingDiverged when any weight is NaN/inf (checked before a checkpoint is written)."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise TrainingDiverged(
                f"training diverged: {name} holds NaN/inf after stage {stage} epoch "
                f"{epoch}; nothing saved, last.pt and best.pt keep the last good epoch",
                "start again with a lower --lr (e.g. 1e-3) and a new --out",
            )


def loss_weights(opts: TrainOptions) -> losses.JointLossWeights:
    kept = opts.ablation if opts.ablation in ("gen", "gen+rep") else "full"
    return losses.JointLossWeights.for_ablation(kept)


# --------------------------------------------------------------------------------------------
# Stage 1: audio feature learning (Eq. 6)
# --------------------------------------------------------------------------------------------


def train_autoencoder_epoch(
    model: MTNet,
    data: ADDataset,
    opts: TrainOptions,
    optim: torch.optim.Optimizer,
    epoch: int,
    device: torch.device,
) -> dict[str, float]:
    ae = wrap_for_ranks(model.audio_autoencoder, device)
    ae.train()
    n_steps, total = steps_per_epoch(len(data.train), opts), 0.0
    start = time.perf_counter()
    with progress_bar(n_steps, f"stage 1 epoch {epoch + 1}") as bar:
        for i, idx in enumerate(epoch_batches(len(data.train), opts, 1, epoch)):
            for g in optim.param_groups:
                g["lr"] = lr_at(epoch * n_steps + i, opts.ae_epochs * n_steps, opts)
            audio = torch.from_numpy(data.audio(data.train.labels[idx], data.train.voices[idx]))
            audio = audio.to(device)
            with autocast_for(device):
                _, recon = ae(audio)
            loss_rec = losses.reconstruction_loss(audio, recon)
            pen = losses.weight_penalty(model.audio_autoencoder.parameters())
            loss = loss_rec + losses.WEIGHT_DECAY * pen  # λ2 = the paper's weight decay
            check_finite_loss(loss, 1, epoch, i, opts.lr)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += loss_rec.item()
            bar.update()
            bar.set_postfix(rec=f"{loss_rec.item():.3f}")
    seconds = time.perf_counter() - start
    return {
        "rec": total / max(1, n_steps),
        "seconds": seconds,
        "clips_per_s": n_steps * opts.batch_size / max(seconds, 1e-9),
        **gpu_memory(device),
    }


@torch.no_grad()
def audio_features(model: MTNet, data: ADDataset, device: torch.device) -> torch.Tensor:
    """Algorithm 1 step 3: Φ^A for every (class, voice) clip → (n_classes, n_voices, D_a)."""
    model.audio_autoencoder.eval()
    clips = torch.from_numpy(data.spoken.clips).to(device)  # (K, V, L_s)
    k, v, length = clips.shape
    phi_a, _ = model.audio_autoencoder(clips.reshape(k * v, length))
    return phi_a.reshape(k, v, -1).float()


# --------------------------------------------------------------------------------------------
# Stage 2: joint training (Eq. 11)
# --------------------------------------------------------------------------------------------


class _JointForward(nn.Module):
    """Lets DDP see forward_train (from images or cached activations) as the module's forward."""

    def __init__(self, model: MTNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, cached: bool) -> tuple[torch.Tensor, ...]:
        return self.model.forward_train_cached(x) if cached else self.model.forward_train(x)


def freeze_for_stage2(model: MTNet) -> None:
    joint = {id(p) for p in model.joint_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in joint)


def set_joint_lr(optim: torch.optim.Optimizer, step: int, total: int, opts: TrainOptions) -> None:
    """The schedule's learning rate at ``step`` for each parameter group, times its "lr_scale"
    (a pretrained backbone's share), and 0 for a group still in its "frozen_steps"."""
    for g in optim.param_groups:
        frozen = step < g.get("frozen_steps", 0)
        scale = 0.0 if frozen else g.get("lr_scale", 1.0)
        g["lr"] = scale * lr_at(step, total, opts)


def train_joint_epoch(
    model: MTNet,
    data: ADDataset,
    inputs: Inputs,
    phi_a: torch.Tensor,
    opts: TrainOptions,
    optim: torch.optim.Optimizer,
    epoch: int,
    device: torch.device,
    average: WeightAverage | None = None,
) -> dict[str, float]:
    net = wrap_for_ranks(_JointForward(model), device)
    model.train()
    model.audio_autoencoder.eval()  # frozen (its decoder still trains for the AE ablation)
    weights, sums = loss_weights(opts), {"per": 0.0, "rep": 0.0, "gen": 0.0, "acc": 0.0}
    aug_gen = torch.Generator().manual_seed(opts.seed * 7_919 + epoch)
    clips = torch.from_numpy(data.spoken.clips).to(device)  # (K, V, L_s): a few MB, sent once
    n_steps, start = steps_per_epoch(len(data.train), opts), time.perf_counter()
    with progress_bar(n_steps, f"stage 2 epoch {epoch + 1}") as bar:
        for i, idx in enumerate(epoch_batches(len(data.train), opts, 2, epoch)):
            set_joint_lr(optim, epoch * n_steps + i, opts.epochs * n_steps, opts)
            x = inputs.batch(idx, device, aug_gen)  # images or cached activations
            labels = torch.from_numpy(data.train.labels[idx]).to(device)
            voices = torch.from_numpy(data.train.voices[idx]).to(device)
            audio = clips[labels, voices]  # (B, L_s), gathered on the device
            with autocast_for(device):
                generated, logits, phi = net(x, inputs.cached)
            loss, parts = losses.joint_loss(
                weights,
                logits=logits,
                labels=labels,
                phi=phi,
                phi_a=phi_a[labels, voices],
                generated=generated,
                audio=audio,
                params=model.joint_parameters(),
                label_smoothing=opts.label_smoothing,
            )
            check_finite_loss(loss, 2, epoch, i, opts.lr)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if average is not None:
                average.update()
            parts["acc"] = (logits.argmax(1) == labels).float().mean().item()
            for key in sums:
                sums[key] += parts[key]
            bar.update()
            bar.set_postfix(gen=f"{parts['gen']:.2f}", acc=f"{parts['acc']:.3f}")
    seconds = time.perf_counter() - start
    out = {k: v / max(1, n_steps) for k, v in sums.items()}
    return {
        **out,
        "seconds": seconds,
        "images_per_s": n_steps * opts.batch_size / seconds,
        **gpu_memory(device),
    }


@torch.no_grad()
def validate(model: MTNet, data: ADDataset, inputs: Inputs, device: torch.device) -> dict:
    """Classification accuracy and generation loss (Eq. 9 data term) on a split."""
    model.eval()
    split, forward = inputs.split, _JointForward(model)
    correct, gen_total = 0, 0.0
    for start in range(0, len(split), EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        with autocast_for(device):
            generated, probs, _ = forward(inputs.batch(sl, device, None), inputs.cached)
        labels = torch.from_numpy(split.labels[sl]).to(device)
        audio = torch.from_numpy(data.audio(split.labels[sl], split.voices[sl])).to(device)
        correct += (probs.argmax(1) == labels).sum().item()
        gen_total += losses.generation_loss(audio, generated).item() * len(labels)
    n = max(1, len(split))
    return {"val_acc": correct / n, "val_gen": gen_total / n}
