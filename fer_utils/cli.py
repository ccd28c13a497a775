"""``python -m fer_utils COMMAND``: one entry point, each command in its own module.

A command module exposes ``configure_parser(parser)`` and ``run(args) -> int``; it is
imported only when its command is used, so ``predict`` never loads training code.
Expected errors (bad data, checkpoint, run folder or argument: :class:`fer_utils.errors.FerError`; a
missing file, a full disk, a read-only folder: ``OSError``) print one line ``error: ...`` and exit with status 2;
Ctrl-C and SIGTERM print one line (with how to resume, where the command says) and exit with 130
and 143; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from fer_utils.errors import FerError  # imports nothing: --help stays free of torch


#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("fer_utils.bench", "throughput benchmarks (data iterator, predict)"),
    "train": ("fer_utils.experiments.train_command", "train a model, writing a run folder"),
    "evaluate": ("fer_utils.evaluate.command", "evaluate a checkpoint on a dataset split"),
    "ship": ("fer_utils.experiments.ship", "ship the best of some runs' best.pt (by validation), optionally fp16"),
    "crossval": ("fer_utils.experiments.crossval_command", "subject-independent k-fold on sequence data"),
    "prepare-faces": ("fer_utils.faces.command", "detect, align and crop faces into an array file"),
    "predict": ("fer_utils.predict.command", "emotions of the faces in photos and videos"),
    "demo": ("fer_utils.predict.demo", "predict on a sample photo (from matplotlib) and a clip made from it"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command (modules loaded lazily on use)."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils", description=__doc__.splitlines()[0],
                                     epilog="--debug (anywhere): show the traceback of an expected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status (2: bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # file names of any bytes are printed, escaped, never a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] not in COMMANDS:
        build_parser().print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"python -m fer_utils {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        with terminate_as_interrupt():
            return int(module.run(args) or 0)
    except Exception as exc:  # noqa: BLE001 - every branch below either answers or re-raises
        if debug:
            traceback.print_exc()
        stop = interrupt_behind(exc)
        if stop is not None:
            return _interrupted(name, module, stop)
        if not isinstance(exc, (FerError, OSError)):  # OSError: disk full, read-only folder...
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        return _interrupted(name, module, exc)


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ``exc`` was raised while handling, if any: library code cut by one
    turns it into its own error (``torch.save``'s zip writer raises ``RuntimeError: unexpected pos``),
    which is a stop, not a failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _interrupted(name: str, module: object, stop: KeyboardInterrupt) -> int:
    """One line for Ctrl-C (exit 130) or SIGTERM (143), with how to resume where the command says."""
    terminated = isinstance(stop, Terminated)
    print(f"{name}: {'terminated (SIGTERM)' if terminated else 'interrupted (Ctrl-C)'}. "
          + getattr(module, "INTERRUPTED_HINT", ""), file=sys.stderr)
    return 143 if terminated else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that a run stops the same way (``last.pt`` kept)."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the block (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
