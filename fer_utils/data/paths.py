"""Where datasets live (an explicit root, else ``$FER_DATA_DIR``), the array cache, and safe
file writing (atomic replace with unique temp names; checking an output is writable first)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fer_utils.errors import DatasetError

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


def check_writable(path: str | os.PathLike) -> Path:
    """Make ``path``'s folder and check a file can be written there, before any long work:
    ``DatasetError`` naming ``path`` otherwise. Returns ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write the output here ({exc.strerror or exc}); "
                           "expected a writable folder") from None
    return path


def check_output_file(path: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = (),
                      overwrite: bool = False) -> Path:
    """:func:`check_writable`, after refusing (``DatasetError`` naming ``path``) a folder, one of the
    command's ``inputs`` (even with ``overwrite``) and an existing file unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder; expected the name of a file to write")
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
            raise DatasetError(f"{path}: is one of this command's inputs; choose another output file")
    if path.exists() and not overwrite:
        raise DatasetError(f"{path}: exists; pass --overwrite to replace it, or choose another output file")
    return check_writable(path)
