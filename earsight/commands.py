"""The console scripts: ``earsight`` and the trainer's (``earsight-train``, ``earsight-eval``,
``earsight-slim``).

Each imports its command only when run, so on a runtime-only install (no torch: the ``train``
extra is missing) it says in one line what to install instead of a traceback, and a Ctrl-C
while the command's modules load (the first second) is "interrupted", not a traceback. With
the extra, ``earsight-train ARGS`` is ``python trainer/fit.py ARGS``.
"""

from __future__ import annotations

import importlib
import sys

from earsight.console import plain_text_streams
from earsight.errors import trainer_not_installed

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _run(module: str, prog: str) -> int:
    plain_text_streams()  # before any line: an ASCII terminal gets "-", not a traceback
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as err:
        missing = trainer_not_installed(err, prog)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return EXIT_USAGE
    return int(main() or 0)


def earsight() -> None:
    sys.exit(_run("earsight.app.cli", "earsight"))


def train() -> None:
    sys.exit(_run("earsight.trainer.fit", "earsight-train"))


def evaluate() -> None:
    sys.exit(_run("earsight.trainer.evaluate", "earsight-eval"))


def slim() -> None:
    sys.exit(_run("earsight.trainer.checkpoint", "earsight-slim"))
