"""The one WAV writer: mono float audio → 16-bit PCM WAV (RIFF, as every player reads it).

``describe``'s WAVs, ``live --out-dir``'s sounds and a taught word's ``voice.wav`` all go
through here, so they share one format and one clipping rule: samples outside [−1, 1] are
clipped to it before the 16-bit conversion (the libsndfile here clips too; this does not rely
on it).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

WAV_SUBTYPE = "PCM_16"


def _pcm_ready(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"a WAV here is mono: expected shape (L,), got {wave.shape}")
    return np.clip(wave, -1.0, 1.0)


def wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    """``wave`` (L,) float at ``rate`` Hz → the bytes of a 16-bit PCM WAV file.
    ValueError for a wave that is not one-dimensional."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, _pcm_ready(wave), rate, WAV_SUBTYPE, format="WAV")
    return buffer.getvalue()


def write_wav(path: Path, wave: np.ndarray, rate: int) -> None:
    """Write ``wave`` (L,) float at ``rate`` Hz to ``path`` as a 16-bit PCM WAV.

    The file is built in memory and written by Python, so a full disk or a read-only folder
    raises OSError with its errno and words ("[Errno 28] No space left on device"; libsndfile
    says only "System error."), and a file cut short is removed rather than left half written.
    ValueError for a wave that is not one-dimensional.
    """
    data = wav_bytes(wave, rate)
    path = Path(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()  # a 0-byte or cut-off WAV would play as a broken word later
        raise
