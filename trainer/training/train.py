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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from earsight.errors import EarSightError, UsageError
from earsight.trainer.checkpoint import BEST_NAME, LAST_NAME, read_checkpoint, save_checkpoint
from earsight.trainer.data.dataset import ADDataset, DatasetSpec
from earsight.trainer.data.inputs import Inputs, stage2_inputs
from earsight.trainer.mtnet import losses
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.model import MTNet
from earsight.trainer.training.averaging import WeightAverage
from earsight.trainer.training.options import TrainOptions, model_config
from earsight.trainer.training.plumbing import (
    autocast_for,
    epoch_batches,
    gpu_memory,
    gpu_note,
    lr_at,
    pick_device,
    progress_bar,
    rank_world,
    say,
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
            step = epoch * n_steps + i
            for g in optim.param_groups:
                frozen = step < g.get("frozen_steps", 0)
                scale = 0.0 if frozen else g.get("lr_scale", 1.0)
                g["lr"] = scale * lr_at(step, opts.epochs * n_steps, opts)
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


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


def _optimizer(params, opts: TrainOptions) -> torch.optim.Optimizer:
    # Weight penalty is explicit in the losses (Eq. 6/11), so no optimizer weight decay.
    return torch.optim.RMSprop(params, lr=opts.lr, alpha=opts.rms_alpha, momentum=opts.momentum)


def _joint_optimizer(model: MTNet, opts: TrainOptions) -> torch.optim.Optimizer:
    """RMSprop over W^J (Eq. 11); a pretrained backbone's trained layers at opts.backbone_lr × lr
    (the group's "lr_scale", which the schedule multiplies in)."""
    params = model.joint_parameters()
    if not model.cfg.backbone:
        return _optimizer(params, opts)
    enc = model.image_encoder
    pretrained = {id(p) for p in enc.backbone.tail_parameters(enc.cut)}
    groups = [
        {
            "params": [p for p in params if id(p) in pretrained],
            "lr_scale": opts.backbone_lr,
            "frozen_steps": opts.backbone_frozen_steps,
        },
        {"params": [p for p in params if id(p) not in pretrained], "lr_scale": 1.0},
    ]
    return _optimizer(groups, opts)


def fit(
    data: ADDataset,
    spec: DatasetSpec,
    opts: TrainOptions,
    out_dir: Path,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> Path:
    """Train both stages into ``out_dir``; returns the path of best.pt.

    Checked before any training: the options (TrainOptions.check), that ``out_dir`` is a
    writable folder, that --resume has a last.pt to resume (UsageError, one line each). A NaN
    or inf loss stops the run (TrainingDiverged) with the last good epoch's checkpoints kept.
    """
    out_dir = Path(out_dir)
    check_run_folder(opts, out_dir, resume)
    if steps_per_epoch(len(data.train), opts) == 0 and opts.ae_epochs + opts.epochs > 0:
        raise UsageError(
            f"--batch-size {opts.batch_size} is larger than the {len(data.train)} training "
            "images: an epoch would train on nothing",
            f"use --batch-size {max(1, len(data.train) // 4)} or more images",
        )
    device = pick_device(opts.device)
    torch.manual_seed(opts.seed)
    model = MTNet(model_config(data, opts)).load_backbone().to(device)
    state = {"stage": 1, "epoch": 0, "history": [], "best": None, "phi_a": None}
    optim = _optimizer(model.audio_autoencoder.parameters(), opts)
    average = None  # the weight average of stage 2 (--ema), what validation and best.pt use
    if resume:
        state, optim, average = _restore(model, out_dir / LAST_NAME, opts, device)
        say(f"resuming: stage {state['stage']}, {state['epoch']} epoch(s) done")

    def snapshot(weights: nn.Module) -> dict:
        return {
            "config": model.cfg.to_dict(),
            "dataset": spec.to_dict(),
            "train": opts.to_dict(),
            "model": weights.state_dict(),
            "phi_a": state["phi_a"],
            "progress": {k: state[k] for k in ("stage", "epoch", "history", "best")},
        }

    def end_epoch(record: dict, is_best: bool) -> None:
        check_finite_weights(model, record["stage"], record["epoch"])
        state["history"].append(record)
        if rank_world()[0] == 0:
            resumable = {"optimizer": optim.state_dict(), "average": _state_or_none(average)}
            save_checkpoint(out_dir / LAST_NAME, {**snapshot(model), **resumable})
            if is_best:
                save_checkpoint(out_dir / BEST_NAME, snapshot(_answering(model, average)))
        if on_epoch is not None:  # after saving: a callback that raises acts like a kill
            on_epoch(record)

    while state["stage"] == 1 and state["epoch"] < opts.ae_epochs:
        record = {
            "stage": 1,
            "epoch": state["epoch"] + 1,
            **train_autoencoder_epoch(model, data, opts, optim, state["epoch"], device),
        }
        state["epoch"] += 1
        say(
            f"stage 1 epoch {record['epoch']}/{opts.ae_epochs}: reconstruction "
            f"{record['rec']:.4f}, {record['clips_per_s']:.0f} clips/s, "
            f"{record['seconds']:.0f} s{gpu_note(record)}"
        )
        end_epoch(record, is_best=False)
    if state["stage"] == 1:
        state.update(stage=2, epoch=0, phi_a=audio_features(model, data, device).cpu())
        freeze_for_stage2(model)
        optim = _joint_optimizer(model, opts)
        average = WeightAverage(model, opts.ema) if opts.ema else None
    phi_a = state["phi_a"].to(device)
    train_inputs, val_inputs = stage2_inputs(model, data, opts, device)
    while state["epoch"] < opts.epochs:
        epoch = state["epoch"]
        record = {
            "stage": 2,
            "epoch": epoch + 1,
            **train_joint_epoch(
                model, data, train_inputs, phi_a, opts, optim, epoch, device, average
            ),
            **validate(_answering(model, average), data, val_inputs, device),
        }
        state["epoch"] += 1
        improved = state["best"] is None or record["val_gen"] < state["best"]["val_gen"]
        if improved:
            state["best"] = {"epoch": record["epoch"], "val_gen": record["val_gen"]}
        say(
            f"stage 2 epoch {record['epoch']}/{opts.epochs}: gen {record['gen']:.3f} "
            f"acc {record['acc']:.4f} | val gen {record['val_gen']:.3f} "
            f"val acc {record['val_acc']:.4f} | {record['images_per_s']:.0f} img/s, "
            f"{record['seconds']:.0f} s{gpu_note(record)}"
        )
        end_epoch(record, is_best=improved)
    if rank_world()[1] > 1:
        dist.barrier()
    if not (out_dir / BEST_NAME).is_file() and rank_world()[0] == 0:  # epochs=0
        save_checkpoint(out_dir / BEST_NAME, snapshot(_answering(model, average)))
    if model.cfg.backbone and rank_world()[0] == 0:
        add_open_set_gate(out_dir / BEST_NAME, train_inputs, val_inputs)
    return out_dir / BEST_NAME


def check_run_folder(opts: TrainOptions, out_dir: Path, resume: bool) -> None:
    """Everything fit() can refuse before training: options, a writable --out (rank 0), a
    last.pt to --resume from. UsageError, one line each; fit.py calls it before loading data."""
    opts.check()
    if rank_world()[0] == 0:
        check_writable(out_dir)
    if resume and not (out_dir / LAST_NAME).is_file():
        raise UsageError(
            f"--resume: there is no {LAST_NAME} in {out_dir} to resume from",
            "check --out, or drop --resume to start a new run there",
        )


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and prove a file can be written there, before hours of training.

    UsageError (one line) for a read-only folder or file system, a path through a file, no
    permission; checked by writing and deleting a probe file (root ignores mode bits).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UsageError(
            f"cannot write the run folder {out_dir} ({err.strerror or err})",
            "choose a writable --out",
        ) from None


def add_open_set_gate(best: Path, train: Inputs, val: Inputs) -> dict:
    """Give best.pt's backbone model its open-set gate and softmax temperature
    (trainer/mtnet/open_set.py), in place; returns the gate's summary."""
    from earsight.trainer.mtnet.open_set import fit_gate

    ckpt = read_checkpoint(best)
    model = MTNet(MTNetConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    gated, summary = fit_gate(model, train, val)
    say(
        f"open-set gate: {summary['exemplars']} exemplars; P(known) > ½ for "
        f"{summary['validation_kept']:.1%} of validation images; softmax temperature "
        f"{summary['softmax_temperature']:.3f}"
    )
    payload = {k: v for k, v in ckpt.items() if k != "format"}
    save_checkpoint(
        best,
        {**payload, "config": gated.cfg.to_dict(), "model": gated.state_dict(), "gate": summary},
    )
    return summary


def _answering(model: MTNet, average: WeightAverage | None) -> nn.Module:
    """The weights that validate and go into best.pt: the average when there is one."""
    return model if average is None else average.model


def _state_or_none(average: WeightAverage | None) -> dict | None:
    return None if average is None else average.state_dict()


def _restore(model: MTNet, path: Path, opts: TrainOptions, device: torch.device):
    ckpt = read_checkpoint(path)
    saved = {**TrainOptions().to_dict(), **ckpt["train"]}  # older runs lack newer options
    if saved != opts.to_dict():
        changed = sorted(k for k, v in opts.to_dict().items() if saved.get(k) != v)
        raise UsageError(
            f"--resume with different options ({', '.join(changed)})",
            "use the original options, or a new --out to start over",
        )
    model.load_state_dict(ckpt["model"])
    state = {**ckpt["progress"], "phi_a": ckpt["phi_a"]}
    average = None
    if state["stage"] == 2:
        freeze_for_stage2(model)
        optim = _joint_optimizer(model, opts)
        if opts.ema:
            average = WeightAverage(model, opts.ema)
            average.load_state_dict(ckpt["average"])
    else:
        optim = _optimizer(model.audio_autoencoder.parameters(), opts)
    optim.load_state_dict(ckpt["optimizer"])
    return state, optim, average
