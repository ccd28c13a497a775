"""Shipping a run's best checkpoint as a file of its own, never over a different one by accident."""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

from fer_utils.files import atomic_write
from fer_utils.models.checkpoints import load_checkpoint


def ship_model(run_dir: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy ``run_dir/best.pt`` to ``dest`` (atomically) after checking it loads without pickle.

    An existing ``dest`` with other content raises ``FileExistsError`` unless ``overwrite``; an
    identical one is left as is. Returns ``Path(dest)``.
    """
    source, dest = Path(run_dir) / "best.pt", Path(dest)
    load_checkpoint(source)  # refuses missing, truncated, pickled or non-finite checkpoints
    if dest.is_file():
        if filecmp.cmp(source, dest, shallow=False):
            return dest
        if not overwrite:
            raise FileExistsError(f"{dest} exists and differs from {source}; pass overwrite=True to replace it")
    with source.open("rb") as src, atomic_write(dest) as out:
        shutil.copyfileobj(src, out)
    return dest
