"""A runtime-only install (no torch: the wearable) runs live, describe and bench on the shipped
models, and what needs the trainer says so in one line (tests/runtime_env.py builds it)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from earsight.errors import TRAINER_MODULES
from tests.runtime_env import ROOT, names, project, runtime_only_python, train_extra
from tests.test_faults_live import NULL_DEVICE, Live
from tests.test_live import write_digit_video

cv2 = pytest.importorskip("cv2")

SAMPLES = ROOT / "assets" / "samples" / "mnist"
TRAIN_LINE = (
    "needs the trainer's libraries (torch is not installed) — install the trainer: ./install.sh"
)


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    return runtime_only_python(tmp_path_factory.mktemp("runtime") / "venv")


def _earsight(python: Path, *args: str, tmp: Path, timeout: float = 300):
    (tmp / "asound.conf").write_text(NULL_DEVICE)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp / "asound.conf"), "OMP_NUM_THREADS": "1"}
    env |= {"EARSIGHT_CONFIG": str(tmp / "none.toml"), "EARSIGHT_TEACH": str(tmp / "taught")}
    cmd = [str(python), "-m", "earsight.app.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp)


def test_the_runtime_dependencies_leave_the_trainers_out():
    runtime = set(names(project()["dependencies"]))
    for name in ("torch", "matplotlib", "pesq", "scikit-learn", "pystoi", "tqdm"):
        assert name not in runtime and name in train_extra()
    for name in ("numpy", "onnxruntime", "opencv-python-headless", "sounddevice", "soundfile"):
        assert name in runtime
    for name in ("pyttsx3", "pynput", "platformdirs"):
        assert name in runtime


def test_what_learning_needs_is_in_the_train_extra():
    from earsight.app.modes.teach import LEARNING_MODULES

    assert set(LEARNING_MODULES) <= TRAINER_MODULES and LEARNING_MODULES[0] == "torch"


def test_the_environment_really_lacks_torch(python):
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
    done = subprocess.run(
        [str(python), "-c", probe % sorted(TRAINER_MODULES)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_describe_runs_without_torch(python, tmp_path):
    args = ("describe", str(SAMPLES), "--model", "mnist-ad", "--out", str(tmp_path / "wavs"))
    done = _earsight(python, *args, tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.split(": ")[0].endswith(".png")]
    assert len(said) == 20 and "wrote 20 WAV files" in done.stdout


def test_live_answers_a_press_without_torch(python, tmp_path):
    video = tmp_path / "digits.avi"
    words = write_digit_video(video)
    program = [str(python), "-m", "earsight.app.cli"]
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, program=program) as live:
        assert live.wait_for("ready: press space"), live.seen
        live.press(b" ")
        deadline = time.monotonic() + 30
        while not set(live.seen.splitlines()) & set(words) and time.monotonic() < deadline:
            time.sleep(0.05)
        code, seen, err = live.finish()
    assert code == 0, err
    assert set(seen.splitlines()) & set(words), seen  # a digit's word, printed as spoken


def test_bench_times_the_shipped_files_without_torch(python, tmp_path):
    model = ROOT / "assets" / "models" / "mnist-ad.onnx"
    args = ("bench", "--model", str(model), "--iters", "3", "--warmup", "1", "--batches", "1")
    done = _earsight(python, *args, tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "MMAC/image not counted (needs torch)" in done.stdout
    assert re.search(r"^onnx-cpu:fp16 .*\d", done.stdout, re.M), done.stdout


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("export", "x.pt", "-o", "x.onnx"), "earsight export"),
        (("describe", str(SAMPLES), "--model", "mnist-ad", "--backend", "torch"), "torch backend"),
    ],
)
def test_what_needs_the_trainer_says_so_in_one_line(python, tmp_path, args, what):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    done = _earsight(python, *args, tmp=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and what in done.stderr and TRAIN_LINE in done.stderr


def test_teaching_keeps_the_words_and_says_what_learning_needs(python, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for sample in sorted(SAMPLES.glob("*.png"))[:3]:
        (photos / sample.name).write_bytes(sample.read_bytes())
    args = ("teach", "pill box", "--photos", str(photos), "--espeak-voice", "en", "--no-speech")
    done = _earsight(python, *args, tmp=tmp_path)
    # stored is what was asked: exit 0, and why it is not learned (it was exit 2, as a failure)
    assert done.returncode == 0, done.stderr
    assert "stored, not learned: learning " + TRAIN_LINE in done.stdout, done.stdout
    listed = _earsight(python, "teach", "--list", "--no-speech", tmp=tmp_path)
    assert "pill box: 3 photos" in listed.stdout, listed.stdout
    assert (
        "not learned: learning needs the trainer (install the trainer: ./install.sh"
        in listed.stdout
    )
    assert "earsight teach --learn" not in listed.stdout  # cannot work on this install
    image = str(next(iter(photos.iterdir())))
    described = _earsight(python, "describe", image, tmp=tmp_path)  # auto: the shipped words
    assert described.returncode == 0, described.stderr
    assert (
        "1 taught word is not learned yet — install the trainer: ./install.sh" in described.stdout
    )
    taught = _earsight(python, "describe", image, "--model", "taught", tmp=tmp_path)
    assert taught.returncode == 2 and taught.stderr.count("\n") == 1, taught.stderr
    cup = ("teach", "cup", "--photos", str(photos), "--espeak-voice", "en", "--no-speech")
    assert _earsight(python, *cup, tmp=tmp_path).returncode == 0
    forgot = _earsight(python, "teach", "--forget", "pill box", "--no-speech", tmp=tmp_path)
    assert forgot.returncode == 0, forgot.stderr
    # nothing was stored by --forget: it said "stored, not learned"
    assert "the words left are not learned again: learning " + TRAIN_LINE in forgot.stdout
    assert "no taught model: 1 taught word is not learned yet" in taught.stderr, taught.stderr
    learn = _earsight(python, "teach", "--learn", "--no-speech", tmp=tmp_path)
    assert learn.returncode == 2 and "learning " + TRAIN_LINE in learn.stderr, learn.stderr


def test_teaching_inside_live_says_what_learning_needs_in_one_line(python, tmp_path):
    # live's teach key stored the word, then learning died in a ModuleNotFoundError traceback
    script = f"""
