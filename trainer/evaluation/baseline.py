"""I2T2A, the paper's strongest baseline: image → class (a classifier) → text → speech (TTS).

The paper's I2T2A captions the image and reads the caption with a commercial TTS ("Reading
Woman"), a voice other than the dataset's recordings. Ours takes the class from the same
trained MT-Net's softmax head (so both rows see the same image decisions) and speaks the word
with espeak-ng in a *different* voice from the ground truth (default: British English), which
keeps the comparison honest: a perfect classifier still does not reproduce the reference
waveform. Spoken with the dataset's own voice it would, by construction, on every correct image.
"""

from __future__ import annotations

import numpy as np

from earsight.trainer.data.dataset import ADDataset
from earsight.trainer.speech.synth import Voice, speak_words

I2T2A_VOICE = Voice(name="en-gb")  # the TTS of the baseline; ground truth is en-us


def i2t2a_predictor(data: ADDataset, class_probs, voice: Voice = I2T2A_VOICE):
    """A Predictor (images → waves, probs) speaking the argmax class word in ``voice``.

    ``class_probs(images) -> (N, K)`` is the image classifier; clips are padded or cut to the
    dataset's L_s so every metric sees the same length as for MT-Net.
    """
    spoken = speak_words(data.classes, (voice,))
    length = data.audio_length
    clips = np.zeros((len(data.classes), length), np.float32)  # (K, L_s)
    n = min(length, spoken.clips.shape[-1])
    clips[:, :n] = spoken.clips[:, 0, :n]

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = class_probs(images)
        return clips[probs.argmax(1)], probs

    return predict
