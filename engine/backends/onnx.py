"""ONNX Runtime backends: ``onnx-cpu`` (threads pinned) and ``onnx-cuda`` (CUDA provider)."""

from __future__ import annotations

import logging

import numpy as np

from earsight.engine.backends.base import Backend, RuntimeOptions
from earsight.engine.errors import (
    BackendFailed,
    BackendUnavailable,
    ModelFileError,
    OutOfMemory,
)
from earsight.engine.sidecar import disable_onnxruntime_telemetry
from earsight.engine.sidecar_schema import INPUT_NAME, OUTPUT_NAMES
from earsight.engine.source import ModelSource
from earsight.errors import first_line

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
_ORT_LOG_ERRORS_ONLY = 3  # ORT severity: 0 verbose … 3 error, 4 fatal
_REEXPORT = "re-export it with `earsight export CHECKPOINT -o MODEL.onnx`"


def check_finite_weights(source: ModelSource) -> None:
    """ModelFileError when any float weight (initializer or Constant) of the ONNX is NaN/±inf.

    A diverged training run exports such weights and every answer is then NaN. Reads the
    file once with the onnx package (no torch): ~90 ms for the 12 MB cifar10-ad.onnx.
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(source.onnx), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: ONNX Runtime says it in one line
        return
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue  # not in this file; ORT checks it exists
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ModelFileError(
                f"{source.onnx.name} has non-finite weights (NaN or inf in {tensor.name!r}): "
                "its training diverged",
                "retrain with a lower --lr, export again",
            )


class OnnxBackend(Backend):
    """ONNX Runtime on the CPU or one CUDA GPU."""

    def __init__(self, source: ModelSource, options: RuntimeOptions, cuda: bool) -> None:
        disable_onnxruntime_telemetry()  # before the import: ORT reads it once
        import onnxruntime as ort

        self.name = "onnx-cuda" if cuda else "onnx-cpu"
        if source.onnx is None:
            raise BackendUnavailable(
                f"{self.name} needs an ONNX model, got the checkpoint {source.path.name}",
                "export it once: `earsight export CHECKPOINT -o model.onnx`",
            )
        if cuda and CUDA_PROVIDER not in ort.get_available_providers():
            raise BackendUnavailable(
                "ONNX Runtime has no CUDA provider here (the CPU-only onnxruntime is installed)",
                "pip install onnxruntime-gpu on a CUDA machine, or use --backend onnx-cpu",
            )
        check_finite_weights(source)  # before ORT: a NaN model is bad, not unavailable
        self.session = self._session(ort, source, options, cuda)
        self.providers = tuple(self.session.get_providers())
        if cuda and self.providers[0] != CUDA_PROVIDER:
            # ORT quietly drops to the CPU when the CUDA/cuDNN libraries do not load.
            raise BackendFailed(
                "ONNX Runtime could not start its CUDA provider (CUDA or cuDNN libraries "
                "missing or mismatched)",
                "install the CUDA/cuDNN versions your onnxruntime-gpu was built for",
            )
        self.device = f"cuda:{options.gpu}" if cuda else "cpu"
        self.precision = source.contract.precision
        self._check_signature(source)

    @staticmethod
    def _session(ort, source: ModelSource, options: RuntimeOptions, cuda: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.cpu_threads()  # pinned: no oversubscription
        so.inter_op_num_threads = 1  # the graph is one chain; parallel branches buy nothing
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = _ORT_LOG_ERRORS_ONLY
        spin = "1" if options.cpu_spin else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        providers: list = [CPU_PROVIDER]
        if cuda:
            providers.insert(0, (CUDA_PROVIDER, {"device_id": options.gpu}))
        try:
            return ort.InferenceSession(str(source.onnx), so, providers=providers)
        except Exception as err:  # ORT raises its own pybind types (InvalidProtobuf, Fail, …)
            reason = first_line(err, typed=True)
            if cuda:
                raise BackendFailed(f"ONNX Runtime CUDA failed: {reason}") from err
            raise ModelFileError(
                f"{source.onnx} could not be loaded by ONNX Runtime ({reason})",
                _REEXPORT,
            ) from err

    def _check_signature(self, source: ModelSource) -> None:
        """Inputs and outputs as the contract says, and as wide as the sidecar says: a
        vocabulary of K words needs probs (batch, K), audio_length L_s a waveform (batch, L_s).
        Symbolic dims are checked on every run instead (Runtime.infer)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        h, w, c = source.contract.input_shape
        got = [(i.name, i.type, list(i.shape)[1:]) for i in inputs]
        want = [(INPUT_NAME, "tensor(uint8)", [h, w, c])]
        out_names = tuple(o.name for o in outputs)
        if got != want or out_names != OUTPUT_NAMES:
            raise ModelFileError(
                f"{source.onnx.name} does not follow the EarSight contract: inputs {got}, "
                f"outputs {list(out_names)}; expected {want} → {list(OUTPUT_NAMES)}",
                _REEXPORT,
            )
        contract = source.contract
        widths = {o.name: list(o.shape)[1:] for o in outputs}
        sidecar = {"waveform": [contract.audio_length], "probs": [len(contract.labels)]}
        for name, want_dims in sidecar.items():
            got_dims = widths[name]
            if all(isinstance(d, int) for d in got_dims) and got_dims != want_dims:
                raise ModelFileError(
                    f"{source.onnx.name} emits {name} of width {got_dims} but its sidecar says "
                    f"{want_dims} ({len(contract.labels)} vocabulary words, audio_length "
                    f"{contract.audio_length})",
                    _REEXPORT,
                )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            wave, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        except Exception as err:
            if "out of memory" in str(err).lower() or "bfcarena" in str(err).lower():
                raise OutOfMemory(
                    f"{self.name} ran out of memory at batch {len(images)}",
                    "use a smaller batch",
                ) from err
            raise
        return wave, probs

    def close(self) -> None:
        self.session = None
