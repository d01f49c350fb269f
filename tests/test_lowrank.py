"""The generator's FC_2 stored as truncated-SVD factors in fp16/int8 exports (engine/lowrank.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from earsight.engine.export import export_onnx
from earsight.engine.lowrank import ROUND, energy_rank, factorise_generator
from earsight.trainer.checkpoint import load_model, read_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


def test_energy_rank_finds_the_rank_a_matrix_has():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(500, 6, generator=g) @ torch.randn(6, 64, generator=g)  # rank 6
    assert energy_rank(low) == ROUND  # 6 rounded up to the next multiple of 8
    assert energy_rank(torch.randn(500, 64, generator=g)) > 48  # a full-rank one keeps most


@pytest.fixture(scope="module")
def low_rank_checkpoint(engine_checkpoint: Path, tmp_path_factory) -> Path:
    """engine_checkpoint with its generator's FC_2 made rank 5 (+ a little noise): the shape a
    trained generator's FC_2 has (few words), which the tiny test run's does not reach."""
    ckpt = read_checkpoint(engine_checkpoint)
    weight = ckpt["model"]["generator.fc2.weight"]  # (L_s, gen_hidden)
    g = torch.Generator().manual_seed(1)
    u, v = (
        torch.randn(weight.shape[0], 5, generator=g),
        torch.randn(5, weight.shape[1], generator=g),
    )
    low = u @ v * (weight.std() / (u @ v).std())
    ckpt["model"]["generator.fc2.weight"] = low + 1e-4 * weight.std() * torch.randn(
        weight.shape, generator=g
    )
    out = tmp_path_factory.mktemp("low-rank") / "best.pt"
    save_checkpoint(out, {k: v for k, v in ckpt.items() if k != "format"})
    return out


def test_factorised_generator_answers_as_the_full_one(low_rank_checkpoint):
    model, _ = load_model(low_rank_checkpoint)
    full = model.generator.fc2
    phi = torch.randn(4, model.cfg.audio_feature)
    with torch.no_grad():
        before = model.generate(phi)
        rank = factorise_generator(model)
        after = model.generate(phi)
    assert rank == ROUND and model.generator.fc2 is not full
    assert float((after - before).abs().max()) < 1e-3


def test_a_full_rank_generator_is_left_whole(engine_checkpoint):
    model, _ = load_model(engine_checkpoint)  # 1 epoch from random init: no low-rank structure
    layer = model.generator.fc2
    assert factorise_generator(model) == 0 and model.generator.fc2 is layer


def test_fp16_export_stores_the_factors_and_fp32_stays_exact(low_rank_checkpoint, tmp_path):
    fp16 = export_onnx(low_rank_checkpoint, tmp_path / "m16.onnx", "fp16")
    fp32 = export_onnx(low_rank_checkpoint, tmp_path / "m32.onnx", "fp32")
    side16 = json.loads(fp16.sidecar.read_text())
    side32 = json.loads(fp32.sidecar.read_text())
    assert side16["generator_rank"] == ROUND and "generator_rank" not in side32
    # the parity check of the fp16 file ran against the full layer and passed
    assert fp16.parity.waveform_max_abs <= fp16.parity.tolerance
    # fp16 halves every weight; the factors also drop most of FC_2's
    l_s, hidden = read_checkpoint(low_rank_checkpoint)["model"]["generator.fc2.weight"].shape
    saved_bytes = 2 * (l_s * hidden - ROUND * (l_s + hidden))
    assert fp16.path.stat().st_size < fp32.path.stat().st_size / 2 - 0.9 * saved_bytes
    assert np.isfinite(fp16.parity.probs_max_abs)
