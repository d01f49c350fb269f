"""Text any terminal can show: a stream whose encoding cannot write EarSight's punctuation
(— … ’ × ≤ →) gets plain ASCII stand-ins instead of a UnicodeEncodeError traceback.

    plain_text_streams()          # first thing in every command (earsight/commands.py, cli.main)

Python coerces the C locale to UTF-8 (PEP 538), but an ISO-8859-1 locale, a serial console or a
screen reader's pipe run with ``PYTHONIOENCODING=ascii`` still hand Python an encoding without
"—": `earsight doctor`'s first such line was a traceback, and an error line printed
"\\u2014", which a screen reader reads out letter by letter. Letters the encoding lacks become
"?"; punctuation becomes what it stands for ("—" → "-", "…" → "...", "≤" → "<=").
"""

from __future__ import annotations

import codecs
import sys

ERRORS = "earsight-plain"  # the codecs error handler's name (str.encode(errors=ERRORS))
STAND_INS = {
    "—": "-", "–": "-", "−": "-", "…": "...", "’": "'", "‘": "'", "“": '"', "”": '"',
    "×": "x", "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~", "→": "->", "←": "<-", "±": "+/-",
    "·": "*", "°": " degrees", "²": "^2", "µ": "u", "μ": "u", "φ": "phi", "Δ": "delta",
    "½": "1/2", "¼": "1/4", "¾": "3/4", "é": "e", "ë": "e", "ö": "o", "ü": "u",
}  # fmt: skip
_PROBE = "—…≤"  # punctuation EarSight prints: a stream that cannot write these is reconfigured


def _stand_in(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start : err.end]
    return "".join(STAND_INS.get(ch, "?") for ch in text), err.end


codecs.register_error(ERRORS, _stand_in)


def plain_text_streams() -> None:
    """Reconfigure stdout and stderr to write stand-ins where their encoding lacks a character;
    a UTF-8 stream (the usual case) is left as it is."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # absent on a replaced stream
        if reconfigure is None:
            continue
        try:
            _PROBE.encode(stream.encoding or "ascii")
        except UnicodeEncodeError:
            reconfigure(errors=ERRORS)
        except LookupError:  # an encoding Python does not know: ASCII it is
            reconfigure(encoding="ascii", errors=ERRORS)
