"""The parser's shared parts: the argument types, the one-line usage error, the help layout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .output import EXIT_USAGE

RUNTIMES = ("runc", "runsc")


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum} (give a whole number of at least {minimum})")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed (give a number of seconds above 0)")
    return value


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed (give an amount in USD above 0, such as 0.50)")
    return value


def _fraction(text: str) -> float:
    """0..1, or a percentage written with %: 0.8 and 80% are the same; a bare 80 is refused."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction (give 0.8, or 80%)") from None
    if not 0 <= value <= 1:
        hint = (
            f"give {value / 100:g}, or {raw}% for a percentage"
            if 1 < value <= 100 and not raw.endswith("%")
            else "give a fraction such as 0.8, or a percentage such as 80%"
        )
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to 1 ({hint})")
    return value


def _price(text: str) -> tuple[str, tuple[float, float]]:
    model, _, amounts = text.partition("=")
    try:
        low, high = (float(part) for part in amounts.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODEL=IN,OUT (USD per million input and output tokens, e.g. my-model=0.5,2)"
        ) from None
    if not model or low < 0 or high < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=IN,OUT with prices of 0 or more")
    return model, (low, high)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line, like every other error: `error: <what> (see ... --help)`, exit 2."""

    def error(self, message: str) -> Any:
        sys.stderr.write(f"error: {self.prog.removeprefix('rlm-sandbox ')}: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (
            "default" in help_text
            or not action.option_strings
            or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
            or action.required
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones (`image build`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _subparsers(sub)


def _add_runtime(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--runtime", choices=RUNTIMES, default="runc", help="container runtime: runc, or runsc for gVisor"
    )
