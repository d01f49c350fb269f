"""Log lines as plain sentences for the trainer's commands: a screen reader reads "INFO
earsight.trainer.data.downloads: cached …" word by word. Info is the message alone; a warning
or error starts with "warning: " / "error: ", as the commands' own lines do.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


class PlainFormatter(logging.Formatter):
    """The message alone below WARNING; "warning: message" (the level's name) from it up."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno < logging.WARNING:
            return message
        return f"{record.levelname.lower()}: {message}"


def plain_logging(level: int) -> None:
    """Log to stderr at ``level`` in plain lines (PlainFormatter), replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


@contextlib.contextmanager
def quieter(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """While inside, the named loggers (and their children) log at ``level`` and above only;
    their own levels are put back after. For lines that say nothing where a command borrows a
    part (the runtime's "backend … on cpu" while teach checks photos)."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before, strict=True):
            logger.setLevel(old)
