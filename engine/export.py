"""Export a checkpoint to ONNX: one inference contract, fp32/fp16/int8, checked and parity-tested.

Contract (identical for both precisions, see docs/ENGINE.md)::

    images    uint8   (batch, H, W, C)  NHWC, raw 0..255 pixels as a camera frame gives them
    waveform  float32 (batch, L_s)      in [-1, 1] at the model's sample rate
    probs     float32 (batch, K)        softmax class probabilities (confidence)

The graph casts and permutes to NCHW and applies Eq. 1 itself, so no preprocessing happens
outside it. fp16 converts weights and compute but casts at both boundaries, so callers never
see the difference; Eq. 1 stays fp32 (sums of up to P squared 0..255 pixels overflow fp16).

int8 (CPU) starts from the checked fp32 export and quantizes the encoder's convolutions
(engine/quantize.py); it needs calibration and test images and is judged on those.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export-based) at opset 18, the lowest opset
it implements (asked for 17 it emits 18 and its down-converter fails on this graph's ReduceMean).
Opsets below 18 (older TensorRT on JetPack 5) use the legacy TorchScript exporter, logged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from earsight.engine.errors import ExportError
from earsight.engine.graph import InferenceGraph
from earsight.engine.lowrank import factorise_generator
from earsight.engine.quantize import (
    CALIBRATION_IMAGES,
    LOW_RES_DIVISOR,
    PARITY_IMAGES,
    Int8Parity,
    check_int8_parity,
    quantize_int8,
    sample_images,
)
from earsight.engine.sidecar import DEFAULT_MAX_BATCH, DEFAULT_OPSET, build_sidecar, write_sidecar
from earsight.engine.sidecar_schema import BATCH_AXIS, INPUT_NAME, OUTPUT_NAMES, PRECISIONS
from earsight.engine.trt_ops import warn_if_not_buildable
from earsight.errors import first_line
from earsight.logs import quieter
from earsight.trainer.checkpoint import load_model, weights_sha256
from earsight.trainer.mtnet.model import MTNet

log = logging.getLogger(__name__)

DYNAMO_MIN_OPSET = 18
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # max |onnx − torch fp32| for waveform and probs
PARITY_RANDOM = 6  # random images in the parity batch (plus an all-0 and an all-255 one)
PARITY_SEED = 0
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")


@dataclass(frozen=True)
class Parity:
    images: int  # images in the parity batch
    waveform_max_abs: float
    probs_max_abs: float
    tolerance: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    precision: str
    opset: int
    exporter: str
    sha256: str
    parity: Parity | Int8Parity
    seconds: float


def parity_images(shape: tuple[int, int, int]) -> np.ndarray:
    """Fixed uint8 batch (N, H, W, C): random images plus constant ones (σ = 0: Eq. 1's clamp)."""
    rng = np.random.default_rng(PARITY_SEED)
    random = rng.integers(0, 256, size=(PARITY_RANDOM, *shape), dtype=np.uint8)
    flat = np.stack([np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)])
    return np.concatenate([random, flat])


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporters log missing torchvision ops and deprecations that say nothing about our
    # graph; real failures still raise.
    with quieter(*_EXPORTER_LOGGERS, level=logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _export_graph(graph: nn.Module, path: Path, opset: int, max_batch: int) -> str:
    """Write ``graph`` to ``path``; returns a description of the exporter used."""
    example = torch.zeros((2, *_input_shape(graph)), dtype=torch.uint8)  # batch 2: not special
    names = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES)}
    with _quiet_exporter(), torch.no_grad():
        if opset >= DYNAMO_MIN_OPSET:
            batch = torch.export.Dim(BATCH_AXIS, min=1, max=max_batch)
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes={INPUT_NAME: {0: batch}},
                verbose=False,
                **names,
            )
            program.save(str(path), external_data=False)  # < 2 GB even for the paper preset
            return f"torch.onnx dynamo (torch {torch.__version__})"
        log.info("opset %d < %d: using the legacy TorchScript exporter", opset, DYNAMO_MIN_OPSET)
        axes = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)}
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            dynamic_axes=axes,
            **names,
        )
        return f"torch.onnx TorchScript (torch {torch.__version__})"


