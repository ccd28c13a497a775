"""Writing files atomically: readers (and resumed runs) never see half a file, whatever stops the
write (an error, Ctrl-C, SIGTERM)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a uniquely named temporary sibling of ``path`` (parent folders created) and rename it
    over ``path`` when the block succeeds: readers and concurrent writers never see a partial
    file. On error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, payload: Any, indent: int = 1) -> Path:
    """Write ``payload`` as JSON atomically; returns ``Path(path)``."""
    with atomic_write(path, "w") as handle:
        json.dump(payload, handle, indent=indent)
    return Path(path)


@contextmanager
def opencv_name(path: str | os.PathLike) -> Iterator[str]:
    """A name of ``path`` that OpenCV can take: ``str(path)``, or, when that is not valid UTF-8 (a file name
    of arbitrary bytes; OpenCV's Python binding crashes on it), a symbolic link with an ASCII name in a
    temporary folder, removed when the block ends. Open the capture or writer inside the block: OpenCV
    opens the file at once and keeps reading or writing it after the link is gone."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        folder = Path(tempfile.mkdtemp(prefix="fer-opencv-"))
        link = folder / f"file{Path(path).suffix.encode('ascii', 'replace').decode()}"
        try:
            link.symlink_to(Path(path).absolute())
            yield str(link)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    yield name


def repo_root(start: Path | None = None) -> Path:
    """The folder holding ``pyproject.toml`` at or above ``start`` (default: the working dir)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "fer_utils").is_dir():
            return folder
    raise FileNotFoundError(f"no fer_utils repository at or above {here}")


def repository_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository that holds it (tables and records carry no machine paths), else as given."""
    try:
        return str(Path(path).resolve().relative_to(repo_root(Path(path))))
    except FileNotFoundError:
        return str(path)
