"""Writing files atomically: readers (and resumed runs) never see half a file, and an interrupt
(Ctrl-C, the report's time-budget alarm) arriving mid-write is delivered once the file is complete."""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
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
        with interrupts_deferred(), open(tmp, mode) as handle:
            yield handle
            handle.close()
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: Signals held back while a file is written: Ctrl-C, the alarm that ends a ``--budget-minutes`` run, SIGTERM.
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGALRM, signal.SIGTERM)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back :data:`DEFERRED_SIGNALS` until the block ends, then hand them to their handlers.

    Why: a ``KeyboardInterrupt`` raised inside ``torch.save`` surfaces as a ``RuntimeError`` from its
    zip writer ("unexpected pos ..."), which looks like a failure instead of a stop. Signals are
    only delivered to the main thread, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    handlers = {number: signal.getsignal(number) for number in DEFERRED_SIGNALS}
    handlers = {number: handler for number, handler in handlers.items() if handler is not None}  # not set by Python
    for number in handlers:
        signal.signal(number, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for number, frame in received:
            if callable(handlers[number]):
                handlers[number](number, frame)
            elif handlers[number] == signal.SIG_DFL:
                signal.raise_signal(number)


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
