"""One runtime interface over several backends: ``load(model) → Runtime``; ``runtime(images)``.

    rt = engine.runtime.load("model.onnx")          # auto: best backend available here
    waveforms, probs = rt(frame)                    # (H, W, C) or (B, H, W, C) uint8
    rt.info.backend, rt.info.output_rate, rt.info.labels[probs[0].argmax()]

``backend="auto"`` tries TensorRT (cached engine) → ONNX Runtime CUDA → ONNX Runtime CPU →
torch, logging each skipped backend once with its reason (DEBUG when it is simply absent, WARNING
when it is installed but failed), then one INFO line naming the backend, device, file and
precision that run and the backends skipped. A bad model file is an error, never a fallback.
ONNX Runtime CPU runs a model's int8 variant (``name.int8.onnx``, same weights) when there is
one; ``RuntimeOptions(cpu_int8=False)`` (``--no-int8``) keeps the file as given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earsight.engine.backends.base import Backend, RuntimeOptions
from earsight.engine.errors import BackendFailed, BackendUnavailable, InputError, ModelFileError
from earsight.engine.postprocess import pad_batch, postprocess
from earsight.engine.source import ModelSource, read_model
from earsight.errors import UsageError, trainer_not_installed

log = logging.getLogger(__name__)

BACKEND_NAMES = ("tensorrt", "onnx-cuda", "onnx-cpu", "torch")
AUTO_ORDER = BACKEND_NAMES  # fastest first
WARMUP_ITERS = 3  # first runs allocate arenas and pick kernels

__all__ = ["AUTO_ORDER", "BACKEND_NAMES", "Runtime", "RuntimeInfo", "RuntimeOptions", "load"]


@dataclass(frozen=True)
class RuntimeInfo:
    backend: str  # one of BACKEND_NAMES
    providers: tuple[str, ...]  # ORT providers in use, or the library and its version
    device: str
    precision: str  # "fp32" | "fp16" | "int8" of the arithmetic (int8: the encoder's convs)
    labels: tuple[str, ...]  # spoken word per class: labels[probs.argmax()]
    input_shape: tuple[int, int, int]  # (H, W, C) of one uint8 image
    input_crop: float  # share of a picture's shorter side to keep before resizing (fit_to_input)
    sample_rate: int  # Hz of the raw model waveform
    output_rate: int  # Hz of what __call__ returns
    threads: int  # CPU intra-op threads
    model: Path
    sidecar: dict[str, Any] | None  # the ONNX sidecar, None for a checkpoint
    fallbacks: tuple[str, ...]  # "backend: reason" for each backend auto skipped


def validate_images(images: Any, hwc: tuple[int, int, int], max_batch: int | None) -> np.ndarray:
    """(H, W, C) or (B, H, W, C) uint8 → C-contiguous (B, H, W, C); anything else: InputError."""
    expected = f"uint8 images (B, {hwc[0]}, {hwc[1]}, {hwc[2]}) or ({hwc[0]}, {hwc[1]}, {hwc[2]})"
    if not isinstance(images, np.ndarray):
        raise InputError(f"expected {expected} as a numpy array, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or tuple(images.shape[1:]) != hwc or images.shape[0] == 0:
        raise InputError(
            f"expected {expected}, got shape {tuple(images.shape)}",
            "resize camera frames to the model's input size (info.input_shape)",
        )
    if images.dtype != np.uint8:
        raise InputError(
            f"expected {expected}, got dtype {images.dtype} {tuple(images.shape)}",
            "pass raw 0..255 pixels as uint8: the model standardizes them itself",
        )
    if max_batch is not None and images.shape[0] > max_batch:
        raise InputError(
            f"batch {images.shape[0]} exceeds this engine's maximum {max_batch}",
            "split the batch, or rebuild with `earsight engine build --max-batch N`",
        )
    return np.ascontiguousarray(images)


def check_outputs(wave: np.ndarray, probs: np.ndarray, batch: int, source: ModelSource) -> None:
    """Outputs as the sidecar promises: waveform (B, L_s) and probs (B, K = vocabulary), finite.

    A probs row wider than the vocabulary would name no word, a narrower one the wrong word;
    NaN/inf come from diverged weights. Either is a bad model file (ModelFileError).
    """
    contract, name = source.contract, source.path.name
    want = {"waveform": (batch, contract.audio_length), "probs": (batch, contract.n_classes)}
    for label, array in (("waveform", wave), ("probs", probs)):
        if tuple(array.shape) != want[label]:
            raise ModelFileError(
                f"{name} returned {label} of shape {tuple(array.shape)}, its sidecar says "
                f"{want[label]}",
                "re-export it with `earsight export CHECKPOINT -o MODEL.onnx`",
            )
        if not np.isfinite(array).all():
            raise ModelFileError(
                f"{name} returned non-finite {label} (NaN or inf): its weights are probably "
                "broken (a diverged training run)",
                "retrain with a lower --lr and export again",
            )


class Runtime:
    """A loaded model on one backend. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        backend: Backend,
        source: ModelSource,
        options: RuntimeOptions,
        fallbacks: tuple[str, ...] = (),
    ) -> None:
        self.backend, self.source, self.options = backend, source, options
        contract = source.contract
        self.info = RuntimeInfo(
            backend=backend.name,
            providers=tuple(backend.providers),
            device=backend.device,
            precision=backend.precision,
            labels=contract.labels,
            input_shape=contract.input_shape,
            input_crop=contract.input_crop,
            sample_rate=contract.sample_rate,
            output_rate=options.postprocess.output_rate or contract.sample_rate,
            threads=options.cpu_threads(),
            model=source.path,
            sidecar=source.sidecar,
            fallbacks=fallbacks,
        )

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs: waveform (B, L_s) float32 at info.sample_rate, probs (B, K).

        The sidecar's withdrawn words (a taught word forgotten since the model was learned) get
        probability 0, not renormalised: a frame of that object is "not sure", not another word.
        ModelFileError when the model's outputs break its sidecar (shape) or are NaN/inf.
        """
        batch = validate_images(images, self.info.input_shape, self.backend.max_batch)
        wave, probs = self.backend.run(batch)
        check_outputs(wave, probs, len(batch), self.source)
        if self.source.contract.withdrawn:
            probs = np.array(probs, copy=True)
            probs[:, list(self.source.contract.withdrawn)] = 0.0
        return wave, probs

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Post-processed waveforms (B, L) float32 at info.output_rate, and probs (B, K).

        Rows are trimmed individually, then zero-padded (silence) to the batch's longest; for
        one image (the key-press case) L is exactly that clip's length.
        """
        waves, probs = self.infer(images)
        clips = postprocess(waves, self.info.sample_rate, self.options.postprocess)
        return pad_batch(clips), probs

    def warmup(self, batch: int = 1, iters: int = WARMUP_ITERS) -> None:
        """Run a few blank batches so the first real key press is not the slow one."""
        blank = np.zeros((batch, *self.info.input_shape), np.uint8)
        for _ in range(iters):
            self.infer(blank)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def source_for(name: str, source: ModelSource, options: RuntimeOptions) -> ModelSource:
    """What backend ``name`` should run: the int8 variant for onnx-cpu when allowed and present."""
    variant = source.int8  # found when the model was read (read_model), or None
    if name != "onnx-cpu" or not options.cpu_int8 or variant is None:
        return source
    log.debug(
        "onnx-cpu: %s is the int8 export of %s's weights", variant.path.name, source.path.name
    )
    return variant


