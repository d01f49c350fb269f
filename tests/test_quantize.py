"""int8 CPU export (engine/quantize.py) and the runtime's use of a model's int8 variant."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from earsight.engine.errors import BackendUnavailable, EngineBuildError, ExportError
from earsight.engine.export import export_onnx
from earsight.engine.quantize import INT8_LIMITS, checkpoint_images, store_large_weights_half
from earsight.engine.runtime import RuntimeOptions, load, make_backend
from earsight.engine.sidecar import read_sidecar
from earsight.engine.source import int8_variant_path, read_model

pytestmark = pytest.mark.usefixtures("torch_on_one_thread")

OPTS = RuntimeOptions(threads=1)


@pytest.fixture(scope="module")
def digits_images(engine_checkpoint: Path) -> tuple[np.ndarray, np.ndarray]:
    return checkpoint_images(engine_checkpoint, None)  # sklearn digits: no files needed


@pytest.fixture(scope="module")
def int8_pair(engine_checkpoint, digits_images, tmp_path_factory) -> Path:
    """A folder with model.onnx (fp32) and model.int8.onnx, both from engine_checkpoint."""
    folder = tmp_path_factory.mktemp("int8-pair")
    export_onnx(engine_checkpoint, folder / "model.onnx", "fp32")
    train, test = digits_images
    export_onnx(
        engine_checkpoint, folder / "model.int8.onnx", "int8", calibration=train, test_images=test
    )
    return folder / "model.onnx"


def _producers(model: onnx.ModelProto) -> dict[str, str]:
    return {out: node.op_type for node in model.graph.node for out in node.output}


def test_int8_export_quantizes_all_encoder_convolutions_but_the_first(int8_pair):
    model = onnx.load(str(int8_variant_path(int8_pair)))
    made_by = _producers(model)
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # QDQ: a quantized conv reads its input and its weight through DequantizeLinear
    quantized = [made_by.get(n.input[0]) == "DequantizeLinear" for n in convs]
    image_convs = [
        q for n, q in zip(convs, quantized, strict=True) if weights.get(n.input[1], 0) != 3
    ]
    assert image_convs[0] is False and all(image_convs[1:]) and len(image_convs) > 2
    one_d = [n for n in convs if weights.get(n.input[1]) == 3]  # the generator's convolutions
    assert one_d and not any(made_by.get(n.input[0]) == "DequantizeLinear" for n in one_d)


def test_int8_sidecar_records_parity_on_real_images(int8_pair, digits_images):
    side = read_sidecar(int8_variant_path(int8_pair))
    parity = side["parity"]
    assert side["precision"] == "int8" and side["config"]["flip_tta"] is False
    assert parity["images"] == min(500, len(digits_images[1]))
    assert parity["top1_agreement"] >= INT8_LIMITS["top1_agreement"]
    assert parity["waveform_corr_mean"] >= INT8_LIMITS["waveform_corr_mean"]
    assert parity["waveform_corr_min"] <= parity["waveform_corr_mean"] <= 1.0 + 1e-9
    assert parity["limits"] == INT8_LIMITS


def test_int8_export_that_strays_is_refused_and_leaves_no_file(
    engine_checkpoint, digits_images, tmp_path, monkeypatch
):
    monkeypatch.setitem(INT8_LIMITS, "waveform_corr_mean", 1.01)  # no int8 model reaches r > 1
    train, test = digits_images
    with pytest.raises(ExportError, match=r"int8 ONNX strays from torch: waveform_corr_mean"):
        export_onnx(
            engine_checkpoint, tmp_path / "m.onnx", "int8", calibration=train, test_images=test
        )
    assert list(tmp_path.iterdir()) == []


def test_int8_export_without_images_is_a_usage_error(engine_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="int8 export needs calibration and test images"):
        export_onnx(engine_checkpoint, tmp_path / "m.onnx", "int8")
    assert list(tmp_path.iterdir()) == []


def test_large_float_weights_are_stored_half_and_cast_back(tmp_path):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((512, 600)).astype(np.float32)  # 1.2 MB
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 600])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert store_large_weights_half(model) == 1
    onnx.checker.check_model(model)
    assert model.graph.initializer[0].data_type == TensorProto.FLOAT16
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.ones((1, 512), np.float32)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x @ weight.astype(np.float16).astype(np.float32), rtol=1e-4)


def test_onnx_cpu_runs_the_int8_variant_unless_told_not_to(int8_pair, caplog):
    with caplog.at_level(logging.INFO, logger="earsight.engine.runtime"):
        rt = load(int8_pair, "onnx-cpu", OPTS)
    assert rt.info.precision == "int8" and rt.info.model.name == "model.int8.onnx"
    assert "backend onnx-cpu on cpu: model.int8.onnx (int8)" in caplog.text
    auto = load(int8_pair, "auto", OPTS)
    assert auto.info.backend == "onnx-cpu" and auto.info.precision == "int8"
    kept = load(int8_pair, "onnx-cpu", RuntimeOptions(threads=1, cpu_int8=False))
    assert kept.info.precision == "fp32" and kept.info.model.name == "model.onnx"
    torch_rt = load(int8_pair, "torch", OPTS)  # only ONNX Runtime CPU takes the variant
    assert torch_rt.info.model.name == "model.onnx"
    image = np.zeros((1, *rt.info.input_shape), np.uint8)
    assert rt.infer(image)[0].shape == kept.infer(image)[0].shape


def test_an_int8_file_of_other_weights_is_ignored_with_a_warning(
    int8_pair, engine_checkpoint, tmp_path, caplog
):
    for name in ("model.onnx", "model.int8.onnx", "model.int8.onnx.json"):
        shutil.copy(int8_pair.parent / name, tmp_path / name)
    side_path = tmp_path / "model.onnx.json"
    side = json.loads((int8_pair.parent / "model.onnx.json").read_text())
    # as if exported from another checkpoint of other weights
    side["checkpoint"]["sha256"] = side["checkpoint"]["weights_sha256"] = "0" * 64
    side["checkpoint"]["path"] = str(engine_checkpoint)
    side_path.write_text(json.dumps(side))
    with caplog.at_level(logging.WARNING, logger="earsight.engine.source"):
        rt = load(tmp_path / "model.onnx", "onnx-cpu", OPTS)
    assert rt.info.precision == "fp32" and rt.info.model.name == "model.onnx"
    assert "ignoring model.int8.onnx: not an export of the same weights" in caplog.text


def test_an_int8_file_exported_from_the_slim_copy_is_the_same_weights(
    int8_pair, engine_checkpoint, digits_images, tmp_path, caplog
):
    # The README's slimming step (trainer/checkpoint.py) writes another file of the same
    # weights: its int8 export pairs with the fp32 export of the full checkpoint.
    from earsight.trainer.checkpoint import save_inference_checkpoint

    slim = save_inference_checkpoint(engine_checkpoint, tmp_path / "slim.pt")
    shutil.copy(int8_pair, tmp_path / "model.onnx")
    shutil.copy(int8_pair.parent / "model.onnx.json", tmp_path / "model.onnx.json")
    train, test = digits_images
    export_onnx(slim, tmp_path / "model.int8.onnx", "int8", calibration=train, test_images=test)
    with caplog.at_level(logging.WARNING, logger="earsight.engine.source"):
        rt = load(tmp_path / "model.onnx", "onnx-cpu", OPTS)
    assert rt.info.precision == "int8" and "ignoring" not in caplog.text, caplog.text


def test_tensorrt_refuses_the_int8_export_so_auto_falls_through(int8_pair):
    from earsight.engine.build import choose_mode

    variant = read_model(int8_pair).int8
    assert variant is not None and variant.contract.precision == "int8"
    with pytest.raises(BackendUnavailable, match="int8 CPU export; TensorRT runs fp16/fp32"):
        make_backend("tensorrt", variant, OPTS, explicit=True)
    with pytest.raises(EngineBuildError, match="int8 CPU export"):
        choose_mode("fp16", "int8", has_fp16_flag=True, strongly=True)


def test_sidecar_checkpoint_path_is_absolute_only_across_top_level_trees():
    from earsight.engine.sidecar import _checkpoint_path

    model = Path("/srv/earsight/assets/models/m.onnx")
    assert _checkpoint_path(Path("/srv/earsight/runs/a/best.pt"), model) == "../../runs/a/best.pt"
    assert _checkpoint_path(Path("/data/runs/a/best.pt"), model) == "/data/runs/a/best.pt"


def test_sidecar_checkpoint_path_is_relative_and_survives_a_move(int8_pair, tmp_path):
    recorded = read_sidecar(int8_pair)["checkpoint"]["path"]
    assert not Path(recorded).is_absolute()
    assert read_model(int8_pair).checkpoint is not None
    # Move the export alone: the relative path breaks, the checkpoint is found beside it by name.
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(int8_pair.parent / name, moved / name)
    assert read_model(moved / "model.onnx").checkpoint is None
    checkpoint = (int8_pair.parent / recorded).resolve()
    shutil.copy(checkpoint, moved / checkpoint.name)
    assert read_model(moved / "model.onnx").checkpoint == moved / checkpoint.name


def test_bench_times_the_int8_variant_only_in_its_own_row(int8_pair, tmp_path):
    from earsight.engine.bench import run_bench
    from earsight.engine.bench_measure import BenchOptions, parse_spec
    from earsight.engine.bench_table import format_table
    from earsight.engine.errors import EngineError

    assert parse_spec("onnx-cpu:int8") == ("onnx-cpu", "int8")
    for spec in ("torch:int8", "tensorrt:int8"):
        with pytest.raises(EngineError, match="unknown backend"):
            parse_spec(spec)
    opts = BenchOptions(
        backends=("torch", "onnx-cpu", "onnx-cpu:int8"),
        batches=(1,),
        iters=3,
        threads=1,
        budget_s=1,
    )
    paired = run_bench(int8_pair, opts, say=lambda _: None)
    rows = {r.spec: r for r in paired.rows}
    assert rows["onnx-cpu"].precision == "fp32"  # the file named, not its variant
    assert rows["torch"].file.endswith(".pt"), rows["torch"]  # what torch ran, not the .onnx
    # for a screen reader: one line a row, every value after its column's name
    spoken = format_table(paired, lines_only=True).splitlines()
    assert any(
        line.startswith(f"backend onnx-cpu:int8; file {int8_pair.stem}.int8.onnx; precision int8")
        and "; b1 p50 ms " in line
        for line in spoken
    ), spoken
    assert rows["onnx-cpu:int8"].precision == "int8" and not rows["onnx-cpu:int8"].error
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(int8_pair.parent / name, alone / name)
    report = run_bench(alone / "model.onnx", opts, say=lambda _: None)
    missing = next(r for r in report.rows if r.spec == "onnx-cpu:int8")
    assert "no int8 export beside the model" in missing.error
    int8_line = next(
        line for line in format_table(paired).splitlines() if line.startswith("onnx-cpu:int8")
    )
    assert int8_line.rstrip().endswith("–")  # no % of a float FLOP peak for integer MACs


def test_int8_export_without_the_training_data_says_where_to_point(engine_checkpoint, tmp_path):
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(engine_checkpoint)
    ckpt["dataset"] = {**ckpt["dataset"], "source": "mnist"}  # as if trained on MNIST files
    moved = tmp_path / "mnist.pt"
    save_checkpoint(moved, ckpt)
    with pytest.raises(ExportError) as err:
        checkpoint_images(moved, tmp_path / "no-data")
    message = str(err.value)
    assert message.startswith("int8 calibration needs the mnist images: MNIST")
    assert "pass --data-root DIR" in message and "\n" not in message


def test_an_older_sidecar_without_newer_config_fields_still_pairs(int8_pair, tmp_path):
    for name in ("model.onnx", "model.int8.onnx", "model.int8.onnx.json"):
        shutil.copy(int8_pair.parent / name, tmp_path / name)
    side = json.loads((int8_pair.parent / "model.onnx.json").read_text())
    del side["config"]["flip_tta"]  # as written before mirror averaging existed
    (tmp_path / "model.onnx.json").write_text(json.dumps(side))
    assert read_model(tmp_path / "model.onnx").int8 is not None
    int8_side = json.loads((tmp_path / "model.int8.onnx.json").read_text())
    int8_side["config"]["flip_tta"] = True  # a field that is on is a real difference
    (tmp_path / "model.int8.onnx.json").write_text(json.dumps(int8_side))
    assert read_model(tmp_path / "model.onnx").int8 is None


def test_bench_on_a_fresh_clone_times_the_shipped_file_against_its_int8_variant(
    int8_pair, tmp_path
):
    """Only the ONNX files ship (no checkpoint): the default bench still has a peer of the same
    weights in the same run, and its speedups are against it (issue 11)."""
    from earsight.engine.bench import run_bench
    from earsight.engine.bench_measure import BenchOptions
    from earsight.engine.bench_table import format_table

    fresh = tmp_path / "clone" / "models"  # deeper: the sidecar's relative path leads nowhere
    fresh.mkdir(parents=True)
    for name in ("model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json"):
        shutil.copy(int8_pair.parent / name, fresh / name)  # the checkpoint stays behind
    opts = BenchOptions(batches=(1,), iters=3, threads=1, budget_s=1)  # default backends
    report = run_bench(fresh / "model.onnx", opts, say=lambda _: None)
    ran = {r.spec: r for r in report.rows if not r.error}
    assert set(ran) == {"onnx-cpu:fp32", "onnx-cpu:int8"}
    assert not any(r.backend == "torch" for r in report.rows)
    table = format_table(report)
    assert "speedups are vs onnx-cpu:fp32 (model.onnx) in this run" in table
    int8_line = next(line for line in table.splitlines() if line.startswith("onnx-cpu:int8"))
    assert "model.int8.onnx" in int8_line


def test_backbone_int8_keeps_the_early_high_resolution_convolutions_float(tmp_path):
    """efficientnet-lite0 at 160 px: 32 dense convolutions after the stem; int8 takes the 10
    whose maps are 5×5 (stages 6–7 and the head), none of the depthwise ones."""
    import torch

    from earsight.engine.export import _export_graph
    from earsight.engine.graph import InferenceGraph
    from earsight.engine.quantize import LOW_RES_DIVISOR, encoder_convolutions
    from earsight.trainer.mtnet.config import make_config
    from earsight.trainer.mtnet.model import MTNet

    torch.manual_seed(0)
    cfg = make_config("efficientnet-lite0", n_classes=3, audio_length=800)
    path = tmp_path / "lite0.onnx"
    _export_graph(InferenceGraph(MTNet(cfg).eval()), path, 18, 2)
    model = onnx.load(str(path))
    every = encoder_convolutions(model)
    late = encoder_convolutions(model, cfg.image_size // LOW_RES_DIVISOR)
    assert len(every) == 32 and len(late) == 10
    assert late == every[-10:]  # in graph order: the tail of the backbone
    groups = {
        n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node
    }
    assert all(groups[name] == 1 for name in late)


@pytest.mark.parametrize("cpu_int8", [True, False])
def test_loading_a_model_reads_and_hashes_each_of_its_files_once(int8_pair, monkeypatch, cpu_int8):
    import earsight.engine.sidecar as sidecar

    hashed: list[str] = []
    real = sidecar.sha256_file

    def counted(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(sidecar, "sha256_file", counted)
    with load(int8_pair, "auto", RuntimeOptions(threads=1, cpu_int8=cpu_int8)) as rt:
        assert rt.info.precision == ("int8" if cpu_int8 else "fp32")
    # one pass (read_model): the model's and, when it may run, its int8 variant's, once each
    assert sorted(hashed) == (["model.int8.onnx", "model.onnx"] if cpu_int8 else ["model.onnx"])
