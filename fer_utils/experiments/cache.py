"""The one result cache: a config's content hash names where its result is stored.

A result of ``config`` under ``name`` lives at ``<root>/<name>-<hash8><suffix>`` (a folder for
:func:`~fer_utils.experiments.runs.run_experiment`, a ``.json`` file for
:func:`~fer_utils.experiments.crossval.cached_crossval`); it is computed only when no stored
one is found there. A stored result that cannot be read (a truncated file, another format) is
named in one warning and computed again: it is never returned as a result.

While a :data:`PLANNER` is set (``python -m fer_utils.report --plan``),
every request is reported to it with the :class:`Work` it costs, and the planner decides whether
it is computed now or answered by a stand-in (a result of the right type holding no numbers).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from fer_utils.errors import first_line
from fer_utils.files import repository_relative

if TYPE_CHECKING:
    from torch import nn

T = TypeVar("T")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of ``config`` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Work:
    """The training behind a cached result: ``model`` (built by ``build``, for counting FLOPs) trained
    for ``epochs`` epochs over ``items`` inputs of shape ``sample_shape`` (uint8 ``(H, W)`` or
    ``(T, H, W)``) per epoch, summed over ``folds`` (cross-validation)."""

    kind: str
    model: str
    build: Callable[[], nn.Module] = field(repr=False)
    sample_shape: tuple[int, ...]
    epochs: int
    items: int
    folds: int | None = None


class Planned(NamedTuple, Generic[T]):
    """What a cached computation costs, and the stand-in returned when a planner skips it."""

    work: Work
    standin: T


class Planner(Protocol):
    """Told of every cached request while set; returns True to compute a missing result now."""

    def __call__(self, name: str, path: Path, hit: bool, work: Work) -> bool: ...


#: The active planner (None: compute every missing result, the normal case).
PLANNER: ContextVar[Planner | None] = ContextVar("fer_utils_planner", default=None)


class Cached(NamedTuple, Generic[T]):
    """A result, where it is stored, and whether it was found there (``hit``) rather than computed."""

    value: T
    path: Path
    hit: bool


def cached(
    root: str | os.PathLike,
    name: str,
    config: dict[str, Any],
    load: Callable[[Path, str], T | None],
    compute: Callable[[Path, str], T],
    plan: Callable[[], Planned[T]],
    suffix: str = "",
) -> Cached[T]:
    """The result of ``config`` at ``path = <root>/<name>-<hash8><suffix>``: ``load(path, digest)``
    (``digest``: the config's full hash; None: nothing usable stored), else ``compute(path, digest)``,
    which stores it there. ``plan`` describes the work for an active :data:`PLANNER`; a missing
    result the planner declines is ``plan()``'s stand-in (``hit`` False, nothing stored)."""
    digest = config_hash(config)
    path = Path(root) / f"{name}-{digest[:8]}{suffix}"
    try:
        stored = load(path, digest)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        warnings.warn(f"{repository_relative(path)}: the stored result cannot be read ({first_line(exc)}); "
                      "computing it again", stacklevel=2)
        stored = None
    planner = PLANNER.get()
    if planner is not None:
        planned = plan()
        if not planner(name, path, stored is not None, planned.work) and stored is None:
            return Cached(planned.standin, path, False)
    return Cached(stored, path, True) if stored is not None else Cached(compute(path, digest), path, False)
