"""The ``earsight`` CLI: export and bench end to end (subprocess), one-line errors (in process)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from earsight.app.cli import main
from earsight.app.models import resolve_model

EARSIGHT = Path(sys.executable).with_name("earsight")  # the console script of `pip install -e .`
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _earsight(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [str(EARSIGHT)] if EARSIGHT.exists() else [sys.executable, "-m", "earsight.app.cli"]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_export_command_writes_model_and_sidecar(engine_checkpoint, tmp_path):
    out = tmp_path / "cli.onnx"
    # opset 17: the legacy exporter's route (opset 18, the default, is what the fixtures use)
    proc = _earsight("export", str(engine_checkpoint), "-o", str(out), "--opset", "17")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out} (fp32, opset 17" in proc.stdout and "parity" in proc.stdout
    side = json.loads(out.with_suffix(".onnx.json").read_text())
    assert side["opset"] == 17 and side["precision"] == "fp32"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_bench_prints_a_table_with_torch_onnx_and_speedup(engine_onnx):
    proc = _earsight(
        "bench",
        "--model",
        str(engine_onnx["fp32"].path),
        "--batches",
        "1,8",
        "--iters",
        "5",
        "--threads",
        "1",
        "--budget-s",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    table = [re.split(r"\s{2,}", line.strip()) for line in proc.stdout.splitlines()]
    header = next(cells for cells in table if cells[0] == "backend")
    for column in ("b1 p50 ms", "b1 CPU ms", "img/s b8", "speedup b1 latency", "% FLOP peak"):
        assert column in header
    rows = {cells[0]: dict(zip(header, cells, strict=False)) for cells in table}
    for name in ("torch", "onnx-cpu"):
        assert rows[name]["precision"] == "fp32" and float(rows[name]["b1 p50 ms"]) > 0
        assert float(rows[name]["img/s b8"].replace(",", "")) > 0
        assert float(rows[name]["b1 CPU ms"]) > 0
    assert rows["torch"]["speedup b1 latency"] == "1.00"
    assert float(rows["onnx-cpu"]["speedup b1 latency"]) > 0
    assert "CPU peak measured" in proc.stdout  # the SGEMM probe, not a clock estimate


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse errors exit from inside parse_args
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", "/nonexistent/missing.pt", "-o", "/tmp/m.onnx"], "checkpoint not found"),
        (["bench", "--batches", "1,0"], "expected a positive integer, got 0"),
        (["export", "x.pt"], "-o/--output"),
        (["export", "x.pt", "-o", "/tmp/model"], "does not end in .onnx"),
        (["bench", "--backends", "cuda-magic"], "unknown backend 'cuda-magic'"),
        (["bench", "--preset", "nope"], "invalid choice: 'nope'"),
        (["bench", "--warmup", "-2"], "expected an integer ≥ 0, got -2"),
        (["bench", "--budget-s", "-5"], "expected a positive number, got -5.0"),
        (["bench", "--peak-gflops", "-1"], "expected a positive number, got -1.0"),
        (["bench", "--model", "/nonexistent/m.onnx"], "model file /nonexistent/m.onnx does not"),
        (["bench", "--model", "mnist-ad", "--preset", "compact"], "give one or the other"),
        (["live", "--threads", "-1"], "expected a positive integer, got -1"),
        ([], "COMMAND"),
        (["export", "x.pt", "-o", "/tmp"], "-o /tmp is a folder — write -o /tmp/model.onnx"),
        (["export", "x.pt", "-o", "/tmp/m.pt"], "write -o /tmp/m.onnx"),
        (["export", "x.pt", "-o", "/proc/m.onnx"], "cannot write /proc/m.onnx"),
        (["export", "/tmp", "-o", "/tmp/m.onnx"], "/tmp is a folder, not a checkpoint"),
        (["-q", "describe", "x.jpg", "-v"], "-v and -q say opposite things"),
        (["-q", "-v", "describe", "x.jpg"], "not allowed with argument"),
        (["teach", "--", "a b", "--no-learn"], "--no-learn came after `--`, which makes it a word"),
        (["lve"], "invalid choice: 'lve' (choose from 'export', "),
        (["lve"], "; did you mean 'live'? (see `"),  # a mistyped command: the nearest one
        (["describe", "x.jpg", "--backend", "onx-cpu"], "did you mean 'onnx-cpu'?"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(capsys, argv, needle):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_version_names_the_installed_package(capsys):
    import subprocess
    from importlib.metadata import version

    code, out, _ = _run(capsys, "--version")
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parents[1]), "log", "-1", "--format=%h of %cs"],
        capture_output=True,
        text=True,
    ).stdout.strip()  # this suite runs from a checkout: its commit is named, as pulled
    assert code == 0 and out.strip() == f"earsight {version('earsight')}, checkout {head}", out


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_engine_build_without_tensorrt_says_how_to_install(capsys, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    code, _, err = _run(capsys, "engine", "build", str(model))
    assert code == 2 and err.startswith("error: TensorRT is not installed")
    assert "pip install earsight[tensorrt]" in err and err.count("\n") == 1


def test_bench_gap_is_slept_between_runs_not_timed(engine_onnx, capsys):
    from earsight.engine.bench import run_bench
    from earsight.engine.bench_measure import BenchOptions

    opts = BenchOptions(backends=("onnx-cpu",), batches=(1,), iters=4, threads=1, gap_s=0.05)
    (row,) = run_bench(engine_onnx["fp32"].path, opts, say=lambda _: None).rows
    assert not row.error and row.cpu_ms[1] > 0
    assert row.latency_ms[1][0] < 50.0  # a 50 ms sleep inside the timed run would show here
    assert _run(capsys, "bench", "--gap-s", "-1")[0] == 2


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_works_before_or_after_the_command(capsys, tmp_path, where):
    from earsight.app.models import ASSETS_DIR

    image = str(ASSETS_DIR / "samples" / "cifar10" / "airplane-test0000.jpg")
    args = ["describe", image, "--out", str(tmp_path)]
    argv = ["-q", *args] if where == "before" else [*args, "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("airplane-test0000.jpg: ")  # the answer first: no backend line
    assert not any(line.startswith("backend ") for line in out), out
    assert main(args) == 0  # without -q the backend line is there
    assert any(line.startswith("backend ") for line in capsys.readouterr().out.splitlines())


def test_bench_without_a_model_times_the_default_model_and_says_which(capsys):
    # A new user's `earsight bench` times what describe and live run, not random weights.
    from earsight.app.models import DEFAULT_MODEL

    code, out, _ = _run(
        capsys, "bench", "--backends", "onnx-cpu", "--batches", "1", "--iters", "3",
        "--warmup", "1", "--budget-s", "1", "--threads", "1",
    )  # fmt: skip
    assert code == 0
    assert f"model: {Path(resolve_model(DEFAULT_MODEL))}" in out, out
    assert any(line.startswith(f"onnx-cpu:fp16  {DEFAULT_MODEL}.onnx") for line in out.splitlines())


def test_bench_on_the_shipped_model_has_a_torch_row_of_the_same_weights(capsys):
    # Only ONNX files ship; the torch peer runs the teach base's weights (issue 11).
    from earsight.app.models import DEFAULT_MODEL

    code, out, _ = _run(
        capsys, "bench", "--backends", "torch,onnx-cpu", "--batches", "1", "--iters", "2",
        "--warmup", "1", "--budget-s", "1", "--threads", "1",
    )  # fmt: skip
    assert code == 0, out
    rows = [line.split()[:2] for line in out.splitlines()]
    assert ["torch", f"{DEFAULT_MODEL}.teach.pt"] in rows, out
    assert "speedups are vs torch eager fp32 in this run" in out


def test_a_busy_machine_is_said_under_the_table():
    import os

    from earsight.engine.bench import BenchReport
    from earsight.engine.bench_measure import Row
    from earsight.engine.bench_table import format_table

    def table(load: float) -> str:
        rows = [Row("tensorrt", "tensorrt", error="TensorRT is not installed")]
        return format_table(BenchReport("m.onnx", 0, 1, {}, "peak: –", load, rows))

    cpus = os.cpu_count() or 1
    assert "the machine was busy" in table(cpus + 1.5).splitlines()[-1]
    assert "busy" not in table(cpus * 0.5)
