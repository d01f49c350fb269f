"""earsight.errors and earsight.wav: the one-line messages and the one WAV writer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from earsight.errors import EarSightError, UsageError, first_line
from earsight.wav import wav_bytes, write_wav


def test_first_line_of_a_foreign_exception():
    err = RuntimeError("  device busy\nTraceback detail\nmore")
    assert first_line(err) == "device busy"
    assert first_line(err, typed=True) == "RuntimeError: device busy"
    assert first_line(KeyError()) == "KeyError"  # no message: the type names it
    assert len(first_line(ValueError("x" * 500))) == 160  # one screen-reader line


def test_usage_error_is_one_line_what_then_fix():
    err = UsageError("no camera 3", "use --source 0")
    assert isinstance(err, EarSightError) and str(err) == "no camera 3 — use --source 0"


def test_wav_clips_rather_than_wraps_and_round_trips(tmp_path):
    wave = np.array([0.0, 0.5, 1.7, -3.0, -0.25], np.float32)  # two samples out of range
    path = tmp_path / "w.wav"
    write_wav(path, wave, 16_000)
    back, rate = soundfile.read(str(path), dtype="float32")
    info = soundfile.info(str(path))
    assert (rate, info.subtype, info.channels) == (16_000, "PCM_16", 1)
    assert back[2] > 0.99 and back[3] < -0.99  # clipped, not wrapped to the other sign
    assert np.allclose(back, np.clip(wave, -1, 1), atol=1e-4)
    from_bytes, _ = soundfile.read(io.BytesIO(wav_bytes(wave, 16_000)), dtype="float32")
    assert np.array_equal(from_bytes, back)


def test_wav_errors(tmp_path):
    with pytest.raises(OSError):
        write_wav(tmp_path / "missing-folder" / "w.wav", np.zeros(10, np.float32), 16_000)
    with pytest.raises(ValueError, match="mono"):
        wav_bytes(np.zeros((10, 2), np.float32), 16_000)


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_reach_the_user_only_with_verbose(verbose):
    # teach's learn printed scikit-learn's ConvergenceWarning and pystoi's RuntimeWarning, with
    # their source lines, between the spoken status lines
    import subprocess
    import sys

    code = (
        "from earsight.app.cli import _configure_logging; import warnings; "
        f"_configure_logging({verbose}, False); "
        "warnings.warn('Not enough STFT frames', RuntimeWarning)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert ("Not enough STFT frames" in done.stdout) is verbose, done.stdout


@pytest.mark.parametrize(
    "module",
    [
        "earsight.trainer.checkpoint",  # earsight-slim
        "earsight.app.bench.footprint",
        "earsight.app.bench.audio",
        "earsight.trainer.teach.bench",
    ],
)
def test_every_command_answers_a_usage_error_in_one_line(module):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", module, "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help`)" in lines[0], lines


@pytest.mark.faults
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_terminal_without_unicode_punctuation_gets_stand_ins_not_a_traceback(encoding):
    """Under an ISO-8859-1 locale (or PYTHONIOENCODING=ascii) `earsight teach --help` and
    `doctor` were UnicodeEncodeError tracebacks on their first "—", and an error line printed
    "\\u2014", read out letter by letter by a screen reader."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONIOENCODING": encoding}
    earsight = str(Path(sys.executable).with_name("earsight"))
    helped = subprocess.run([earsight, "teach", "--help"], capture_output=True, env=env)
    assert helped.returncode == 0 and b"Traceback" not in helped.stderr, helped.stderr
    assert b"..." in helped.stdout  # the help's "…" as three dots
    wrong = subprocess.run(
        [earsight, "describe", "/no/such/file.jpg"], capture_output=True, env=env
    )
    assert wrong.stderr.decode(encoding).strip() == (
        "error: no such file or folder: /no/such/file.jpg - check the image paths"
    )
    trainer = subprocess.run(
        [sys.executable, "-m", "earsight.trainer.checkpoint", "--help"],
        capture_output=True,
        env=env,
    )
    assert trainer.returncode == 0 and b"Traceback" not in trainer.stderr, trainer.stderr


def test_the_stand_ins_are_plain_ascii():
    from earsight.console import ERRORS, STAND_INS

    assert "a — b … c ≤ d é 中".encode("ascii", errors=ERRORS) == b"a - b ... c <= d e ?"
    assert all(value.isascii() for value in STAND_INS.values())


def test_the_trainer_names_itself_as_it_was_run():
    # a wheel install has no trainer/fit.py: earsight-train sent its users to one
    import subprocess
    import sys
    from pathlib import Path

    train = str(Path(sys.executable).with_name("earsight-train"))
    done = subprocess.run([train], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().endswith("see earsight-train --help")


def test_python_dash_m_earsight_is_the_earsight_command():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "earsight", "-V"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("earsight "), done.stderr
