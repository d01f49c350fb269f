"""The TensorRT backend: a cached engine (engine/build.py) run with torch CUDA buffers.

torch provides device memory and the stream (it is a dependency anyway), so no pycuda or
cuda-python. Only a cached engine is used unless building is allowed (explicit
``--backend tensorrt`` or ``RuntimeOptions.build_engine``): auto never blocks for minutes.
"""

from __future__ import annotations

import logging

import numpy as np

from earsight import paths
from earsight.engine.backends.base import Backend, RuntimeOptions
from earsight.engine.build import BuildOptions, engine_key, ensure_engine, import_tensorrt
from earsight.engine.cache import cached_plans, load_plan
from earsight.engine.errors import BackendFailed, BackendUnavailable, OutOfMemory
from earsight.engine.sidecar_schema import INPUT_NAME, OUTPUT_NAMES
from earsight.engine.source import ModelSource

log = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, source: ModelSource, options: RuntimeOptions, allow_build: bool) -> None:
        if source.contract.precision == "int8":  # QDQ tuned for ONNX Runtime CPU
            raise BackendUnavailable(
                f"{source.path.name} is the int8 CPU export; TensorRT runs fp16/fp32 exports",
                "pass the model's fp16 ONNX (e.g. cifar10-ad.onnx) on a GPU",
            )
        trt = import_tensorrt()  # BackendUnavailable with the install hint when missing
        import torch

        if source.onnx is None:
            raise BackendUnavailable(
                f"TensorRT needs an ONNX model, got the checkpoint {source.path.name}",
                "export it: `earsight export CHECKPOINT -o model.onnx --fp16`",
            )
        opts = BuildOptions(
            precision=options.trt_precision,
            max_batch=options.trt_max_batch,
            gpu=options.gpu,
            cache_dir=options.engine_cache,
        )
        plan, key = self._find_plan(source, opts, allow_build)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        self.engine = load_plan(plan, key, runtime.deserialize_cuda_engine)
        if self.engine is None:
            raise BackendFailed("the cached TensorRT engine was damaged and has been removed")
        self.context = self.engine.create_execution_context()
        self._torch = torch
        self._device = torch.device(f"cuda:{options.gpu}")
        self.stream = torch.cuda.Stream(self._device)
        self.max_batch = key.profile.max_batch
        self.precision = "fp32" if key.mode == "fp32" else "fp16"
        self.device = f"cuda:{options.gpu} ({key.gpu_name}, sm {key.compute_capability})"
        self.providers = (f"TensorRT {key.trt_version} ({key.mode})",)
        self._out_width = {
            "waveform": source.contract.audio_length,
            "probs": source.contract.n_classes,
        }

    @staticmethod
    def _find_plan(source: ModelSource, opts: BuildOptions, allow_build: bool):
        if allow_build:
            return ensure_engine(source.onnx, opts, allow_build=True, sidecar=source.sidecar)
        # any cached profile for this model/GPU will do; the sidecar as read_model read it
        key, _ = engine_key(source.onnx, opts, source.sidecar)
        match = {
            f: getattr(key, f)
            for f in ("onnx_sha256", "trt_version", "gpu_name", "compute_capability", "mode")
        }
        found = cached_plans(opts.cache_dir or paths.engine_cache_dir(), **match)
        if not found:
            # raises with the hint
            return ensure_engine(source.onnx, opts, allow_build=False, sidecar=source.sidecar)
        cached_key, plan = found[0]
        return plan, cached_key

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        batch = len(images)
        try:
            with torch.cuda.stream(self.stream):
                x = torch.from_numpy(images).to(self._device, non_blocking=True)
                outs = {
                    name: torch.empty((batch, self._out_width[name]), device=self._device)
                    for name in OUTPUT_NAMES
                }  # float32: the contract casts to fp32 at the boundary in both precisions
                self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
                self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
                for name, tensor in outs.items():
                    self.context.set_tensor_address(name, tensor.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RuntimeError("TensorRT execute_async_v3 returned False")
            self.stream.synchronize()
        except torch.cuda.OutOfMemoryError as err:
            raise OutOfMemory(
                f"the GPU ran out of memory at batch {batch}", "use a smaller batch"
            ) from err
        return outs["waveform"].cpu().numpy(), outs["probs"].cpu().numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None
