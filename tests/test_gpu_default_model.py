"""The shipped default model on GPUs: TensorRT builds its fp16 graph (EfficientNet-Lite0, no
mirror averaging, so no negative-step Slice) and TensorRT and ONNX Runtime CUDA answer as ONNX
Runtime CPU does on the sample photos. Marked requires_cuda / requires_tensorrt: skipped with
the reason on machines without them (every CPU-only CI run); run them whenever a GPU is lent.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from earsight.app.models import ASSETS_DIR, DEFAULT_MODEL, resolve_model
from earsight.app.modes.describe import load_image
from earsight.engine.runtime import RuntimeOptions, load

SAMPLES = sorted((ASSETS_DIR / "samples" / "cifar10").glob("*.jpg"))
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _cuda_provider() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _answers(backend: str) -> tuple[np.ndarray, np.ndarray]:
    options = RuntimeOptions(build_engine=True, cpu_int8=False)
    with load(resolve_model(DEFAULT_MODEL), backend, options) as runtime:
        info = runtime.info
        images = np.stack([load_image(p, info.input_shape, info.input_crop) for p in SAMPLES])
        return runtime.infer(images)


def _agree(backend: str) -> None:
    wave_cpu, probs_cpu = _answers("onnx-cpu")
    wave, probs = _answers(backend)
    assert (probs.argmax(1) == probs_cpu.argmax(1)).all()
    assert np.abs(probs - probs_cpu).max() < 0.05  # fp16 arithmetic on both sides
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(wave, wave_cpu, strict=True)]
    assert min(corr) > 0.99


@pytest.mark.requires_cuda
@pytest.mark.requires_tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (CUDA machine only)")
def test_tensorrt_builds_the_default_model_and_agrees_with_the_cpu():
    _agree("tensorrt")


@pytest.mark.requires_cuda
@pytest.mark.skipif(not _cuda_provider(), reason="onnxruntime-gpu with CUDA needed")
def test_onnx_runtime_cuda_agrees_with_the_cpu_on_the_default_model():
    _agree("onnx-cuda")
