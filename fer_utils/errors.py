"""The package's expected errors, one hierarchy under :class:`FerError`.

An expected error is bad input, never a bug: its message names the file, line, frame or argument
and what was expected. ``python -m fer_utils`` prints any :class:`FerError` (and any ``OSError``:
a missing file, a full disk) as one line ``error: ...`` and exits with status 2. Library users can
catch :class:`FerError` for all of them, or one subclass. This module imports nothing, so the CLI
loads it before any command (``--help`` stays free of torch).
"""
from __future__ import annotations


class FerError(ValueError):
    """Base of every expected error (a ``ValueError``, as bad values are)."""


class UsageError(FerError):
    """Command or function arguments that cannot work: a bad value, options that exclude each other,
    an output that would replace an input or an existing file."""


class UnknownNameError(UsageError, KeyError):
    """A dataset, model, augmentation... name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # plain message, not KeyError's quoted repr
        return str(self.args[0]) if self.args else ""


class UnsupportedPrecisionError(UsageError):
    """An autocast dtype that the device cannot run."""


class DatasetError(FerError):
    """Dataset content that does not hold what its format promises (a bad row, pixel count, label,
    image or folder layout)."""


class MissingDatasetError(FerError, FileNotFoundError):
    """A dataset is not where it was expected; the message says where to get it."""

    def __init__(self, name: str, expected: object, how_to_get: str) -> None:
        super().__init__(
            f"{name} not found: expected {expected}. {how_to_get} "
            "Point FER_DATA_DIR (or root=...) at the folder holding the datasets; see data/README.md."
        )


class ImageReadError(DatasetError):
    """A file that is not a readable image (truncated, wrong format, empty...)."""


class VideoReadError(FerError):
    """A video that cannot be opened or has no readable frame."""


class CheckpointError(FerError):
    """A checkpoint that is unreadable, or does not fit the classes, input, precision or data the
    caller expects (including a ``last.pt`` that a run cannot resume from)."""


class RunFolderError(FerError):
    """A run folder that cannot be used as asked: another process trains in it, it is not empty,
    or there is nothing in it to resume."""


class PredictionsFileError(FerError):
    """A saved-predictions file (``--save-probs``) that is malformed or does not match the others,
    for an ensemble or a distillation."""


class TrainingDivergedError(FerError):
    """The loss or the weights became NaN/inf: the run stops, ``last.pt`` keeps the last good epoch."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), for one-line errors that
    wrap a library's multi-line one (a state_dict mismatch, a shape error)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
