"""Config file precedence, `earsight doctor` on real parts, and the end-to-end latency bench."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from earsight import paths
from earsight.app.config import ConfigError, LiveOptions, read_config, resolve_options

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples" / "mnist"


def test_flags_beat_the_config_file_which_beats_defaults(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('source = "/dev/video2"\nthreshold = 0.7\nverbosity = 2\n')
    opts = resolve_options({"threshold": 0.9, "source": None}, cfg)
    assert opts.threshold == 0.9  # flag
    assert opts.source == "/dev/video2" and opts.verbosity == 2  # file
    assert opts.hotkey == LiveOptions().hotkey  # default


def test_missing_default_config_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("EARSIGHT_CONFIG", str(tmp_path / "absent.toml"))
    assert resolve_options({}) == LiveOptions()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold = ", "not valid TOML"),
        ("colour = 'red'\n", "unknown option 'colour'"),
        ("threshold = 3.0\n", "threshold must be in 0..1"),
        ('threshold = "high"\n', "threshold must be a number, got 'high'"),
        ('loop = "no"\n', "loop must be true or false, got 'no'"),  # a non-empty string is truthy
        (
            "verbosity = true\n",
            "verbosity must be a whole number, got True — write e.g. verbosity = 2",
        ),
        ("int8 = 1\n", "int8 must be true or false, got 1 — write e.g. int8 = true"),
        ("mode = 'video'\n", "mode must be one of"),
        ("threads = 0\n", "threads must be 1\\.\\.[0-9]+ here .*, got 0"),
        ("threads = -2\n", "threads must be 1\\.\\.[0-9]+ here .*, got -2"),
        # 100000 threads took 16 GB and hung describe; 29 digits was a traceback from ONNX Runtime
        ("threads = 100000\n", "threads must be 1\\.\\.[0-9]+ here \\(this machine has"),
        ("threads = 12345678901234567890123456789\n", "got 12345678901234567890123456789"),
        ("model = " + "[" * 5_000 + "]" * 5_000 + "\n", "nests values too deep"),
        ("# " + "x" * 200_000 + "\n", "characters long: not a config file"),
        ("sourse = '0'\n", "unknown option 'sourse' — did you mean 'source'\\?"),
        ("modle = 'x'\n", "did you mean 'mode' or 'model'\\?"),  # both near: both said
        ("source = 0\n", 'source must be text in quotes, got 0 — write e.g. source = "0"'),
        ("# mine\nmodel = cifar10-ad  # the default\n", 'quotes: write model = "cifar10-ad"'),
        ("source = /dev/video2\n", 'text needs quotes: write source = "/dev/video2"'),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path, text, message):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        resolve_options({}, cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, encoding):
    cfg = tmp_path / "config.toml"
    cfg.write_text("# café settings\nthreshold = 0.6\n", encoding=encoding)  # Notepad, old editors
    with pytest.raises(ConfigError, match="is not UTF-8 text — save it again as UTF-8"):
        resolve_options({}, cfg)


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_bytes("\ufeffthreshold = 0.7\n".encode())  # what Notepad writes
    assert resolve_options({}, cfg).threshold == 0.7


@pytest.fixture
def shared_tmp():
    """A folder another user can enter (pytest's tmp_path sits in root's private folder)."""
    folder = Path(tempfile.mkdtemp(prefix="earsight-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_files_this_user_cannot_read_are_one_line(shared_tmp):
    # the service's user and a root-only /etc/earsight/config.toml, or another user's taught
    # words: each was a PermissionError traceback
    drop = []
    if os.geteuid() == 0:  # root reads anything: ask as nobody, as the service's user would
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    cfg = shared_tmp / "config.toml"
    cfg.write_text("threshold = 0.7\n")
    cfg.chmod(0o000)
    private = shared_tmp / "private"
    (private / "taught").mkdir(parents=True)
    private.chmod(0o700)
    image = ROOT / "assets" / "samples" / "cifar10" / "cat-test0000.jpg"
    exe = str(Path(sys.executable).with_name("earsight"))

    def describe(config: Path, taught: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "EARSIGHT_CONFIG": str(config), "EARSIGHT_TEACH": str(taught)}
        env |= {"EARSIGHT_CACHE": str(shared_tmp / "c"), "EARSIGHT_DATA": str(shared_tmp / "d")}
        command = [*drop, exe, "describe", str(image)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        return done

    done = describe(cfg, shared_tmp / "taught")
    assert done.stderr.startswith(f"error: cannot read the config file {cfg} (Permission denied)")
    assert "let the user running earsight (" in done.stderr, done.stderr
    done = describe(shared_tmp / "none.toml", private / "taught")
    assert done.stderr.startswith(f"error: cannot use {private}/taught"), done.stderr


def test_a_value_from_the_file_names_the_file_and_dashed_keys_are_the_flags(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("threshold = 7\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(cfg))}: threshold must be in 0..1"):
        resolve_options({}, cfg)
    with pytest.raises(ConfigError, match=r"^threshold must be in 0\.\.1"):  # the flag's own value
        resolve_options({"threshold": 9.0}, None)
    cfg.write_text('out-dir = "wavs"\nspeak-status = false\n')  # as the flags spell them
    options = resolve_options({}, cfg)
    assert options.out_dir == "wavs" and options.speak_status is False


NULL_CARD = "pcm.!default { type null }\n"  # ALSA's null device: plays and captures nothing


def test_read_config_rejects_tables(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[model]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="single value"):
        read_config(cfg)


def _earsight(*args: str, alsa: Path | None = None, timeout: float = 120, card: str = NULL_CARD):
    env = {**os.environ, "EARSIGHT_CONFIG": "/nonexistent/config.toml"}
    if alsa is not None:
        alsa.write_text(card)
        env["ALSA_CONFIG_PATH"] = str(alsa)
    exe = str(Path(sys.executable).with_name("earsight"))
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env=env, timeout=timeout, input=""
    )


def test_doctor_passes_with_a_camera_and_an_audio_device(tmp_path):
    proc = _earsight("doctor", "--source", str(SAMPLES), alsa=tmp_path / "asound.conf")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ok   model: cifar10-ad-lite0.onnx") for line in lines)  # default
    assert lines[-1] == "live can run"
    proc = _earsight(
        "doctor", "--source", str(SAMPLES), "--model", "cifar10-ad", alsa=tmp_path / "asound.conf"
    )
    lines = proc.stdout.splitlines()
    model = next(line for line in lines if line.startswith("ok   model: cifar10-ad.onnx"))
    assert "; on the CPU cifar10-ad.int8.onnx, its checksum matches too" in model  # onnx-cpu's
    assert "sha256" not in proc.stdout  # hash fragments read aloud say nothing to a user
    assert any(line.startswith("ok   camera:") for line in lines)
    assert any(line.startswith("ok   audio:") for line in lines)
    assert "ok   microphone: input 'default' opens (teach mode)" in lines  # ALSA's null captures
    assert lines[-1] == "live can run"


def test_doctor_says_a_button_not_connected_yet_is_waited_for(tmp_path):
    pytest.importorskip("evdev")
    device = "/dev/input/by-id/usb-button-not-yet-event-kbd"
    proc = _earsight(
        "doctor", "--source", str(SAMPLES), "--keys", "evdev", "--evdev-device", device,
        alsa=tmp_path / "asound.conf",
    )  # fmt: skip
    mentions = [line for line in proc.stdout.splitlines() if device in line]
    assert mentions == [
        f"--   keys: input device {device} is not there yet: live waits for it — connect or "
        "pair the button; if the name is wrong, see ls /dev/input/by-id"
    ], proc.stdout
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "live can run", proc.stdout


def test_doctor_says_there_is_no_microphone_and_live_still_runs(tmp_path):
    # No sound card at all: WAV files instead of sound, no microphone for teach mode, and live
    # can still run (a taught word's sound can also be a WAV file or espeak-ng).
    proc = _earsight(
        "doctor", "--source", str(SAMPLES), "--out-dir", str(tmp_path / "wavs"),
        alsa=tmp_path / "a.conf", card="pcm.!default { type hw card 97 }\n",
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    mic = next(line for line in lines if "microphone:" in line)
    assert mic.startswith("--   microphone: no microphone") and "--voice-file" in mic, mic
    # a wearable without sound is of no use to its user: the summary does not say all is well
    assert proc.returncode == 0, proc.stdout
    assert (
        lines[-1] == "live can run, but nobody will hear it: no audio output (see the audio line)"
    )
    # without --out-dir too: live writes WAV files to the user data folder, so doctor agrees
    no_card = "pcm.!default { type hw card 97 }\n"
    proc = _earsight("doctor", "--source", str(SAMPLES), alsa=tmp_path / "a.conf", card=no_card)
    audio = next(line for line in proc.stdout.splitlines() if " audio:" in line)
    assert audio.startswith("--   audio:") and str(paths.wav_dir()) in audio, audio
    assert proc.returncode == 0, proc.stdout


def test_doctor_names_the_config_file_and_a_bad_one_is_a_fail_line(tmp_path):
    """Which file live would read, and what it sets, is doctor's first line (a user who set the
    model there and hears the wrong one had no way to see the file was not read); a bad file is
    a FAIL line with its fix, and the other checks still run."""
    cfg = tmp_path / "mine.toml"
    cfg.write_text('model = "cifar10-ad"\n')
    run = lambda *a: _earsight("doctor", "--source", str(SAMPLES), *a, alsa=tmp_path / "a.conf")  # noqa: E731
    lines = run("--config", str(cfg)).stdout.splitlines()
    assert lines[0] == f"ok   config: {cfg} sets model", lines
    assert lines[1].startswith("ok   model: cifar10-ad.onnx"), lines  # the file's model
    assert run().stdout.splitlines()[0] == (
        "--   config: no file at /nonexistent/config.toml: the defaults"
    )
    cfg.write_text("threshold = 3\n")
    proc = run("--config", str(cfg))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == f"FAIL config: {cfg}: threshold must be in 0..1, got 3 — e.g. 0.5", lines
    assert lines[1].startswith("ok   model: cifar10-ad-lite0.onnx"), lines  # checked all the same
    assert lines[-1] == "live cannot run: fix the FAIL lines above"


def test_doctor_fails_without_a_camera_and_says_why(tmp_path):
    proc = _earsight("doctor", "--source", str(tmp_path / "missing.avi"), alsa=tmp_path / "a.conf")
    assert proc.returncode == 1
    assert any(line.startswith("FAIL camera:") for line in proc.stdout.splitlines())
    assert "Traceback" not in proc.stdout + proc.stderr


def test_doctor_detects_a_damaged_model(tmp_path):
    model = tmp_path / "m.onnx"
    shipped = ROOT / "assets" / "models" / "mnist-ad.onnx"
    model.write_bytes(shipped.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "m.onnx.json").write_text(Path(f"{shipped}.json").read_text())
    proc = _earsight(
        "doctor", "--model", str(model), "--source", str(SAMPLES), alsa=tmp_path / "a.conf"
    )
    assert proc.returncode == 1
    assert any(
        line.startswith("FAIL model:") and "sha256" in line for line in proc.stdout.splitlines()
    )


def test_doctor_says_when_the_int8_variant_is_damaged_and_ignored(tmp_path):
    from earsight.app.doctor import check_model

    shipped = ROOT / "assets" / "models"
    for name in ("cifar10-ad.onnx", "cifar10-ad.onnx.json", "cifar10-ad.int8.onnx.json"):
        shutil.copy(shipped / name, tmp_path / name)
    data = (shipped / "cifar10-ad.int8.onnx").read_bytes()
    (tmp_path / "cifar10-ad.int8.onnx").write_bytes(data[:-10] + b"0123456789")
    model = str(tmp_path / "cifar10-ad.onnx")
    damaged = check_model(LiveOptions(model=model))
    assert damaged.ok and damaged.detail.endswith(
        "; cifar10-ad.int8.onnx ignored (see the warning above)"
    )
    assert "int8" not in check_model(LiveOptions(model=model, int8=False)).detail


@pytest.mark.slow
def test_e2e_bench_prints_key_to_audio_latency(tmp_path):
    proc = _earsight(
        "bench", "--e2e", "--presses", "4", "--threads", "1", alsa=tmp_path / "a.conf", timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    rows = {line.split()[0].rstrip(":"): line for line in lines if line[:1].isalpha()}
    assert "4/4" in rows["onnx-cpu"]
    # The torch peer needs the training checkpoint the sidecar records (absent on a fresh
    # clone): then its row says why it did not run, and there is no ratio to print.
    assert "4/4" in rows["torch"] or "not run" in rows["torch"]
    assert ("×" in rows["onnx-cpu"]) == ("not run" not in rows["torch"])


@pytest.mark.slow
def test_e2e_bench_fails_only_when_no_backend_ran(tmp_path):
    shipped = ROOT / "assets" / "models"
    for name in ("mnist-ad.onnx", "mnist-ad.onnx.json"):  # without its training checkpoint
        shutil.copy(shipped / name, tmp_path / name)
    model = str(tmp_path / "mnist-ad.onnx")
    args = ("bench", "--e2e", "--presses", "2", "--threads", "1", "--model", model)
    proc = _earsight(*args, "--as-lines", alsa=tmp_path / "a.conf", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # onnx-cpu ran, torch could not
    assert "torch: not run: BackendUnavailable: the torch backend needs the checkpoint" in (
        proc.stdout
    )
    # --as-lines, for a screen reader: every value after its column's name
    assert "\nbackend onnx-cpu; audio " in proc.stdout and "; presses 2/2; " in proc.stdout
    alone = _earsight(*args, "--backends", "torch", alsa=tmp_path / "a.conf", timeout=300)
    assert alone.returncode == 1 and "not run" in alone.stdout


def test_e2e_bench_shows_each_model_the_samples_it_was_trained_for():
    from earsight.app.bench.e2e import sample_images

    digits, photos = sample_images("mnist-ad"), sample_images("cifar10-ad")
    assert len(digits) == len(photos) == 20
    assert {p.parent.name for p in digits} == {"mnist"} and {p.suffix for p in digits} == {".png"}
    assert {p.parent.name for p in photos} == {"cifar10"} and {p.suffix for p in photos} == {".jpg"}


@pytest.mark.faults
def test_doctor_does_not_call_tensorrt_ok_when_its_backend_cannot_run():
    """With TensorRT installed, doctor said "ok TensorRT" on an install without torch or
    without a CUDA torch, where the backend (its buffers are torch's) cannot start. Here: the
    real torch of this machine, which sees no GPU (TensorRT itself cannot be installed here)."""
    import torch

    from earsight.app.doctor import tensorrt_usable

    if torch.cuda.is_available():
        pytest.skip("torch sees a CUDA GPU here: the usable case")
    check = tensorrt_usable("version 10.9.0")
    assert not check.ok and "sees no CUDA GPU" in check.detail, check
    assert "torch built for this GPU's CUDA" in check.fix


@pytest.mark.faults
def test_doctor_says_an_engine_cache_that_cannot_be_written(tmp_path, monkeypatch):
    # it said "ok engine cache" where the first TensorRT build would fail to keep its engine
    from earsight.app.doctor import check_engine_cache

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("EARSIGHT_ENGINE_CACHE", str(tmp_path / "a-file" / "engines"))
    check = check_engine_cache(LiveOptions())
    assert not check.ok and check.detail.endswith("cannot be written (Not a directory)"), check
    monkeypatch.setenv("EARSIGHT_ENGINE_CACHE", str(tmp_path / "new" / "engines"))
    check = check_engine_cache(LiveOptions())  # not there yet: the first build makes it
    assert check.ok and check.detail.endswith("no TensorRT engines"), check
    assert not (tmp_path / "new").exists()  # the doctor changes nothing
