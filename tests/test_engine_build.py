"""TensorRT engine cache: key, paths, plan validation, precision choice (no TensorRT needed),
plus the real build, marked requires_tensorrt/requires_cuda (skipped here with the reason)."""

from __future__ import annotations

import dataclasses
import importlib.util
import time

import pytest

from earsight.engine.build import (
    BUILD_NOTICE,
    BuildOptions,
    choose_mode,
    ensure_engine,
    network_flags,
)
from earsight.engine.build_progress import ElapsedTicker
from earsight.engine.cache import (
    EngineKey,
    Profile,
    cached_plans,
    load_plan,
    meta_path,
    plan_path,
    plan_problem,
    timing_cache_path,
    write_plan,
)
from earsight.engine.errors import BackendUnavailable, EngineBuildError

KEY = EngineKey(
    onnx_sha256="ab" * 32,
    trt_version="10.3.0",
    gpu_name="Orin",
    compute_capability="8.7",
    mode="fp16-strongly-typed",
    profile=Profile(1, 8, 64),
)
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_cache_key_changes_when_any_component_changes():
    changed = {
        "onnx_sha256": "cd" * 32,
        "trt_version": "10.12.0",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "mode": "fp16-flag",
        "profile": Profile(1, 8, 256),
    }
    digests = {KEY.digest()}
    for field, value in changed.items():
        other = dataclasses.replace(KEY, **{field: value})
        assert other.digest() != KEY.digest() and other.file_name() != KEY.file_name()
        digests.add(other.digest())
    for profile in (Profile(2, 8, 64), Profile(1, 16, 64)):  # min and opt count too
        digests.add(dataclasses.replace(KEY, profile=profile).digest())
    assert len(digests) == len(changed) + 3
    assert (
        KEY.digest()
        == EngineKey(**dataclasses.asdict(KEY) | {"profile": Profile(1, 8, 64)}).digest()
    )


def test_file_names_and_cache_dirs(tmp_path, monkeypatch):
    assert KEY.file_name().startswith("abababababab-fp16-strongly-typed-b64-")
    assert KEY.file_name().endswith(".plan")
    assert plan_path(tmp_path, KEY) == tmp_path / KEY.file_name()
    a = timing_cache_path(tmp_path, "10.3.0", "Orin", "8.7")
    assert a != timing_cache_path(tmp_path, "10.3.0", "H100", "9.0") and a.parent == tmp_path


def test_profile_shapes_and_validation():
    assert Profile(1, 8, 64).shapes((28, 28, 1)) == (
        (1, 28, 28, 1),
        (8, 28, 28, 1),
        (64, 28, 28, 1),
    )
    assert Profile.up_to(4) == Profile(1, 4, 4)
    with pytest.raises(ValueError):
        Profile(1, 128, 64)


def test_plan_problems_are_detected(tmp_path):
    plan = plan_path(tmp_path, KEY)
    assert plan_problem(plan, KEY) == "no cached engine"
    write_plan(plan, b"\x00engine-bytes" * 100, KEY)
    assert plan_problem(plan, KEY) is None
    other = dataclasses.replace(KEY, trt_version="10.4.0")
    assert "different model, TensorRT, GPU" in plan_problem(plan, other)
    data = bytearray(plan.read_bytes())
    data[50] ^= 0xFF  # one flipped bit in the middle: same size, different hash
    plan.write_bytes(bytes(data))
    assert "damaged" in plan_problem(plan, KEY)
    plan.write_bytes(bytes(data[:-10]))
    assert "wrong size" in plan_problem(plan, KEY)
    meta_path(plan).unlink()
    assert "metadata" in plan_problem(plan, KEY)


