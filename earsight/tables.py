"""Tables as text: aligned columns for the eye, or one line per row for a screen reader.

    print("\n".join(aligned(header, rows)))    # backend  file  p50 ms …   (columns padded)
    print("\n".join(as_lines(header, rows)))   # backend onnx-cpu; file a.onnx; p50 ms 2.10; …

A screen reader reads an aligned table as a stream of numbers with no column names; in
``as_lines`` every value follows its column's name (``--as-lines`` of `earsight bench` and
`trainer/evaluate.py`).
"""

from __future__ import annotations

from collections.abc import Sequence


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell: the first ``left`` left-aligned (names), the rest
    right-aligned (numbers)."""
    table = [list(header), *map(list, rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in table
    ]


def as_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """One line per row, each value after its column's name: "backend torch; p50 ms 2.10"."""
    return ["; ".join(f"{h} {c}" for h, c in zip(header, row, strict=True)) for row in rows]