def _input_shape(graph: nn.Module) -> tuple[int, int, int]:
    cfg = graph.model.cfg
    return (cfg.image_size, cfg.image_size, cfg.image_channels)


def check_parity(reference: MTNet, onnx_path: Path, precision: str) -> Parity:
    """Run ONNX Runtime (CPU) and the fp32 torch model on the parity batch; compare outputs.

    ExportError (no file is kept) when the checkpoint's weights or either model's outputs are
    NaN/inf: ``max(nan) > tol`` is False, so a diverged model would otherwise pass.
    """
    from earsight.engine.sidecar import disable_onnxruntime_telemetry

    disable_onnxruntime_telemetry()
    import onnxruntime as ort

    diverged = ("retrain with a lower --lr (training diverged)", "export an earlier checkpoint")
    bad = [
        n
        for n, p in reference.state_dict().items()
        if p.is_floating_point() and not bool(torch.isfinite(p).all())
    ]
    if bad:
        raise ExportError(f"the checkpoint has non-finite weights ({bad[0]}, …)", diverged[0])
    images = parity_images(_input_shape(InferenceGraph(reference)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wave, probs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    with torch.inference_mode():
        ref_wave, ref_probs = InferenceGraph(reference)(torch.from_numpy(images))
    if wave.dtype != np.float32 or probs.dtype != np.float32:
        raise ExportError(f"outputs are {wave.dtype}/{probs.dtype}, not float32", "report a bug")
    outputs = {"ONNX": (wave, probs), "torch": (ref_wave.numpy(), ref_probs.numpy())}
    for who, arrays in outputs.items():
        if not all(np.isfinite(a).all() for a in arrays):
            raise ExportError(f"the {who} model's outputs are NaN or inf", " or ".join(diverged))
    return Parity(
        images=len(images),
        waveform_max_abs=float(np.abs(wave - ref_wave.numpy()).max()),
        probs_max_abs=float(np.abs(probs - ref_probs.numpy()).max()),
        tolerance=TOLERANCE[precision],
    )


def _validate(precision: str, opset: int, max_batch: int) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 13 <= opset <= 23:
        raise ExportError(f"opset {opset} is not supported", f"use {DEFAULT_OPSET} (13..23 work)")
    if max_batch < 2:
        raise ExportError(f"max batch must be at least 2, got {max_batch}")


def _write_checked(
    graph: nn.Module, reference: MTNet, tmp: Path, precision: str, opset: int, max_batch: int
) -> tuple[str, Parity]:
    """Export ``graph`` to ``tmp``, run the checker and the parity test; on failure no file."""
    import onnx

    try:
        exporter = _export_graph(graph.eval(), tmp, opset, max_batch)
        onnx.checker.check_model(str(tmp), full_check=True)
        warn_if_not_buildable(onnx.load(str(tmp)), tmp.name.removesuffix(".tmp"))
        parity = check_parity(reference, tmp, precision)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # exporter/checker raise many types; keep the first line
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ONNX export failed: {first_line(err, typed=True)}") from err
    log.info(
        "parity (%s, %d images): waveform max |err| %.2e, probs max |err| %.2e (tolerance %.0e)",
        precision,
        parity.images,
        parity.waveform_max_abs,
        parity.probs_max_abs,
        parity.tolerance,
    )
    if max(parity.waveform_max_abs, parity.probs_max_abs) > parity.tolerance:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"{precision} ONNX disagrees with torch: waveform {parity.waveform_max_abs:.2e}, "
            f"probs {parity.probs_max_abs:.2e} > {parity.tolerance:.0e}",
            "export fp32, or report the checkpoint",
        )
    return exporter, parity


def _quantize_checked(
    reference: MTNet, tmp: Path, calibration: np.ndarray, test_images: np.ndarray
) -> Int8Parity:
    """Replace the checked fp32 ONNX at ``tmp`` by its int8 version if that passes its limits."""
    import onnx

    from earsight.trainer.data.preprocess import fit_batch

    cfg = reference.cfg

    def fitted(images: np.ndarray, count: int) -> np.ndarray:
        # Dataset thumbnails, whole, at the model's input size (as in training).
        picked = sample_images(images, count)
        return fit_batch(picked, cfg.image_size, 1.0, cfg.image_channels)

    fp32 = tmp.with_name(tmp.name + ".fp32")
    os.replace(tmp, fp32)
    try:
        max_side = cfg.image_size // LOW_RES_DIVISOR if cfg.backbone else None
        quantize_int8(fp32, tmp, fitted(calibration, CALIBRATION_IMAGES), max_side)
        onnx.checker.check_model(str(tmp), full_check=True)
        parity = check_int8_parity(reference, tmp, fitted(test_images, PARITY_IMAGES))
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # the quantizer and checker raise many types; keep the first line
        tmp.unlink(missing_ok=True)
        raise ExportError(f"int8 quantization failed: {first_line(err, typed=True)}") from err
    finally:
        fp32.unlink(missing_ok=True)
    log.info(
        "parity (int8, %d test images): top-1 agreement %.4f, waveform r mean %.4f (min %.4f)",
        parity.images,
        parity.top1_agreement,
        parity.waveform_corr_mean,
        parity.waveform_corr_min,
    )
    if parity.failures():
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"int8 ONNX strays from torch: {'; '.join(parity.failures())}",
            "export fp16 for this checkpoint",
        )
    return parity


