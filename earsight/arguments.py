"""Argument types the commands share: each turns a bad value into argparse's one-line error
(``error: argument --iters: expected a positive integer, got '0'``)."""

from __future__ import annotations

import argparse


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
