"""Argument types and options shared by the commands (argparse only, no package imports)."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, test: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse ``type`` converting to ``kind`` and refusing non-finite values or values failing ``test``."""
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    convert.__name__ = expected
    return convert


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
non_negative_float = _number(float, lambda v: v >= 0, "a finite number >= 0")


def add_errors_argument(parser: argparse.ArgumentParser) -> None:
    """``--errors raise|skip`` for commands that read datasets (see ``fer_utils.data.errors.SkipLog``)."""
    parser.add_argument("--errors", choices=("raise", "skip"), default="raise",
                        help="bad data items: stop with an error naming them (default), or skip them, "
                             "counted and reported")