def export_onnx(
    checkpoint: Path,
    out: Path,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    flip_tta: bool = False,
    calibration: np.ndarray | None = None,
    test_images: np.ndarray | None = None,
) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (+ ``out.json`` sidecar); raise ExportError on failure.

    ``flip_tta``: the graph averages each image's features with its mirror's (one batch of 2B
    through the encoder), for models trained on mirrored images; recorded in the sidecar config.
    ``calibration``/``test_images`` (N, H, W, C) uint8: int8 only; seeded samples of each are used
    (training images for the activation scales, test images for the parity check).

    The ONNX is written under a temporary name and only renamed once it passed the checker and
    the parity test, so ``out`` is never a half-written or out-of-tolerance model.
    """
    _validate(precision, opset, max_batch)
    if precision == "int8" and (calibration is None or test_images is None):
        raise ExportError(
            "int8 export needs calibration and test images",
            "pass --data-root where the checkpoint's dataset is (earsight export --int8)",
        )
    start = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out)
    # CheckpointError if unusable, UsageError if it may not mirror-average (one line each)
    reference, _ckpt = load_model(checkpoint, flip_tta=flip_tta)
    body = copy.deepcopy(reference)  # the fp16 graph converts its copy in place
    # fp16/int8 files store the generator's FC_2 as SVD factors (engine/lowrank.py); an fp32
    # file stays exact. fp16's parity is against the full layer; int8's float stage is checked
    # against the factorised body, its quantized result against the full model.
    generator_rank = factorise_generator(body) if precision != "fp32" else 0
    graph = InferenceGraph(body, torch.float16 if precision == "fp16" else torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    float_precision = "fp16" if precision == "fp16" else "fp32"
    float_reference = body if precision == "int8" else reference
    exporter, parity = _write_checked(
        graph, float_reference, tmp, float_precision, opset, max_batch
    )
    if precision == "int8":
        parity = _quantize_checked(reference, tmp, calibration, test_images)
    os.replace(tmp, out)
    sidecar = build_sidecar(
        reference.cfg,
        out,
        checkpoint,
        precision=precision,
        opset=opset,
        exporter=exporter,
        parity=parity.to_dict(),
        max_batch=max_batch,
        weights=weights_sha256(reference),
        **({"generator_rank": generator_rank} if generator_rank else {}),
    )
    side_path = write_sidecar(out, sidecar)
    seconds = time.perf_counter() - start
    # debug: `earsight export` prints its own line; bench and teach export to files users never see
    log.debug("wrote %s and %s (%.1f s, %s)", out, side_path.name, seconds, exporter)
    return ExportResult(
        out, side_path, precision, opset, exporter, sidecar["sha256"], parity, seconds
    )
