"""ONNX export: the I/O contract, the checker, the sidecar, parity with torch (fp32 and fp16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from earsight.engine.errors import ExportError
from earsight.engine.export import TOLERANCE, export_onnx
from earsight.engine.sidecar import PREPROCESSING, sha256_file, sidecar_path
from earsight.engine.trt_ops import tensorrt_problems
from earsight.errors import UsageError
from earsight.trainer.checkpoint import load_model
from earsight.trainer.errors import CheckpointError

PRECISIONS = ("fp32", "fp16")


pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


def _dims(value_info: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_reference(checkpoint, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model, _ = load_model(checkpoint)
    with torch.inference_mode():
        wave, probs = model(torch.from_numpy(images).permute(0, 3, 1, 2))
    return wave.numpy(), probs.numpy()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_contract_names_dtypes_and_dynamic_batch(engine_onnx, engine_checkpoint, precision):
    result = engine_onnx[precision]
    model = onnx.load(str(result.path))
    cfg = load_model(engine_checkpoint)[0].cfg
    (inp,) = model.graph.input
    assert inp.name == "images"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert _dims(inp) == ["batch", cfg.image_size, cfg.image_size, cfg.image_channels]
    outs = {o.name: o for o in model.graph.output}
    assert list(outs) == ["waveform", "probs"]
    for name, width in (("waveform", cfg.audio_length), ("probs", cfg.n_classes)):
        assert outs[name].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert _dims(outs[name]) == ["batch", width]
    session = _session(result.path)
    for batch in (1, 5):
        images = np.zeros((batch, cfg.image_size, cfg.image_size, cfg.image_channels), np.uint8)
        wave, probs = session.run(None, {"images": images})
        assert wave.shape == (batch, cfg.audio_length) and probs.shape == (batch, cfg.n_classes)
        assert wave.dtype == probs.dtype == np.float32


@pytest.mark.parametrize("precision", PRECISIONS)
def test_checker_passes_and_fp16_really_is_fp16(engine_onnx, precision):
    path = engine_onnx[precision].path
    onnx.checker.check_model(str(path), full_check=True)
    weights = [init for init in onnx.load(str(path)).graph.initializer if np.prod(init.dims) > 1000]
    want = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    assert weights and all(w.data_type == want for w in weights)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sidecar_describes_the_file(engine_onnx, engine_checkpoint, precision):
    result = engine_onnx[precision]
    assert result.sidecar == sidecar_path(result.path) == result.path.with_suffix(".onnx.json")
    side = json.loads(result.sidecar.read_text())
    cfg = load_model(engine_checkpoint)[0].cfg
    assert side["sha256"] == sha256_file(result.path) == result.sha256
    assert (
        side["vocabulary"]
        == list(cfg.labels)
        == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    assert side["sample_rate"] == cfg.sample_rate == 22_050
    assert side["audio_length"] == cfg.audio_length
    assert side["input_size"] == [8, 8, 1]
    assert side["input"] == {
        "name": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "shape": ["batch", 8, 8, 1],
    }
    assert side["preprocessing"] == PREPROCESSING and "Eq. 1" in side["preprocessing"]
    assert side["preset"] == "compact" and side["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert side["precision"] == precision and side["opset"] == 18
    assert side["exporter"].startswith("torch.onnx dynamo")
    assert side["checkpoint"]["sha256"] == sha256_file(engine_checkpoint)
    parity = side["parity"]
    assert parity["tolerance"] == TOLERANCE[precision]
    assert max(parity["waveform_max_abs"], parity["probs_max_abs"]) <= parity["tolerance"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_parity_with_torch_on_fresh_images(engine_onnx, engine_checkpoint, precision):
    images = np.random.default_rng(42).integers(0, 256, size=(7, 8, 8, 1), dtype=np.uint8)
    wave, probs = _session(engine_onnx[precision].path).run(None, {"images": images})
    ref_wave, ref_probs = _torch_reference(engine_checkpoint, images)
    tol = TOLERANCE[precision]
    assert np.abs(wave - ref_wave).max() <= tol
    assert np.abs(probs - ref_probs).max() <= tol
    single, _ = _session(engine_onnx[precision].path).run(None, {"images": images[3:4]})
    assert np.abs(single[0] - wave[3]).max() <= tol  # rows do not depend on the batch


def test_legacy_exporter_below_opset_18_and_failed_parity_leaves_nothing(
    engine_checkpoint, tmp_path, monkeypatch
):
    ok = export_onnx(engine_checkpoint, tmp_path / "old.onnx", opset=17)
    assert ok.exporter.startswith("torch.onnx TorchScript") and ok.opset == 17
    assert onnx.load(str(ok.path)).opset_import[0].version == 17
    monkeypatch.setitem(TOLERANCE, "fp32", 0.0)  # nothing passes a zero tolerance
    with pytest.raises(ExportError, match="disagrees with torch"):
        export_onnx(engine_checkpoint, tmp_path / "bad.onnx", opset=17)
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob("bad.onnx*"))


def test_export_errors_are_one_line(engine_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="precision") as err:
        export_onnx(engine_checkpoint, tmp_path / "m.onnx", precision="int4")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="opset"):
        export_onnx(engine_checkpoint, tmp_path / "m.onnx", opset=7)


@pytest.fixture(scope="module")
def mirror_trained_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A tiny model trained on mirrored images too (digits with --augment shift+flip)."""
    from earsight.trainer.data.dataset import DatasetSpec, build_dataset
    from earsight.trainer.training.run import fit
    from earsight.trainer.training.train import TrainOptions

    spec = DatasetSpec(source="digits", limit_train=120, limit_test=20)
    opts = TrainOptions(ae_epochs=1, epochs=1, batch_size=32, warmup_steps=5, augment="shift+flip")
    return fit(build_dataset(spec), spec, opts, tmp_path_factory.mktemp("mirror-ckpt"))


