"""`earsight live` end to end with real parts: a video file as the camera, key presses through a
pty, ONNX Runtime, sounddevice on an ALSA null device (what reached the device captured by the
output's tee), pocketsphinx listening to it. Plus floods, signals and missing devices."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.alsa_null import AlsaNull

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "assets" / "samples" / "mnist").glob("*.png"))
FPS = 10
SEGMENT_FRAMES = 10  # each digit stays on screen 1 s
CANVAS = (120, 160)  # (H, W) of the fake camera; the digit sits in the middle


def write_digit_video(path: Path) -> list[str]:
    """One MNIST sample per second, scaled ×4 in a 160×120 frame; returns the words in order."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, CANVAS[::-1])
    words = []
    for sample in SAMPLES:
        digit = cv2.resize(
            cv2.imread(str(sample), cv2.IMREAD_GRAYSCALE),
            (112, 112),
            interpolation=cv2.INTER_NEAREST,
        )
        frame = np.zeros((*CANVAS, 3), np.uint8)
        top, left = (CANVAS[0] - 112) // 2, (CANVAS[1] - 112) // 2
        frame[top : top + 112, left : left + 112] = digit[..., None]
        for _ in range(SEGMENT_FRAMES):
            writer.write(frame)
        words.append(sample.name.split("-")[0])
    writer.release()
    return words


