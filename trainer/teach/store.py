"""The words a user taught EarSight, stored as plain files a person can read and edit.

    store = TeachStore(paths.taught_root())             # $EARSIGHT_TEACH, else <user data>/taught
    store.add_word("mug", photos, voice, 22_050, "microphone")
    for word in store.words():                     # TaughtWord(name, created, source, ...)
        wave, rate = store.voice(word.name)

Layout (the folder name is the word; ``word.json`` repeats it for a reader of the folder)::

    <root>/<word>/photos/0001.jpg …     RGB JPEG, quality 95, one per view (PNG, JPEG, BMP,
                                        TIFF or WebP files added by hand count too)
    <root>/<word>/voice.wav             the spoken word, mono 16-bit PCM at its own rate
    <root>/<word>/word.json             see WORD_SCHEMA

Every change holds ``<root>/.lock`` (filelock: two ``earsight teach`` at once take turns) and is
all-or-nothing: a new word is built in a hidden ``.tmp-*`` folder beside the others, each file
fsynced, then renamed into place, so a crash or a full disk leaves the word complete or absent,
and never touches another word. Hidden leftovers of a crash are removed by the next change.

The store does not know about models: `earsight teach` refuses a word that is one of the
default model's own (app/modes/teach.py, check_not_shipped), since a second "cat" would split
every cat's answer in two.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from earsight.trainer.data.image_io import IMAGE_SUFFIXES
from earsight.trainer.durable import TMP_PREFIX, fsync_dir, replace_file, write_new
from earsight.trainer.teach.store_folder import (  # noqa: F401 (re-exported)
    HIDDEN,
    MODEL_FOLDER,
    MODEL_NAME,
    StoreFolder,
    disk_error,
    taught_model_path,
)
from earsight.trainer.teach.words import (
    FORMAT,
    WORD_SCHEMA,
    BadInputError,
    StoreError,
    TaughtWord,
    UnknownWordError,
    WordExistsError,
    check_word,
    checked_voice,
    jpeg_bytes,
)
from earsight.wav import wav_bytes

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class TeachStore(StoreFolder):
    """The taught words under ``root`` (created on the first change)."""

    # --- reading (no lock: every change is a rename, so a reader sees whole words) ----------

    def words(self) -> list[TaughtWord]:
        """Every taught word, by name (case-insensitive); StoreError names a broken word.json."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if not p.name.startswith(HIDDEN) and p.is_dir()]
        return [self._read(p) for p in sorted(folders, key=lambda p: p.name.casefold())]

    def word(self, name: str) -> TaughtWord:
        """The taught word ``name`` (any case); UnknownWordError if it was never taught."""
        return self._read(self._folder(name))

    def photos(self, name: str) -> list[Path]:
        """The word's photo files, in the order they were taken (hand-added ones by name)."""
        return _photo_files(self._folder(name))

    def voice(self, name: str) -> tuple[np.ndarray, int]:
        """The word's voice: float32 mono (L,) in -1..1 and its sample rate in Hz."""
        import soundfile

        path = self._folder(name) / "voice.wav"
        try:
            wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as err:  # missing, truncated, hand-replaced by something else
            raise StoreError(f"cannot read {path} ({err})", _fix_broken(path)) from err
        return wave.mean(axis=1), int(rate)

    def find(self, name: str) -> Path | None:
        """The folder of ``name`` compared case-insensitively ("Mug" is "mug"), or None."""
        key = check_word(name).casefold()
        if not self.root.is_dir():
            return None
        for path in self.root.iterdir():
            if not path.name.startswith(HIDDEN) and path.name.casefold() == key:
                return path
        return None

    def check_new(self, name: str) -> str:
        """The checked word, if it can be added; WordExistsError if it is taught already."""
        word = check_word(name)
        existing = self.find(word)
        if existing is not None:
            raise WordExistsError(
                f"{existing.name!r} is already taught ({existing})",
                f"add photos with `earsight teach {existing.name!r} --more`, or "
                f"`earsight teach --forget {existing.name!r}` first",
            )
        self.check_writable("storing " + repr(word))  # before minutes of turning the object
        return word

    def _folder(self, name: str) -> Path:
        folder = self.find(name)
        if folder is None:
            raise UnknownWordError(
                f"{check_word(name)!r} is not a taught word", self._nearest(name)
            )
        return folder

    def _nearest(self, name: str) -> str:
        """The fix for a word not taught: the nearest taught one ("glases case" → "glasses
        case"), so nobody has to hear the whole list; else where the list is."""
        import difflib

        names = {p.name.casefold(): p.name for p in self._folders()}
        close = difflib.get_close_matches(check_word(name).casefold(), list(names), 1, 0.75)
        if close:
            return f"did you mean {names[close[0]]!r}?"
        return "`earsight teach --list` shows the taught words"

    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if not p.name.startswith(HIDDEN) and p.is_dir()]

    def _read(self, folder: Path) -> TaughtWord:
        import jsonschema

        path = folder / "word.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            jsonschema.validate(data, WORD_SCHEMA)
        except FileNotFoundError as err:
            raise StoreError(f"{path} is missing", _fix_broken(path)) from err
        except (OSError, ValueError, jsonschema.ValidationError) as err:
            reason = err.message if isinstance(err, jsonschema.ValidationError) else err
            where = "/".join(str(p) for p in getattr(err, "absolute_path", ())) or "file"
            raise StoreError(f"{path} is broken ({where}: {reason})", _fix_broken(path)) from err
        voice = data["voice"]
        return TaughtWord(
            name=folder.name,
            folder=folder,
            created=data["created"],
            voice_source=voice["source"],
            espeak_voice=voice.get("espeak_voice"),
            sample_rate=voice["sample_rate"],
            voice_seconds=float(voice.get("seconds", 0.0)),
            photo_count=len(_photo_files(folder)),
            updated=data.get("updated", ""),
        )

    # --- changing (locked, all-or-nothing) -----------------------------------------------

    def add_word(
        self,
        name: str,
        photos: Sequence[np.ndarray],
        voice: np.ndarray,
        sample_rate: int,
        source: str,
        espeak_voice: str | None = None,
    ) -> TaughtWord:
        """Teach a new word: its photos (RGB uint8 (H, W, 3)) and voice (float mono, -1..1).

        Raises BadWordError, WordExistsError, BadInputError, or StoreError (disk full,
        unwritable, lock busy); on any error the root is as it was.
        """
        if not photos:
            raise BadInputError("no photos to keep", "take or give at least one photo")
        wave = checked_voice(voice, sample_rate, source)
        encoded = [jpeg_bytes(p, i + 1) for i, p in enumerate(photos)]  # bad input before any write
        with self._locked(f"saving {check_word(name)!r}"):
            word = self.check_new(name)
            meta = {
                "format": FORMAT,
                "word": word,
                "created": _now(),
                "photos": len(encoded),
                "voice": {
                    "source": source,
                    "espeak_voice": espeak_voice,
                    "sample_rate": int(sample_rate),
                    "seconds": round(wave.size / sample_rate, 3),
                },
            }
            staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))
            try:
                (staging / "photos").mkdir()
                for i, data in enumerate(encoded, 1):
                    write_new(staging / "photos" / f"{i:04d}.jpg", data)
                write_new(staging / "voice.wav", wav_bytes(wave, int(sample_rate)))
                write_new(staging / "word.json", _json(meta))
                fsync_dir(staging / "photos")
                fsync_dir(staging)
                os.rename(staging, self.root / word)  # the word appears whole, or not at all
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(self.root)
        log.debug("taught %r: %d photos in %s", word, len(encoded), self.root / word)
        return self.word(word)

    def add_photos(self, name: str, photos: Sequence[np.ndarray]) -> TaughtWord:
        """More views of a taught word, numbered after its last photo; all kept or none."""
        if not photos:
            raise BadInputError("no photos to add", "take or give at least one photo")
        encoded = [jpeg_bytes(p, i + 1) for i, p in enumerate(photos)]
        with self._locked(f"adding photos of {check_word(name)!r}"):
            folder = self._folder(name)
            self._read(folder)  # a broken word.json is reported before anything is written
            folder_photos = folder / "photos"
            folder_photos.mkdir(exist_ok=True)
            numbers = [int(p.stem) for p in _photo_files(folder) if p.stem.isdecimal()]
            first = max(numbers, default=0) + 1
            written: list[Path] = []
            try:  # hidden temps first: on a full disk none becomes a photo
                for i, data in enumerate(encoded):
                    tmp = folder_photos / f"{TMP_PREFIX}{first + i:04d}.jpg"
                    written.append(tmp)
                    write_new(tmp, data)
                meta = json.loads((folder / "word.json").read_text(encoding="utf-8"))
                meta["photos"] = len(numbers) + len(encoded)
                meta["updated"] = _now()
                replace_file(folder / "word.json", _json(meta))
            except BaseException:
                for tmp in written:
                    tmp.unlink(missing_ok=True)
                raise
            for i, tmp in enumerate(written):
                os.rename(tmp, folder_photos / f"{first + i:04d}.jpg")
            fsync_dir(folder_photos)
        return self.word(folder.name)

    def forget(self, name: str) -> None:
        """Remove a taught word and its files (hidden first, so it goes at once)."""
        with self._locked(f"forgetting {check_word(name)!r}"):
            folder = self._folder(name)
            trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}forget-", dir=self.root))
            os.rename(folder, trash / folder.name)
            fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)

    def rename(
        self, old: str, new: str, voice: np.ndarray | None = None, sample_rate: int = 0
    ) -> TaughtWord:
        """Call a taught word ``new``; its photos stay, and its voice unless a new ``voice``
        (float mono, -1..1, at ``sample_rate`` Hz: espeak-ng saying the new word) is given. The
        folder name is the word, so the rename is one atomic folder rename; the voice and
        word.json's copy follow, each replaced whole."""
        wave = None if voice is None else checked_voice(voice, sample_rate, "espeak-ng")
        with self._locked(f"renaming {check_word(old)!r}"):
            folder = self._folder(old)
            word = check_word(new)
            existing = self.find(word)
            if existing is not None and existing != folder:
                raise WordExistsError(
                    f"{existing.name!r} is already taught",
                    f"pick another name, or `earsight teach --forget {existing.name!r}` first",
                )
            meta = json.loads((folder / "word.json").read_text(encoding="utf-8"))
            target = self.root / word
            os.rename(folder, target)
            fsync_dir(self.root)
            meta["word"], meta["updated"] = word, _now()
            if wave is not None:
                replace_file(target / "voice.wav", wav_bytes(wave, int(sample_rate)))
                meta["voice"]["seconds"] = round(wave.size / sample_rate, 3)
            replace_file(target / "word.json", _json(meta))
        return self.word(word)


def _photo_files(folder: Path) -> list[Path]:
    """The images in ``photos/`` (image_io.IMAGE_SUFFIXES, any case) in name order, without
    hidden temps: the store's own NNNN.jpg and whatever a person dropped in by hand (a phone's
    IMG_0042.JPG, a .png from the web; they were skipped without a word while only *.jpg
    counted)."""
    try:
        entries = list((folder / "photos").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        p
        for p in entries
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(HIDDEN) and p.is_file()
    )


def _json(meta: dict) -> bytes:
    return (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _fix_broken(path: Path) -> str:
    return f"fix or delete {path} by hand, or `earsight teach --forget {path.parent.name!r}`"
