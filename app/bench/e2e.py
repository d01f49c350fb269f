"""`earsight bench --e2e`: key press → first audio buffer, through the real live loop.

For each backend (ONNX Runtime CPU and torch eager by default, so the ratio is measured in the
same run) the live app is built exactly as `earsight live` builds it — a frame grabber on a
video (a digit video made from the shipped samples unless --source is given), the runtime, the
confidence gate and the audio output — and pressed ``presses`` times by a synthetic controller.
Each press is time-stamped at the key, the frame hand-off, the end of inference and the first
audio buffer handed to the device; the table gives p50/p99 of each stage and the process's
peak RSS (each backend runs in its own process so the figures do not mix).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earsight.app.models import DEFAULT_MODEL
from earsight.tables import aligned, as_lines

PRESS_GAP_S = 0.35  # between presses: each word finishes starting before the next press
FIRST_AUDIO_TIMEOUT_S = 3.0
DEFAULT_BACKENDS = ("onnx-cpu", "torch")


@dataclass(frozen=True)
class E2EOptions:
    model: str = DEFAULT_MODEL
    source: str | None = None  # None: a video of the shipped sample images for the model
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    presses: int = 40
    threads: int | None = None


def sample_images(model: str) -> list[Path]:
    """The shipped samples a model was trained for: digits for a grey model, else CIFAR-10."""
    from earsight.app.models import resolve_model
    from earsight.engine.sidecar import read_sidecar

    model_path = resolve_model(model)
    grey = model_path.suffix == ".onnx" and read_sidecar(model_path)["input_size"][2] == 1
    folder = samples_folder(grey)
    return sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg"))


def samples_folder(grey: bool) -> Path:
    """The shipped samples' folder for a model's input: digits when grey, else CIFAR-10."""
    from earsight.app.models import ASSETS_DIR

    return ASSETS_DIR / "samples" / ("mnist" if grey else "cifar10")


def sample_video(folder: Path, samples: list[Path]) -> Path:
    """A 10 fps MJPG video showing each sample image for one second."""
    import cv2

    path = folder / "samples.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for sample in samples:
        digit = cv2.resize(cv2.imread(str(sample)), (112, 112), interpolation=cv2.INTER_NEAREST)
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[4:116, 24:136] = digit
        for _ in range(10):
            writer.write(frame)
    writer.release()
    return path


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(backend: str, source: str, opts: E2EOptions) -> dict:
    """Runs in a fresh process: build the live app on ``backend``, press, collect stamps."""
    from earsight.app.camera.grabber import FrameGrabber, parse_source
    from earsight.app.commands import live_runtime_options
    from earsight.app.config import LiveOptions
    from earsight.app.keys.controllers import Action
    from earsight.app.models import resolve_model
    from earsight.app.modes.answer import ConfidenceGate
    from earsight.app.modes.live import LiveApp
    from earsight.app.sound.audio import AudioOptions, open_audio
    from earsight.app.sound.voice import StatusVoice
    from earsight.engine.runtime import load

    options = LiveOptions(
        model=opts.model, source=source, loop=True, speak_status=False, threads=opts.threads
    )
    runtime = load(resolve_model(opts.model), backend, live_runtime_options(options))  # as live
    runtime.warmup()
    audio = open_audio(AudioOptions(sample_rate=runtime.info.output_rate), Path(tempfile.mkdtemp()))
    audio.wait_until_flowing()  # as `earsight live` does before it says "ready"
    grabber = FrameGrabber(parse_source(source, loop=True))
    gate = ConfidenceGate(options.threshold, options.gate)
    app = LiveApp(
        options, runtime, grabber, audio, StatusVoice(enabled=False, printer=lambda _: None), gate
    )
    with grabber:
        app.start()
        time.sleep(0.5)  # the grabber's first frames
        for _ in range(opts.presses):
            n = app.state.presses
            app.on_action(Action.DESCRIBE, time.perf_counter())
            deadline = time.perf_counter() + FIRST_AUDIO_TIMEOUT_S
            while time.perf_counter() < deadline and (
                app.state.presses == n or app.state.timings[-1].first_audio is None
            ):
                time.sleep(0.001)
            time.sleep(PRESS_GAP_S)
        app.stop()
    audio.close()
    stamps = [
        (t.frame - t.key, t.inferred - t.key, t.first_audio - t.key)
        for t in app.state.timings
        if t.first_audio is not None
    ]
    return {
        "backend": runtime.info.backend,
        "device": runtime.info.device,
        "stamps_s": stamps,
        "presses": opts.presses,
        "rss_mb": _peak_rss_mb(),
        "audio": type(audio).__name__,
    }


def _worker(backend: str, source: str, opts: E2EOptions, queue: mp.Queue) -> None:
    try:
        queue.put(_measure(backend, source, opts))
    except Exception as err:  # report, do not hang the parent
        queue.put({"backend": backend, "error": f"{type(err).__name__}: {err}"})


def run_e2e(opts: E2EOptions) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        source = opts.source or str(sample_video(Path(tmp), sample_images(opts.model)))
        ctx = mp.get_context("spawn")
        rows = []
        for backend in opts.backends:
            queue = ctx.Queue()
            proc = ctx.Process(target=_worker, args=(backend, source, opts, queue))
            proc.start()
            rows.append(queue.get(timeout=600))
            proc.join(10)
        return rows


E2E_HEADER = (
    "backend",
    "audio",
    "presses",
    "key→frame p50 ms",
    "key→infer p50 ms",
    "key→audio p50 ms",
    "key→audio p99 ms",
    "peak RSS MB",
    "vs torch (p50)",
)


def format_e2e(rows: list[dict], lines_only: bool = False) -> str:
    """Stage latencies per backend; speedup = torch eager's key→audio p50 ÷ the row's. An
    aligned table, or (``lines_only``) one line per row for a screen reader."""
    p50s = {
        r["backend"]: np.percentile(np.array(r["stamps_s"])[:, 2], 50) * 1e3
        for r in rows
        if r.get("stamps_s")
    }
    peer = p50s.get("torch")
    cells, not_run = [], []
    for row in rows:
        if "error" in row or not row.get("stamps_s"):
            not_run.append(f"{row['backend']}: not run: {row.get('error', 'no audio stamps')}")
            continue
        ms = np.array(row["stamps_s"]) * 1e3  # (presses, 3): frame, inference, first audio
        p50 = np.percentile(ms, 50, axis=0)
        cells.append(
            [
                row["backend"],
                row["audio"],
                f"{len(ms)}/{row['presses']}",
                *(f"{v:.1f}" for v in (*p50, np.percentile(ms[:, 2], 99))),
                f"{row['rss_mb']:.0f}",
                f"{peer / p50[2]:.2f}×" if peer else "–",
            ]
        )
    table = as_lines(E2E_HEADER, cells) if lines_only else aligned(E2E_HEADER, cells, left=2)
    return "\n".join(table + not_run)


def main_e2e(opts: E2EOptions, json_path: Path | None = None, lines_only: bool = False) -> int:
    """Print the table; exit 1 only if no backend ran (a peer that cannot run says why in its
    row, as in `earsight bench`: on a fresh clone the torch peer has no training checkpoint)."""
    rows = run_e2e(opts)
    print(format_e2e(rows, lines_only))
    print("vs torch: torch eager's key→audio p50 divided by the row's, measured in this run")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if any("error" not in r for r in rows) else 1
