"""What an install costs a wearable: its size on disk and `earsight live`'s memory, per environment.

    python -m earsight.app.bench.footprint --row /tmp/venv-rt auto cifar10-ad-lite0 \
        --row /tmp/venv-full auto cifar10-ad-lite0 --row /tmp/venv-full torch CKPT.pt

Each row names a virtual environment with EarSight installed (``pip install earsight`` for the
runtime, ``earsight[train]`` with torch for the full one), a backend and a model. For each it
prints the size of the environment's site-packages and `earsight live` run as a user runs it —
the shipped sample photos as a paced camera, terminal keys — pressed ``presses`` times: its peak
RSS (VmHWM), the presses answered with a word, whether torch got loaded, and the ratios against
the first row, measured in the same run. The torch backend needs a checkpoint (the shipped
models are ONNX files only).
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from earsight.arguments import OneLineParser

READY = "ready: press space"
PRESS_GAP_S = 1.5  # between presses: one answer each
READY_TIMEOUT_S = 180.0
MB = 1 << 20


@dataclass(frozen=True)
class Footprint:
    env: str
    backend: str
    model: str
    site_mb: float  # site-packages on disk, MB
    peak_rss_mb: float  # VmHWM of the live process, MB
    answers: int  # presses answered with a word
    torch_loaded: bool


def site_packages_mb(venv: Path) -> float:
    """Bytes of regular files under the venv's site-packages (links not followed), in MB."""
    total = 0
    for site in venv.glob("lib/python*/site-packages"):
        for folder, _, files in os.walk(site):
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink():
                    total += path.stat().st_size
    return total / MB


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def run_live(python: Path, model: str, backend: str, presses: int, workdir: Path) -> tuple:
    """(peak RSS MB, words answered, torch loaded) of `earsight live` under ``python``."""
    from earsight.app.bench.e2e import samples_folder

    contract = _contract(model)  # read once: which samples it sees, which words it says
    samples = samples_folder(grey=contract.input_shape[2] == 1)
    cmd = [str(python), "-m", "earsight.app.cli", "live", "--model", model, "--backend", backend]
    cmd += ["--source", str(samples), "--loop", "--keys", "terminal", "--no-speech"]
    master, slave = pty.openpty()
    env = {**os.environ, "EARSIGHT_CONFIG": str(workdir / "none.toml")}
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    os.close(slave)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(READY in line for line in lines) and time.monotonic() < deadline:
            if proc.poll() is not None:  # it could not start (e.g. no checkpoint for torch)
                return float("nan"), 0, False
            time.sleep(0.1)
        for _ in range(presses):
            os.write(master, b" ")
            time.sleep(PRESS_GAP_S)
        peak_mb = _status_kb(proc.pid, "VmHWM") / 1024
        torch = _torch_loaded(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        os.close(master)
    reader.join(5)
    ready = next((i for i, line in enumerate(lines) if READY in line), len(lines))
    words = set(contract.labels)
    return peak_mb, sum(line.strip() in words for line in lines[ready:]), torch


def _contract(model: str):
    from earsight.app.models import resolve_model
    from earsight.engine.source import read_model

    return read_model(resolve_model(model), int8=False).contract


def measure(rows: list[tuple[str, str, str]], presses: int) -> list[Footprint]:
    """One Footprint per (venv, backend, model) row."""
    found = []
    for venv, backend, model in rows:
        python = Path(venv) / "bin" / "python"
        with tempfile.TemporaryDirectory(prefix="earsight-footprint-") as tmp:
            peak, answers, torch = run_live(python, model, backend, presses, Path(tmp))
        size = site_packages_mb(Path(venv))
        found.append(
            Footprint(Path(venv).name, backend, Path(model).name, size, peak, answers, torch)
        )
    return found


def table(rows: list[Footprint], presses: int) -> str:
    ref = rows[0]
    lines = [
        f"{'env':<11} {'backend':<8} {'model':<18} {'site MB':>7} {'× size':>6} "
        f"{'live peak RSS MB':>16} {'× RSS':>5} {'answers':>7} {'torch loaded':>12}"
    ]
    for r in rows:
        lines.append(
            f"{r.env:<11} {r.backend:<8} {r.model:<18} {r.site_mb:7.0f} "
            f"{r.site_mb / ref.site_mb:6.2f} {r.peak_rss_mb:16.0f} "
            f"{r.peak_rss_mb / ref.peak_rss_mb:5.2f} {f'{r.answers}/{presses}':>7} "
            f"{'yes' if r.torch_loaded else 'no':>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earsight.app.bench.footprint")
    parser.add_argument(
        "--row",
        nargs=3,
        action="append",
        required=True,
        metavar=("VENV", "BACKEND", "MODEL"),
        help="a virtual environment with EarSight installed, a backend (auto, onnx-cpu, "
        "torch) and a model name or file; the first row is the peer of the ratios",
    )
    parser.add_argument("--presses", type=int, default=5)
    args = parser.parse_args(argv)
    for venv, _, _ in args.row:
        if not (Path(venv) / "bin" / "python").is_file():
            parser.error(f"{venv} is not a virtual environment (no bin/python)")
    print(table(measure(args.row, args.presses), args.presses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
