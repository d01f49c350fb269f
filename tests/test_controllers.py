"""app.keys.controllers with real parts: a pty for the terminal, Xvfb + xdotool for the desktop
hotkey.

Input devices (evdev) need /dev/input and permissions this machine does not have: only the key
mapping and the "unavailable" paths are tested.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from earsight.app.keys.controllers import (
    EVDEV_KEYS,
    Action,
    ControllerUnavailable,
    EvdevController,
    HotkeyController,
    KeyMap,
    TerminalController,
    evdev_codes,
    make_controller,
    terminal_keys,
)
from earsight.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
# -noreset: by default the server resets when its last client leaves, and a test connecting
# during that reset is dropped (Xlib ConnectionClosedError).
XVFB = ("Xvfb", "-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset")


class Recorder:
    """on_action collector: (action, t_key, time received), waitable."""

    def __init__(self, fail_on: Action | None = None) -> None:
        self.calls: list[tuple[Action, float, float]] = []
        self._cond = threading.Condition()
        self._fail_on = fail_on

    def __call__(self, action: Action, t_key: float) -> None:
        with self._cond:
            self.calls.append((action, t_key, time.perf_counter()))
            self._cond.notify_all()
        if action is self._fail_on:
            raise RuntimeError("the app's callback failed")

    @property
    def actions(self) -> list[Action]:
        return [action for action, _, _ in self.calls]

    def wait_for(self, n: int, timeout_s: float = 1.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= n, timeout_s)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)


def _stop_quickly(controller: TerminalController | HotkeyController, limit_s: float) -> None:
    t0 = time.perf_counter()
    controller.stop()
    assert time.perf_counter() - t0 < limit_s


# --- terminal -------------------------------------------------------------------------------


def test_terminal_keys_over_a_pty_and_the_terminal_is_restored(pty_pair) -> None:
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    keys = Recorder()
    controller = TerminalController(keys, fd=slave).start()
    try:
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON and not lflag & termios.ECHO  # cbreak: one by one
        assert lflag & termios.ISIG  # Ctrl-C still interrupts the app
        for n, key in enumerate((b" ", b"q", b"r", b"\r", b"v", b"m", b"R"), start=1):
            t_write = time.perf_counter()
            os.write(master, key)
            assert keys.wait_for(n, 1.0), key
            assert keys.calls[-1][1] >= t_write  # t_key: when the key was read
        os.write(master, b"x\x1b[A")  # bound to nothing (the app says which keys are), an arrow
        time.sleep(0.05)
    finally:
        _stop_quickly(controller, 0.2)
    assert keys.actions == [
        Action.DESCRIBE,
        Action.QUIT,
        Action.REPEAT,
        Action.DESCRIBE,
        Action.VERBOSITY,
        Action.TOGGLE_MODE,
        Action.REPEAT,
        Action.UNBOUND,  # x, said; the arrow key is no key at all
    ]
    assert termios.tcgetattr(slave) == before
    assert not controller.running


def test_escape_sequences_are_not_keys(pty_pair) -> None:
    assert list(terminal_keys(b"\x1b[A\x1b[2;5R\x1bOP\x1bq r")) == [" ", "r"]
    master, slave = pty_pair
    keys = Recorder()
    with TerminalController(keys, fd=slave):
        os.write(master, b"\x1b[A\x1b[B\x1b[15~\x1bOQ")  # arrows, F5, F2
        os.write(master, b" ")
        assert keys.wait_for(1)
        time.sleep(0.05)
    assert keys.actions == [Action.DESCRIBE]


def test_a_failing_callback_does_not_stop_the_keys(pty_pair) -> None:
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    keys = Recorder(fail_on=Action.DESCRIBE)
    with TerminalController(keys, fd=slave):
        os.write(master, b" ")
        assert keys.wait_for(1)
        os.write(master, b"q")
        assert keys.wait_for(2)
    assert keys.actions == [Action.DESCRIBE, Action.QUIT]
    assert termios.tcgetattr(slave) == before


def test_terminal_restored_when_the_app_crashes(pty_pair) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    crash = (
        "import sys, termios\n"
        "from earsight.app.keys.controllers import TerminalController\n"
        "fd = int(sys.argv[1])\n"
        "TerminalController(lambda action, t: None, fd=fd).start()\n"
        "print('cbreak' if not termios.tcgetattr(fd)[3] & termios.ICANON else 'canonical')\n"
        "raise RuntimeError('the app crashed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", crash, str(slave)],
        pass_fds=[slave],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and "the app crashed" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "cbreak"
    assert termios.tcgetattr(slave) == before  # restored at exit, without stop()


def test_keys_end_when_the_session_closes(pty_pair) -> None:
    master, slave = pty_pair
    controller = TerminalController(Recorder(), fd=slave).start()
    try:
        os.close(master)  # SSH dropped: reads fail with EIO and the thread ends by itself
        deadline = time.perf_counter() + 1.0
        while controller.running and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert not controller.running
    finally:
        controller.stop()  # the terminal is gone: restoring it must not raise


def test_piped_stdin_reads_lines() -> None:
    read_end, write_end = os.pipe()
    keys = Recorder()
    controller = TerminalController(keys, fd=read_end).start()
    try:
        os.write(write_end, b"\n q\nRepeat\nv\nm")
        assert keys.wait_for(4)
        os.write(write_end, b"\n")  # a line counts when it is complete
        assert keys.wait_for(5)
        os.close(write_end)  # end of input: the thread ends, nothing more is delivered
        deadline = time.perf_counter() + 1.0
        while controller.running and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert not controller.running
    finally:
        controller.stop()
        os.close(read_end)
    assert keys.actions == [
        Action.DESCRIBE,
        Action.QUIT,
        Action.REPEAT,
        Action.VERBOSITY,
        Action.TOGGLE_MODE,
    ]


def test_100_presses_per_second_are_all_delivered_in_time(pty_pair) -> None:
    master, slave = pty_pair
    keys = Recorder()
    writes: list[float] = []
    with TerminalController(keys, fd=slave) as controller:
        start = time.perf_counter()
        for i in range(100):
            time.sleep(max(0.0, start + i * 0.01 - time.perf_counter()))
            writes.append(time.perf_counter())
            os.write(master, b" ")
        assert keys.wait_for(100, 1.0), len(keys.calls)
        assert controller.running
    assert time.perf_counter() - start < 2.0
    assert len(keys.calls) == 100 and set(keys.actions) == {Action.DESCRIBE}
    received = [t for _, _, t in keys.calls]
    lags = sorted(got - sent for sent, got in zip(writes, received, strict=True))
    assert lags[49] < 0.02 and lags[-1] < 0.2, (lags[49], lags[-1])  # no backlog builds up


# --- desktop hotkey -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private X server; its display name (":N"), picked by Xvfb so parallel runs never clash."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (apt-get install xvfb xdotool)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [*XVFB, "-displayfd", str(write_end)],
        pass_fds=[write_end],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 10.0)
        number = os.read(read_end, 32).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb did not start within 10 s")
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(5)


def _xdotool(display: str, *keys: str) -> None:
    env = {**os.environ, "DISPLAY": display}
    subprocess.run(["xdotool", "key", *keys], env=env, check=True, timeout=5)


def test_hotkey_under_xvfb(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    keys = Recorder()
    controller = HotkeyController(keys).start()
    try:
        t0 = time.perf_counter()
        _xdotool(xvfb, "F9")
        assert keys.wait_for(1, 1.0)
        assert keys.actions == [Action.DESCRIBE]
        assert keys.calls[0][1] - t0 < 1.0
        _xdotool(xvfb, "a", "F10", "F11", "F12", "Escape", "Escape")  # "a" is bound to nothing
        assert keys.wait_for(6, 1.0)
    finally:
        _stop_quickly(controller, 1.0)
    assert keys.actions == [
        Action.DESCRIBE,
        Action.REPEAT,
        Action.VERBOSITY,
        Action.TOGGLE_MODE,
        Action.QUIT_ASKED,  # Esc is heard in every window: once only asks
        Action.QUIT,
    ]


def test_a_held_hotkey_is_one_press_and_a_lone_esc_does_not_quit(xvfb, monkeypatch) -> None:
    # X autorepeat resent a held F9's press: ~32 capture clicks in 2 s under Xvfb
    monkeypatch.setenv("DISPLAY", xvfb)
    env = {**os.environ, "DISPLAY": xvfb}
    keys = Recorder()
    with HotkeyController(keys):
        subprocess.run(["xdotool", "keydown", "F9"], env=env, check=True, timeout=5)
        time.sleep(1.5)  # past X's autorepeat delay (660 ms by default), at 25 repeats/s
        subprocess.run(["xdotool", "keyup", "F9"], env=env, check=True, timeout=5)
        _xdotool(xvfb, "F9")  # released: the next press counts again
        assert keys.wait_for(2, 1.0)
        _xdotool(xvfb, "Escape")
        time.sleep(2.5)  # past QUIT_CONFIRM_S: the next Esc asks again
        _xdotool(xvfb, "Escape")
        assert keys.wait_for(4, 1.0)
        time.sleep(0.3)
    assert keys.actions == [Action.DESCRIBE] * 2 + [Action.QUIT_ASKED] * 2, keys.actions


def test_hotkey_with_a_custom_keymap(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    keys = Recorder()
    with HotkeyController(keys, KeyMap(describe="space", quit="Q")):
        _xdotool(xvfb, "F9", "space", "q", "q")
        assert keys.wait_for(3, 1.0)
    assert keys.actions == [Action.DESCRIBE, Action.QUIT_ASKED, Action.QUIT]
    with pytest.raises(UsageError, match="f99"):
        HotkeyController(keys, KeyMap(describe="f99")).start()


def test_a_hotkey_on_another_actions_key_takes_it_and_that_action_moves_to_f9(
    xvfb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hotkey = "f8" was a config's describe key before F8 became the teach key: refused
    since (describe and terminal-key live too). Now F8 describes and teach moves to F9, as the
    prompts say."""
    from earsight.app.config import LiveOptions
    from earsight.app.keys.names import key_label, prompt_keys

    assert LiveOptions(hotkey="F8").hotkey == "F8"  # no longer a config error
    moved = KeyMap.for_describe("F8")
    assert (moved.describe, moved.teach) == ("F8", "f9") and KeyMap.for_describe("f7") == KeyMap(
        describe="f7"
    )
    assert prompt_keys("HotkeyController", moved).teach == key_label("f9")
    monkeypatch.setenv("DISPLAY", xvfb)
    keys = Recorder()
    with HotkeyController(keys, moved):
        _xdotool(xvfb, "F8", "F9")
        assert keys.wait_for(2, 1.0)
    assert keys.actions == [Action.DESCRIBE, Action.TEACH]


