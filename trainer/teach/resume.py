"""A learn interrupted (Ctrl-C, a power cut, the session ending) picks up where it stopped.

    resume = LearnResume(out_dir / RESUME_NAME, learn_key(base_sha256, taught, options))
    saved = resume.load()                     # None: start afresh
    model = resume.model(saved, base) if saved else learn_classifier(...)  # + refine, .save
    learn_voice(base, model, taught, options, resume=resume, saved=saved)
    resume.clear()                            # once taught.onnx is written

Issue #13 asks the learn to be resumable. The classifier (seconds to a minute and a half on 2
busy cores) is saved once it is refined, the voice every SAVE_EVERY_S seconds of its Adam
steps with the optimiser's moments and both random generators, so a resumed learn ends with
the very weights an uninterrupted one would. The file is keyed by everything the learn depends
on (the teach base, each photo's features, the recordings, the voice options): after a word is
added, forgotten or renamed the old file does not match and the learn starts afresh. A file
that cannot be read is only a lost head start (logged), never an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

RESUME_NAME = "learn-resume.pt"  # in the taught model's folder (.model/), beside taught.onnx
# Voice steps between saves, in seconds. A save is what the learn changes: the taught head
# (~6 MB for 10 words) and, past step 0, the generator and its Adam moments (~66 MB): 0.14 s.
SAVE_EVERY_S = 30.0
# The state-dict entries a learn changes; the rest (backbone, mapping, ImageNet check: ~40 MB
# with the unread training-only parts ~130 MB) is the teach base's, rebuilt from it on resume.
CLASSIFIER_PREFIXES = ("taught.",)
VOICE_PREFIXES = ("taught.", "generator.")
FORMAT = 1  # bumped when what is saved changes: an older file is not used


def learn_key(base_sha256: str, taught, options) -> str:
    """sha256 of what a learn's result depends on: the base, the taught set (TaughtSet: words,
    features, labels, recordings, photo numbers) and the VoiceOptions' numbers."""
    digest = hashlib.sha256(f"{FORMAT}\n{base_sha256}\n".encode())
    digest.update("\n".join(taught.words).encode("utf-8"))
    for array in (taught.pooled, taught.labels, taught.voices, taught.photos):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    # by name: progress_every_s changes nothing learned, and a new field must be added here
    digest.update(repr((options.steps, options.batch, options.lr, options.seed)).encode())
    return digest.hexdigest()


@dataclass
class LearnResume:
    """The resume file at ``path`` for the learn keyed ``key``. ``enabled`` turns False after
    a save fails (a full disk): the learn goes on without head starts."""

    path: Path
    key: str
    enabled: bool = True

    def load(self) -> dict[str, Any] | None:
        """The saved state of this learn: {"config", "model", "step"} and, past step 0 of
        the voice, {"optimizer", "draw", "torch_rng"}; None when there is none for this key."""
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except Exception as err:  # cut short by the interrupt it records, another format
            log.warning("%s not used (%s): learning from the start", self.path, err)
            return None
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return None  # another learn's: the words or their photos changed since
        return saved

    @staticmethod
    def model(saved: dict[str, Any], base):
        """The MTNet (eval mode) a ``load``ed state holds, on top of the TeachBase ``base``."""
        from earsight.trainer.mtnet.config import MTNetConfig
        from earsight.trainer.mtnet.model import MTNet

        model = MTNet(MTNetConfig.from_dict(saved["config"]))
        model.load_state_dict({**model.state_dict(), **base.model.state_dict(), **saved["model"]})
        return model.eval()

    def save(
        self,
        model,
        step: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
        draw: torch.Generator | None = None,
    ) -> None:
        """Atomically record ``model`` after ``step`` voice steps (0: the classifier is done),
        with the voice's ``optimizer`` and batch generator ``draw`` past step 0."""
        from earsight.trainer.durable import replace_file

        if not self.enabled:
            return
        state: dict[str, Any] = {
            "key": self.key,
            "config": model.cfg.to_dict(),
            "model": {
                name: weight
                for name, weight in model.state_dict().items()
                if name.startswith(VOICE_PREFIXES if step else CLASSIFIER_PREFIXES)
            },
            "step": step,
        }
        if optimizer is not None and draw is not None:
            state |= {
                "optimizer": optimizer.state_dict(),
                "draw": draw.get_state(),
                "torch_rng": torch.get_rng_state(),
            }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self.path, buffer.getvalue())
        except OSError as err:  # a full disk: the learn itself may still fit
            log.warning("cannot save the learn's progress to %s (%s); going on", self.path, err)
            self.enabled = False

    def clear(self) -> None:
        """Remove the file: the learn it records is complete."""
        self.path.unlink(missing_ok=True)
