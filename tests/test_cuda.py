"""GPU paths: training with bf16 autocast on CUDA, and the torch backend on CUDA against the CPU
reference. Marked requires_cuda; skipped with the reason on machines without a CUDA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earsight.engine.runtime import RuntimeOptions, load
from earsight.trainer.checkpoint import load_model
from earsight.trainer.data.dataset import DatasetSpec, build_dataset
from earsight.trainer.training.run import fit
from earsight.trainer.training.train import TrainOptions

pytestmark = [
    pytest.mark.requires_cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)"),
]


def test_training_on_cuda_learns_and_records_gpu_memory(tmp_path):
    spec = DatasetSpec(source="digits", limit_train=480, limit_test=60)
    opts = TrainOptions(ae_epochs=1, epochs=2, batch_size=32, warmup_steps=5, device="cuda")
    best = fit(build_dataset(spec), spec, opts, tmp_path)
    _, ckpt = load_model(best)
    history = ckpt["progress"]["history"]
    assert all(h["gpu_peak_allocated_gib"] > 0 for h in history)
    assert history[-1]["gen"] < history[1]["gen"]  # bf16 autocast still learns


def test_torch_backend_on_cuda_matches_the_cpu_reference(engine_checkpoint):
    images = np.random.default_rng(0).integers(0, 256, size=(8, 8, 8, 1), dtype=np.uint8)
    cpu = load(engine_checkpoint, backend="torch", options=RuntimeOptions(device="cpu"))
    gpu = load(engine_checkpoint, backend="torch", options=RuntimeOptions(device="cuda"))
    assert gpu.info.device.startswith("cuda")
    (w_cpu, p_cpu), (w_gpu, p_gpu) = cpu.infer(images), gpu.infer(images)
    # TF32 convolutions on the GPU: agreement to ~1e-3 of a waveform peaking near 0.5.
    assert np.abs(w_gpu - w_cpu).max() < 1e-2 and np.abs(p_gpu - p_cpu).max() < 1e-2
    assert (p_gpu.argmax(1) == p_cpu.argmax(1)).all()