def test_auto_picks_the_hotkey_with_a_display(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    assert isinstance(make_controller("auto", Recorder()), HotkeyController)


def test_no_display_means_no_hotkey(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ControllerUnavailable) as err:
        HotkeyController(Recorder()).start()
    assert "\n" not in str(err.value) and "--keys terminal" in str(err.value)
    assert isinstance(make_controller("auto", Recorder(), fd=0), TerminalController)
    monkeypatch.setenv("DISPLAY", ":919")  # no server there
    with pytest.raises(ControllerUnavailable, match="cannot connect"):
        HotkeyController(Recorder()).start()


def test_keymap_and_kinds() -> None:
    assert KeyMap().bindings() == {
        "f9": Action.DESCRIBE,
        "f10": Action.REPEAT,
        "f11": Action.VERBOSITY,
        "f12": Action.TOGGLE_MODE,
        "f8": Action.TEACH,
        "esc": Action.QUIT,
    }
    with pytest.raises(UsageError, match="bound twice: to describe and to repeat"):
        KeyMap(repeat="F9").bindings()
    with pytest.raises(UsageError, match="unknown key input"):
        make_controller("joystick", Recorder())
    assert isinstance(make_controller("terminal", Recorder()), TerminalController)
    assert isinstance(make_controller("evdev", Recorder()), EvdevController)


# --- input device (evdev) -------------------------------------------------------------------


def test_evdev_key_names_map_to_codes() -> None:
    pytest.importorskip("evdev", reason="python-evdev is not installed")
    codes = evdev_codes(EVDEV_KEYS)
    assert codes[28] is Action.DESCRIBE  # KEY_ENTER
    assert codes[115] is Action.DESCRIBE  # KEY_VOLUMEUP: a Bluetooth shutter button
    assert codes[16] is Action.QUIT  # KEY_Q
    assert len(codes) == len(EVDEV_KEYS)
    with pytest.raises(UsageError, match="KEY_NOPE"):
        evdev_codes({"KEY_NOPE": Action.DESCRIBE})


def test_evdev_waits_for_a_device_not_there_yet_and_refuses_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    pytest.importorskip("evdev", reason="python-evdev is not installed")
    waiting = EvdevController(Recorder(), device="/dev/input/event99")
    with caplog.at_level(logging.WARNING, logger="earsight.app.keys.evdev"):
        waiting.start()  # a button that connects later: waited for, not an error
    assert waiting.running
    waiting.stop()
    assert not waiting.running
    said = [r.getMessage() for r in caplog.records]
    assert said and said[0].startswith("input device /dev/input/event99 is not there yet"), said
    if not list(Path("/dev/input").glob("event*")):
        scanning = EvdevController(Recorder()).start()
        assert scanning.running
        scanning.stop()
    not_a_device = tmp_path / "event0"
    not_a_device.write_text("")  # there, but not an input device: no waiting makes it one
    with pytest.raises(ControllerUnavailable, match=str(not_a_device)) as err:
        EvdevController(Recorder(), device=str(not_a_device)).start()
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "evdev", None)  # as if python-evdev were not installed
    with pytest.raises(ControllerUnavailable, match="install python-evdev"):
        EvdevController(Recorder()).start()


