"""Train MT-Net on an audio-description dataset, both stages, in one command.

    python trainer/fit.py --dataset mnist --data-root DIR --preset compact --out runs/mnist
    python trainer/fit.py ... --resume                 # continue after a kill (≤ 1 epoch lost)
    python trainer/fit.py ... --overwrite              # start over in an --out that holds a run
    torchrun --nproc-per-node 2 trainer/fit.py ...     # data-parallel (NCCL on GPUs, gloo on CPU)
    python trainer/fit.py --describe [--preset P]     # parameters and GMAC per image, per preset

Writes into --out: last.pt (every epoch), best.pt (best validation generation loss),
metrics.json (test split, trainer/evaluate.py's columns) and report.md with PNG figures.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python trainer/fit.py` runs as its console script, so that a runtime-only install
    # (no torch) gets one line naming what to install instead of a traceback
    from earsight.commands import train

    train()  # exits

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from earsight.arguments import DefaultsHelpFormatter, OneLineParser, positive_int
from earsight.console import plain_text_streams
from earsight.errors import EarSightError, UsageError
from earsight.logs import plain_logging
from earsight.tables import as_lines
from earsight.trainer.checkpoint import training_only_prefixes
from earsight.trainer.data.dataset import DatasetSpec, build_dataset
from earsight.trainer.data.images import SOURCES
from earsight.trainer.mtnet.config import PRESETS
from earsight.trainer.mtnet.model import MTNet, count_parameters, inference_macs
from earsight.trainer.training.options import (
    ABLATIONS,
    TrainOptions,
    arch_changes,
    checked_config,
    fit_command,
)
from earsight.trainer.training.plumbing import pick_device, rank_world
from earsight.trainer.training.run import check_resume, check_run_folder, fit

log = logging.getLogger("earsight.trainer.fit")

# Input geometry and the paper's L_s (§4.3) per dataset, for --describe without any data.
DESCRIBE_SHAPES = {
    "mnist": (28, 1, 10, 18_140),
    "cifar10": (32, 3, 10, 24_020),
    "cifar100": (32, 3, 100, 29_356),
}


DESCRIBE_HEADER = (
    "preset",
    "dataset",
    "L_s",
    "parameters (all)",
    "parameters (inference)",
    "GMAC/image",
)


def describe(
    dataset: str | None,
    arch: list[str] | tuple[str, ...] = (),
    preset: str | None = None,
    lines_only: bool = False,
) -> str:
    """Markdown table of model sizes per preset (or the one ``preset``) and dataset, with
    ``--arch`` changes applied; ``lines_only``: one line per row, each value after its column's
    name (for a screen reader, earsight/tables.py)."""
    changes = arch_changes(arch)
    if dataset is not None and dataset not in DESCRIBE_SHAPES:  # digits, folder: their own sizes
        raise UsageError(
            f"--describe has no fixed shape for --dataset {dataset} (its sizes come from the data)",
            f"use one of {', '.join(DESCRIBE_SHAPES)}, or leave --dataset out",
        )
    rows: list[list[str]] = []
    refused: list[UsageError] = []
    for name_of_preset in (preset,) if preset else PRESETS:
        for name, (size, channels, classes, length) in DESCRIBE_SHAPES.items():
            if dataset not in (None, name):
                continue
            try:
                cfg = checked_config(
                    name_of_preset,
                    image_size=size,
                    image_channels=channels,
                    n_classes=classes,
                    audio_length=length,
                    **changes,
                )
            except UsageError as err:  # an --arch change that fits another preset only
                refused.append(err)
                continue
            with torch.device("meta"):  # sizes only: no memory, no init time
                model = MTNet(cfg)
            total = count_parameters(model)
            training_only = training_only_prefixes(cfg)
            infer = sum(
                p.numel() for n, p in model.named_parameters() if not n.startswith(training_only)
            )
            rows.append(
                [
                    name_of_preset,
                    name,
                    str(length),
                    f"{total / 1e6:.2f} M",
                    f"{infer / 1e6:.2f} M",
                    f"{inference_macs(cfg) / 1e9:.3f}",
                ]
            )
    if not rows and refused:
        raise refused[0]
    if lines_only:
        return "\n".join(as_lines(DESCRIBE_HEADER, rows))
    markdown = ["| " + " | ".join(DESCRIBE_HEADER) + " |", "|" + "---|" * len(DESCRIBE_HEADER)]
    return "\n".join(markdown + ["| " + " | ".join(row) + " |" for row in rows])


def build_parser() -> argparse.ArgumentParser:
    # prog from argv[0]: fit.py, or earsight-train as a console script
    p = OneLineParser(description=__doc__.split("\n")[0], formatter_class=DefaultsHelpFormatter)
    _data_arguments(p.add_argument_group("data"))
    _model_arguments(p.add_argument_group("model"))
    _training_arguments(p.add_argument_group("training"), TrainOptions())
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="draws of weights and batches")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    run.add_argument(
        "--threads", type=positive_int, help="CPU threads for torch (default: all cores)"
    )
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --out that holds one (its checkpoints are replaced)",
    )
    run.add_argument("--describe", action="store_true", help="print model sizes and exit")
    run.add_argument(
        "--as-lines",
        action="store_true",
        help="--describe: one line per row, each value after its column's name (screen readers)",
    )
    run.add_argument("--no-report", action="store_true", help="skip the final test evaluation")
    return p


def _data_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--dataset", choices=SOURCES, help="image source")
    g.add_argument(
        "--data-root",
        help="folder with the dataset files (default: $EARSIGHT_DATA, else ~/.cache/earsight/data)",
    )
    g.add_argument("--download", action="store_true", help="fetch official files (checksummed)")
    g.add_argument("--out", type=Path, help="run folder (checkpoints, metrics, report)")
    g.add_argument("--voices", type=int, default=1, help="1 = one canonical voice (paper-like)")
    g.add_argument(
        "--limit-train", type=int, help="use only N training images (each class's first, in turn)"
    )
    g.add_argument(
        "--limit-test", type=int, help="use only N test images (each class's first, in turn)"
    )
    g.add_argument(
        "--eval-items",
        type=int,
        default=1000,
        help="test clips scored by PESQ/STOI/speech recognition at the end",
    )
    g.add_argument(
        "--leave-out",
        type=lambda text: tuple(w.strip() for w in text.split(",") if w.strip()),
        default=(),
        metavar="WORD,WORD",
        help="drop these classes from every split (the teach benchmark's base model)",
    )


def _model_arguments(g: argparse._ArgumentGroup) -> None:
    # None = compact for training, every preset for --describe
    g.add_argument(
        "--preset", choices=sorted(PRESETS), help="architecture (default: compact; --describe: all)"
    )
    g.add_argument("--ablation", choices=ABLATIONS, default="full", help="paper Table 3 rows")
    g.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one field of the preset, e.g. enc_widths=32,64,128,256,256 (repeatable)",
    )


def _training_arguments(g: argparse._ArgumentGroup, d: TrainOptions) -> None:
    g.add_argument("--epochs", type=int, default=d.epochs, help="stage 2 (joint) epochs")
    g.add_argument("--ae-epochs", type=int, default=d.ae_epochs, help="stage 1 epochs")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    g.add_argument("--lr", type=float, default=d.lr, help="Adam's learning rate")
    g.add_argument("--schedule", choices=("cosine", "constant"), default=d.schedule, help="of --lr")
    g.add_argument(
        "--augment",
        choices=("auto", "none", "shift", "shift+flip"),
        default="auto",
        help="training image changes (auto: shift+flip for photos, shift for digits)",
    )
    g.add_argument(
        "--label-smoothing", type=float, default=d.label_smoothing, help="of Eq. 4's targets"
    )
    g.add_argument(
        "--cutout", type=int, default=d.cutout, help="blank a square of this side (px) per image"
    )
    g.add_argument(
        "--ema",
        type=float,
        default=d.ema,
        help="validate and save a running average of the weights with this per-step decay "
        "(e.g. 0.999; 0 = off)",
    )
    g.add_argument(
        "--backbone-lr",
        type=float,
        default=d.backbone_lr,
        help="pretrained backbone layers learn at this share of --lr (backbone presets)",
    )
    g.add_argument(
        "--backbone-frozen-steps",
        type=int,
        default=d.backbone_frozen_steps,
        help="steps before the pretrained backbone layers start learning",
    )


def _init_distributed(device: str) -> str:
    """Under torchrun: join the process group; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    use_cuda = device != "cpu" and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def train_options(args: argparse.Namespace, device: str) -> TrainOptions:
    return TrainOptions(
        preset=args.preset or "compact",
        ablation=args.ablation,
        arch=tuple(args.arch),
        ae_epochs=args.ae_epochs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        augment=args.augment,
        label_smoothing=args.label_smoothing,
        cutout=args.cutout,
        ema=args.ema,
        backbone_lr=args.backbone_lr,
        backbone_frozen_steps=args.backbone_frozen_steps,
        seed=args.seed,
        device=device,
    )


