"""Fault suite, live app and devices (docs/RELIABILITY.md): real processes, real parts.

Each test starts `earsight live` (or a part of it) against a device that misbehaves the way
public bug reports describe: an ALSA output whose open never returns, an audio device name that
is not there, key input that cannot work or closes, a camera that is not plugged in yet, an RTSP
server that is down. The app must keep working or say, in one plain line, what is wrong.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_live import write_digit_video

cv2 = pytest.importorskip("cv2")

pytestmark = pytest.mark.faults

NULL_DEVICE = "pcm.!default { type null }\n"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def hanging_device(fifo: Path) -> str:
    """ALSA's file plugin writing into a FIFO nobody reads: snd_pcm_open blocks forever."""
    if not fifo.exists():
        os.mkfifo(fifo)
    return f'pcm.!default {{ type file slave.pcm {{ type null }} file "{fifo}" format "raw" }}\n'


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "digits.avi"
    write_digit_video(path)
    return path


class Live:
    """`earsight live` in a pty (terminal keys), its stdout read line by line."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        asound: str = NULL_DEVICE,
        stdin=None,
        program: list[str] | None = None,  # how to start earsight: its console script by default
    ) -> None:
        (tmp_path / "asound.conf").write_text(asound)
        env = {
            **os.environ,
            "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf"),
            "EARSIGHT_CONFIG": str(tmp_path / "none.toml"),
            "OMP_NUM_THREADS": "1",
        }
        env.pop("DISPLAY", None)
        self.master, slave = os.openpty() if stdin is None else (None, stdin)
        program = program or [str(Path(sys.executable).with_name("earsight"))]
        cmd = [*program, "live", "--threads", "1"]
        cmd += ["--model", "mnist-ad", *args]
        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        if self.master is not None:
            os.close(slave)
        self._lines: list[str] = []  # stdout, read by a thread: a hung app cannot hang the test
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def seen(self) -> str:
        return "".join(self._lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.seen and time.monotonic() < deadline:
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        return text in self.seen

    def wait_until(self, condition, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        return condition()

    def wait(self, timeout: float = 60.0) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def finish(self, timeout: float = 10.0) -> tuple[int | None, str, str]:
        """SIGTERM if still running (SIGKILL after ``timeout``); (exit code, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, self.seen, "did not stop within 10 s after SIGTERM"
        self._reader.join(timeout)
        err = self.proc.stderr.read()
        if self.master is not None:
            os.close(self.master)
            self.master = None
        return self.proc.returncode, self.seen, err

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            os.close(self.master)


# --- audio ----------------------------------------------------------------------------------


def press_until_files(live: Live, out: Path, n: int, timeout_s: float = 10.0) -> None:
    """Press space, then wait (up to ``timeout_s``) for ``n`` WAV files in ``out``."""
    live.press(b" ")
    deadline = time.monotonic() + timeout_s
    while len(list(out.glob("*.wav"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_an_audio_open_that_never_returns_falls_back_to_wav_files_and_says_so(tmp_path, video):
    out = tmp_path / "wavs"
    t0 = time.monotonic()
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(
        tmp_path, *args, "--out-dir", str(out), asound=hanging_device(tmp_path / "f")
    ) as live:
        assert live.wait_for("ready: press space", timeout=90), live.seen
        assert time.monotonic() - t0 < 90
        assert "did not open within" in live.seen and str(out) in live.seen, live.seen
        press_until_files(live, out, 2)
        code, _, err = live.finish()
    assert code == 0, err
    names = sorted(p.name for p in out.glob("*.wav"))
    assert any("click" in n for n in names) and len(names) >= 2, names


def test_portaudio_crashing_on_a_broken_alsa_configuration_falls_back_to_wav_files(tmp_path, video):
    # An empty ALSA configuration makes PortAudio abort (SIGABRT) inside `import sounddevice`:
    # the crash must happen in a child process, never in the app.
    out = tmp_path / "wavs"
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, "--out-dir", str(out), asound="") as live:
        assert live.wait_for("ready: press space", timeout=90), live.seen + str(live.proc.poll())
        assert "PortAudio crashed (SIGABRT)" in live.seen and str(out) in live.seen, live.seen
        press_until_files(live, out, 2)
        code, _, err = live.finish()
    assert code == 0, err
    assert len(list(out.glob("*.wav"))) >= 2


def _broken_alsa_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "asound.conf").write_text("")  # empty: PortAudio's ALSA scan aborts (SIGABRT)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf"), "OMP_NUM_THREADS": "1"}
    return {**env, "EARSIGHT_CONFIG": str(tmp_path / "none.toml")}


@pytest.mark.parametrize("out_dir", [False, True])
def test_doctor_survives_portaudio_crashing_and_says_why_in_full(tmp_path, out_dir):
    # doctor opens the output as live does, through the same child-process device scan
    exe = str(Path(sys.executable).with_name("earsight"))
    args = [exe, "doctor", "--source", str(tmp_path), "--keys", "terminal"]
    args += ["--out-dir", str(tmp_path / "wavs")] if out_dir else []
    proc = subprocess.run(
        args, capture_output=True, text=True, env=_broken_alsa_env(tmp_path), timeout=120, input=""
    )
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)  # never killed by a signal
    audio = next(line for line in proc.stdout.splitlines() if " audio:" in line)
    assert "PortAudio crashed (SIGABRT)" in audio and "$ALSA_CONFIG_PATH)" in audio, audio
    # no output: live writes WAV files (--out-dir, else the user data folder's); never a FAIL
    assert audio.startswith("ok   audio:" if out_dir else "--   audio:"), audio
    assert "live will write WAV files to" in audio
    assert "Traceback" not in proc.stderr, proc.stderr


def test_the_microphone_check_survives_portaudio_crashing_in_one_line(tmp_path):
    # a fresh process: the device scan runs once per process, before sounddevice is imported
    code = (
        "from earsight.app.sound.microphone import NoMicrophone, check_microphone\n"
        "try:\n    check_microphone()\nexcept NoMicrophone as err:\n    print(err)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_broken_alsa_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("no microphone: PortAudio crashed (SIGABRT)"), line
    assert "give the word's sound as a file" in line and "\n" not in line, line


def test_an_audio_device_that_is_not_there_is_an_error_naming_the_devices(tmp_path, video):
    args = ("--source", str(video), "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, "--audio-device", "no-such-card") as live:
        live.wait(60)
        code, out, err = live.finish()
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no audio output device 'no-such-card'"), err
    assert "output devices: 0 default" in last and "--audio-device" in last
    assert "Traceback" not in err and "ready" not in out


def test_open_audio_refuses_an_unknown_device_instead_of_writing_wavs(tmp_path):
    pytest.importorskip("sounddevice")
    from earsight.app.sound.audio import AudioOptions, open_audio
    from earsight.app.sound.devices import UnknownAudioDevice
    from tests.alsa_null import AlsaNull

    with AlsaNull(tmp_path, paced_bytes_per_s=None), pytest.raises(UnknownAudioDevice) as info:
        open_audio(AudioOptions(device="7"), tmp_path / "wavs")
    assert "no audio output device 7" in str(info.value) and "0 default" in str(info.value)
    assert not (tmp_path / "wavs").exists()


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "needle", "not_suggested"),
    [
        (("--keys", "hotkey"), "no desktop hotkey", "--keys hotkey"),
    ],
)
def test_ready_is_not_said_when_key_input_cannot_work(tmp_path, video, keys, needle, not_suggested):
    with Live(tmp_path, "--source", str(video), "--no-speech", *keys) as live:
        live.wait(60)
        code, out, err = live.finish()
    assert code == 2
    assert "ready" not in out and "model" not in out, out  # it failed fast, before the model
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last and "Traceback" not in err, err
    assert not_suggested not in last  # the fix never suggests what just failed


def test_a_button_not_connected_yet_is_waited_for_not_a_restart_loop(tmp_path, video):
    """A service starts before its Bluetooth button connects: live was exit 2, and systemd
    restarted it every ~4 s for ever, speaking the error each time. Now it is ready (the
    camera works), says it waits for the device, and stops cleanly. (A device that then
    appears needs /dev/uinput to test; this machine has none.)"""
    pytest.importorskip("evdev")
    device = "/dev/input/by-id/usb-button-not-yet-event-kbd"
    args = ("--source", str(video), "--no-speech", "--keys", "evdev", "--evdev-device", device)
    with Live(tmp_path, *args) as live:
        assert live.wait_for("ready: press", timeout=90), live.seen
        code, out, err = live.finish()
    assert code == 0 and "Traceback" not in err, out + err
    waiting = [line for line in out.splitlines() if "waiting for it" in line]
    assert waiting == [
        f"input device {device} is not there yet: waiting for it, retrying every 1 s "
        "(if the name is wrong, see ls /dev/input/by-id)"
    ], out
    assert "--evdev-device" not in waiting[0]  # the fix never suggests what was given


def test_closed_key_input_stops_the_app_instead_of_leaving_it_deaf(tmp_path, video):
    args = ("--source", str(video), "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, stdin=subprocess.DEVNULL) as live:
        live.wait(60)
        code, out, err = live.finish()
    assert code == 1, out + err
    assert "key input closed" in out and "stopping" in out and "Traceback" not in err
    assert "ready: press" not in out  # closed during start-up: never claimed to be ready


@pytest.mark.parametrize("after_s", [0.4, 0.7, 1.0])
def test_ctrl_c_while_earsight_loads_is_one_line(tmp_path, video, after_s):
    # a Ctrl-C in the first second (modules loading, before live's own handler) was a traceback.
    # Not earlier than 0.4 s: on a loaded machine 0.1 s lands in Python's own start-up (its
    # `site` import), before any EarSight code can run.
    (tmp_path / "asound.conf").write_text(NULL_DEVICE)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf")}
    env["EARSIGHT_CONFIG"] = str(tmp_path / "none.toml")
    cmd = [str(Path(sys.executable).with_name("earsight")), "live", "--model", "mnist-ad"]
    cmd += ["--source", str(video), "--keys", "terminal", "--no-speech"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    try:  # stdin stays open until the exit: its end must not race the Ctrl-C to the stop
        proc.wait(timeout=30)
    finally:
        proc.kill()  # a live left running would hold the camera for the next tests
    out, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err and err.count(b"\n") <= 1, err.decode()
    assert proc.returncode in (0, 130), out.decode() + err.decode()


def test_a_bad_config_file_is_spoken_not_only_printed(tmp_path):
    # a headless wearable with a typo in /etc/earsight/config.toml stayed silent: the error was
    # found before the voice existed. ALSA's file plugin keeps what was played.
    heard = tmp_path / "played.raw"
    (tmp_path / "asound.conf").write_text(
        f'pcm.!default {{ type file slave.pcm "null" file "{heard}" format "raw" }}\n'
        "pcm.null { type null }\n"
    )
    (tmp_path / "bad.toml").write_text('sourse = "0"\n')
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf")}
    cmd = [str(Path(sys.executable).with_name("earsight")), "live", "--config"]
    cmd += [str(tmp_path / "bad.toml"), "--keys", "terminal"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "did you mean 'source'" in done.stderr, done.stderr
    assert heard.is_file() and heard.stat().st_size > 22_050, "nothing was spoken"
    heard.unlink()
    done = subprocess.run([*cmd, "--no-speech"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and not heard.exists()  # --no-speech: printed only


def test_a_second_live_on_the_same_camera_is_one_line(tmp_path, video):
    # two would answer every press in two voices (desktop keys reach both)
    # ... also when the second names it another way (a link; `0` and /dev/video0 alike)
    args = ("--loop", "--keys", "terminal", "--no-speech")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    link = tmp_path / "camera.avi"
    link.symlink_to(video)
    with Live(tmp_path / "a", "--source", str(video), *args) as first:
        assert first.wait_for("ready: press space"), first.seen
        with Live(tmp_path / "b", "--source", str(link), *args) as second:
            second.wait(60)
            code, out, err = second.finish()
        assert code == 2 and err.count("\n") == 1, out + err
        busy = f"error: another earsight live is already running on --source {link}"
        assert err.startswith(busy), err
        assert first.proc.poll() is None  # the first one goes on
        code, _, _ = first.finish()
    assert code == 0


def test_one_camera_has_one_identity_however_it_is_named(tmp_path, monkeypatch):
    from earsight.app.commands import source_identity

    assert source_identity("0") == source_identity("/dev/video0")
    assert source_identity("1") != source_identity("0")
    (tmp_path / "cat.avi").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert source_identity("cat.avi") == source_identity(str(tmp_path / "cat.avi"))
    assert source_identity("rtsp://cam/1") == "rtsp://cam/1"


def test_a_press_during_start_up_is_answered_when_ready(tmp_path, video):
    # A user who pressed while the model loaded is still waiting for the word: one press, no more
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args) as live:
        live.press(b" ")
        assert live.wait_for("still starting"), live.seen  # pressed before "ready"
        assert live.wait_for("ready: press space"), live.seen
        deadline = time.monotonic() + 60
        while not _answers(live.seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        code, out, err = live.finish()
    assert code == 0 and "Traceback" not in err, out + err
    assert "the answer comes when ready" in out, out
    assert _answers(out), out


def test_out_dir_with_an_audio_device_says_it_is_not_used(tmp_path, video):
    # --out-dir is the fall-back's folder: with a device (ALSA's null device here) no WAVs are
    # written there, and a user who asked for them is told so and where every sound can be kept
    args = ("--source", str(video), "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, "--out-dir", str(tmp_path / "wavs")) as live:
        assert live.wait_for("ready: press space"), live.seen
        _, out, err = live.finish()
    assert f"--out-dir {tmp_path / 'wavs'} is only used without one" in out, out + err
    assert "--record DIR" in out, out


needs_mounts = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs a private mount namespace (unshare -m, root) for a full or read-only disk",
)
NO_AUDIO = "pcm.!default { type hw card 97 }\n"  # no sound card: live writes WAV files


def _on_small_disk(disk: Path, fill_kb: int, read_only: bool = False) -> list[str]:
    """How to start earsight with a fresh 128 KiB tmpfs at ``disk`` (``fill_kb`` of it taken,
    or read-only), in a private mount namespace; after it exits, each WAV's name and size."""
    # earsight runs as a child with the terminal as its stdin, and a SIGTERM to the shell is
    # passed on to it, so a test that fails cannot leave it running (and its pipes open)
    script = (
        f'mount -t tmpfs -o size=128k tmpfs "{disk}" && mkdir "{disk}/wavs" && '
        f'dd if=/dev/zero of="{disk}/fill" bs=1k count={fill_kb} 2>/dev/null && '
        + (f'mount -o remount,ro "{disk}" && ' if read_only else "")
        + 'exec 3<&0 && { "$@" <&3 3<&- & pid=$!; trap "kill -TERM $pid" TERM; '
        "wait $pid; rc=$?; if [ $rc -gt 128 ]; then wait $pid; rc=$?; fi; "
        f'for f in "{disk}"/wavs/*.wav; do '
        '[ -e "$f" ] && echo "wav $(basename "$f") $(stat -c %s "$f")"; done; exit $rc; }'
    )
    return [
        "unshare",
        "-m",
        "sh",
        "-c",
        script,
        "-",
        str(Path(sys.executable).with_name("earsight")),
    ]


@needs_mounts
def test_a_full_wav_folder_is_said_once_and_the_answers_go_on(tmp_path, video):
    """No sound card, --out-dir on a disk that fills up: each press still prints its word, the
    fault is one line said once (it was a traceback per press and "System error."), and no
    empty or cut-off WAV is left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    args += ("--out-dir", str(disk / "wavs"))
    with Live(tmp_path, *args, asound=NO_AUDIO, program=_on_small_disk(disk, 100)) as live:
        assert live.wait_for("ready: press space"), live.seen
        for n in range(1, 4):
            live.press(b" ")
            assert live.wait_until(lambda n=n: len(_answers(live.seen)) >= n, 20), live.seen
        live.press(b"q")
        live.press(b"q")
        live.wait(20)
        code, out, err = live.finish()
    assert "Traceback" not in err and "System error" not in out + err, err[-2000:]
    full = f"cannot write sound files to {disk / 'wavs'}: No space left on device; answers are "
    assert out.count(full) == 1, out
    assert "free some space, or pick another --out-dir folder" in out, out
    assert len(_answers(out)) == 3, out
    sizes = [int(line.split()[-1]) for line in out.splitlines() if line.startswith("wav ")]
    assert sizes and all(size > 44 for size in sizes), out  # whole files (clicks fit), no stubs
    assert code == 0, out + err


@needs_mounts
def test_a_read_only_wav_folder_is_one_line_at_start(tmp_path, video):
    disk = tmp_path / "disk"
    disk.mkdir()
    args = ("--source", str(video), "--keys", "terminal", "--no-speech", "--out-dir")
    program = _on_small_disk(disk, 0, read_only=True)
    with Live(tmp_path, *args, str(disk / "wavs"), asound=NO_AUDIO, program=program) as live:
        live.wait(60)
        code, out, err = live.finish()
    assert code == 2, out + err
    assert "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot write sound files to" in lines[0], lines
    assert "Read-only file system" in lines[0] and "ready" not in out, out + err


def _answers(out: str) -> list[str]:
    """live's answer lines ("seven", "not sure (…)") in its stdout."""
    return [line for line in out.splitlines() if line.split(" (")[0] in {*DIGITS, "not sure"}]


@pytest.mark.parametrize("when", ["before ready", "after ready"])
def test_quit_then_the_end_of_piped_keys_is_a_clean_quit(tmp_path, video, when):
    # `(sleep 4; echo q) | earsight live --keys terminal`: q, then the pipe closes at once
    read_end, write_end = os.pipe()
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args, stdin=read_end) as live:
        os.close(read_end)
        if when == "after ready":
            assert live.wait_for("ready: press Enter"), live.seen  # keys piped in: lines
        os.write(write_end, b"q\n")
        os.close(write_end)
        live.wait(60)
        code, out, err = live.finish()
    assert code == 0, out + err
    assert "key input closed" not in out, out
    assert all(line.count("stopping") <= 1 for line in out.splitlines()), out


# --- camera ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["/dev/video7", "/dev/v4l/by-id/usb-none-video-index0", "rtsp://127.0.0.1:9/none"]
)
def test_a_camera_that_is_not_there_yet_is_waited_for(tmp_path, source):
    if Path(source).exists():
        pytest.skip(f"this machine has {source}")
    with Live(tmp_path, "--source", source, "--keys", "terminal", "--no-speech") as live:
        assert live.wait_for("ready: press space"), live.seen
        assert "no camera yet, retrying" in live.seen
        live.press(b" ")
        assert live.wait_for("no camera, still trying", timeout=10), live.seen
        assert live.wait_for("still no camera, retrying", timeout=15), live.seen  # reminded
        code, out, err = live.finish()
    assert code == 0, err
    # FFmpeg's and OpenCV's own lines ("[tcp @ 0x…] Connection refused") never reach the user
    for stream in (out, err):
        assert " @ 0x" not in stream and "WARN" not in stream, stream


def test_stable_camera_names_are_cameras():
    from earsight.app.camera.sources import parse_source

    for name in ("/dev/v4l/by-id/usb-046d_HD_Webcam-video-index0", "/dev/v4l/by-path/pci-0:1.0"):
        spec = parse_source(name)
        assert (spec.kind, spec.target, spec.api) == ("camera", name, "v4l2")
    assert parse_source("v4l2:///dev/v4l/by-id/cam").target == "/dev/v4l/by-id/cam"


def test_a_source_that_can_never_open_is_one_line_not_a_wait(tmp_path):
    # a damaged photo as the camera said "camera lost" forever; a CSI camera on an OpenCV
    # without GStreamer said "still no camera, retrying" forever (doctor knew why)
    import cv2

    (tmp_path / "bad.jpg").write_text("junk")
    sources = {str(tmp_path / "bad.jpg"): "not an image OpenCV can decode"}
    if re.search(r"GStreamer:\s+NO", cv2.getBuildInformation()):
        sources["csi://0"] = "this OpenCV has no GStreamer — use the JetPack OpenCV"
    for source, why in sources.items():
        done = _earsight("live", "--source", source, "--keys", "terminal", "--no-speech",
                         tmp_path=tmp_path)  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot open") and why in last, last


def test_a_stream_that_comes_up_later_is_found(tmp_path):
    from earsight.app.camera.grabber import (
        STATUS_FOUND,
        STATUS_STILL,
        STATUS_WAITING,
        FrameGrabber,
        GrabberOptions,
    )
    from earsight.app.camera.sources import SourceSpec

    later = tmp_path / "stream.avi"  # FFmpeg opens a file like a stream URL
    spec = SourceSpec(str(later), "rtsp", str(later), "ffmpeg")
    statuses: list[str] = []
    options = GrabberOptions(retry_s=0.1, remind_s=0.4, wait=True)
    with FrameGrabber(spec, options, statuses.append) as grabber:
        assert grabber.lost and grabber.latest(0.2) is None
        time.sleep(1.0)
        assert statuses[0] == STATUS_WAITING and STATUS_STILL in statuses, statuses
        write_digit_video(tmp_path / "tmp.avi")
        (tmp_path / "tmp.avi").rename(later)
        frame = grabber.latest(5.0)
        assert frame is not None and not grabber.lost
    assert statuses[-1] == STATUS_FOUND


def test_decoder_errors_of_a_damaged_video_are_not_printed(tmp_path):
    """FFmpeg prints `[mjpeg @ 0x…] huffman table decode error` for a damaged file, itself."""
    path = tmp_path / "damaged.avi"
    write_digit_video(path)
    data = bytearray(path.read_bytes())
    for i in range(4000, len(data) - 4000, 97):
        data[i] ^= 0xFF
    path.write_bytes(data)
    code = (
        "import sys\n"
        "from earsight.app.camera.sources import parse_source, open_capture, read_capture\n"
        f"cap = open_capture(parse_source({str(path)!r}))\n"
        "while cap is not None and read_capture(cap)[0]: pass\n"
        "print('done')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == "done" and result.stderr == "", result.stderr


# --- options, keys and messages -------------------------------------------------------------


def _earsight(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "asound.conf").write_text("pcm.!default { type hw card 97 }\n")  # no sound card
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf"), "OMP_NUM_THREADS": "1"}
    env["EARSIGHT_CONFIG"] = str(tmp_path / "none.toml")
    exe = str(Path(sys.executable).with_name("earsight"))
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env=env, timeout=120, input=""
    )


@pytest.mark.parametrize("command", ["live", "doctor"])
def test_a_config_file_named_but_missing_is_an_error(tmp_path, command):
    proc = _earsight(command, "--config", str(tmp_path / "typo.toml"), tmp_path=tmp_path)
    said = (
        f"config file {tmp_path / 'typo.toml'} does not exist"
        " — fix the --config path, or leave --config out"
    )
    if command == "doctor":  # a FAIL line, and the other checks still run
        assert proc.returncode == 1 and proc.stdout.splitlines()[0] == f"FAIL config: {said}"
        return
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {said}"


def test_repeat_with_nothing_to_repeat_says_so(tmp_path, video):
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    with Live(tmp_path, *args) as live:
        assert live.wait_for("ready: press space"), live.seen
        live.press(b"r")
        # the key a terminal user has, not the action's name
        assert live.wait_for("nothing to repeat yet: press space first", timeout=5), live.seen
        live.press(b"x")  # a key that does nothing: the keys that do something are said
        assert live.wait_for("that key does nothing: space describe,", timeout=5), live.seen
        live.press(b" ")
        deadline = time.monotonic() + 10
        while not live.seen.rstrip().endswith(DIGITS) and time.monotonic() < deadline:
            time.sleep(0.05)  # the answer's line: a digit's word (mnist-ad)
        word = live.seen.rstrip().splitlines()[-1]
        live.press(b"r")
        assert live.wait_for(f"repeat: {word}", timeout=5), live.seen  # a screen-reader line
        code, _, err = live.finish()
    assert code == 0, err


def test_record_saves_every_sound_played_repeats_and_status_speech_included(tmp_path, video):
    rec = tmp_path / "rec"
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--record", str(rec))
    with Live(tmp_path, *args) as live:  # status speech on: espeak-ng into the null device
        assert live.wait_for("ready: press space"), live.seen
        live.press(b" ")
        deadline = time.monotonic() + 10
        while len(list(rec.glob("*.wav"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        live.press(b"r")
        time.sleep(1.0)
        code, _, err = live.finish()
    assert code == 0, err
    names = sorted(p.name[5:] for p in rec.glob("*.wav"))  # without the 0001- numbers
    words = [n for n in names if not n.startswith(("click", "status-"))]
    assert "click.wav" in names and len(words) == 2 and words[0] == words[1], names  # + repeat
    assert "status-ready-press-space-to-hear-the-camera.wav" in names, names


def test_soundscape_refuses_to_start_in_word_mode(tmp_path):
    proc = _earsight("soundscape", "--mode", "word", tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: earsight soundscape starts in soundscape mode — for words use `earsight live`"
    )


def test_quiet_live_prints_only_the_answers(tmp_path, video):
    # `earsight -q`: "only results and errors" (live printed every status line before)
    program = [str(Path(sys.executable).with_name("earsight")), "-q"]
    args = ("--source", str(video), "--loop", "--keys", "terminal", "--no-speech")
    words = {*DIGITS, "not sure"}
    with Live(tmp_path, *args, program=program) as live:
        deadline = time.monotonic() + 90
        while not words & set(live.seen.splitlines()) and time.monotonic() < deadline:
            live.press(b" ")  # presses before "ready" are answered "still starting…": level 0
            time.sleep(1.0)
        code, out, err = live.finish()
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    starting = "still starting: the answer comes when ready"
    assert set(lines) <= {*words, starting}, lines  # no status lines
    assert words & set(lines), lines  # and the answer


def test_a_record_folder_that_cannot_be_made_names_record(tmp_path, video):
    (tmp_path / "a-file").write_text("")
    args = ("--source", str(video), "--keys", "terminal", "--no-speech")
    proc = _earsight("live", *args, "--record", str(tmp_path / "a-file"), tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot create the folder {tmp_path / 'a-file'}"), last
    assert last.endswith("pick another --record folder"), last


def test_doctor_offers_only_its_own_options_and_names_them_right(tmp_path):
    help_text = _earsight("doctor", "--help", tmp_path=tmp_path).stdout
    for absent in ("--threshold", "--gate", "--mode", "--verbosity", "--no-speech", "--threads"):
        assert not re.search(rf"{absent}\b", help_text), absent
    proc = _earsight("doctor", "--source", str(tmp_path / "none.avi"), tmp_path=tmp_path)
    audio = next(line for line in proc.stdout.splitlines() if "audio:" in line)
    assert audio.startswith("--   audio:") and "--out-dir DIR" in audio, audio
    assert "--out " not in proc.stdout


def test_engine_build_suggests_nothing_it_does_not_have(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed: engine build can run here")
    except ImportError:
        pass
    model = Path(__file__).parents[1] / "assets" / "models" / "mnist-ad.onnx"
    proc = _earsight("engine", "build", str(model), tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "--backend" not in proc.stderr  # engine build has no such option


def test_live_help_lists_the_keys(tmp_path):
    text = _earsight("live", "--help", tmp_path=tmp_path).stdout
    assert "F9 describe" in text and "F10 repeat" in text and "Esc twice quit" in text
    assert "space/Enter describe" in text and "q quit" in text


@pytest.mark.faults
def test_stream_options_do_not_leak_into_later_video_files(tmp_path, monkeypatch):
    """Opening an RTSP source set FFmpeg's low-delay options for the whole process, and every
    video file opened after it decoded out of step with its frame index."""
    import os

    from earsight.app.camera.sources import SourceSpec, open_capture

    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    missing = tmp_path / "down.avi"  # FFmpeg opens a file like a stream URL; this one is absent
    cap = open_capture(SourceSpec(str(missing), "rtsp", str(missing), "ffmpeg"))
    if cap is not None:
        cap.release()
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ
