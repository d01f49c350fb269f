"""int8 for CPUs: the image encoder's convolutions quantized after training, checked on real images.

Why: on a CPU the encoder's 2-D convolutions take ~80 % of an inference (ONNX Runtime profile of
the mirror-averaged cifar10-ad: 18.7 of 23 ms), and ONNX Runtime's u8s8 kernels run them in
int8. What stays float, and why:

- the first convolution: it sees Eq. 1-standardized pixels in 3 channels; quantizing it changed
  the top-1 class of 4.8 % of 500 CIFAR-10 test images, against 0.2 % with it kept float, and it
  is one of the cheapest layers;
- the fully-connected layers and the generator's 1-D convolutions (waveform quality; ~10 % of
  the time).

Static quantization (QDQ, per-channel int8 weights, uint8 activations) calibrated with MinMax on
training images, so the file holds fixed activation scales and needs no data at run time. Float
weights above ``HALF_STORAGE_MIN_BYTES`` are stored fp16 and cast back when the session loads
(ONNX Runtime folds the Cast once), which keeps the file small; the arithmetic stays fp32.

The export is judged on real test images against the fp32 torch model: top-1 agreement and the
correlation of each waveform with the fp32 one (``INT8_LIMITS``), not max |err|, which int8 noise
makes meaningless on single samples.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from earsight.engine.errors import ExportError
from earsight.engine.sidecar_schema import INPUT_NAME, OUTPUT_NAMES

if TYPE_CHECKING:  # onnx and torch load only when an int8 export runs
    import onnx

    from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 256  # training images whose activation ranges fix the int8 scales
CALIBRATION_BATCH = 16
PARITY_IMAGES = 500  # test images the int8 export is judged on
INT8_LIMITS = {"top1_agreement": 0.98, "waveform_corr_mean": 0.99}  # export fails below these
# A pretrained backbone's convolutions are quantized only where the feature map is 1/32 of the
# input side (efficientnet-lite0 at 160 px: 5×5, stages 6–7 and the head, 10 of 32 dense
# convolutions; as many in the ImageNet check's copy). Top-1 agreement with fp32 on 500 CIFAR-10
# test images, 2026-11-30: all 32: 0.976; the first 12 (80–20 px): 0.972; the last 20: 0.990;
# the 22 of 10×10 and smaller: 0.986. 2026-12-02, with the ImageNet check (whose per-word masses
# make close calls move): the 22 (+ 22 in the check): 0.982 and a real photo of rowing boats at
# "ship" 0.41 against fp32's 0.66; these 10 (+ 10): 1.000 and 0.66. The early maps are large and
# few-channelled, and every later layer inherits their rounding.
LOW_RES_DIVISOR = 32
HALF_STORAGE_MIN_BYTES = 1 << 20  # float weights this large are stored fp16 in the file
SEED = 0


@dataclass(frozen=True)
class Int8Parity:
    images: int  # real test images compared with the fp32 torch model
    top1_agreement: float  # share of images whose most probable class is unchanged
    waveform_corr_mean: float  # mean Pearson r of each int8 waveform with the fp32 one
    waveform_corr_min: float
    waveform_max_abs: float
    probs_max_abs: float

    def failures(self) -> list[str]:
        return [
            f"{name} {getattr(self, name):.4f} < {limit}"
            for name, limit in INT8_LIMITS.items()
            if getattr(self, name) < limit
        ]

    def to_dict(self) -> dict:
        return {**asdict(self), "limits": dict(INT8_LIMITS)}


def sample_images(images: np.ndarray, count: int, seed: int = SEED) -> np.ndarray:
    """A seeded sample of up to ``count`` images (N, H, W, C) uint8, in their original order."""
    if len(images) <= count:
        return images
    pick = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[pick]


def encoder_convolutions(model: onnx.ModelProto, max_side: int | None = None) -> list[str]:
    """Names of the dense 2-D Conv nodes (4-D weights, group 1) in graph order, minus the first;
    with ``max_side``, only those whose output is at most ``max_side`` pixels wide.

    Depthwise convolutions (group > 1, EfficientNet's k×k stages) stay float: one 3×3 or 5×5
    filter per channel has too few weights for int8's 256 levels to hold (quantizing them too
    changed the top-1 word of 11.2 % of 500 CIFAR-10 test images for efficientnet-lite0), and
    they are a few percent of its multiply-adds. A backbone's early, high-resolution stages stay
    float too (``max_side`` = input / 32, see ``LOW_RES_DIVISOR``).
    """
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    convs = [
        n
        for n in model.graph.node
        if n.op_type == "Conv" and weights.get(n.input[1]) == 4 and _group(n) == 1
    ][1:]
    if max_side is not None:
        widths = _output_widths(model)
        convs = [n for n in convs if 0 < widths.get(n.output[0], 0) <= max_side]
    return [n.name for n in convs]


def _output_widths(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name → last (width) dimension where shape inference knows it."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    return {
        v.name: v.type.tensor_type.shape.dim[-1].dim_value
        for v in inferred.graph.value_info
        if v.type.tensor_type.shape.dim
    }


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _calibration_reader(images: np.ndarray) -> object:
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(images):
                return None
            batch = images[self.start : self.start + CALIBRATION_BATCH]
            self.start += CALIBRATION_BATCH
            return {INPUT_NAME: np.ascontiguousarray(batch)}

    return Batches()


def store_large_weights_half(model: onnx.ModelProto) -> int:
    """Store big fp32 initializers as fp16 + a Cast to fp32; returns how many were converted."""
    import onnx
    from onnx import helper, numpy_helper

    graph_inputs = {i.name for i in model.graph.input}
    casts, converted = [], 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name in graph_inputs:
            continue
        array = numpy_helper.to_array(init)
        if array.nbytes < HALF_STORAGE_MIN_BYTES:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=onnx.TensorProto.FLOAT))
        converted += 1
    for cast in reversed(casts):  # before every consumer: nodes must stay topologically sorted
        model.graph.node.insert(0, cast)
    return converted


@contextlib.contextmanager
def _root_log_level(level: int) -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(level, before))
    try:
        yield
    finally:
        root.setLevel(before)


def quantize_int8(
    fp32_onnx: Path, out: Path, calibration: np.ndarray, max_side: int | None = None
) -> None:
    """Write the int8 version of ``fp32_onnx`` to ``out``, calibrated on ``calibration`` images;
    ``max_side``: quantize only convolutions with outputs at most that wide (pixels)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ExportError("int8 needs calibration images, got none", "pass the training data")
    with tempfile.TemporaryDirectory(prefix="earsight-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        nodes = encoder_convolutions(onnx.load(str(prepared), load_external_data=False), max_side)
        if not nodes:
            raise ExportError("no 2-D convolutions to quantize in this graph", "export fp16")
        quantized = Path(tmp) / "quantized.onnx"
        with _root_log_level(logging.WARNING):  # its INFO lines go to the root logger
            quantize_static(
                str(prepared),
                str(quantized),
                _calibration_reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
            )
        model = onnx.load(str(quantized))
    converted = store_large_weights_half(model)
    onnx.save(model, str(out))
    log.info(
        "int8: %d convolution%s quantized, %d float weight%s stored fp16",
        len(nodes),
        "s" * (len(nodes) != 1),
        converted,
        "s" * (converted != 1),
    )


def _correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per row of two (N, L) arrays; a silent row against a silent row counts as 1."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    return np.where(norm > 0, dot / np.maximum(norm, 1e-30), 1.0)


def check_int8_parity(reference: MTNet, onnx_path: Path, images: np.ndarray) -> Int8Parity:
    """Compare the int8 ONNX (ORT CPU) with the fp32 torch ``reference`` on real images."""
    import onnxruntime as ort
    import torch

    from earsight.engine.graph import InferenceGraph

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wave, probs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images)})
    with torch.inference_mode():
        ref_wave, ref_probs = (
            t.numpy() for t in InferenceGraph(reference)(torch.from_numpy(images))
        )
    corr = _correlations(wave.astype(np.float64), ref_wave.astype(np.float64))
    return Int8Parity(
        images=len(images),
        top1_agreement=float((probs.argmax(1) == ref_probs.argmax(1)).mean()),
        waveform_corr_mean=float(corr.mean()),
        waveform_corr_min=float(corr.min()),
        waveform_max_abs=float(np.abs(wave - ref_wave).max()),
        probs_max_abs=float(np.abs(probs - ref_probs).max()),
    )


def checkpoint_images(checkpoint: Path, data_root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) images (N, H, W, C) uint8 of the dataset ``checkpoint`` was trained on.

    ``data_root`` overrides the folder recorded at training time; ExportError (one line, with
    what to do) when the files are not there.
    """
    from earsight.trainer.checkpoint import read_checkpoint
    from earsight.trainer.data.images import load_images
    from earsight.trainer.errors import DatasetError

    spec = read_checkpoint(Path(checkpoint)).get("dataset") or {}
    source = spec.get("source")
    if not source:
        raise ExportError(
            f"{Path(checkpoint).name} does not record its dataset",
            "int8 needs the training data: retrain with trainer/fit.py, or export fp16",
        )
    root = data_root if data_root is not None else spec.get("data_root")
    try:
        images = load_images(source, Path(root) if root else None)
    except DatasetError as err:  # its fix names fit.py's --download, which export lacks
        raise ExportError(
            f"int8 calibration needs the {source} images: {err.what}",
            "pass --data-root DIR where they are (`trainer/fit.py --download` fetches them)",
        ) from err
    return images.train.images, images.test.images
