"""Quieting the native loggers of the MediaPipe / LiteRT models (BlazeFace, Face Mesh).

Their C++ loggers print INFO and warning lines ("Created TensorFlow Lite XNNPACK delegate", glog's
``W0000 ... inference_feedback_manager``) straight to file descriptor 2; no environment variable or
Python call sets their level, so they would fill every notebook and command that detects faces.
"""
from __future__ import annotations

import os
import sys
import threading
import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

_STDERR_LOCK = threading.Lock()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at ``/dev/null`` inside the block. The lines are printed while the calls
    inside run (the graphs answer synchronously), and Python exceptions still propagate."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            _flush_c_streams()  # what C stdio still buffers goes to /dev/null, not to the restored fd 2
            os.dup2(saved, 2)
            os.close(devnull)
            os.close(saved)


def _flush_c_streams() -> None:
    """``fflush(NULL)``: C's ``stderr`` is buffered when fd 2 is a file (a notebook kernel's, pytest's)."""
    ctypes.CDLL(None).fflush(None)
