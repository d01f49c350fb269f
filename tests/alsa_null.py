"""A real ALSA output with no sound card, for tests of sounddevice and pyttsx3 (no mocks).

    with AlsaNull(tmp_path, paced_bytes_per_s=48_000 * 4):
        import sounddevice  # PortAudio now lists one "default" output device
        ...

ALSA reads ``ALSA_CONFIG_PATH`` (instead of /usr/share/alsa/alsa.conf) each time a PCM is opened,
so pointing it at a file that defines ``pcm.!default`` gives every ALSA client of this process
and of its children (espeak's ``aplay``) that device. Two kinds:

* ``null`` (``paced_bytes_per_s=None``): ALSA's null plugin swallows samples as fast as they come;
  a stream runs thousands of times faster than real time and its callback spins a core.
* paced (the default): ALSA's ``file`` plugin in front of the null plugin, writing into a FIFO
  that a thread here drains at ``paced_bytes_per_s``. The FIFO fills, the plugin's ``write``
  blocks, and the client runs at real time (within the 4 KiB pipe buffer): sounds take as long
  as they last, so a test can interrupt one, and the CPU stays idle between callbacks.

PortAudio scans devices once, at initialization (sounddevice's import): entering re-scans if
sounddevice is already imported, and so does leaving (with the previous configuration back).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sys
import threading
import time
from pathlib import Path

F_SETPIPE_SZ = 1031  # fcntl.h; Python 3.10 exposes it only on some builds
PIPE_BYTES = 4096  # smallest pipe buffer: the paced device runs at most ~20 ms ahead
POLL_S = 0.05  # how often the drain thread looks at its stop flag


def null_config() -> str:
    return "pcm.!default { type null }\n"


def paced_config(fifo: Path) -> str:
    # raw: samples as they are, no WAV header; the null slave takes any format and rate
    return f'pcm.!default {{ type file slave.pcm {{ type null }} file "{fifo}" format "raw" }}\n'


def rescan_portaudio() -> None:
    """Make an already imported sounddevice see the current ALSA_CONFIG_PATH."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()


@contextlib.contextmanager
def alsa_config(path: Path):
    """This process's ALSA configuration is ``path`` inside the block (PortAudio re-scanned on
    the way in and out); the previous ALSA_CONFIG_PATH comes back after it."""
    previous = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = str(path)
    rescan_portaudio()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = previous
        rescan_portaudio()


class AlsaNull(contextlib.AbstractContextManager):
    def __init__(self, directory: Path, paced_bytes_per_s: int | None = 48_000 * 4) -> None:
        self.directory = Path(directory)
        self.rate = paced_bytes_per_s
        self.config = self.directory / "asound.conf"
        self.fifo = self.directory / "pcm.fifo"
        self.drained = 0  # bytes read from the FIFO (what the "device" played)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fds: tuple[int, int] | None = None
        self._config = contextlib.ExitStack()

    def __enter__(self) -> AlsaNull:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.rate is None:
            self.config.write_text(null_config())
        else:
            self._open_fifo()
            self.config.write_text(paced_config(self.fifo))
        self._config.enter_context(alsa_config(self.config))
        return self

    def __exit__(self, *exc: object) -> None:
        self._config.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * POLL_S + 1)
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)

    def _open_fifo(self) -> None:
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        # Our own reader and writer: ALSA's open never waits for a reader, and the reader never
        # sees end-of-file when a client closes (it would have to reopen, racing the next one).
        reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        fcntl.fcntl(reader, F_SETPIPE_SZ, PIPE_BYTES)
        self._fds = (reader, writer)
        self._thread = threading.Thread(target=self._drain, name="alsa-null", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        reader = self._fds[0]
        t0, paced = time.perf_counter(), 0
        while not self._stop.is_set():
            ready, _, _ = select.select([reader], [], [], POLL_S)
            if not ready:
                t0, paced = time.perf_counter(), 0  # idle: pace the next sound afresh
                continue
            n = 0
            with contextlib.suppress(BlockingIOError):
                n = len(os.read(reader, PIPE_BYTES))
            self.drained += n
            paced += n
            ahead = paced / self.rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