@pytest.fixture(scope="module")
def digit_video(tmp_path_factory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("video") / "digits.avi"
    return path, write_digit_video(path)


def build_app(video: Path, tee: list, **option_overrides):
    from earsight.app.camera.grabber import FrameGrabber, parse_source
    from earsight.app.config import LiveOptions
    from earsight.app.models import resolve_model
    from earsight.app.modes.answer import ConfidenceGate
    from earsight.app.modes.live import LiveApp
    from earsight.app.sound.audio import AudioOptions, AudioOut
    from earsight.app.sound.voice import StatusVoice
    from earsight.engine.runtime import RuntimeOptions, load

    overrides = {"model": "mnist-ad", **option_overrides}  # the test video shows digits
    options = LiveOptions(source=str(video), loop=True, speak_status=False, **overrides)
    runtime = load(resolve_model(options.model), "onnx-cpu", RuntimeOptions(threads=1))
    runtime.warmup()
    audio = AudioOut(AudioOptions(sample_rate=runtime.info.output_rate), tee=tee.append)
    grabber = FrameGrabber(parse_source(str(video), loop=True))
    voice = StatusVoice(enabled=False)
    gate = ConfidenceGate(options.threshold, options.gate)
    return LiveApp(options, runtime, grabber, audio, voice, gate), runtime, audio, grabber


def test_presses_on_a_digit_video_speak_the_right_words(tmp_path, digit_video):
    from earsight.app.keys.controllers import TerminalController
    from earsight.trainer.evaluation.metrics import WordRecognizer

    video, words = digit_video
    tee: list[np.ndarray] = []
    with AlsaNull(tmp_path):
        app, runtime, audio, grabber = build_app(video, tee)
        master, slave = os.openpty()
        controller = TerminalController(app.on_action, fd=slave)
        heard, truth = [], []
        recognizer = WordRecognizer(runtime.info.labels, sample_rate_in=runtime.info.output_rate)
        with grabber:
            app.start()
            controller.start()
            try:
                for _ in range(len(words)):
                    time.sleep(SEGMENT_FRAMES / FPS * 0.9)
                    tee.clear()
                    n_before = len(app.state.timings)
                    os.write(master, b" ")
                    deadline = time.monotonic() + 5
                    while len(app.state.timings) == n_before and time.monotonic() < deadline:
                        time.sleep(0.01)
                    timing = app.state.timings[-1]
                    # The timing is stored just before the word is queued: wait for the word's
                    # first buffer (not the capture click's) before waiting for it to end.
                    while timing.first_audio is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    assert audio.wait(5.0)
                    truth.append(words[(timing.frame_index // SEGMENT_FRAMES) % len(words)])
                    heard.append(recognizer.recognize(np.concatenate(tee)))
            finally:
                controller.stop()
                app.stop()
                audio.close()
                os.close(master)
                os.close(slave)
    correct = np.mean([h == t for h, t in zip(heard, truth, strict=True)])
    wrong = [(i, t, h) for i, (t, h) in enumerate(zip(truth, heard, strict=True)) if t != h]
    assert correct >= 0.95, f"{len(wrong)} of {len(truth)} misheard (press, shown, heard): {wrong}"
    # Every press was time-stamped through to the first audio buffer.
    assert all(t.key_to_audio_ms() is not None for t in app.state.timings)


@pytest.mark.faults
def test_the_click_is_queued_before_the_worker_wakes(tmp_path, digit_video):
    """Woken first, a loaded machine's worker can answer before the controller thread plays
    the click, and the click then cuts the answer off (CI heard nothing for 2 of 20 presses)."""
    import threading

    from earsight.app.keys.controllers import Action

    video, _ = digit_video
    with AlsaNull(tmp_path):
        app, _runtime, audio, _grabber = build_app(video, [])
        playing_at_wake: list[bool] = []

        class WakeProbe(threading.Event):
            def set(self) -> None:
                playing_at_wake.append(audio.is_playing)
                super().set()

        app._wake = WakeProbe()
        app.on_action(Action.DESCRIBE, time.perf_counter())
        audio.close()
    assert playing_at_wake == [True]


def test_a_flood_of_presses_builds_no_queue(tmp_path, digit_video):
    video, _ = digit_video
    tee: list[np.ndarray] = []
    with AlsaNull(tmp_path):
        app, _runtime, audio, grabber = build_app(video, tee)
        from earsight.app.keys.controllers import Action

        with grabber:
            app.start()
            t0 = time.perf_counter()
            for _ in range(100):  # 100 presses in a burst, faster than one inference
                app.on_action(Action.DESCRIBE, time.perf_counter())
            elapsed = time.perf_counter() - t0
            time.sleep(0.5)
            served = app.state.presses
            stopped = app.stop(1.0)
        audio.close()
    assert elapsed < 0.5  # on_action never blocked the controller
    # A queue would answer all 100; coalescing answers the press in flight when the burst
    # began and the newest one after it (a third if the worker took one mid-burst).
    assert 1 <= served <= 3 and stopped
    # Coalescing: after the flood stops, nothing is left to serve.
    assert app._pending_key is None


def test_a_doubted_press_plays_the_earcon_then_the_phrase(tmp_path, digit_video):
    """live answers through app.modes.answer as describe does: below the threshold a press plays
    the capture click, then the "not sure" earcon and phrase, never the doubted word."""
    from earsight.app.keys.controllers import Action
    from earsight.app.modes.answer import phrase_clip
    from earsight.app.sound import earcons

    video, _ = digit_video
    tee: list[np.ndarray] = []
    with AlsaNull(tmp_path):
        app, runtime, audio, grabber = build_app(video, tee, threshold=1.0)
        with grabber:
            app.start()
            app.on_action(Action.DESCRIBE, time.perf_counter())
            deadline = time.monotonic() + 10
            while app.state.presses == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            # the press is counted just before its answer is queued: wait for that answer's
            # first buffer (not the click's) before waiting for it to end
            while app.state.timings[-1].first_audio is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert audio.wait(10.0)
            app.stop()
        audio.close()
    rate = runtime.info.output_rate
    tone = earcons.not_sure_tone(rate)
    phrase = phrase_clip("not sure", rate, runtime.options.postprocess)
    played = np.concatenate(tee)  # the output callback's blocks: click, answer, silence
    answer = np.concatenate([tone, phrase])
    # where the answer starts: after the click and its last block's zero padding
    starts = [
        i
        for i in range(min(len(earcons.capture_click(rate)) + 4096, len(played) - len(answer)))
        if np.allclose(played[i : i + len(answer)], answer, atol=1e-6)
    ]
    assert len(starts) == 1, "the press did not play the earcon then the phrase"
    assert not played[starts[0] + len(answer) :].any()  # nothing else: not the doubted word


def _earsight() -> str:
    return str(Path(sys.executable).with_name("earsight"))


NULL_DEVICE = "pcm.!default { type null }\n"
NO_DEVICE = "pcm.!default { type hw card 97 }\n"  # a sound card that is not there


def _start_live(
    tmp_path: Path, video: Path, *extra: str, piped: bool = False
) -> tuple[subprocess.Popen, int | None]:
    """`earsight live` on ``video`` with terminal keys through a pty (its master fd returned),
    or with ``piped`` through a pipe (``proc.stdin``; None returned)."""
    master, slave = (None, subprocess.PIPE) if piped else os.openpty()
    env = {
        **os.environ,
        "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf"),
        "EARSIGHT_CONFIG": str(tmp_path / "none.toml"),
    }
    no_audio = "--out-dir" in extra
    (tmp_path / "asound.conf").write_text(NO_DEVICE if no_audio else NULL_DEVICE)
    proc = subprocess.Popen(
        [
            _earsight(),
            "live",
            "--source",
            str(video),
            "--loop",
            "--keys",
            "terminal",
            "--no-speech",
            "--threads",
            "1",
            "--model",
            "mnist-ad",  # the test video shows digits; a later --model in extra wins
            *extra,
        ],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    if not piped:
        os.close(slave)
    return proc, master


def _stdout_lines(proc: subprocess.Popen) -> queue.Queue:
    """proc's stdout lines, read on a thread of their own ("" at the end): a wait can then
    time out while the process is silent (a plain readline blocked the test forever)."""
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()

        def pump() -> None:
            for line in iter(proc.stdout.readline, ""):
                proc.lines.put(line)
            proc.lines.put("")

        threading.Thread(target=pump, daemon=True).start()
    return proc.lines


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 60.0) -> str:
    """proc's stdout up to the first line holding ``text``, its end, or ``timeout`` s."""
    lines, seen = _stdout_lines(proc), ""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen += line
        if text in line or not line:
            break
    return seen


def test_live_cli_speaks_on_space_and_exits_on_sigterm_promptly(tmp_path, digit_video):
    video, words = digit_video
    proc, master = _start_live(tmp_path, video, "--record", str(tmp_path / "rec"))
    try:
        seen = _wait_for(proc, "ready: press space")
        assert "ready: press space" in seen, seen + proc.stderr.read()
        os.write(master, b" ")
        seen = _wait_for(proc, "", timeout=5)  # the spoken word's plain line
        assert seen.strip() in words or "not sure" in seen, seen
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        # under 1 s alone; 1.5 s was seen with the suite's other worker and a second job on the
        # two cores: the bound is for a stop that waits on something, not for a busy machine
        assert time.monotonic() - t0 < 2.0
        assert proc.returncode == 0
        names = sorted(p.name for p in (tmp_path / "rec").glob("*.wav"))
        assert names[0] == "0001-click.wav" and len(names) == 2, names  # the click, the word
    finally:
        proc.kill()
        os.close(master)


def test_live_in_soundscape_mode_says_so_when_ready_and_names_the_key_back(tmp_path, digit_video):
    video, _words = digit_video
    proc, master = _start_live(tmp_path, video, "--mode", "soundscape")
    try:
        seen = _wait_for(proc, "ready in")  # "model mnist-ad ready on the CPU" comes first
        assert (
            "ready in soundscape mode: press space to hear the camera as a soundscape; "
            "m switches to words"
        ) in seen, seen
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    finally:
        proc.kill()
        os.close(master)


def test_keys_piped_in_are_named_as_lines_and_their_end_is_said(tmp_path, digit_video):
    video, words = digit_video
    proc, _ = _start_live(tmp_path, video, piped=True)
    try:
        seen = _wait_for(proc, "ready: ")
        # lines are read: an empty line describes (it said "press space", which sends nothing)
        assert "ready: press Enter to hear the camera" in seen, seen
        proc.stdin.write("\n")
        proc.stdin.flush()
        seen = _wait_for(proc, "", timeout=10)
        assert seen.strip() in words or "not sure" in seen, seen
        proc.stdin.close()
        seen = _wait_for(proc, "key input closed", timeout=10)
        assert "key input closed (end of input of the keys piped in)" in seen, seen
        assert proc.wait(timeout=10) == 1  # EXIT_KEYS_CLOSED: ended without a q, not by choice
        rest = seen + proc.stdout.read()
        assert rest.count("stopping") == 1, rest  # said once ("…: stopping", then "stopping")
    finally:
        proc.kill()


def test_live_on_the_cpu_runs_the_int8_variant_under_the_model_name(tmp_path):
    samples = ROOT / "assets" / "samples" / "cifar10"
    proc, master = _start_live(tmp_path, samples, "--model", "cifar10-ad")
    try:
        seen = _wait_for(proc, "ready: press space")
        assert "model cifar10-ad ready on the CPU" in seen, seen + proc.stderr.read()
        assert "backend onnx-cpu on cpu: cifar10-ad.int8.onnx (int8" in seen  # which file runs
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    finally:
        proc.kill()
        os.close(master)


def test_live_without_an_audio_device_writes_wavs_instead(tmp_path, digit_video):
    video, words = digit_video
    out = tmp_path / "wavs"
    proc, master = _start_live(tmp_path, video, "--out-dir", str(out))
    try:
        seen = _wait_for(proc, "ready: press space")
        assert "ready: press space" in seen, seen + proc.stderr.read()
        os.write(master, b" ")
        _wait_for(proc, "", timeout=5)
        deadline = time.monotonic() + 5
        while (
            not any(p.name.endswith(tuple(f"-{w}.wav" for w in words)) for p in out.glob("*.wav"))
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        names = [p.name for p in out.glob("*.wav")]
        assert any(n.endswith(tuple(f"-{w}.wav" for w in words)) for n in names), names
        assert "no audio output" in seen.lower() or "wav" in seen.lower(), seen
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        assert proc.returncode == 0
    finally:
        proc.kill()
        os.close(master)


@pytest.mark.parametrize("case", ["no camera", "corrupt model"])
def test_live_cli_failures_say_so_in_one_line(tmp_path, digit_video, case):
    video, _ = digit_video
    if case == "no camera":
        proc, master = _start_live(tmp_path, tmp_path / "no-such-video.avi")
    else:
        bad = tmp_path / "bad.onnx"
        bad.write_text("not a model")
        proc, master = _start_live(tmp_path, video, "--model", str(bad))
    try:
        proc.wait(timeout=60)
        err = proc.stderr.read()
        assert proc.returncode == 2
        assert err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in err
    finally:
        proc.kill()
        os.close(master)


def test_live_swaps_in_a_model_taught_while_it_runs(tmp_path, digit_video, monkeypatch):
    """`live` on the default "auto" model: a taught model appearing on disk (here the shipped
    mnist-ad, copied where `earsight teach` writes) is loaded in the background and answers
    the next press, with no restart."""
    import json
    import shutil

    from earsight.trainer.teach.store import taught_model_path

    video, words = digit_video
    root = tmp_path / "taught"
    monkeypatch.setenv("EARSIGHT_TEACH", str(root))  # the child's taught words: none yet
    proc, master = _start_live(tmp_path, video, "--model", "auto")
    try:
        seen = _wait_for(proc, "ready: press space")
        assert "model cifar10-ad-lite0 ready" in seen, seen + proc.stderr.read()
        target = taught_model_path(root)
        target.parent.mkdir(parents=True)
        shipped = ROOT / "assets" / "models" / "mnist-ad.onnx"
        shutil.copy(shipped, target)
        side = json.loads(Path(f"{shipped}.json").read_text())
        side["config"]["taught_words"] = 2  # as if "eight" and "nine" were the user's words
        Path(f"{target}.json").write_text(json.dumps({**side, "model_file": target.name}))
        seen = _wait_for(proc, "new model loaded", timeout=20)
        # the user knows a taught model by its words: they are said
        assert "new model loaded, with your words: eight, nine" in seen, seen
        # The shipped model never says a digit word; the swapped-in one does. A press on a
        # frame between two digits may be "not sure": up to three presses to hear a digit.
        answers = []
        for _ in range(3):
            os.write(master, b" ")
            answers.append(_wait_for(proc, "", timeout=5).strip())
            if answers[-1] in words:
                break
        assert answers[-1] in words, answers
    finally:
        proc.kill()
        os.close(master)


def test_press_timings_are_bounded_and_the_latency_lines_keep_counting(
    tmp_path, digit_video, monkeypatch, caplog
):
    """A wearable answering presses for days keeps only the newest TIMINGS_KEPT timings (the
    soak bench measured +1.1 MB/h with all of them); -v still numbers presses from the start."""
    import logging

    import earsight.app.modes.live as live

    monkeypatch.setattr(live, "TIMINGS_KEPT", 5)
    video, _ = digit_video
    tee: list[np.ndarray] = []
    with AlsaNull(tmp_path):
        app, _runtime, audio, grabber = build_app(video, tee)
        with grabber, caplog.at_level(logging.DEBUG, logger="earsight.app.modes.live"):
            time.sleep(0.3)
            for _ in range(8):
                app._describe_once(time.perf_counter())
                assert audio.wait(5.0)
            time.sleep(0.1)
            app._log_latencies()
        audio.close()
    assert app.state.presses == 8 and len(app.state.timings) == 5
    numbers = [
        int(r.getMessage().split(":")[0].split()[1])
        for r in caplog.records
        if r.getMessage().startswith("press ")
    ]
    assert numbers == [4, 5, 6, 7, 8]  # 1–3 were dropped before they were logged