def run(args: argparse.Namespace) -> int:
    if args.describe:
        print(describe(args.dataset, args.arch, args.preset, args.as_lines))
        return 0
    if args.dataset is None or args.out is None:
        raise UsageError("--dataset and --out are required", f"see {fit_command()} --help")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # tiny tanh gradients otherwise crawl on x86 CPUs
    device = _init_distributed(args.device)
    if args.batch_size % rank_world()[1]:
        raise UsageError("--batch-size must be divisible by the number of processes", "adjust it")
    opts = train_options(args, device)
    arch_changes(opts.arch)  # a typo in --arch or --device fails now, not after the data loads
    pick_device(opts.device)
    check_run_folder(opts, args.out, args.resume, args.overwrite)  # before minutes of loading data
    spec = DatasetSpec(
        source=args.dataset,
        data_root=args.data_root,
        voices=args.voices,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        seed=args.seed,
        leave_out=args.leave_out,
    )
    spec.check()  # before the download and the loading
    if args.resume:  # the run's options and data, compared before minutes of loading
        check_resume(args.out, opts, spec)
    if args.download:
        from earsight.trainer.data.images import load_images

        load_images(args.dataset, Path(spec.data_root) if spec.data_root else None, download=True)
    data = build_dataset(spec)
    if rank_world()[0] == 0:
        h, w, c = data.image_shape
        print(
            f"dataset {data.name}: {len(data.train)} train / {len(data.val)} val / "
            f"{len(data.test)} test images of {h}×{w}×{c}; {data.spoken.describe()}",
            flush=True,
        )
    if rank_world()[0] == 0:
        for line in short_run_warnings(opts, len(data.train), spec.source):
            print(f"warning: {line}", file=sys.stderr, flush=True)
    best = fit(data, spec, opts, args.out, resume=args.resume, overwrite=args.overwrite)
    if rank_world()[0] == 0 and not args.no_report:
        from earsight.trainer.evaluate import evaluate_checkpoint
        from earsight.trainer.evaluation.report import write_report

        result = evaluate_checkpoint(best, args.eval_items, data=data)
        (args.out / "metrics.json").write_text(json.dumps(result, indent=2))
        report = write_report(args.out, best, data, result)
        shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
        print(f"metrics: {json.dumps(shown)}")
        print(f"report: {report}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def short_run_warnings(opts, n_train: int, dataset: str = "") -> list[str]:
    """Runs that will train a model that cannot speak: stage 2 skipped, or over before the
    learning rate has warmed up (Algorithm 1's stage 2 needs steps, not only epochs)."""
    from earsight.trainer.training.plumbing import steps_per_epoch

    if opts.epochs == 0:
        return [
            "--epochs 0 skips stage 2 (cross-modal mapping, audio generation): the model "
            "will not say words"
        ]
    steps = opts.epochs * steps_per_epoch(n_train, opts)
    if steps <= opts.warmup_steps:
        epochs = f"{opts.epochs} epoch{'s are' if opts.epochs != 1 else ' is'}"
        longer = "about 25 epochs on the digits set" if dataset == "digits" else "more --epochs"
        return [
            f"{epochs} {steps} step{'s' * (steps != 1)}, within the {opts.warmup_steps} "
            "warm-up steps: the learning rate never reaches --lr and the model will "
            f"likely guess; train longer ({longer})"
        ]
    return []


class Terminated(Exception):
    """SIGTERM (systemd, kill, a batch scheduler): stopped like Ctrl-C, said like it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def interrupted_line(
    args: argparse.Namespace, old_last: float | None, why: str = "interrupted"
) -> str:
    """What to do after Ctrl-C or SIGTERM: resume only where this run saved something to
    resume from. ``old_last``: the mtime of --out's last.pt when the run began (None: there
    was none); an --overwrite run stopped before its first epoch left that old run's there."""
    last = _last_checkpoint(args)
    if last is not None and last.is_file():
        if args.resume or last.stat().st_mtime != old_last:
            return f"{why}: run again with --resume to continue from the last epoch"
        return f"{why} before the first epoch was saved: {args.out} still holds the old run"
    if args.describe or args.out is None:
        return why
    return f"{why} before the first epoch was saved: run again without --resume"


def _last_checkpoint(args: argparse.Namespace) -> Path | None:
    from earsight.trainer.checkpoint import LAST_NAME

    return None if args.out is None or args.describe else args.out / LAST_NAME


def main(argv: list[str] | None = None) -> int:
    plain_text_streams()  # `python trainer/….py` on an ASCII terminal: stand-ins, no traceback
    args = build_parser().parse_args(argv)
    plain_logging(logging.INFO if args.dataset else logging.WARNING)
    new_folder = args.out is not None and not args.out.exists()
    last = _last_checkpoint(args)
    old_last = last.stat().st_mtime if last is not None and last.is_file() else None
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run(args)
    except EarSightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_line(args, old_last), file=sys.stderr)
        return 130
    except Terminated:
        print(interrupted_line(args, old_last, "stopped (SIGTERM)"), file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if new_folder:  # a run that failed before writing anything leaves no empty --out behind
            with contextlib.suppress(OSError):
                args.out.rmdir()  # only ever removes an empty folder


if __name__ == "__main__":
    sys.exit(main())
