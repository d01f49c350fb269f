"""The processes pyttsx3 plays speech with on Linux (``aplay``): checked once before the first
message (player_problem), found in /proc and killed when a newer message cuts the current one."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import wave
from pathlib import Path

PLAYERS = ("aplay",)  # what pyttsx3's drivers run to play speech on Linux
SHELLS = ("sh", "dash", "bash")  # os.system runs the player through /bin/sh
PROBE_S = 0.01  # silence played once to check that the player can open the audio output
PROBE_TIMEOUT_S = 5.0


APLAY_PREFIX = re.compile(r"^aplay:\s*(\w+:\d+:\s*)?")


def player_problem() -> str | None:
    """Why speech cannot be heard here, or None: plays 10 ms of silence the way pyttsx3 does.

    pyttsx3's Linux driver ignores a failing ``aplay``, which prints ~10 lines of ALSA errors
    on stderr for every message when there is no audio output. Finding out once, before the
    first message, turns that into one warning and printed-only messages.
    """
    if platform.system() != "Linux":
        return None  # the macOS/Windows drivers play by themselves
    aplay = shutil.which("aplay")
    if aplay is None:
        return "aplay not found (sudo apt-get install alsa-utils)"
    with tempfile.TemporaryDirectory(prefix="earsight-") as folder:
        probe = Path(folder) / "probe.wav"
        with wave.open(str(probe), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(22_050)
            f.writeframes(bytes(2 * round(PROBE_S * 22_050)))
        try:
            result = subprocess.run(
                [aplay, "-q", str(probe)], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return "aplay did not finish (audio output busy?)"
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    if not lines:
        return f"no audio output (the ALSA player exited with code {result.returncode})"
    # "aplay: main:831: audio open error: …": ALSA's words, without the player's source line
    return f"no audio output (ALSA: {APLAY_PREFIX.sub('', lines[-1])})"


def child_processes() -> dict[int, list[int]]:
    """ppid → child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
        except (OSError, IndexError):
            continue  # exited while we looked
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def kill_players() -> int:
    """Kill speech players (``aplay``) started by this process or its shells; return how many.

    SIGKILL, not SIGTERM: aplay drains its buffer on SIGTERM (half a second of the speech we are
    cutting) and holds nothing that needs cleaning up. The shell that ran it goes first, or it
    would print "Killed" on stderr, in the middle of the lines a screen reader is reading.
    """
    tree, todo, killed = child_processes(), [os.getpid()], 0
    while todo:
        parent = todo.pop()
        for pid in tree.get(parent, []):
            todo.append(pid)
            if process_name(pid) not in PLAYERS:
                continue
            if parent != os.getpid() and process_name(parent) in SHELLS:
                _kill(parent)
            killed += _kill(pid)
    return killed


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
        return 1
    except ProcessLookupError:
        return 0
