"""A training run from start to best.pt: both stages of Algorithm 1 in order, checkpoints after
every epoch (``last.pt``, and ``best.pt`` when validation improves), --resume from last.pt, the
checks made before any training, and the open-set gate fitted onto best.pt at the end.
The epochs themselves: trainer/training/train.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from earsight.errors import UsageError
from earsight.paths import probe_writable
from earsight.trainer.checkpoint import BEST_NAME, LAST_NAME, read_checkpoint, save_checkpoint
from earsight.trainer.data.dataset import ADDataset, DatasetSpec
from earsight.trainer.data.inputs import Inputs, stage2_inputs
from earsight.trainer.errors import CheckpointError
from earsight.trainer.mtnet.config import MTNetConfig
from earsight.trainer.mtnet.model import MTNet
from earsight.trainer.training.averaging import WeightAverage
from earsight.trainer.training.options import TrainOptions, model_config
from earsight.trainer.training.plumbing import (
    gpu_note,
    pick_device,
    rank_world,
    say,
    steps_per_epoch,
)
from earsight.trainer.training.train import (
    audio_features,
    check_finite_weights,
    freeze_for_stage2,
    train_autoencoder_epoch,
    train_joint_epoch,
    validate,
)


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
    overwrite: bool = False,
) -> Path:
    """Train both stages into ``out_dir``; returns the path of best.pt.

    Checked before any training: the options (TrainOptions.check), that ``out_dir`` is a
    writable folder, that --resume has a last.pt to resume, that a new run would not overwrite
    another unless ``overwrite`` (UsageError, one line each). A NaN
    or inf loss stops the run (TrainingDiverged) with the last good epoch's checkpoints kept.
    """
    out_dir = Path(out_dir)
    check_run_folder(opts, out_dir, resume, overwrite)
    if steps_per_epoch(len(data.train), opts) == 0 and opts.ae_epochs + opts.epochs > 0:
        raise UsageError(
            f"--batch-size {opts.batch_size} is larger than the {len(data.train)} training "
            "images: an epoch would train on nothing",
            f"use --batch-size {max(1, len(data.train) // 4)} or less, or more images",
        )
    run = Run(data, spec, opts, out_dir, on_epoch)
    if resume:
        run.restore()
    run.replacing = overwrite and not resume
    run.stage1()
    train_inputs, val_inputs = run.stage2()
    if rank_world()[1] > 1:
        dist.barrier()
    if not (out_dir / BEST_NAME).is_file() and rank_world()[0] == 0:  # epochs=0
        save_checkpoint(out_dir / BEST_NAME, run.snapshot(run.answering()))
    if run.model.cfg.backbone and rank_world()[0] == 0:
        add_open_set_gate(out_dir / BEST_NAME, train_inputs, val_inputs)
    return out_dir / BEST_NAME


class Run:
    """One training run's model, optimizer, weight average and progress, and its checkpoints:
    ``last.pt`` after every epoch (for --resume), ``best.pt`` when validation improves."""

    def __init__(
        self,
        data: ADDataset,
        spec: DatasetSpec,
        opts: TrainOptions,
        out_dir: Path,
        on_epoch: Callable[[dict], None] | None,
    ) -> None:
        self.data, self.spec, self.opts, self.out_dir, self.on_epoch = (
            data,
            spec,
            opts,
            out_dir,
            on_epoch,
        )
        self.device = pick_device(opts.device)
        torch.manual_seed(opts.seed)
        self.model = MTNet(model_config(data, opts)).load_backbone().to(self.device)
        self.state = {"stage": 1, "epoch": 0, "history": [], "best": None, "phi_a": None}
        self.optim = _optimizer(self.model.audio_autoencoder.parameters(), opts)
        self.average: WeightAverage | None = None  # stage 2's weight average (--ema)
        self.replacing = False  # --overwrite: the old run's files go at the first saved epoch

    def restore(self) -> None:
        self.state, self.optim, self.average = _restore(
            self.model, self.out_dir / LAST_NAME, self.opts, self.device
        )
        say(f"resuming: stage {self.state['stage']}, {self.state['epoch']} epoch(s) done")

    def answering(self) -> nn.Module:
        """The weights that validate and go into best.pt: the average when there is one."""
        return self.model if self.average is None else self.average.model

    def snapshot(self, weights: nn.Module) -> dict:
        progress = {k: self.state[k] for k in ("stage", "epoch", "history", "best")}
        return {
            "config": self.model.cfg.to_dict(),
            "dataset": self.spec.to_dict(),
            "train": self.opts.to_dict(),
            "model": weights.state_dict(),
            "phi_a": self.state["phi_a"],
            "progress": progress,
        }

    def end_epoch(self, record: dict, is_best: bool) -> None:
        check_finite_weights(self.model, record["stage"], record["epoch"])
        self.state["history"].append(record)
        if rank_world()[0] == 0:
            average = None if self.average is None else self.average.state_dict()
            resumable = {"optimizer": self.optim.state_dict(), "average": average}
            fix = resume_fix(self.out_dir)
            payload = {**self.snapshot(self.model), **resumable}
            save_checkpoint(self.out_dir / LAST_NAME, payload, fix)
            if self.replacing:  # --overwrite: the new run has an epoch; the old one goes
                clear_old_run(self.out_dir)
                self.replacing = False
            if is_best:
                save_checkpoint(self.out_dir / BEST_NAME, self.snapshot(self.answering()), fix)
        if self.on_epoch is not None:  # after saving: a callback that raises acts like a kill
            self.on_epoch(record)

    def stage1(self) -> None:
        """Algorithm 1, stage 1: the audio autoencoder (Eq. 6); then Φ^A, frozen for stage 2."""
        state, opts = self.state, self.opts
        while state["stage"] == 1 and state["epoch"] < opts.ae_epochs:
            epoch = state["epoch"]
            stats = train_autoencoder_epoch(
                self.model, self.data, opts, self.optim, epoch, self.device
            )
            record = {"stage": 1, "epoch": epoch + 1, **stats}
            state["epoch"] += 1
            say(
                f"stage 1 epoch {record['epoch']}/{opts.ae_epochs}: reconstruction "
                f"{record['rec']:.4f}, {record['clips_per_s']:.0f} clips/s, "
                f"{record['seconds']:.0f} s{gpu_note(record)}"
            )
            self.end_epoch(record, is_best=False)
        if state["stage"] == 1:
            phi_a = audio_features(self.model, self.data, self.device).cpu()
            state.update(stage=2, epoch=0, phi_a=phi_a)
            freeze_for_stage2(self.model)
            self.optim = _joint_optimizer(self.model, opts)
            self.average = WeightAverage(self.model, opts.ema) if opts.ema else None

    def stage2(self) -> tuple[Inputs, Inputs]:
        """Algorithm 1, stage 2: encoder, mapping and generator jointly (Eq. 11); returns the
        training and validation inputs (the open-set gate is fitted on them)."""
        state, opts, model = self.state, self.opts, self.model
        phi_a = state["phi_a"].to(self.device)
        train_inputs, val_inputs = stage2_inputs(model, self.data, opts, self.device)
        while state["epoch"] < opts.epochs:
            epoch = state["epoch"]
            stats = train_joint_epoch(
                model,
                self.data,
                train_inputs,
                phi_a,
                opts,
                self.optim,
                epoch,
                self.device,
                self.average,
            )
            scores = validate(self.answering(), self.data, val_inputs, self.device)
            record = {"stage": 2, "epoch": epoch + 1, **stats, **scores}
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
            self.end_epoch(record, is_best=improved)
        return train_inputs, val_inputs


def check_run_folder(
    opts: TrainOptions, out_dir: Path, resume: bool, overwrite: bool = False
) -> None:
    """Everything fit() can refuse before training: options, a writable --out (rank 0), a
    last.pt to --resume from, and a run already in --out that a new run would overwrite
    (without ``overwrite``). UsageError, one line each; fit.py calls it before loading data."""
    opts.check()
    if rank_world()[0] == 0:
        check_writable(out_dir)
    if resume and not (out_dir / LAST_NAME).is_file():
        raise UsageError(
            f"--resume: there is no {LAST_NAME} in {out_dir} to resume from",
            "check --out, or drop --resume to start a new run there",
        )
    if not resume and not overwrite:
        held = _run_held(out_dir)
        if held:
            raise UsageError(
                f"{out_dir} already holds a training run ({held}); a new run would overwrite it",
                "add --resume to continue it, choose another --out, or add --overwrite to start "
                "over there",
            )


OLD_RUN_FILES = (BEST_NAME, "metrics.json", "report.md")  # a run's files besides last.pt


def clear_old_run(out_dir: Path) -> list[str]:
    """--overwrite: remove the old run's best.pt and report from ``out_dir`` once the new run
    saved its first last.pt, so that a new run stopped in stage 1 (which writes no best.pt)
    does not leave the old best.pt beside the new last.pt, and a new run that fails before its
    first epoch leaves the old run whole. Says and returns the names removed."""
    removed = []
    for name in OLD_RUN_FILES:
        if (out_dir / name).is_file():
            (out_dir / name).unlink()
            removed.append(name)
    if removed:
        old = ", ".join(removed)
        say(f"--overwrite: the new run saved its first epoch; removed the old run's {old}")
    return removed


def _run_held(out_dir: Path) -> str | None:
    """What a new run in ``out_dir`` would overwrite, in words ("stage 2, epoch 7 done"), or
    None when it holds no checkpoint."""
    last, best = out_dir / LAST_NAME, out_dir / BEST_NAME
    if last.is_file():
        try:
            progress = read_checkpoint(last)["progress"]
            return f"stage {progress['stage']}, epoch {progress['epoch']} done, in {LAST_NAME}"
        except (KeyError, TypeError, CheckpointError):  # torn or foreign: still not ours to replace
            return f"a {LAST_NAME} this version cannot read"
    return f"a trained {BEST_NAME}" if best.is_file() else None


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and prove a file can be written there, before hours of training.

    UsageError (one line) for a read-only folder or file system, a path through a file, no
    permission; checked by writing and deleting a probe file (root ignores mode bits).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder", "choose a folder for --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe_writable(out_dir)
    except OSError as err:
        raise UsageError(
            f"cannot write the run folder {out_dir} ({err.strerror or err})",
            "choose a writable --out",
        ) from None


def resume_fix(out_dir: Path) -> str:
    """What to do after a failed save in a run: --resume only when a last.pt survives."""
    if (out_dir / LAST_NAME).is_file():
        return "free disk space, then run the same command again with --resume"
    return "free disk space (or pick another --out), then run the same command again"


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


def check_resume(out_dir: Path, opts: TrainOptions, spec: DatasetSpec | None = None) -> dict:
    """The last.pt a --resume continues, read and compared with this command's options and data
    (``spec``; the data folder may have moved): UsageError naming each change with the run's
    value, or a damaged last.pt (fit.py calls it before loading data). Returns the checkpoint."""
    last = out_dir / LAST_NAME
    try:
        ckpt = read_checkpoint(last)
    except CheckpointError as err:
        raise UsageError(
            f"cannot resume: {err.what}",
            "start over with --overwrite (a best.pt there still serves evaluate and export)",
        ) from None
    saved = {**TrainOptions().to_dict(), **ckpt["train"]}  # older runs lack newer options
    changes = [(k, v, saved.get(k)) for k, v in opts.to_dict().items() if saved.get(k) != v]
    if spec is not None and "dataset" in ckpt:
        run = {**ckpt["dataset"], "data_root": spec.data_root}
        changes += [(k, v, run.get(k)) for k, v in spec.to_dict().items() if run.get(k) != v]
    if changes:
        said = ", ".join(f"{k} {v!r} (the run: {was!r})" for k, v, was in sorted(changes))
        raise UsageError(
            f"--resume with different options: {said}",
            "give the run's values; to train longer or on other data, start a new run "
            "(another --out, or --overwrite)",
        )
    return ckpt


def _restore(model: MTNet, path: Path, opts: TrainOptions, device: torch.device):
    ckpt = check_resume(path.parent, opts)
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
