"""The running ``earsight live`` picks up a model that changed on disk, without a restart.

    watcher = ModelWatcher("auto", loader, current=runtime.info.model, on_status=voice.say)
    watcher.start()
    ...
    if (new := watcher.take()) is not None:   # between presses, on the inference thread
        old, runtime = runtime, new
        old.close()

Why: ``earsight teach`` learns the user's words into ``taught.onnx`` while ``live`` may be
running on a wearable; the next press should know them. A background thread looks every
``POLL_S`` at the file the model name resolves to ("auto": the taught model once there is one)
and, when that file or its sidecar changed, loads and warms the new model there, so a press
never waits for a load. A file caught half-written (the export renames the ONNX, then writes
its sidecar) fails its checksum and is tried again at the next look.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from earsight.errors import EarSightError

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often the model file is looked at; a stat() each time
Signature = tuple[str, int, int, int, int]


def signature(path: Path) -> Signature | None:
    """What changes when a model is re-exported: path, ONNX and sidecar mtime and size."""
    try:
        onnx, side = path.stat(), Path(f"{path}.json").stat()
    except OSError:
        return None
    return (str(path), onnx.st_mtime_ns, onnx.st_size, side.st_mtime_ns, side.st_size)


class ModelWatcher:
    """Loads the model ``name`` resolves to again whenever it changes; ``take`` hands it over.

    ``load(path)`` builds a ready runtime (warmed up) or raises EarSightError; ``resolve(name)``
    maps the name to a file (app.models.resolve_model). ``on_status`` hears one line per swap.
    """

    def __init__(
        self,
        name: str,
        load: Callable[[Path], Any],
        current: Path,
        resolve: Callable[[str], Path] | None = None,
        on_status: Callable[[str], None] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        if resolve is None:
            from earsight.app.models import resolve_model as resolve
        self.name, self._load, self._resolve = name, load, resolve
        self.on_status, self.poll_s = on_status, poll_s
        self._seen = signature(Path(current))
        self._failed: Signature | None = None  # a version that did not load: not retried
        self._ready: Any = None  # a loaded runtime waiting for take()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="earsight-model-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread; a loaded runtime nobody took is closed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.poll_s + 1.0)
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            ready.close()

    def take(self) -> Any | None:
        """The newly loaded runtime, once (None when nothing changed). Cheap: call per press."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def check_now(self) -> bool:
        """Look once (the thread's step); True when a new model was loaded."""
        try:
            path = self._resolve(self.name)
        except EarSightError as err:
            log.debug("model watch: %s", err)
            return False
        sig = signature(path)
        if sig is None or sig in (self._seen, self._failed):
            return False
        try:
            runtime = self._load(path)
        except EarSightError as err:  # half-written or damaged: look again later
            log.debug("model watch: %s not loadable yet: %s", path.name, err)
            self._failed = sig if signature(path) == sig else None
            return False
        with self._lock:
            older, self._ready = self._ready, runtime
        if older is not None:
            older.close()
        self._seen = sig
        if self.on_status is not None:
            self.on_status(_loaded_line(path, runtime))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check_now()


def _loaded_line(path: Path, runtime: Any) -> str:
    """ "new model loaded, with your words: mug, keys" (a taught model: the words are what the
    user knows it by), else with the model's name."""
    from earsight.engine.sidecar import taught_words

    info = getattr(runtime, "info", None)  # a Runtime; tests may load something simpler
    words = taught_words(getattr(info, "sidecar", None))
    if words:
        return f"new model loaded, with your words: {', '.join(words)}"
    stem = path.stem.removesuffix(".int8")
    return "new model loaded: the taught words" if stem == "taught" else f"new model loaded: {stem}"


def watched(name: str) -> bool:
    """Whether a model name can change under a running app (``auto``, ``taught``)."""
    from earsight.app.models import AUTO_MODEL, TAUGHT_MODEL

    return name in (AUTO_MODEL, TAUGHT_MODEL)
