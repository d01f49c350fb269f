"""Training plumbing: device choice, torchrun ranks, seeded batches, the learning-rate schedule,
autocast, DDP wrapping, GPU memory and progress output (image tensors: trainer/data/augment.py)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from earsight.errors import UsageError

if TYPE_CHECKING:
    from earsight.trainer.training.options import TrainOptions


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA GPU is visible", "use --device cpu"
        )
    return torch.device(name)


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_batches(n: int, opts: TrainOptions, stage: int, epoch: int) -> Iterator[np.ndarray]:
    """This rank's slice of each global batch of a seeded permutation (last partial dropped)."""
    rank, world = rank_world()
    gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + stage * 10_007 + epoch)
    perm = torch.randperm(n, generator=gen).numpy()
    per_rank = opts.batch_size // world
    for start in range(0, n - opts.batch_size + 1, opts.batch_size):
        yield perm[start + rank * per_rank : start + (rank + 1) * per_rank]


def steps_per_epoch(n: int, opts: TrainOptions) -> int:
    return max(0, n // opts.batch_size)


def lr_at(step: int, total: int, opts: TrainOptions) -> float:
    if opts.schedule == "constant":
        return opts.lr
    if step < opts.warmup_steps:
        return opts.lr * (step + 1) / opts.warmup_steps
    progress = (step - opts.warmup_steps) / max(1, total - opts.warmup_steps)
    return opts.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def autocast_for(device: torch.device):
    # bf16 on GPUs (same exponent range as fp32: no loss scaling); fp32 on CPU.
    enabled = device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def wrap_for_ranks(module: nn.Module, device: torch.device) -> nn.Module:
    if rank_world()[1] == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def gpu_memory(device: torch.device) -> dict[str, float]:
    """Peak GPU memory of this process so far, GiB (tensors; the allocator's cache on top)."""
    if device.type != "cuda":
        return {}
    return {
        "gpu_peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "gpu_peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30,
    }


def gpu_note(record: dict) -> str:
    peak = record.get("gpu_peak_reserved_gib")
    return f", GPU peak {peak:.1f} GiB" if peak is not None else ""


def progress_bar(total: int, desc: str):
    quiet = rank_world()[0] != 0 or not sys.stderr.isatty()  # no bars in logs or CI
    return tqdm(total=total, desc=desc, disable=quiet, unit="step", dynamic_ncols=True)


def say(msg: str) -> None:
    if rank_world()[0] == 0:
        print(msg, flush=True)
