"""trainer/teach/store.py on real files in tmp folders: the plain layout, word checks, rename,
forget, hand-edited word.json, crash leftovers, the lock, and a full disk (ENOSPC)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from earsight.trainer import durable
from earsight.trainer.teach import store_folder
from earsight.trainer.teach.store import TeachStore
from earsight.trainer.teach.words import (
    BadInputError,
    BadWordError,
    StoreError,
    UnknownWordError,
    WordExistsError,
)

RATE = 16_000


def _photos(n: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def _voice(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (the locks aside) → sha256: what "nothing lost" compares."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (".lock", ".learning")
    }


@pytest.fixture
def store(tmp_path: Path) -> TeachStore:
    store = TeachStore(tmp_path / "taught")
    store.add_word("mug", _photos(3), _voice(), RATE, "microphone")
    return store


def test_a_word_is_stored_in_the_plain_layout_and_reads_back(store: TeachStore):
    folder = store.root / "mug"
    assert sorted(p.name for p in (folder / "photos").iterdir()) == [
        "0001.jpg",
        "0002.jpg",
        "0003.jpg",
    ]
    meta = json.loads((folder / "word.json").read_text())
    assert meta["word"] == "mug" and meta["photos"] == 3
    assert meta["voice"] == {
        "source": "microphone",
        "espeak_voice": None,
        "sample_rate": RATE,
        "seconds": 0.5,
    }
    (word,) = store.words()
    assert (word.name, word.photo_count, word.voice_source, word.sample_rate) == (
        "mug",
        3,
        "microphone",
        RATE,
    )
    wave, rate = store.voice("MUG")  # words compare case-insensitively
    assert rate == RATE and np.abs(wave - _voice()).max() < 1e-3  # 16-bit PCM
    from PIL import Image

    first = np.asarray(Image.open(store.photos("mug")[0]))
    assert first.shape == (48, 64, 3)


def test_more_photos_are_numbered_after_the_last(store: TeachStore):
    (store.root / "mug" / "photos" / "0002.jpg").unlink()  # a hand-deleted photo
    word = store.add_photos("Mug", _photos(2, seed=1))
    assert [p.name for p in store.photos("mug")] == ["0001.jpg", "0003.jpg", "0004.jpg", "0005.jpg"]
    assert word.photo_count == 4
    assert json.loads((store.root / "mug" / "word.json").read_text())["photos"] == 4


def test_photos_added_by_hand_count_whatever_their_format_or_case(store: TeachStore):
    from PIL import Image

    from earsight.trainer.data.image_io import read_image

    folder = store.root / "mug" / "photos"
    extra = _photos(3, seed=2)
    Image.fromarray(extra[0]).save(folder / "IMG_0042.JPG")  # a phone's name
    Image.fromarray(extra[1]).save(folder / "side.png")
    Image.fromarray(extra[2]).save(folder / "top.jpeg")
    (folder / "notes.txt").write_text("the blue mug")  # not a photo
    (folder / "old.jpg").mkdir()  # not a file
    names = [p.name for p in store.photos("mug")]
    assert names == ["0001.jpg", "0002.jpg", "0003.jpg", "IMG_0042.JPG", "side.png", "top.jpeg"]
    assert store.word("mug").photo_count == 6
    np.testing.assert_array_equal(read_image(folder / "side.png"), extra[1])  # lossless
    # the next photos taken are numbered after the store's own, not after a hand-added name
    store.add_photos("mug", _photos(1, seed=3))
    assert (folder / "0004.jpg").is_file() and len(store.photos("mug")) == 7


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("a/b", ["'/'"]),
        ("../x", ["characters"]),
        ("mug.", ["'.'"]),
        ("-rf", ["start with a letter"]),
        ("x" * 41, ["41 characters", "at most 40"]),
    ],
)
def test_words_that_cannot_be_folders_are_refused_before_any_write(store, name, words):
    before = snapshot(store.root)
    with pytest.raises(BadWordError) as caught:
        store.add_word(name, _photos(1), _voice(), RATE, "file")
    assert all(w in str(caught.value) for w in words) and caught.value.fix
    assert "\n" not in str(caught.value)
    assert snapshot(store.root) == before


def test_allowed_words_keep_letters_digits_spaces_hyphens_and_apostrophes(store):
    for name in ("front door key", "t-shirt", "mum's keys", "café", "pill box 2"):
        store.add_word(f"  {name} ", _photos(1), _voice(), RATE, "espeak-ng", "en-gb")
    assert [w.name for w in store.words()] == [
        "café",
        "front door key",
        "mug",
        "mum's keys",
        "pill box 2",
        "t-shirt",
    ]


def test_an_existing_word_is_refused_whatever_its_case_and_kept(store):
    before = snapshot(store.root)
    with pytest.raises(WordExistsError, match="--more") as caught:
        store.add_word("MUG", _photos(2, seed=5), _voice(), RATE, "file")
    assert "--forget" in str(caught.value)
    assert snapshot(store.root) == before


def test_rename_keeps_photos_and_voice_and_refuses_a_taken_name(store):
    store.add_word("cup", _photos(1, seed=2), _voice(), RATE, "file")
    before = snapshot(store.root)
    with pytest.raises(WordExistsError):
        store.rename("mug", "Cup")
    assert snapshot(store.root) == before
    word = store.rename("mug", "my mug")
    assert word.name == "my mug" and word.photo_count == 3
    assert json.loads((store.root / "my mug" / "word.json").read_text())["word"] == "my mug"
    moved = {k.replace("mug/", "my mug/", 1): v for k, v in before.items() if k != "mug/word.json"}
    after = snapshot(store.root)
    assert {k: after[k] for k in moved} == moved  # photos and voice are the same bytes


def test_forget_removes_the_word_and_unknown_words_are_one_line(store):
    store.forget("Mug")
    assert store.words() == [] and not (store.root / "mug").exists()
    for call in (
        lambda: store.forget("mug"),
        lambda: store.word("mug"),
        lambda: store.rename("mug", "cup"),
        lambda: store.add_photos("mug", _photos(1)),
    ):
        with pytest.raises(UnknownWordError, match="--list"):
            call()


def test_photos_and_voices_the_store_cannot_keep(store):
    before = snapshot(store.root)
    with pytest.raises(BadInputError, match="no photos"):
        store.add_word("cup", [], _voice(), RATE, "file")
    with pytest.raises(BadInputError, match="pixels"):
        store.add_word("cup", _photos(1, size=(8, 8)), _voice(), RATE, "file")
    with pytest.raises(BadInputError, match=r"lasts 11\.0 s"):
        store.add_word("cup", _photos(1), _voice(11.0), RATE, "file")
    with pytest.raises(BadInputError, match="sample rate"):
        store.add_word("cup", _photos(1), _voice(), 4_000, "file")
    assert snapshot(store.root) == before


@pytest.mark.faults
@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda p: p.write_text("{ not json"), ["word.json is broken"]),
        (lambda p: p.write_text('{"format": 1, "word": "mug"}'), ["'created' is a required"]),
        (
            lambda p: p.write_text(p.read_text().replace('"microphone"', '"tape"')),
            ["voice/source", "'tape'"],
        ),
        (lambda p: p.unlink(), ["word.json is missing"]),
    ],
)
def test_a_hand_broken_word_json_is_one_line_naming_the_file(store, edit, words):
    path = store.root / "mug" / "word.json"
    edit(path)
    with pytest.raises(StoreError) as caught:
        store.words()
    message = str(caught.value)
    assert str(path) in message and all(w in message for w in words), message
    assert "\n" not in message and "--forget 'mug'" in message
    store.forget("mug")  # the way out works on a broken word
    assert store.words() == []


@pytest.mark.faults
def test_leftovers_of_a_crashed_change_are_invisible_and_cleared(store):
    half = store.root / ".tmp-abc123"  # what a kill -9 during add_word leaves
    (half / "photos").mkdir(parents=True)
    (half / "photos" / "0001.jpg").write_bytes(b"\xff\xd8half")
    stray = store.root / "mug" / "photos" / ".tmp-0004.jpg"
    stray.write_bytes(b"half")
    assert [w.name for w in store.words()] == ["mug"]
    assert store.words()[0].photo_count == 3
    store.add_word("cup", _photos(1), _voice(), RATE, "file")
    assert not half.exists() and not stray.exists()


@pytest.mark.faults
def test_a_busy_lock_is_one_line_and_changes_nothing(store, monkeypatch):
    import filelock

    monkeypatch.setattr(store_folder, "LOCK_TIMEOUT_S", 0.2)
    before = snapshot(store.root)
    with filelock.FileLock(str(store.root / ".lock")), pytest.raises(StoreError) as caught:
        # filelock locks are per-process re-entrant only for the same object: a new one waits
        store.add_word("cup", _photos(1), _voice(), RATE, "file")
    assert "another earsight teach" in str(caught.value)
    assert snapshot(store.root) == before


@pytest.mark.faults
@pytest.mark.parametrize("change", ["add_word", "add_photos"])
def test_a_full_disk_keeps_every_taught_word_and_leaves_no_temp(store, monkeypatch, change):
    """Full disk simulated at the lowest level: ``os.write`` as trainer/durable.py calls it raises
    OSError(ENOSPC) once 200 kB were written (tests/test_teach_cli.py fills a real tmpfs)."""
    before = snapshot(store.root)
    written = {"n": 0}
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        written["n"] += len(data)
        if written["n"] > 200_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(durable.os, "write", write)
    big = _photos(12, seed=3, size=(240, 320))  # ~60 kB each as JPEG noise
    with pytest.raises(StoreError) as caught:
        if change == "add_word":
            store.add_word("cup", big, _voice(), RATE, "file")
        else:
            store.add_photos("mug", big)
    message = str(caught.value)
    assert "disk is full" in message and "intact" in message and "free some space" in message
    assert snapshot(store.root) == before  # nothing half-written, nothing lost
    assert not [p for p in store.root.rglob(".tmp-*")]
    assert [w.name for w in store.words()] == ["mug"]


def test_the_taught_words_of_a_sidecar_are_read_one_way_everywhere():
    """engine.sidecar.taught_words is what --list's "learned", the status lines and --forget
    read (three copies before, one of which took a sidecar without config.taught_words as all
    taught: a shipped model's ten words then counted as learned)."""
    from earsight.engine.sidecar import first_taught, taught_words

    shipped = {"vocabulary": ["cat", "dog"], "config": {}}
    assert first_taught(shipped) == 2 and taught_words(shipped) == [] and taught_words(None) == []
    taught = {"vocabulary": ["cat", "dog", "cat", "mug", "keys"], "config": {"taught_words": 3}}
    assert first_taught(taught) == 2 and taught_words(taught) == ["cat", "mug", "keys"]
    assert taught_words({**taught, "withdrawn": ["mug"]}) == ["cat", "keys"]


def test_the_store_is_created_for_its_owner_only(tmp_path):
    """Photos of the user's home and a recording of their voice: the folder is created 0700
    (it was 0755 under the usual umask: every account on a shared desktop could read them);
    a folder that exists keeps the mode its owner gave it."""
    import stat

    from earsight.trainer.teach.store import TeachStore

    store = TeachStore(tmp_path / "data" / "taught")
    store.check_writable("teaching 'mug'")
    assert stat.S_IMODE((tmp_path / "data" / "taught").stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    TeachStore(shared).check_writable("teaching 'mug'")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_a_half_written_model_file_is_removed_when_no_learn_runs(tmp_path):
    """A learn killed mid-save (or a power cut) left .model/taught.pt.tmp (~130 MB) for good:
    the sweep only knew .tmp-* names. It goes when the next learn (or forget, rename) takes the
    learning lock, never while one runs (a store change may run beside a learn)."""
    from earsight.trainer.teach.store import TeachStore

    store = TeachStore(tmp_path / "taught")
    model = tmp_path / "taught" / ".model"
    model.mkdir(parents=True)
    (model / "taught.pt.tmp").write_bytes(b"half")
    (model / "taught.onnx").write_bytes(b"whole")
    store.check_writable("teaching 'mug'")
    with store.learning():
        pass
    assert sorted(p.name for p in model.iterdir()) == ["taught.onnx"]
