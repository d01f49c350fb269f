"""Rename a word inside the learned taught model, in place, instead of learning every word again.

A rename changes what the word is *called*, not what the model *says*, when the word's voice is a
recording (the user's voice or a WAV file): the generator reproduces the same recording either
way, and the classifier's class j is the same object. Only the labels change: the sidecar's
``vocabulary`` and ``config.labels`` (what `describe` prints and the gate names) and the same
config inside ``taught.pt``. Minutes of learning are saved (issue 13: "known words are kept").
A voice espeak-ng made says the old word, so that rename still needs learning again (the caller
decides; see app/modes/teach.py).

Needs no torch for the ONNX model; ``taught.pt`` (a torch file) is rewritten when torch is
installed, else removed with its sidecar entry (a runtime-only install has no use for it, and
the next learn, which needs torch, writes it again).

A forgotten word (or one renamed whose espeak-ng voice says the old name) is *withdrawn*
instead: the sidecar lists it under ``withdrawn`` and the runtime gives it probability 0
(engine/runtime.py), so its object is "not sure" while the other taught words are still
answered during the minutes until the words left are learned again. ``taught.pt``, which would
still say it, is removed.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from earsight.engine.errors import ModelFileError
from earsight.engine.sidecar import first_taught, read_sidecar, sha256_file, write_sidecar

log = logging.getLogger(__name__)


def relabel_model(onnx: Path, old: str, new: str) -> bool:
    """Call the taught word ``old`` ``new`` in the model at ``onnx`` (``<root>/.model/taught.onnx``)
    and its checkpoint. True when relabelled; False when there is nothing to relabel in place
    (no model, an unreadable one, or ``old`` is not one of its taught words): the caller then
    removes the model as out of date. The caller holds the store's learning lock."""
    side = _taught_sidecar(onnx)
    index = None if side is None else _taught_index(side, old)
    if index is None or new in side["vocabulary"]:
        return False  # a shipped word of that name stays; a clash would say one word twice
    vocabulary = list(side["vocabulary"])
    vocabulary[index] = new
    side["vocabulary"] = vocabulary
    if side.get("config", {}).get("labels"):
        side["config"]["labels"] = vocabulary
    checkpoint = onnx.parent / side.get("checkpoint", {}).get("name", "")
    if "checkpoint" in side and checkpoint.is_file():
        if importlib.util.find_spec("torch") is not None:
            _relabel_checkpoint(checkpoint, vocabulary)
            side["checkpoint"]["sha256"] = sha256_file(checkpoint)
        else:
            checkpoint.unlink()  # a .pt that says the old word would contradict the model
            del side["checkpoint"]
    write_sidecar(onnx, side)  # atomic: live reloads the model with the new word or the old
    return True


def withdraw_word(onnx: Path, word: str) -> bool:
    """Stop the learned model at ``onnx`` answering the taught word ``word`` (forgotten, or
    renamed with a voice that says the old name) until it is learned again: the sidecar lists it
    under ``withdrawn`` (written atomically: a running live reloads it). True when withdrawn;
    False when there is nothing to withdraw it from (no model, an unreadable one, ``word`` not
    one of its taught words) or no taught word would be left to answer: the caller then removes
    the model. The caller holds the store's learning lock."""
    side = _taught_sidecar(onnx)
    if side is None or _taught_index(side, word) is None:
        return False
    withdrawn = {*side.get("withdrawn", ()), word}
    vocabulary = side["vocabulary"]
    if not set(vocabulary[first_taught(side) :]) - withdrawn:
        return False  # nothing taught left to answer: the shipped model says the same
    side["withdrawn"] = [w for w in vocabulary if w in withdrawn]  # vocabulary order
    checkpoint = onnx.parent / side.get("checkpoint", {}).get("name", "")
    if "checkpoint" in side:
        checkpoint.unlink(missing_ok=True)  # its weights still say the word
        del side["checkpoint"]
    write_sidecar(onnx, side)
    return True


def _taught_sidecar(onnx: Path) -> dict | None:
    """The sidecar of the learned model, checksum verified; None when there is none to change
    (nothing learned yet, or a file that is not its model: it goes as out of date)."""
    if not onnx.is_file():  # nothing learned yet: nothing to change, nothing to say
        return None
    try:
        return read_sidecar(onnx)  # the sha256 too: never change a file that is not its model
    except ModelFileError as err:
        log.info("taught model not changed in place (%s): it goes as out of date", err.what)
        return None


def _taught_index(side: dict, word: str) -> int | None:
    """The class of the taught ``word`` in the sidecar's vocabulary; None when it is not one
    still answered (a shipped word of that name, or one withdrawn)."""
    vocabulary, first = list(side["vocabulary"]), first_taught(side)
    if word not in vocabulary[first:] or word in side.get("withdrawn", ()):
        return None
    return vocabulary.index(word, first)


def _relabel_checkpoint(path: Path, vocabulary: list[str]) -> None:
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(path)
    ckpt["config"] = {**ckpt["config"], "labels": list(vocabulary)}
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format"})
