"""TensorRT engine cache on disk: key, file names, plan validation. Pure Python, no TensorRT.

Cache: ``<cache>/<onnx sha[:12]>-<mode>-b<max>-<key digest[:16]>.plan`` plus a ``.json`` with
the key's components and the plan's own sha256. The key covers everything that makes a plan
invalid elsewhere: ONNX bytes, TensorRT version, GPU name and compute capability, precision
mode, batch profile. A plan whose metadata or hash does not match is deleted and rebuilt before
TensorRT ever sees it (deserializing a damaged plan can crash, not just fail).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from earsight.engine.sidecar import sha256_file

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_OPT_BATCH = 8  # the profile's tuning point: a few frames at once


@dataclass(frozen=True)
class Profile:
    """Batch sizes of the optimization profile (H, W, C are fixed by the ONNX)."""

    min_batch: int = 1
    opt_batch: int = DEFAULT_OPT_BATCH
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min <= opt <= max batch, got {self}")

    @classmethod
    def up_to(cls, max_batch: int, opt_batch: int = DEFAULT_OPT_BATCH) -> Profile:
        return cls(1, min(opt_batch, max_batch), max_batch)

    def shapes(self, hwc: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of the NHWC input."""
        return tuple((b, *hwc) for b in (self.min_batch, self.opt_batch, self.max_batch))


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Jetson Orin), "9.0" (H100)
    mode: str  # one of MODES
    profile: Profile

    def components(self) -> dict[str, Any]:
        return {**asdict(self), "profile": asdict(self.profile)}

    def digest(self) -> str:
        blob = json.dumps(self.components(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def file_name(self) -> str:
        b = self.profile.max_batch
        return f"{self.onnx_sha256[:12]}-{self.mode}-b{b}-{self.digest()[:16]}.plan"


def plan_path(cache_dir: Path, key: EngineKey) -> Path:
    return cache_dir / key.file_name()


def meta_path(plan: Path) -> Path:
    return plan.with_suffix(".json")


def timing_cache_path(cache_dir: Path, trt_version: str, gpu_name: str, cc: str) -> Path:
    # Timing measurements are valid per TensorRT version and GPU, shared by every model.
    ident = hashlib.sha256(f"{trt_version}|{gpu_name}|{cc}".encode()).hexdigest()[:16]
    return cache_dir / f"timing-{ident}.cache"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a kill mid-write never leaves a torn plan under the real name


def write_plan(plan: Path, data: bytes, key: EngineKey) -> None:
    """Plan bytes, then metadata: a plan without matching metadata counts as corrupt."""
    write_atomic(plan, data)
    meta = {
        "key": key.components(),
        "plan_sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    write_atomic(meta_path(plan), json.dumps(meta, indent=2).encode())


def plan_problem(plan: Path, key: EngineKey) -> str | None:
    """Why the cached plan cannot be used (missing, stale, damaged), or None if it looks good."""
    if not plan.is_file():
        return "no cached engine"
    try:
        meta = json.loads(meta_path(plan).read_text())
    except (OSError, ValueError):
        return "engine metadata missing or unreadable"
    if meta.get("key") != key.components():
        return "engine was built for a different model, TensorRT, GPU, precision or profile"
    if meta.get("size") != plan.stat().st_size:
        return "engine file has the wrong size (truncated or overwritten)"
    if meta.get("plan_sha256") != sha256_file(plan):
        return "engine file is damaged (sha256 differs)"
    return None


def remove_plan(plan: Path) -> None:
    for path in (plan, meta_path(plan)):
        path.unlink(missing_ok=True)


def load_plan(plan: Path, key: EngineKey, deserialize: Callable[[bytes], T | None]) -> T | None:
    """Deserialize a cached plan; a damaged or stale one is deleted and None returned."""
    problem = plan_problem(plan, key)
    if problem is None:
        try:
            engine = deserialize(plan.read_bytes())
        except Exception as err:  # TensorRT raises RuntimeError/TypeError on foreign plans
            engine, problem = None, f"TensorRT rejected the plan ({type(err).__name__})"
        if engine is not None:
            return engine
        problem = problem or "TensorRT could not deserialize the plan"
    if plan.exists():
        log.warning("cached engine %s unusable: %s; rebuilding", plan.name, problem)
        remove_plan(plan)
    return None


def cached_plans(cache_dir: Path, **match: str) -> list[tuple[EngineKey, Path]]:
    """Plans whose key matches ``match`` (e.g. onnx_sha256=…, gpu_name=…), largest batch first."""
    found = []
    for meta_file in sorted(cache_dir.glob("*.json")) if cache_dir.is_dir() else []:
        try:
            comp = json.loads(meta_file.read_text())["key"]
            key = EngineKey(**{**comp, "profile": Profile(**comp["profile"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue  # timing caches, foreign files
        if all(getattr(key, k) == v for k, v in match.items()):
            found.append((key, meta_file.with_suffix(".plan")))
    return sorted(found, key=lambda kp: -kp[0].profile.max_batch)
