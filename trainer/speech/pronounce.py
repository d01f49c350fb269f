"""Pronunciations for words outside pocketsphinx's dictionary, from espeak-ng's phonemes.

A user teaching EarSight their own words ("pillbox", "Nana's mug") uses words CMUdict lacks,
and pocketsphinx can only listen for words it can spell in phones. espeak-ng, which already
speaks every word of the project, knows how to say any of them:

    $ espeak-ng -q --ipa --sep=_ -v en-us -- pillbox
    p_ˈɪ_l_b_ɑː_k_s

``arpabet("pillbox")`` maps those phonemes to the ARPAbet phones of pocketsphinx's en-us model
("P IH L B AA K S"), through ``IPA_TO_ARPABET``. IPA rather than espeak's own ``-x`` mnemonics:
IPA is a published standard, the mnemonics are espeak-ng's internal names. ``--sep=_`` makes
espeak-ng print one token a phoneme, so diphthongs ("aɪ") and r-coloured vowels ("ɑːɹ") need
no guessing. Stress marks are dropped: the en-us acoustic model has no stressed phones.
"""

from __future__ import annotations

import functools
import logging
import subprocess

from earsight.trainer.errors import SpeechError
from earsight.trainer.speech.synth import INSTALL_HINT, SYNTH_TIMEOUT_S, _espeak_path

log = logging.getLogger(__name__)

VOICE = "en-us"  # pocketsphinx's model is American English; other accents map worse
PHONEME_SEP = "_"  # --sep: espeak-ng prints this between the phonemes of a word
STRESS_MARKS = "ˈˌ"  # primary and secondary stress, printed before a stressed vowel
_NO_STRESS = str.maketrans("", "", STRESS_MARKS)

# espeak-ng 1.51's en-us phonemes (every one it printed for 4,000 CMUdict words) → CMU phones.
# Against CMUdict's own entries for those words (a random 4,000, many of them surnames): 57.6 %
# identical, 11.2 % phone error rate; the differences are mostly unstressed vowels (IH for
# CMUdict's AH) where the two dictionaries disagree, not mapping errors.
IPA_TO_ARPABET = {
    # vowels and diphthongs
    "ɪ": "IH",
    "ᵻ": "IH",  # espeak's reduced "i" of "-ed", "-es" endings
    "i": "IY",  # unstressed final "-y" ("happy")
    "iː": "IY",
    "ɛ": "EH",
    "æ": "AE",
    "ʌ": "AH",
    "ə": "AH",
    "ɐ": "AH",  # the reduced "a" of "about"
    "ɑː": "AA",
    "ɔ": "AO",
    "ɔː": "AO",
    "ʊ": "UH",
    "uː": "UW",
    "u": "UW",
    "ɜː": "ER",
    "ɚ": "ER",
    "eɪ": "EY",
    "aɪ": "AY",
    "ɔɪ": "OY",
    "aʊ": "AW",
    "oʊ": "OW",
    "oː": "OW",
    # vowel + r and vowel + schwa, one token in espeak-ng, two phones in CMUdict
    "ɪɹ": "IH R",
    "ɛɹ": "EH R",
    "ʊɹ": "UH R",
    "ɑːɹ": "AA R",
    "ɔːɹ": "AO R",
    "oːɹ": "AO R",
    "iə": "IY AH",
    "aɪə": "AY AH",
    "aɪɚ": "AY ER",
    # syllabic consonants
    "əl": "AH L",
    "n̩": "AH N",
    # consonants
    "p": "P",
    "b": "B",
    "t": "T",
    "d": "D",
    "k": "K",
    "ɡ": "G",
    "g": "G",
    "f": "F",
    "v": "V",
    "θ": "TH",
    "ð": "DH",
    "s": "S",
    "z": "Z",
    "ʃ": "SH",
    "ʒ": "ZH",
    "h": "HH",
    "tʃ": "CH",
    "dʒ": "JH",
    "m": "M",
    "n": "N",
    "ŋ": "NG",
    "l": "L",
    "ɹ": "R",
    "r": "R",
    "w": "W",
    "j": "Y",
    "ɾ": "T",  # the American flap of "water": CMUdict writes T (and D for "ladder")
    "ʔ": "T",  # the glottal stop of "button": CMUdict writes T
    "x": "K",  # "loch", "Bach": the en-us model has no velar fricative
}


def espeak_phonemes(word: str) -> list[str]:
    """espeak-ng's IPA phonemes of ``word`` (one or more words), stress marks removed."""
    cmd = [_espeak_path(), "-q", "--ipa", f"--sep={PHONEME_SEP}", "-v", VOICE, "--", word]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        raise SpeechError(f"espeak-ng failed on {word!r} ({err})", INSTALL_HINT) from err
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[:200] or f"exit status {proc.returncode}"
        raise SpeechError(f"espeak-ng could not transcribe {word!r}: {detail}", INSTALL_HINT)
    tokens = proc.stdout.replace(" ", PHONEME_SEP).split(PHONEME_SEP)
    phonemes = [t.strip().translate(_NO_STRESS) for t in tokens]
    return [p for p in phonemes if p]


@functools.lru_cache(maxsize=1024)
def arpabet(word: str) -> str:
    """``"pillbox"`` → ``"P IH L B AA K S"``: pocketsphinx phones for ``decoder.add_word``.

    SpeechError when espeak-ng is missing, says nothing, or prints a phoneme the table lacks.
    """
    phonemes = espeak_phonemes(word)
    if not phonemes:
        raise SpeechError(f"espeak-ng has no phonemes for {word!r}", "use a word with letters")
    unknown = [p for p in phonemes if p not in IPA_TO_ARPABET]
    if unknown:
        raise SpeechError(
            f"espeak-ng's phoneme {unknown[0]!r} of {word!r} has no ARPAbet equivalent here",
            "add it to trainer.speech.pronounce.IPA_TO_ARPABET",
        )
    phones = " ".join(IPA_TO_ARPABET[p] for p in phonemes).split()
    # espeak-ng writes "altering" ɚ_ɹ_ɪ_ŋ, CMUdict ER IH NG: an r after ER is not a second phone
    # (dropping it: 57.6 % of the 4,000 words exact instead of 55.9 %)
    phones = " ".join(
        p for i, p in enumerate(phones) if not (p == "R" and phones[i - 1 : i] == ["ER"])
    )
    log.debug("pronounce: %s → %s (%s)", word, phones, " ".join(phonemes))
    return phones
