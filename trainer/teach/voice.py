"""Teach mode's voice: the user's recording fitted to the model's clip, and MT-Net's generator
taught to say it (trainer/teach/learn.py learns the classifier first).

    model = learn_classifier(base, taught)                # trainer/teach/learn.py
    model = learn_voice(base, model, taught, options)     # minutes: the words in the user's voice

Each taught word's code φ_k (``TaughtHead.codes``: where a frame's φ goes as the classifier picks
the word) and the gated generator learn to say the word's recording from it, while reproducing
the shipped model's own waveform for the replay features (distillation): the known words keep
their sound. Eq. 9's smooth-L1 generation loss, Adam. Shapes: R replay rows, N taught photos
(mirrors included), D = 1280 pooled features, L_s samples per waveform.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from earsight.errors import UsageError
from earsight.trainer.mtnet.losses import generation_loss
from earsight.trainer.mtnet.model import MTNet
from earsight.trainer.teach.base import TeachBase
from earsight.trainer.teach.learn import TaughtSet
from earsight.trainer.teach.resume import SAVE_EVERY_S, LearnResume

Progress = Callable[[str], None]  # a spoken/printed progress line


@dataclass(frozen=True)
class VoiceOptions:
    steps: int = 400  # Adam steps: 17–24 s on the idle 2-core VM (docs/BENCHMARKS.md)
    batch: int = 48  # half taught photos, half replay rows
    lr: float = 1e-2  # the codes φ_k; the generator learns at lr × GENERATOR_LR_SCALE
    seed: int = 0
    progress_every_s: float = 10.0


GENERATOR_LR_SCALE = 0.1
# A recording longer than the model's clip (L_s) is spoken faster by up to MAX_TEMPO (sox tempo
# keeps the pitch: still the user's voice); TEMPO_MARGIN leaves room for rounding.
MAX_TEMPO = 1.6
TEMPO_MARGIN = 1.02  # the generator already speaks; it adapts, it is not retrained


def fit_voice_clip(wave: np.ndarray, sample_rate: int, model_rate: int, length: int) -> np.ndarray:
    """A recording (L,) float at ``sample_rate`` → the generator's target (length,) float32 at
    ``model_rate``: silence trimmed, peak 0.5 like the dataset's words (trainer/speech/synth.py),
    zero-padded at the end. UsageError when the word is longer than the model's clip."""
    from scipy.signal import resample_poly

    from earsight.trainer.speech.synth import PEAK_LEVEL, trim_silence

    x = np.asarray(wave, dtype=np.float64).ravel()
    if sample_rate != model_rate:
        g = int(np.gcd(sample_rate, model_rate))
        x = resample_poly(x, model_rate // g, sample_rate // g)
    x = trim_silence(x.astype(np.float32), sample_rate=model_rate)
    if x.size == 0:
        raise UsageError("the recording is silent", "record the word again, closer to the mic")
    if x.size > length:
        x = _speed_up(x, model_rate, x.size / length * TEMPO_MARGIN)
    if x.size > length:
        raise UsageError(
            f"the spoken word lasts {x.size / model_rate:.2f} s; the model says at most "
            f"{length / model_rate:.2f} s",
            "say it a little quicker",
        )
    out = np.zeros(length, dtype=np.float32)
    out[: x.size] = x * (PEAK_LEVEL / np.max(np.abs(x)))
    return out


def _speed_up(x: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """``x`` (L,) spoken ``factor`` times faster at the same pitch (sox's WSOLA ``tempo -s``);
    unchanged when that is more than MAX_TEMPO (the word would blur) or sox is missing."""
    import shutil
    import subprocess
    import tempfile

    import soundfile

    sox = shutil.which("sox")
    if sox is None or factor > MAX_TEMPO:
        return x
    with tempfile.TemporaryDirectory(prefix="earsight-tempo-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        soundfile.write(src, x, rate, subtype="FLOAT")
        cmd = [sox, str(src), str(dst), "tempo", "-s", f"{factor:.4f}"]
        if subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0:
            return x
        return soundfile.read(dst, dtype="float32")[0]


@torch.no_grad()
def _base_waveforms(base: MTNet, pooled: np.ndarray) -> torch.Tensor:
    """The shipped model's own waveform for each replay row (R, L_s): what known words sound
    like, which the taught model must keep saying."""
    enc, out = base.eval().image_encoder, []
    for start in range(0, len(pooled), 256):
        p = torch.from_numpy(pooled[start : start + 256])
        out.append(base.generate(base.mapping(enc.head(p))))
    return torch.cat(out)


def learn_voice(
    base: TeachBase,
    model: MTNet,
    taught: TaughtSet,
    options: VoiceOptions = VoiceOptions(),
    on_progress: Progress | None = None,
    resume: LearnResume | None = None,
    saved: dict | None = None,
) -> MTNet:
    """Train the codes φ_k and the generator (in place) to say the taught recordings for the
    taught photos and the shipped words as before for replay rows; returns ``model``. The
    codes start at the mean φ the mapping gives the word's photos (what the model said).

    ``resume``: the learn's progress is saved there every SAVE_EVERY_S seconds
    (trainer/teach/resume.py); ``saved``, a state it loaded (its model already in ``model``):
    the steps go on after its step, with its optimiser and random generators, and end where an
    uninterrupted learn would."""
    torch.manual_seed(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    replay_x = torch.from_numpy(base.replay_pooled)
    replay_y = _base_waveforms(base.model, base.replay_pooled)  # (R, L_s)
    taught_x = torch.from_numpy(taught.pooled)
    taught_y = torch.from_numpy(taught.voices)[torch.from_numpy(taught.labels)]  # (N, L_s)
    opt = torch.optim.Adam(
        [
            {"params": [model.taught.codes], "lr": options.lr},
            {"params": model.generator.parameters(), "lr": options.lr * GENERATOR_LR_SCALE},
        ]
    )
    done = 0 if saved is None else int(saved.get("step", 0))
    if done:
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["draw"])
        torch.set_rng_state(saved["torch_rng"])
    else:
        _start_codes(model, taught_x, taught.labels, len(taught.words))
    model.train()
    half = options.batch // 2
    say_progress = _progress_lines(options, on_progress, first=done + 1)
    last_save = time.monotonic()
    for step in range(done + 1, options.steps + 1):
        i = torch.randint(len(taught_x), (half,), generator=gen)
        j = torch.randint(len(replay_x), (options.batch - half,), generator=gen)
        pooled = torch.cat([taught_x[i], replay_x[j]])
        target = torch.cat([taught_y[i], replay_y[j]])
        with torch.no_grad():
            phi_i = model.image_encoder.head(pooled)
        _, phi = model.logits_and_phi(pooled, phi_i)
        loss = generation_loss(target, model.generate(phi))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if resume is not None and time.monotonic() - last_save >= SAVE_EVERY_S:
            resume.save(model, step, opt, gen)
            last_save = time.monotonic()
        say_progress(step)
    return model.eval()


@torch.no_grad()
def _start_codes(model: MTNet, taught_x: torch.Tensor, labels: np.ndarray, words: int) -> None:
    """Each taught word's code φ_k (D_a,) starts at the mean φ of its photos (N, D): what the
    mapping made of them, so the generator starts from a sound it already makes."""
    start_phi = model.mapping(model.image_encoder.head(taught_x))  # (N, D_a)
    for k in range(words):
        model.taught.codes[k] = start_phi[torch.from_numpy(labels == k)].mean(dim=0)


def _progress_lines(
    options: VoiceOptions, on_progress: Progress | None, first: int = 1
) -> Callable[[int], None]:
    """A per-step callback saying "step S of N, about T left" every progress_every_s seconds,
    from step ``first`` (> 1 when a learn resumes).

    The rate is measured from the end of the first step (its warm-up — allocation, the first
    backward — made the first estimate several times too long, and the next one then jumped
    down), and said as a time a listener can take in: ``time_left``."""
    first_done = last = 0.0

    def progress(step: int) -> None:
        nonlocal first_done, last
        if on_progress is None:
            return
        now = time.monotonic()
        if step == first:
            first_done = last = now
            on_progress(f"learning the voice: step {step} of {options.steps}")
        elif now - last >= options.progress_every_s:
            left = (now - first_done) / (step - first) * (options.steps - step)
            on_progress(
                f"learning the voice: step {step} of {options.steps}, about {time_left(left)} left"
            )
            last = now

    return progress


def time_left(seconds: float) -> str:
    """A time estimate as said: "20 s" (to 10 s) under two minutes, then "3 min" (whole
    minutes): an estimate said to the second is read as precise and jumps at every line."""
    if seconds < 115:
        return f"{max(10, round(seconds / 10) * 10)} s"
    return f"{round(seconds / 60)} min"