def open_backend(
    name: str, source: ModelSource, options: RuntimeOptions, explicit: bool
) -> tuple[Backend, ModelSource]:
    """The backend ``name`` on what it should run (source_for), and that source.

    An int8 variant that passed its checksum but that ONNX Runtime cannot load (truncated and
    re-hashed, foreign, non-finite) is skipped with a warning, as a checksum mismatch is: the
    model as given still runs. A bad model as given is still an error.
    """
    chosen = source_for(name, source, options)
    try:
        return make_backend(name, chosen, options, explicit), chosen
    except ModelFileError as err:
        if chosen is source:
            raise
        log.warning("ignoring the int8 variant %s: %s", chosen.path.name, err)
    return make_backend(name, source, options, explicit), source


def _log_choice(runtime: Runtime, skipped: list[str]) -> None:
    # One INFO line (stdout in the CLI, read aloud by screen readers): what runs, where, and
    # which faster backends were skipped; each reason is its own DEBUG/WARNING line above.
    info = runtime.info
    tail = f"; skipped {', '.join(skipped)}" if skipped else ""
    log.info(
        "backend %s on %s: %s (%s%s)",
        info.backend,
        info.device,
        info.model.name,
        info.precision,
        tail,
    )


def make_backend(
    name: str, source: ModelSource, options: RuntimeOptions, explicit: bool
) -> Backend:
    """Construct one backend; raises BackendUnavailable when it cannot run here."""
    if name == "tensorrt":
        from earsight.engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(source, options, allow_build=explicit or options.build_engine)
    if name in ("onnx-cuda", "onnx-cpu"):
        from earsight.engine.backends.onnx import OnnxBackend

        return OnnxBackend(source, options, cuda=name == "onnx-cuda")
    if name == "torch":
        try:
            from earsight.engine.backends.torch_backend import TorchBackend
        except ImportError as err:  # a runtime-only install: no torch
            missing = trainer_not_installed(err, "the torch backend")
            if missing is None:
                raise
            raise BackendUnavailable(missing.what, missing.fix) from err
        return TorchBackend(source, options)
    raise UsageError(
        f"unknown backend {name!r}", f"choose auto or one of {', '.join(BACKEND_NAMES)}"
    )


def load(
    model_path: Path | str, backend: str = "auto", options: RuntimeOptions | None = None
) -> Runtime:
    """Load ``model_path`` (.onnx with sidecar, or .pt) on ``backend`` ("auto" or a name)."""
    options = options or RuntimeOptions()
    if backend != "auto" and backend not in BACKEND_NAMES:
        raise UsageError(
            f"unknown backend {backend!r}", f"choose auto or one of {', '.join(BACKEND_NAMES)}"
        )
    source = read_model(model_path, options.verify_sha256, int8=options.cpu_int8)
    if backend != "auto":
        chosen, source = open_backend(backend, source, options, explicit=True)
        runtime = Runtime(chosen, source, options)
        _log_choice(runtime, [])
        return runtime
    fallbacks: list[str] = []
    for name in AUTO_ORDER:
        try:
            chosen, chosen_source = open_backend(name, source, options, explicit=False)
        except BackendUnavailable as err:
            level = logging.WARNING if isinstance(err, BackendFailed) else logging.DEBUG
            log.log(level, "backend %s unavailable: %s", name, err)
            fallbacks.append(f"{name}: {err}")
            continue
        runtime = Runtime(chosen, chosen_source, options, tuple(fallbacks))
        _log_choice(runtime, [f.split(":")[0] for f in fallbacks])
        return runtime
    raise BackendUnavailable(
        f"no backend can run {Path(model_path).name} ({'; '.join(fallbacks)})",
        "install onnxruntime, or keep the checkpoint beside the model",
    )
