"""Errors raised by the data layer, and the ``errors="raise"|"skip"`` policy."""
from __future__ import annotations

from collections import Counter
from pathlib import Path


class DatasetError(ValueError):
    """Bad input (dataset content, checkpoint, run folder, argument): the message names the
    file, line/frame or argument and what was expected. The CLI prints it as one line, exit 2."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), for one-line errors that
    wrap a library's multi-line one (a state_dict mismatch, a shape error)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UnknownNameError(DatasetError, KeyError):
    """A dataset, model... name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # plain message, not KeyError's quoted repr
        return str(self.args[0]) if self.args else ""


class MissingDatasetError(FileNotFoundError):
    """A dataset is not where it was expected; the message says where to get it."""

    def __init__(self, name: str, expected: Path | str, how_to_get: str) -> None:
        super().__init__(
            f"{name} not found: expected {expected}. {how_to_get} "
            "Point FER_DATA_DIR (or root=...) at the folder holding the datasets; see data/README.md."
        )


class SkipLog:
    """Applies the ``errors`` policy: raise at once, or count skipped items by reason."""

    def __init__(self, errors: str) -> None:
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        self.errors = errors
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def bad(self, reason: str, message: str) -> None:
        """Report one bad item: raise ``DatasetError(message)`` or count it under ``reason``."""
        if self.errors == "raise":
            raise DatasetError(message)
        self.counts[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(message)

    def report(self, name: str) -> dict[str, int]:
        """Warn once with the skip counts and return them as a plain dict."""
        if self.counts:
            import warnings

            total = sum(self.counts.values())
            warnings.warn(
                f"{name}: skipped {total} bad item(s) {dict(self.counts)}; first: {self.examples[0]}",
                stacklevel=3,
            )
        return dict(self.counts)
