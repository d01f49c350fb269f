"""What ``LiveApp`` (app/modes/live.py) needs of each collaborator, as Protocols: any object with
these
members works (the real ones: engine.runtime.Runtime, app.camera.grabber.FrameGrabber,
app.sound.audio.AudioOut
or WavSink, app.sound.voice.StatusVoice, app.modes.model_watch.ModelWatcher,
app.modes.live_teach.LiveTeacher, and
a started controller from app.keys.controllers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from earsight.app.sound.devices import FirstBufferHook


class LiveRuntime(Protocol):
    """A loaded model: ``runtime(images)`` → waveforms (B, L) at info.output_rate, probs (B, K)."""

    info: Any  # engine.runtime.RuntimeInfo: input_shape, input_crop, labels, output_rate
    options: Any  # engine.runtime.RuntimeOptions: postprocess

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class LiveGrabber(Protocol):
    def latest(self, timeout_s: float = 0.0, *, after: float | None = None) -> Any | None: ...


class LiveAudio(Protocol):
    def play(
        self,
        wave: np.ndarray,
        sample_rate: int,
        label: str = "",
        kind: str = "word",
        on_first: FirstBufferHook | None = None,
    ) -> None: ...


class LiveVoice(Protocol):
    verbosity: int
    on_spoken: Any  # set to the recorder's hook with --record

    def say(self, message: str, level: int = ..., printed: bool = True) -> None: ...


class LiveWatcher(Protocol):
    def take(self) -> LiveRuntime | None: ...


class LiveTeacherPart(Protocol):
    owns_devices: bool
    play: Callable[..., None]  # LiveApp hands it its own _play, so its tones are recorded too

    def busy(self) -> None: ...

    def press(self) -> None: ...

    def close(self) -> None: ...


class LiveController(Protocol):
    def stop(self) -> None: ...