def test_load_plan_deletes_what_tensorrt_cannot_use(tmp_path):
    plan = plan_path(tmp_path, KEY)
    seen: list[bytes] = []

    def deserialize(data: bytes):
        seen.append(data)
        return {"engine": len(data)}

    write_plan(plan, b"plan", KEY)
    assert load_plan(plan, KEY, deserialize) == {"engine": 4} and plan.exists()
    assert load_plan(plan, KEY, lambda data: None) is None  # TensorRT returned None
    assert not plan.exists() and not meta_path(plan).exists()
    write_plan(plan, b"plan", KEY)

    def explode(data: bytes):
        raise RuntimeError("serialization version mismatch")

    assert load_plan(plan, KEY, explode) is None and not plan.exists()
    write_plan(plan, b"plan", KEY)
    plan.write_bytes(b"torn")  # same size, wrong bytes: never handed to TensorRT
    seen.clear()
    assert load_plan(plan, KEY, deserialize) is None and seen == [] and not plan.exists()


def test_cached_plans_match_ignoring_the_profile(tmp_path):
    small, big = (dataclasses.replace(KEY, profile=Profile.up_to(b)) for b in (8, 256))
    foreign = dataclasses.replace(KEY, gpu_name="H100")
    for key in (small, big, foreign):
        write_plan(plan_path(tmp_path, key), b"x", key)
    (tmp_path / "junk.json").write_text("{}")
    found = cached_plans(tmp_path, onnx_sha256=KEY.onnx_sha256, gpu_name="Orin")
    assert [k.profile.max_batch for k, _ in found] == [256, 8]
    assert found[0][1] == plan_path(tmp_path, big)
    assert cached_plans(tmp_path / "absent", gpu_name="Orin") == []


def test_precision_mode_choice():
    assert choose_mode("fp16", "fp16", has_fp16_flag=True, strongly=True) == "fp16-strongly-typed"
    assert choose_mode("fp16", "fp16", has_fp16_flag=False, strongly=True) == "fp16-strongly-typed"
    assert choose_mode("fp16", "fp32", has_fp16_flag=True, strongly=True) == "fp16-flag"
    assert choose_mode("fp32", "fp32", has_fp16_flag=False, strongly=True) == "fp32"
    with pytest.raises(EngineBuildError, match=r"no FP16 builder flag.*earsight export --fp16"):
        choose_mode("fp16", "fp32", has_fp16_flag=False, strongly=True)  # TensorRT 11
    with pytest.raises(EngineBuildError):
        choose_mode("int8", "fp32", has_fp16_flag=True, strongly=True)


def test_network_flags():
    assert network_flags(8, False, explicit_bit=0, strong_bit=5) == 1
    assert network_flags(10, False, explicit_bit=0, strong_bit=5) == 0
    assert network_flags(10, True, explicit_bit=0, strong_bit=5) == 32


def test_elapsed_ticker_reports_progress():
    lines: list[str] = []
    with ElapsedTicker(lines.append, time.monotonic(), interval=0.02):
        time.sleep(0.15)
    assert len(lines) >= 2 and all("still building" in line for line in lines)
    assert "1–5 minutes" in BUILD_NOTICE and "once per model and GPU" in BUILD_NOTICE


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_backend_unavailable(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"any file: TensorRT is looked for first")
    with pytest.raises(BackendUnavailable, match=r"pip install earsight\[tensorrt\]"):
        ensure_engine(model, BuildOptions(cache_dir=tmp_path))


@pytest.mark.requires_cuda
@pytest.mark.requires_tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (CUDA machine only)")
def test_build_is_cached_and_reused(engine_onnx, tmp_path):
    opts = BuildOptions(max_batch=16, cache_dir=tmp_path)
    said: list[str] = []
    plan, key = ensure_engine(engine_onnx["fp16"].path, opts, say=said.append)
    assert said[0] == BUILD_NOTICE and plan.is_file() and key.mode == "fp16-strongly-typed"
    mtime = plan.stat().st_mtime_ns
    again, _ = ensure_engine(engine_onnx["fp16"].path, opts, say=said.append)
    assert again == plan and plan.stat().st_mtime_ns == mtime  # reused, not rebuilt
    plan.write_bytes(b"0" * plan.stat().st_size)  # damaged: rebuilt
    ensure_engine(engine_onnx["fp16"].path, opts, say=said.append)
    assert plan_problem(plan, key) is None
