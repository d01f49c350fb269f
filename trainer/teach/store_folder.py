"""The taught words' folder as a whole: its locks, crash leftovers, disk errors and the
learned model's place (trainer/teach/store.py keeps the words themselves).

Two locks, both filelock files in the folder: ``.lock`` is held for every change of a word (a
second ``earsight teach`` waits up to LOCK_TIMEOUT_S), ``.learning`` for as long as the words
are learned (minutes; a second learn is refused at once, and no word changes under it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from earsight import paths
from earsight.locks import exclusive
from earsight.trainer.durable import TMP_PREFIX, fsync_dir
from earsight.trainer.teach.words import StoreError

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 30.0  # another teach holding the lock longer than this is stuck or busy
LEARNING_WAIT_S = 1.0  # a learn held by someone else this long is a running learn, not a probe
HIDDEN = "."  # .lock, .tmp-*: never a word (a word starts with a letter or digit)
ROOT_MODE = 0o700  # the taught words: photos of the home and the user's voice, the owner's only
LEARNING_LOCK = f"{HIDDEN}learning"  # held while the words are learned (TeachStore.learning)
LEARNING_WORDS = f"{HIDDEN}learning-words.json"  # what the learn running now learns


MODEL_FOLDER = ".model"  # <root>/.model/taught.onnx: hidden, so never taken for a word
MODEL_NAME = "taught"  # taught.pt (the weights) and taught.onnx (+ .onnx.json) in MODEL_FOLDER


def taught_model_path(root: Path | None = None) -> Path:
    """Where ``earsight teach`` puts the model it learned: ``<root>/.model/taught.onnx``."""
    return (root or paths.taught_root()) / MODEL_FOLDER / f"{MODEL_NAME}.onnx"


def disk_error(err: OSError, root: Path, doing: str) -> StoreError:
    """One StoreError line for an OSError while ``doing`` something under ``root``."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"the disk is full while {doing}; nothing of it was kept and every word already "
            "taught is intact",
            f"free some space on the disk of {root} and try again",
        )
    reason = err.strerror or str(err)
    return StoreError(
        f"cannot write {root} while {doing} ({reason})",
        "check EARSIGHT_TEACH or the folder's permissions",
    )


class StoreFolder:
    """The folder ``root`` of the taught words (created on the first change)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _make_root(self) -> None:
        """Create ``root`` readable by its owner only (0700): it holds photos of the user's
        home and a recording of their voice, which another account on a shared desktop must
        not read. A folder that exists keeps the mode its owner gave it."""
        self.root.mkdir(parents=True, exist_ok=True, mode=ROOT_MODE)

    def check_writable(self, doing: str) -> None:
        """StoreError (one line) when ``root`` cannot be created or written (read-only, no
        permission, full): said before the user captures anything, not after."""
        try:
            self._make_root()
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=TMP_PREFIX):
                pass
        except OSError as err:
            raise disk_error(err, self.root, doing) from err

    def drop_model(self) -> bool:
        """Remove the learned model (``<root>/.model``), out of date once a word is forgotten
        or renamed: "auto" then resolves to the shipped model again. True when there was one."""
        model = self.root / MODEL_FOLDER
        with self._locked("removing the out-of-date taught model"):
            if not model.exists():
                return False
            trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}model-", dir=self.root))
            os.rename(model, trash / MODEL_FOLDER)  # gone at once, for a running live too
            fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)
        return True

    @contextlib.contextmanager
    def learning(
        self,
        fix: str = "wait for it to finish (it says when), then try again",
        words: Sequence[str] = (),
    ) -> Iterator[None]:
        """Hold ``<root>/.learning`` while the words are learned, or forgotten or renamed under
        a learned model: one learn at a time, and no word changed while one runs (it would
        write a model that says the old words). StoreError (with ``fix``) when another holds
        it. ``words``: the ones this learn learns, for ``words_being_learned``."""
        busy = StoreError("another earsight teach is learning the taught words now", fix)
        listed = self.root / LEARNING_WORDS
        with contextlib.ExitStack() as held:
            try:  # only taking the lock: the block's own disk errors are its own to say
                self._make_root()
                held.enter_context(exclusive(self.root / LEARNING_LOCK, LEARNING_WAIT_S, busy))
                self._clear_model_leftovers()  # no learn runs now: its .tmp files are dead
                if words:
                    listed.write_text(json.dumps(list(words)), encoding="utf-8")
                    held.callback(listed.unlink, missing_ok=True)
            except OSError as err:
                raise disk_error(err, self.root, "learning") from err
            yield

    def _clear_model_leftovers(self) -> None:
        """``.model/*.tmp`` (a checkpoint or an export a killed learn or a power cut left half
        written: up to ~130 MB each). Only under the learning lock: a running learn writes
        them, and a store change may run beside it."""
        for path in (self.root / MODEL_FOLDER).glob("*.tmp"):
            log.info("removing %s, left by an interrupted learn", path)
            path.unlink(missing_ok=True)

    def words_being_learned(self) -> set[str] | None:
        """The words the learn running now learns; None when none runs or it did not say
        (then every unlearned word counts as being learned)."""
        if not self.is_learning():
            return None
        try:
            return set(json.loads((self.root / LEARNING_WORDS).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def is_learning(self) -> bool:
        """True while another process learns the words (``learning`` is held)."""
        lock = self.root / LEARNING_LOCK
        if not lock.exists():
            return False
        try:
            with exclusive(lock, 0.0, StoreError("busy", "")):
                return False
        except StoreError:
            return True
        except OSError:  # a read-only folder (--list must work there): nothing learns into it
            return False

    @contextlib.contextmanager
    def _locked(self, doing: str) -> Iterator[None]:
        """Hold ``<root>/.lock``; turn disk errors into one StoreError line; clear leftovers."""
        busy = StoreError(
            f"another earsight teach has been changing {self.root} for {LOCK_TIMEOUT_S:g} s",
            "wait for it to finish, then try again",
        )
        try:
            self._make_root()
            with exclusive(self.root / f"{HIDDEN}lock", LOCK_TIMEOUT_S, busy):
                self._clear_leftovers()
                yield
        except OSError as err:
            raise disk_error(err, self.root, doing) from err

    def _clear_leftovers(self) -> None:
        """Hidden .tmp-* of a change that crashed (the lock says none is running now)."""
        for path in [
            *self.root.glob(f"{TMP_PREFIX}*"),
            *self.root.glob(f"*/{TMP_PREFIX}*"),
            *self.root.glob(f"*/photos/{TMP_PREFIX}*"),
        ]:
            log.debug("removing %s, left by an interrupted change", path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
