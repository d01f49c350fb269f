"""Argument types the commands share: each turns a bad value into argparse's one-line error
(``error: argument --iters: expected a positive integer, got '0'``); ``OneLineParser``, the
parser that prints such errors in one line."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import NoReturn

EXIT_USAGE = 2  # a bad argument, as argparse exits


def _number(text: str, parse, in_range, expected: str, out_of_range: str | None = None):
    """``parse(text)`` if it parses and ``in_range``; argparse's one-line error otherwise."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not in_range(value):
        raise argparse.ArgumentTypeError(f"expected {out_of_range or expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer ≥ 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0.0 < v < float("inf"), "a positive number")


def seconds(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v <= 60.0, "seconds (≥ 0)", "seconds in 0..60")


def int_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(part) for part in text.split(",") if part.strip())


def str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help shows each option's default, "(default: 3e-4)", where there is one to show: not
    for flags, unset options (None: the preset's or the data's) or defaults the help names."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default  # 0 is shown, so "in (None, False)" would not do (0 == False)
        unset = default is None or default is False or default is argparse.SUPPRESS
        if (
            "default" in text
            or not action.option_strings
            or unset
            or (isinstance(default, (tuple, list)) and not default)
        ):
            return action.help
        return f"{text} (default: %(default)s)".strip()


def _nearest_choice(message: str) -> str:
    """ "; did you mean 'live'?" for argparse's "invalid choice: 'lve' (choose from 'export',
    …)" (a mistyped command or choice); "" for other messages. (Python 3.14's argparse has
    suggest_on_error; the 3.10/3.11 this runs on have none.)"""
    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if match is None:
        return ""
    choices = re.findall(r"'([^']*)'", match[2]) or [c.strip() for c in match[2].split(",")]
    near = difflib.get_close_matches(match[1], choices, n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse that answers a usage error in one line (``error: … (see `PROG --help`)``, exit
    2) instead of the usage block, blaming a mistyped option on its subcommand with the nearest
    option it has. Used by ``earsight`` and the trainer's commands."""

    def error(self, message: str) -> NoReturn:  # argparse prints usage + message; we print one line
        print(
            f"error: {message}{_nearest_choice(message)} (see `{self.prog} --help`)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse, but an unknown option is blamed on the command it was given to, with
        the nearest option that command has ("--treshold": did you mean --threshold?)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if not extras:
            return parsed
        command = self._command_parser(getattr(parsed, "command", None))
        options = [o for a in command._actions for o in a.option_strings]
        typed = extras[0].split("=")[0]
        near = difflib.get_close_matches(typed, options, n=1, cutoff=0.8)
        hint = f"; did you mean {near[0]}?" if near else ""
        if typed in options:  # after "--" every argument is a word, options too
            hint = f"; {typed} came after `--`, which makes it a word: put options before `--`"
        command.error(f"unrecognized arguments: {' '.join(extras)}{hint}")

    def _command_parser(self, name: str | None) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return action.choices[name]
        return self
