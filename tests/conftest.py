"""Shared pytest fixtures.

# --- engine (issue #3): a tiny trained checkpoint and its ONNX exports, built once per session ---
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# A test run started in the background (a CI job, `nohup … &`) inherits SIGINT ignored, and so
# would every earsight a test starts: the Ctrl-C tests would send a signal nobody hears until
# `live` installs its own handler (~2 s in), which no user at a terminal has. A handler here
# makes the children start with SIGINT at its default (exec resets caught signals), as in a
# foreground terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def no_taught_words(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite never sees the user's own taught words (the default model is "auto": the
    taught model once there is one); tests that teach set EARSIGHT_TEACH themselves."""
    import os

    before = os.environ.get("EARSIGHT_TEACH")
    os.environ["EARSIGHT_TEACH"] = str(tmp_path_factory.mktemp("no-taught-words"))
    yield
    if before is None:
        os.environ.pop("EARSIGHT_TEACH", None)
    else:
        os.environ["EARSIGHT_TEACH"] = before


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on 1 thread, restored after: 2 threads on a 2-core box with one core busy crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_on_one_thread() -> Iterator[None]:
    """A module's tests on one torch thread (the torch backend pins the process-wide count)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def engine_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a compact MT-Net trained 1+1 epochs on 240 sklearn digits (8×8×1, ~6 s)."""
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.training.run import fit
    from earsight.trainer.training.train import TrainOptions

    spec = DatasetSpec(source="digits", limit_train=240, limit_test=60)
    opts = TrainOptions(ae_epochs=1, epochs=1, batch_size=32, warmup_steps=5)
    with one_torch_thread():
        return fit(build_dataset(spec), spec, opts, tmp_path_factory.mktemp("engine-ckpt"))


@pytest.fixture(scope="session")
def engine_onnx(engine_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """{"fp32": ExportResult, "fp16": ExportResult} of engine_checkpoint (default exporter)."""
    from earsight.engine.export import export_onnx

    out = tmp_path_factory.mktemp("engine-onnx")
    with one_torch_thread():
        return {
            p: export_onnx(engine_checkpoint, out / f"model-{p}.onnx", p) for p in ("fp32", "fp16")
        }