def test_flip_tta_export_answers_an_image_and_its_mirror_alike(mirror_trained_checkpoint, tmp_path):
    from earsight.engine.runtime import load

    result = export_onnx(mirror_trained_checkpoint, tmp_path / "m.onnx", flip_tta=True)
    assert json.loads(result.sidecar.read_text())["config"]["flip_tta"] is True
    images = np.random.default_rng(3).integers(0, 256, size=(5, 8, 8, 1), dtype=np.uint8)
    mirrors = np.ascontiguousarray(images[:, :, ::-1])
    session = _session(result.path)
    wave, probs = session.run(None, {"images": images})
    wave_m, probs_m = session.run(None, {"images": mirrors})
    tol = TOLERANCE["fp32"]
    assert np.abs(wave - wave_m).max() <= tol and np.abs(probs - probs_m).max() <= tol
    # Without the averaging the same weights do hear a mirror differently (so the above is not
    # a symmetric net by accident), and the export is not the plain model.
    plain_wave, _ = _torch_reference(mirror_trained_checkpoint, images)
    plain_wave_m, _ = _torch_reference(mirror_trained_checkpoint, mirrors)
    assert np.abs(plain_wave - plain_wave_m).max() > 10 * tol
    assert np.abs(wave - plain_wave).max() > 10 * tol
    # The mirror is a Gather, not the negative-step Slice TensorRT's chart does not promise.
    assert tensorrt_problems(onnx.load(str(result.path))) == []
    # The torch backend reads the sidecar and mirror-averages too, so backends still agree.
    ref_wave, ref_probs = load(result.path, backend="torch").infer(images)
    assert np.abs(wave - ref_wave).max() <= tol and np.abs(probs - ref_probs).max() <= tol


def test_flip_tta_is_refused_for_a_model_trained_without_mirrors(engine_checkpoint, tmp_path):
    with pytest.raises(UsageError, match="not trained on mirrored images") as err:
        export_onnx(engine_checkpoint, tmp_path / "m.onnx", flip_tta=True)
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())


def test_bench_builds_every_peer_like_the_export(mirror_trained_checkpoint, tmp_path):
    from earsight.engine.bench import ModelFiles, SynthSpec
    from earsight.trainer.mtnet.model import inference_macs

    exported = export_onnx(mirror_trained_checkpoint, tmp_path / "m.onnx", flip_tta=True)
    files = ModelFiles(exported.path, SynthSpec(), tmp_path)
    cfg = files.config()
    assert cfg.flip_tta  # so the MMAC column counts both encoder passes
    plain = load_model(mirror_trained_checkpoint)[0].cfg
    assert inference_macs(cfg) > inference_macs(plain)
    assert files.for_spec("torch", "fp32") == exported.path  # torch follows the sidecar
    fp16 = files.for_spec("onnx-cpu", "fp16")
    assert json.loads(sidecar_path(fp16).read_text())["config"]["flip_tta"] is True


def test_tensorrt_check_names_a_flip_slice_an_unknown_operator_and_the_opset():
    from onnx import TensorProto, helper

    def const(name: str, value: int):
        return helper.make_tensor(name, TensorProto.INT64, [1], [value])

    nodes = [
        helper.make_node("Slice", ["x", "start", "end", "axis", "step"], ["y"], name="flip"),
        helper.make_node("Mish", ["y"], ["z"], name="act"),
    ]
    init = [const("start", -1), const("end", -(2**62)), const("axis", 3), const("step", -1)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 4, 4])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    problems = "\n".join(tensorrt_problems(model))
    assert "negative step" in problems and "Mish" in problems and "opset 22" in problems
    step = next(t for t in model.graph.initializer if t.name == "step")
    step.CopyFrom(const("step", 1))
    model.opset_import[0].version = 18
    assert [p for p in tensorrt_problems(model) if "Mish" not in p] == []


def test_evaluate_scores_an_export_of_the_checkpoint_and_refuses_another_models(
    engine_onnx, engine_checkpoint
):
    from earsight.errors import UsageError
    from earsight.trainer.evaluate import evaluate_checkpoint

    mine = evaluate_checkpoint(engine_checkpoint, max_items=5, onnx=engine_onnx["fp32"].path)
    assert mine["model"] == str(engine_onnx["fp32"].path) and mine["image_acc"] >= 0
    shipped = Path(__file__).resolve().parents[1] / "assets/models/mnist-ad.onnx"  # 28x28 MNIST
    with pytest.raises(UsageError, match="is an export of another model") as err:
        evaluate_checkpoint(engine_checkpoint, max_items=5, onnx=shipped)
    assert "input 28x28x1" in str(err.value) and "input 8x8x1" in str(err.value)


def test_evaluate_scores_a_checkpoint_that_does_not_record_its_training(
    engine_checkpoint, tmp_path
):
    """A checkpoint written without training options (teach.base --to-checkpoint's, for a
    model whose run is gone) is scored as the full model, not a KeyError after the scoring."""
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint
    from earsight.trainer.evaluate import evaluate_checkpoint

    ckpt = read_checkpoint(engine_checkpoint)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, {k: v for k, v in ckpt.items() if k not in ("format", "train")})
    row = evaluate_checkpoint(bare, max_items=3)
    assert row["ablation"] == "full" and 0 <= row["image_acc"] <= 1
