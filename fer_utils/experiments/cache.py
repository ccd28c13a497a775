"""The one result cache: a config's content hash names where its result is stored.

A result of ``config`` under ``name`` lives at ``<root>/<name>-<hash8><suffix>`` (a folder for
:func:`~fer_utils.experiments.runs.run_experiment`, a ``.json`` file for
:func:`~fer_utils.experiments.crossval.cached_crossval`); it is computed only when no stored
one is found there.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of ``config`` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


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
    suffix: str = "",
) -> Cached[T]:
    """The result of ``config`` at ``path = <root>/<name>-<hash8><suffix>``: ``load(path, digest)``
    (``digest``: the config's full hash; None: nothing usable stored), else ``compute(path, digest)``,
    which stores it there."""
    digest = config_hash(config)
    path = Path(root) / f"{name}-{digest[:8]}{suffix}"
    stored = load(path, digest)
    return Cached(stored, path, True) if stored is not None else Cached(compute(path, digest), path, False)