import numpy as np
from earsight.app.modes.live_teach import _learn_words
from earsight.errors import EarSightError
from earsight.trainer.teach.store import TeachStore
store = TeachStore({str(tmp_path / "taught")!r})
views = [np.full((64, 64, 3), 90, np.uint8)] * 3
wave = (0.3 * np.sin(np.arange(11025) / 4)).astype(np.float32)
store.add_word("object 1", views, wave, 22050, "microphone")
try:
    _learn_words(store, print, print)
except EarSightError as err:
    print("one line:", err)
print(len(store.words()))
"""
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    said, kept = done.stdout.splitlines()[-2:]
    assert said.startswith("one line: learning " + TRAIN_LINE), said
    assert said.endswith("the taught words are kept") and kept == "1", done.stdout


def test_the_speech_recognizer_names_the_train_extra(python):
    # photo_eval on a runtime-only install said "pip install pocketsphinx (or ./install.sh)"
    code = (
        "from earsight.trainer.evaluation.metrics import WordRecognizer\n"
        "try:\n    WordRecognizer(['cat'])\nexcept Exception as err:\n    print(err)"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("the speech recognizer (word accuracy) needs the trainer's")
    assert "pip install 'earsight[train]'" in done.stdout, done.stdout


@pytest.mark.parametrize("script", ["train", "evaluate", "slim"])
def test_the_trainers_console_scripts_say_what_to_install(python, tmp_path, script):
    code = (
        f"import sys; sys.argv[1:] = ['--help']; from earsight.commands import {script}; {script}()"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and TRAIN_LINE in done.stderr, done.stderr


@pytest.mark.parametrize("script", ["fit.py", "evaluate.py", "checkpoint.py"])
def test_the_readmes_trainer_scripts_say_what_to_install(python, tmp_path, script):
    # `python trainer/fit.py --help` as the README writes it, on the wearable's install
    done = subprocess.run(
        [str(python), str(ROOT / "trainer" / script), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and TRAIN_LINE in done.stderr, done.stderr


def test_the_trainers_console_scripts_run_the_trainer_where_it_is_installed(tmp_path):
    import sys

    code = "import sys; sys.argv[1:] = ['--help']; from earsight.commands import train; train()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "--preset" in done.stdout, done.stderr


def test_doctor_says_the_trainer_is_missing_and_optional(python, tmp_path):
    done = _earsight(python, "doctor", "--model", "mnist-ad", tmp=tmp_path)
    (line,) = [x for x in done.stdout.splitlines() if x.split(":")[0].endswith("trainer")]
    assert line.startswith("--   trainer: not installed") and "earsight[train]" in line, line
