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
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from earsight.engine.errors import ModelFileError
from earsight.engine.sidecar import read_sidecar, sha256_file, write_sidecar

log = logging.getLogger(__name__)


def relabel_model(onnx: Path, old: str, new: str) -> bool:
    """Call the taught word ``old`` ``new`` in the model at ``onnx`` (``<root>/.model/taught.onnx``)
    and its checkpoint. True when relabelled; False when there is nothing to relabel in place
    (no model, an unreadable one, or ``old`` is not one of its taught words): the caller then
    removes the model as out of date. The caller holds the store's learning lock."""
    if not onnx.is_file():  # nothing learned yet: nothing to relabel, nothing to say
        return False
    try:
        side = read_sidecar(onnx)  # the sha256 too: never relabel a file that is not its model
    except ModelFileError as err:
        log.info("taught model not relabelled (%s): it goes as out of date", err.what)
        return False
    vocabulary = list(side["vocabulary"])
    taught = int(side.get("config", {}).get("taught_words", 0))
    if old not in vocabulary[len(vocabulary) - taught :] or new in vocabulary:
        return False  # a shipped word of that name stays; a clash would say one word twice
    index = vocabulary.index(old, len(vocabulary) - taught)
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


def _relabel_checkpoint(path: Path, vocabulary: list[str]) -> None:
    from earsight.trainer.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(path)
    ckpt["config"] = {**ckpt["config"], "labels": list(vocabulary)}
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format"})
