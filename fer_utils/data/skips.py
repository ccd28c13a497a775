"""The ``errors="raise"|"skip"`` policy of the dataset loaders."""
from __future__ import annotations

from collections import Counter

from fer_utils.errors import DatasetError


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
