"""The plain lines ``earsight`` prints: no colour, no progress bars, one fact per line.

They go to stdout, where a screen reader reads them and logs keep them, so they are short, in a
fixed order, and free of escape codes whether or not stdout is a terminal.
"""

from __future__ import annotations

from pathlib import Path

from earsight.app.modes.describe import Description


def _probability(p: float) -> str:
    return f"{p:.2f}"


def describe_line(d: Description) -> str:
    """``five-test00008.png: five (0.99)`` or ``x.png: not sure (five 0.41, six 0.33)``."""
    if d.confident:
        return f"{d.image.name}: {d.word} ({_probability(d.top[0][1])})"
    candidates = ", ".join(f"{word} {_probability(p)}" for word, p in d.top)
    return f"{d.image.name}: {d.word} ({candidates})"


def wrote_line(n_files: int, out_dir: Path) -> str:
    """``wrote 20 WAV files to /tmp/wavs``."""
    return f"wrote {n_files} WAV file{'s' * (n_files != 1)} to {out_dir}"
