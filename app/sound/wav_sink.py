"""The fall-back audio output: each sound written to a numbered WAV file (AudioOut's interface),
for a machine without a sound device or a user who wants the files."""

from __future__ import annotations

import errno
import re
import time
from pathlib import Path

import numpy as np

from earsight.app.sound.devices import (
    AudioUnavailable,
    FirstBufferHook,
    TeeHook,
    as_mono,
)
from earsight.paths import probe_writable
from earsight.wav import write_wav

# any count of digits: after 9999 the files are 10000-…, which a 4-digit pattern missed, so the
# next run numbered from 10000 again and overwrote them
NUMBERED = re.compile(r"(\d{4,})-.*\.wav$")


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "sound"


class WavSink:
    """``AudioOut``'s interface, writing each sound to ``<dir>/<NNNN>-<label>.wav`` (16-bit PCM).

    Numbers continue after the highest already in the folder, so a second run adds files
    instead of overwriting the first run's. Hooks fire as soon as a file is written. With
    ``keep_newest`` only that many numbered files stay (older runs' included, oldest deleted
    first): a device without sound that answers for weeks must not fill its disk.
    """

    carries_speech = False  # status speech is not written among the user's word files

    def __init__(
        self,
        directory: Path,
        on_first_buffer: FirstBufferHook | None = None,
        tee: TeeHook | None = None,
        option: str = "--out-dir",  # the flag that named the folder, for the fix
        keep_newest: int | None = None,
    ) -> None:
        if keep_newest is not None and keep_newest < 1:
            raise ValueError(f"keep_newest must be ≥ 1, got {keep_newest}")
        self.directory = Path(directory)
        self.option = option
        self.keep_newest = keep_newest
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AudioUnavailable(
                f"cannot create the folder {self.directory}: {err.strerror or err}",
                f"pick another {option} folder",
            ) from err
        try:
            probe_writable(self.directory)  # only a write proves the folder takes files
        except OSError as err:
            raise AudioUnavailable(
                f"cannot write sound files to {self.directory}: {err.strerror or err}",
                f"pick another {option} folder",
            ) from err
        self.on_first_buffer = on_first_buffer
        self.tee = tee
        self.written: list[Path] = []
        self._next = max(self._numbered(), default=0) + 1
        self.is_playing = False

    def play(
        self,
        wave: np.ndarray,
        sample_rate: int,
        label: str = "sound",
        kind: str = "word",
        on_first: FirstBufferHook | None = None,
    ) -> None:
        """Write ``wave`` to the next numbered file (``kind`` is accepted for AudioOut's sake)."""
        sound = as_mono(wave)
        path = self.directory / f"{self._next:04d}-{_slug(label)}.wav"
        self._next += 1
        try:
            write_wav(path, sound, sample_rate)
        except OSError as err:
            self._next -= 1  # nothing was written under that number
            fix = "free some space" if err.errno == errno.ENOSPC else "check the folder"
            raise AudioUnavailable(  # the same line for every file: live says it once
                f"cannot write sound files to {self.directory}: {err.strerror or err}",
                f"{fix}, or pick another {self.option} folder",
            ) from err
        self.written.append(path)
        if self.keep_newest is not None:
            self._prune(self.keep_newest)
        t_written = time.perf_counter()
        for hook in (self.on_first_buffer, on_first):
            if hook is not None:
                hook(t_written)
        if self.tee is not None:
            self.tee(sound.copy())

    def _numbered(self) -> dict[int, Path]:
        """The folder's ``NNNN-label.wav`` files by number."""
        files = {}
        for path in self.directory.iterdir():
            match = NUMBERED.match(path.name)
            if match:
                files[int(match[1])] = path
        return files

    def _prune(self, keep: int) -> None:
        """Delete all but the ``keep`` highest-numbered files (a file already gone is fine)."""
        files = self._numbered()
        for number in sorted(files)[:-keep]:
            files[number].unlink(missing_ok=True)
        del self.written[:-keep]

    def stop(self) -> None:
        pass  # a written file is complete; there is nothing to cut short

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def wait_until_flowing(self, timeout: float | None = None) -> bool:
        return True  # files have no start-up pause

    def close(self) -> None:
        pass

    def __enter__(self) -> WavSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
