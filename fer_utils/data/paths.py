"""Where datasets live: an explicit root, else ``$FER_DATA_DIR``; and the array cache."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATA_DIR_ENV = "FER_DATA_DIR"
CACHE_DIR_ENV = "FER_CACHE_DIR"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$FER_DATA_DIR``; error naming both when neither is set."""
    if root is None:
        env = os.environ.get(DATA_DIR_ENV)
        if not env:
            raise FileNotFoundError(
                f"no dataset folder given: pass root=... or set {DATA_DIR_ENV} to the folder "
                "holding fer2013/, ckplus48/, ... (see data/README.md)"
            )
        root = env
    return Path(root).expanduser()


def cache_path(source: Path, tag: str) -> Path:
    """A cache file for arrays parsed from ``source``, keyed by its path, size and mtime."""
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{tag}".encode()).hexdigest()[:16]
    base = Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "fer_utils"))
    return base / f"{source.name}.{tag}.{key}.npz"
