"""The runtime: the same checks on every backend available here, auto fallback, bad inputs."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from earsight.engine.errors import BackendUnavailable, InputError, ModelFileError
from earsight.engine.export import TOLERANCE
from earsight.engine.postprocess import PostprocessOptions
from earsight.engine.runtime import AUTO_ORDER, RuntimeOptions, load
from earsight.engine.sidecar import sidecar_path
from earsight.trainer.checkpoint import load_model

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()
HAS_ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
OPTS = RuntimeOptions(threads=1)  # one core is busy with training on the dev machine


pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


# (backend, ONNX precision it runs) — every backend, skipped with a reason where it cannot run.
BACKENDS = [
    pytest.param(("onnx-cpu", "fp32"), id="onnx-cpu"),
    pytest.param(("torch", "fp32"), id="torch"),
    pytest.param(
        ("onnx-cuda", "fp32"),
        id="onnx-cuda",
        marks=[
            pytest.mark.requires_cuda,
            pytest.mark.skipif(not HAS_ORT_CUDA, reason="onnxruntime-gpu with CUDA needed"),
        ],
    ),
    pytest.param(
        ("tensorrt", "fp16"),
        id="tensorrt",
        marks=[
            pytest.mark.requires_cuda,
            pytest.mark.requires_tensorrt,
            pytest.mark.skipif(
                not (HAS_TRT and HAS_CUDA),
                reason="TensorRT and a CUDA GPU needed (pip install "
                "earsight[tensorrt] on a CUDA machine)",
            ),
        ],
    ),
]


def _images(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(batch, 8, 8, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(engine_checkpoint):
    """torch fp32 eager outputs for _images(6): the figures every backend must match."""
    model, _ = load_model(engine_checkpoint)
    with torch.inference_mode():
        wave, probs = model(torch.from_numpy(_images(6)).permute(0, 3, 1, 2))
    return wave.numpy(), probs.numpy()


@pytest.fixture(scope="module", params=BACKENDS)
def runtime(request, engine_onnx, tmp_path_factory):
    name, precision = request.param
    options = RuntimeOptions(threads=1, engine_cache=tmp_path_factory.mktemp("engines"))
    rt = load(engine_onnx[precision].path, backend=name, options=options)
    yield rt
    rt.close()


def test_outputs_agree_with_torch(runtime, reference):
    wave, probs = runtime.infer(_images(6))
    tol = TOLERANCE[runtime.info.precision]
    assert wave.shape == reference[0].shape and probs.shape == reference[1].shape
    assert wave.dtype == probs.dtype == np.float32
    assert np.abs(wave - reference[0]).max() <= tol
    assert np.abs(probs - reference[1]).max() <= tol
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_single_image_and_postprocessed_call(runtime, reference):
    runtime.warmup()
    wave, probs = runtime(_images(6)[2])  # (H, W, C): one camera frame
    info = runtime.info
    assert wave.ndim == 2 and wave.shape[0] == 1 and wave.dtype == np.float32
    assert probs.shape == (1, 10) and np.abs(probs[0] - reference[1][2]).max() <= 2e-2
    assert info.output_rate == 48_000 and info.sample_rate == 22_050
    assert 0 < wave.shape[1] <= -(-16_344 * 48_000 // 22_050)  # trimmed, resampled
    assert abs(np.abs(wave).max() - 0.9) < 1e-3 and wave[0, 0] == 0 and wave[0, -1] == 0
    assert info.input_shape == (8, 8, 1)
    # the word it names is torch's top word (or one within the precision's tolerance of it)
    named = int(probs[0].argmax())
    assert reference[1][2][named] >= reference[1][2].max() - 2e-2


def test_info_describes_the_backend(runtime, request):
    info = runtime.info
    assert info.backend in AUTO_ORDER and info.providers and info.device
    assert info.sidecar["vocabulary"] == list(info.labels) and info.threads == 1
    if info.backend == "onnx-cpu":
        assert info.providers == ("CPUExecutionProvider",) and info.precision == "fp32"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 8, 8, 1), np.float32), r"expected uint8 images \(B, 8, 8, 1\).*got dtype"),
        (np.zeros((2, 28, 28, 1), np.uint8), r"got shape \(2, 28, 28, 1\)"),
        (np.zeros((8, 8), np.uint8), r"got shape \(8, 8\)"),
        (np.zeros((0, 8, 8, 1), np.uint8), r"got shape \(0, 8, 8, 1\)"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_images_are_one_line_input_errors(runtime, bad, match):
    with pytest.raises(InputError, match=match) as err:
        runtime(bad)
    assert "\n" not in str(err.value)


# --- auto fallback -----------------------------------------------------------------------------

cpu_only = pytest.mark.skipif(HAS_TRT or HAS_ORT_CUDA, reason="checks the CPU-only fallback chain")


@cpu_only
def test_auto_logs_each_fallback_reason_once(engine_onnx, caplog):
    caplog.set_level(logging.DEBUG, logger="earsight.engine.runtime")
    rt = load(engine_onnx["fp32"].path, options=OPTS)
    assert rt.info.backend == "onnx-cpu"
    messages = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(messages) == 2
    # absent backends are DEBUG detail; INFO is one line saying what runs and what was skipped
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        f"backend onnx-cpu on cpu: {engine_onnx['fp32'].path.name} (fp32; skipped tensorrt, "
        "onnx-cuda)"
    ]
    assert sum("tensorrt" in m and "TensorRT is not installed" in m for m in messages) == 1
    assert sum("onnx-cuda" in m and "no CUDA provider" in m for m in messages) == 1
    assert [f.split(":")[0] for f in rt.info.fallbacks] == ["tensorrt", "onnx-cuda"]


@cpu_only
def test_auto_on_a_checkpoint_falls_back_to_torch(engine_checkpoint, caplog):
    caplog.set_level(logging.DEBUG, logger="earsight.engine.runtime")
    rt = load(engine_checkpoint, options=OPTS)
    assert rt.info.backend == "torch" and rt.info.sidecar is None
    skipped = [r.getMessage().split()[1] for r in caplog.records if "unavailable" in r.getMessage()]
    assert skipped == ["tensorrt", "onnx-cuda", "onnx-cpu"]  # in order, once each
    assert "needs an ONNX model" in rt.info.fallbacks[2]
    wave, probs = rt(_images(2))
    assert wave.shape[0] == 2 and probs.shape == (2, 10)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install(engine_onnx):
    with pytest.raises(BackendUnavailable) as err:
        load(engine_onnx["fp16"].path, backend="tensorrt", options=OPTS)
    assert str(err.value) == (
        "TensorRT is not installed — pip install earsight[tensorrt] on a CUDA machine, "
        "or use --backend onnx-cpu"
    )


# --- bad model files ---------------------------------------------------------------------------


def test_bad_model_files_are_one_line_errors(engine_onnx, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model\n")
    for path, match in [(tmp_path / "gone.onnx", "not found"), (fake, "no sidecar model.onnx")]:
        with pytest.raises(ModelFileError, match=match):
            load(path, options=OPTS)
    shutil.copy(sidecar_path(engine_onnx["fp32"].path), sidecar_path(fake))
    with pytest.raises(ModelFileError, match="sha256 differs") as err:
        load(fake, backend="onnx-cpu", options=OPTS)
    assert "\n" not in str(err.value)
    unverified = RuntimeOptions(threads=1, verify_sha256=False)
    with pytest.raises(ModelFileError, match="could not be loaded by ONNX Runtime"):
        load(fake, backend="onnx-cpu", options=unverified)
    sidecar_path(fake).write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid model sidecar"):
        load(fake, options=OPTS)
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ModelFileError, match="unknown model type"):
        load(tmp_path / "model.txt")


def test_torch_backend_needs_the_exported_checkpoint(engine_onnx, tmp_path):
    src = engine_onnx["fp32"].path
    moved = tmp_path / "model.onnx"
    shutil.copy(src, moved)
    side = json.loads(sidecar_path(src).read_text())
    side["checkpoint"] = {**side["checkpoint"], "path": str(tmp_path / "gone.pt"), "name": "x.pt"}
    sidecar_path(moved).write_text(json.dumps(side))
    with pytest.raises(
        BackendUnavailable,
        match=r"the torch backend needs the checkpoint model\.onnx was exported from",
    ):
        load(moved, backend="torch", options=OPTS)
    assert load(moved, backend="onnx-cpu", options=OPTS).info.backend == "onnx-cpu"


def test_raw_output_mode_keeps_the_model_rate(engine_onnx):
    raw = RuntimeOptions(
        threads=1, postprocess=PostprocessOptions(output_rate=None, peak=None, trim_silence=False)
    )
    rt = load(engine_onnx["fp32"].path, backend="onnx-cpu", options=raw)
    wave, _ = rt(_images(3))
    assert rt.info.output_rate == 22_050 and wave.shape == (3, 16_344)


def test_unknown_backend_is_a_usage_error(engine_onnx):
    from earsight.errors import UsageError

    with pytest.raises(UsageError, match="unknown backend 'tpu'"):
        load(engine_onnx["fp32"].path, backend="tpu")


def test_onnx_cpu_threads_spin_unless_the_live_app_says_not(engine_onnx):
    from earsight.app.commands import live_runtime_options
    from earsight.app.config import LiveOptions

    def spinning(options: RuntimeOptions) -> str:
        rt = load(engine_onnx["fp32"].path, "onnx-cpu", options)
        entry = "session.intra_op.allow_spinning"
        return rt.backend.session.get_session_options().get_session_config_entry(entry)

    assert spinning(OPTS) == "1"  # benches and describe: lowest latency
    live = live_runtime_options(LiveOptions(threads=1))
    assert not live.cpu_spin and live.threads == 1 and live.cpu_int8
    assert spinning(live) == "0"  # presses are seconds apart: no CPU burnt between them


def test_a_checkpoint_rebuilt_with_the_same_weights_is_the_exports_torch_reference(
    engine_onnx, engine_checkpoint, tmp_path
):
    """The file hash differs (saved again), the weights hash is the sidecar's: torch runs it.
    Other weights under the recorded name are refused (issue 11: a peer of the same weights)."""
    src = engine_onnx["fp32"].path
    for name in (src.name, sidecar_path(src).name):
        shutil.copy(src.parent / name, tmp_path / name)
    side = json.loads(sidecar_path(src).read_text())
    side["checkpoint"] = {**side["checkpoint"], "path": "best.pt", "name": "best.pt"}
    sidecar_path(tmp_path / src.name).write_text(json.dumps(side))
    ckpt = torch.load(engine_checkpoint, map_location="cpu", weights_only=False)
    torch.save({**ckpt, "note": "saved again"}, tmp_path / "best.pt")  # another file, same weights
    runtime = load(tmp_path / src.name, backend="torch", options=OPTS)
    assert runtime.backend.weights_file == tmp_path / "best.pt"
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "best.pt")
    with pytest.raises(BackendUnavailable, match=r"best\.pt changed since"):
        load(tmp_path / src.name, backend="torch", options=OPTS)


def test_a_shipped_model_runs_on_torch_from_its_teach_base(tmp_path):
    """No checkpoint ships; the default model's teach base holds its weights (the same weights
    hash as the sidecar's), so torch answers as the shipped file does. A sidecar recording
    other weights gets no torch backend."""
    from skimage import data

    from earsight.app.camera.grabber import prepare
    from earsight.app.models import DEFAULT_MODEL, MODELS_DIR

    for name in (
        f"{DEFAULT_MODEL}.onnx",
        f"{DEFAULT_MODEL}.onnx.json",
        f"{DEFAULT_MODEL}.teach.pt",
    ):
        (tmp_path / name).symlink_to(MODELS_DIR / name)  # the sidecar's checkpoint path: gone
    model = tmp_path / f"{DEFAULT_MODEL}.onnx"
    eager = load(model, backend="torch", options=OPTS)
    shipped = load(model, backend="onnx-cpu", options=RuntimeOptions(threads=1, cpu_int8=False))
    assert eager.backend.weights_file.name == f"{DEFAULT_MODEL}.teach.pt"
    size = eager.info.input_shape[:2]
    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket()]
    crop = json.loads(sidecar_path(model).read_text())["input_crop"]
    images = np.stack([prepare(p, size, 3, crop) for p in photos])
    (_, p_torch), (_, p_onnx) = eager.backend.run(images), shipped.backend.run(images)
    assert (p_torch.argmax(1) == p_onnx.argmax(1)).all()
    np.testing.assert_allclose(p_torch, p_onnx, atol=0.05)  # fp16 file against fp32 eager
    side = json.loads(sidecar_path(model).read_text())
    side["checkpoint"]["weights_sha256"] = "0" * 64
    (tmp_path / f"{DEFAULT_MODEL}.onnx.json").unlink()
    (tmp_path / f"{DEFAULT_MODEL}.onnx.json").write_text(json.dumps(side))
    with pytest.raises(BackendUnavailable, match="or a teach base of its weights"):
        load(model, backend="torch", options=OPTS)