def test_hotkey_given_with_terminal_keys_is_said_to_do_nothing(caplog) -> None:
    # `--keys terminal --hotkey f5` ignored --hotkey without a word
    with caplog.at_level(logging.WARNING, logger="earsight.app.keys.controllers"):
        make_controller("terminal", Recorder(), keymap=KeyMap(describe="f5"), fd=0)
        make_controller("terminal", Recorder(), keymap=KeyMap(), fd=0)  # the default: silent
    said = [r.getMessage() for r in caplog.records]
    assert said == ["--hotkey f5 is for the desktop keys; terminal keys are fixed"], said


def test_x_key_names_are_taken_and_unknown_ones_list_the_names(xvfb, monkeypatch) -> None:
    # `--hotkey Escape` (xdotool's name) was refused with "use f1…f12, esc, space, pause, …"
    assert KeyMap(describe="Prior").bindings()["page_up"] is Action.DESCRIBE
    assert KeyMap(describe="Return").bindings()["enter"] is Action.DESCRIBE
    with pytest.raises(UsageError, match="'esc' is bound twice"):
        KeyMap(describe="Escape").bindings()
    monkeypatch.setenv("DISPLAY", xvfb)
    with pytest.raises(UsageError) as err:
        HotkeyController(Recorder(), KeyMap(describe="f99")).start()
    assert "page_up" in str(err.value) and "…" not in str(err.value).split("f1…f20")[1]
