"""Model files are checked, never trusted: sidecar fields against a schema with sane ranges, the
vocabulary against the ONNX's outputs, non-finite weights refused by export and the runtime, a
broken int8 variant skipped with a warning, and bench saying which file each row times."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from earsight.engine.errors import ExportError, ModelFileError
from earsight.engine.runtime import RuntimeOptions, load
from earsight.engine.sidecar import read_sidecar, sha256_file

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
ONE_THREAD = RuntimeOptions(threads=1)


def _copy_model(tmp_path: Path, name: str = "mnist-ad") -> Path:
    for path in MODELS.glob(f"{name}.*onnx*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / f"{name}.onnx"


def _edit_sidecar(model: Path, edit) -> None:
    side_path = model.with_name(model.name + ".json")
    side = json.loads(side_path.read_text())
    edit(side)
    side_path.write_text(json.dumps(side))


def _k(side: dict, k: int) -> None:  # a consistent sidecar for a K the graph does not emit
    words = [f"word{i}" for i in range(k)]
    side["vocabulary"] = side["config"]["labels"] = words
    side["outputs"]["probs"]["shape"][1] = side["config"]["n_classes"] = k


BAD_FIELDS = {
    "sample rate -1": (lambda s: s.update(sample_rate=-1), "sample_rate"),
    "sample rate 1e12": (lambda s: s.update(sample_rate=10**12), "sample_rate"),
    "vocabulary short": (lambda s: s.update(vocabulary=s["vocabulary"][:9]), "vocabulary"),
    "vocabulary long": (lambda s: s.update(vocabulary=[*s["vocabulary"], "ten"]), "vocabulary"),
    "precision int4": (lambda s: s.update(precision="int4"), "precision"),
    "input crop 0": (lambda s: s.update(input_crop=0), "input_crop"),
    "audio length 0": (lambda s: s.update(audio_length=0), "audio_length"),
    "negative gate": (lambda s: s["config"].update(gate_exemplars=-1), "gate_exemplars"),
    "not an object": (lambda s: s.clear(), "format"),
    "withdrawn word unknown": (lambda s: s.update(withdrawn=["eleven"]), "withdrawn"),
    "withdrawn twice": (lambda s: s.update(withdrawn=["nine", "nine"]), "withdrawn"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_a_sidecar_field_out_of_range_is_one_line_naming_it(tmp_path, case):
    edit, field = BAD_FIELDS[case]
    model = _copy_model(tmp_path)
    _edit_sidecar(model, edit)
    with pytest.raises(ModelFileError, match=field) as err:
        load(model, backend="onnx-cpu", options=ONE_THREAD)
    assert "\n" not in str(err.value)


def test_describe_with_a_bad_sidecar_prints_one_line_and_no_traceback(tmp_path):
    model = _copy_model(tmp_path)
    _edit_sidecar(model, lambda s: s.update(sample_rate=10**12))
    sample = next((ROOT / "assets/samples/mnist").glob("*.png"))
    earsight = Path(sys.executable).with_name("earsight")
    done = subprocess.run(
        [str(earsight), "describe", str(sample), "--model", str(model), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "sample_rate" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", str(MODELS / "cifar10-ad-lite0.teach.pt")], ["a teach base", "not a model"]),
        (["--backend", "torch", "--model", "mnist-ad"], ["ONNX files only", "--backend onnx-cpu"]),
    ],
)
def test_a_shipped_file_that_is_no_model_for_this_is_one_line_saying_what_to_use(
    tmp_path, args, words
):
    pytest.importorskip("torch")  # without it both are "needs the trainer", tested elsewhere
    sample = next((ROOT / "assets/samples/mnist").glob("*.png"))
    earsight = Path(sys.executable).with_name("earsight")
    done = subprocess.run(
        [str(earsight), "describe", str(sample), *args, "--out", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), last
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


@pytest.mark.parametrize("k", [9, 11])
def test_a_vocabulary_the_graph_does_not_emit_is_caught_when_the_model_loads(tmp_path, k):
    model = _copy_model(tmp_path)
    _edit_sidecar(model, lambda s: _k(s, k))  # in range and self-consistent, but not the graph
    with pytest.raises(ModelFileError, match="probs of width"):
        load(model, backend="onnx-cpu", options=ONE_THREAD)


def test_the_shipped_sidecars_and_the_new_optional_fields_validate(tmp_path):
    for model in MODELS.glob("*.onnx"):
        read_sidecar(model)
    model = _copy_model(tmp_path)

    def new_fields(side: dict) -> None:
        side["input_crop"] = side["config"]["input_crop"] = 0.875
        side["config"].update(backbone="efficientnet-lite0", backbone_trained=3, gate_exemplars=64)

    _edit_sidecar(model, new_fields)
    assert read_sidecar(model)["input_crop"] == 0.875


def test_an_int8_variant_onnx_runtime_cannot_load_falls_back_to_the_model(tmp_path, caplog):
    model = _copy_model(tmp_path, "cifar10-ad")
    variant = tmp_path / "cifar10-ad.int8.onnx"
    variant.write_bytes(variant.read_bytes()[: variant.stat().st_size // 2])  # truncated
    _edit_sidecar(variant, lambda s: s.update(sha256=sha256_file(variant)))  # hash "fixed"
    with caplog.at_level(logging.WARNING, logger="earsight.engine.runtime"):
        rt = load(model, backend="onnx-cpu", options=ONE_THREAD)
    assert rt.info.model.name == "cifar10-ad.onnx" and rt.info.precision == "fp16"
    assert any(
        "ignoring the int8 variant cifar10-ad.int8.onnx" in r.message for r in caplog.records
    )
    waves, probs = rt(np.zeros((32, 32, 3), np.uint8))
    assert probs.shape == (1, 10) and np.isfinite(waves).all()


def test_a_damaged_model_runs_its_intact_int8_variant_and_says_so(tmp_path, caplog):
    """64 bytes of the fp16 file flipped: the CPU's own file, the int8 variant, still runs (it
    stopped describe, doctor and live); asked for the fp16 file alone, the error stands."""
    model = _copy_model(tmp_path, "cifar10-ad")
    data = bytearray(model.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="earsight.engine.source"):
        rt = load(model, backend="onnx-cpu", options=ONE_THREAD)
    assert rt.info.model.name == "cifar10-ad.int8.onnx" and rt.info.precision == "int8"
    said = [r.getMessage() for r in caplog.records]
    assert any("sha256 differs" in m and "running its int8 variant" in m for m in said), said
    _, probs = rt(np.zeros((32, 32, 3), np.uint8))
    assert probs.shape == (1, 10)
    with pytest.raises(ModelFileError, match="sha256 differs"):
        load(model, backend="onnx-cpu", options=RuntimeOptions(threads=1, cpu_int8=False))
    (tmp_path / "cifar10-ad.int8.onnx").unlink()  # nothing intact left: the error stands
    with pytest.raises(ModelFileError, match="re-export it"):
        load(model, backend="onnx-cpu", options=ONE_THREAD)


def test_a_damaged_shipped_file_says_to_reinstall_not_to_re_export():
    from earsight.engine.sidecar import restore_fix

    assert "reinstall EarSight" in restore_fix(MODELS / "cifar10-ad.onnx")
    assert "re-export" in restore_fix(Path("/tmp/mine.onnx"))


def test_bench_names_the_file_each_row_times_and_the_one_describe_runs(tmp_path):
    from earsight.engine.bench import run_bench
    from earsight.engine.bench_measure import BenchOptions
    from earsight.engine.bench_table import format_table

    model = _copy_model(tmp_path, "cifar10-ad")
    said: list[str] = []
    opts = BenchOptions(backends=("onnx-cpu:fp16",), batches=(1,), iters=3, threads=1, budget_s=1)
    report = run_bench(model, opts, say=said.append)
    assert any("describe and live run cifar10-ad.int8.onnx for cifar10-ad.onnx" in s for s in said)
    (row,) = report.rows
    assert row.file == "cifar10-ad.onnx" and not row.error
    assert "cifar10-ad.onnx" in format_table(report)


def _nan_checkpoint(engine_checkpoint: Path, tmp_path: Path) -> Path:
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(engine_checkpoint)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim > 1)
    ckpt["model"][key] = ckpt["model"][key].clone().fill_(float("nan"))
    path = tmp_path / "nan.pt"
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format"})
    return path


def test_export_refuses_non_finite_weights_and_leaves_no_file(engine_checkpoint, tmp_path):
    from earsight.engine.export import export_onnx
    from tests.conftest import one_torch_thread

    out = tmp_path / "nan.onnx"
    with one_torch_thread(), pytest.raises(ExportError, match="non-finite"):
        export_onnx(_nan_checkpoint(engine_checkpoint, tmp_path), out)
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))


def test_the_runtime_refuses_non_finite_weights(engine_checkpoint, engine_onnx, tmp_path):
    import onnx
    from onnx import numpy_helper

    from tests.conftest import one_torch_thread

    with one_torch_thread(), pytest.raises(ModelFileError, match="non-finite weights"):
        load(_nan_checkpoint(engine_checkpoint, tmp_path), backend="torch", options=ONE_THREAD)
    source = engine_onnx["fp32"].path
    model = tmp_path / "nan.onnx"
    graph = onnx.load(str(source))
    init = next(i for i in graph.graph.initializer if numpy_helper.to_array(i).ndim > 1)
    values = numpy_helper.to_array(init).copy()
    values.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(graph, str(model))
    side = json.loads(Path(str(source) + ".json").read_text())
    side.update(model_file=model.name, sha256=sha256_file(model))
    Path(str(model) + ".json").write_text(json.dumps(side))
    with pytest.raises(ModelFileError, match="non-finite weights"):
        load(model, backend="onnx-cpu", options=ONE_THREAD)
