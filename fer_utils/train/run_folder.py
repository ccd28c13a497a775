"""The files of a run folder: its lock, ``config.json``, ``history.*``, ``best.pt`` and ``last.pt``,
and the checks that a ``last.pt`` can be resumed.

``last.pt`` holds everything an exact resume needs: weights, optimizer, schedule, gradient scaler,
EMA, every RNG state, the loop state and the data's fingerprint.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout
from torch import nn

from fer_utils.devices import DTYPE_LABELS
from fer_utils.errors import CheckpointError, RunFolderError
from fer_utils.files import atomic_write, write_json
from fer_utils.models.checkpoints import save_checkpoint
from fer_utils.train.config import TrainConfig

HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
#: Locked (an OS file lock) by the process training into a run folder; the file itself stays.
LOCK_NAME = ".lock"
#: ``checkpoint_every=None``: ``last.pt`` every epoch for weights under this many bytes, else every
#: ``LARGE_MODEL_EVERY`` epochs (vgg_fer's ``last.pt`` is 323 MB).
LARGE_MODEL_BYTES = 50_000_000
LARGE_MODEL_EVERY = 5
#: Whatever the interval, ``last.pt`` is also written after an epoch that ends this long after the last
#: write, so a run killed without warning (a session's end: SIGKILL) loses at most about this much work.
#: Writing 170 MB takes about a second: nothing next to 10 minutes of training (a CPU epoch of ResNet-34).
MAX_UNSAVED_SECONDS = 600.0


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while training into ``run_dir``: ``RunFolderError`` if another process
    holds it. The OS releases the lock of a process that dies, so a lock file left behind never blocks;
    re-entrant in one process (``filelock``'s singleton locks)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_NAME, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderError(f"{run_dir}: another training process is writing this run folder (it holds "
                             f"{run_dir / LOCK_NAME}); wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


def json_value(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, for JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def write_config(run_dir: Path, meta: dict[str, Any], train_size: int, val_size: int,
                 run_info: dict[str, Any] | None) -> None:
    """``config.json``: the model, classes, preprocessing, precision, training config and data sizes."""
    info = {**{k: meta[k] for k in ("model_name", "model_kwargs", "classes", "preprocessing", "precision")},
            "train": meta["config"], "train_size": train_size, "val_size": val_size, **(run_info or {})}
    write_json(run_dir / "config.json", info)


def write_history(history: list[dict[str, Any]], run_dir: Path) -> None:
    """``history.csv`` and ``history.json`` (one record per epoch)."""
    with atomic_write(run_dir / "history.csv", "w") as handle:
        pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(handle, index=False)
    write_json(run_dir / "history.json", [{k: json_value(v) for k, v in row.items()} for row in history])


def epochs_saved(run_dir: Path) -> int:
    """Epochs a resume of ``run_dir`` starts after: ``last.pt``'s epoch (0 without one). Memory-maps the
    file, so the weights are not read."""
    last = run_dir / "last.pt"
    return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"]) if last.is_file() else 0


def checkpoint_interval(cfg: TrainConfig, model: nn.Module) -> int:
    """Epochs between ``last.pt`` writes: ``cfg.checkpoint_every``, or when ``None`` every epoch for
    weights under :data:`LARGE_MODEL_BYTES` and every :data:`LARGE_MODEL_EVERY` epochs above."""
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 1 if size < LARGE_MODEL_BYTES else LARGE_MODEL_EVERY


def cpu_copy(value: Any) -> Any:
    """A CPU copy of the tensors nested in dicts, lists and tuples: a snapshot that later steps leave alone."""
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(v) for v in value)
    return value


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain values (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class CheckpointWriter:
    """Keeps the best weights in memory and writes ``best.pt`` and ``last.pt`` together every
    ``every`` epochs, after an epoch that ends ``max_unsaved_seconds`` or more after the last write,
    at the end, and (:meth:`flush`) for the last finished epoch when the loop stops.
    Without ``run_dir`` it only keeps the best weights."""

    def __init__(self, run_dir: Path | None, meta: dict[str, Any], every: int,
                 best_weights: dict[str, torch.Tensor] | None = None,
                 max_unsaved_seconds: float = MAX_UNSAVED_SECONDS) -> None:
        self.run_dir, self.meta, self.every = run_dir, meta, every
        self.max_unsaved_seconds = max_unsaved_seconds
        self.last_write = time.monotonic()
        self.best_weights = best_weights
        self.best_info: dict[str, Any] | None = None  # of a best epoch not written yet
        self.pending: tuple[dict[str, Any], dict[str, Any]] | None = None  # last.pt not written yet

    def epoch_done(self, history: list[dict[str, Any]], best_epoch: int, finished: bool, model: nn.Module,
                   evaluated: nn.Module, resume_state: Callable[[], dict[str, Any]]) -> None:
        """Record the epoch that ``history`` ends with: ``evaluated``'s weights as the best when it is
        ``best_epoch``; ``model``'s weights and ``resume_state()`` as what ``last.pt`` will hold; the history."""
        epoch = history[-1]["epoch"]
        # without EMA (evaluated is model) one CPU snapshot serves as best weights and as last.pt's weights
        weights = cpu_copy(model.state_dict()) if epoch == best_epoch or self.run_dir is not None else None
        if epoch == best_epoch:
            self.best_weights = weights if evaluated is model else cpu_copy(evaluated.state_dict())
            self.best_info = dict(epoch=epoch, val_acc=json_value(history[-1]["val_acc"]))
        if self.run_dir is None:
            return
        self.pending = weights, cpu_copy(resume_state())
        overdue = time.monotonic() - self.last_write >= self.max_unsaved_seconds
        if epoch % self.every == 0 or finished or overdue:
            self.flush()
        write_history(history, self.run_dir)

    def flush(self) -> None:
        """Write ``best.pt`` (when a new best epoch is not written yet), then ``last.pt``."""
        if self.pending is None:
            return
        if self.best_info is not None and self.best_weights is not None:
            save_checkpoint(self.run_dir / "best.pt", self.best_weights, **self.meta, **self.best_info)
        weights, rest = self.pending
        save_checkpoint(self.run_dir / "last.pt", weights, **self.meta, **rest)
        self.pending = self.best_info = None
        self.last_write = time.monotonic()


def check_resumable(ckpt: dict, cfg: TrainConfig, classes: tuple[str, ...], precision: str,
                    data_fingerprint: dict[str, str | None], path: Path) -> None:
    """``CheckpointError`` unless ``ckpt`` (a ``last.pt``) was trained with the same config, classes,
    precision and data as the run that would go on from it."""
    saved = TrainConfig.from_dict(ckpt["config"]).identity()
    now = cfg.identity()
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        raise CheckpointError(
            f"{path}: cannot resume, the training config differs in {differ} "
            f"(saved {[saved.get(k) for k in differ]}, now {[now.get(k) for k in differ]}); resume with the "
            "run's own settings (config.json) or train into a new folder"
        )
    if list(ckpt["classes"]) != list(classes):
        raise CheckpointError(f"{path}: classes {ckpt['classes']} differ from the data's {list(classes)}")
    _check_same_precision(ckpt, precision, path)
    saved_data = ckpt.get("data_fingerprint")
    if saved_data is not None and saved_data != data_fingerprint:
        differ = [k for k in data_fingerprint if saved_data.get(k) != data_fingerprint[k]]
        raise CheckpointError(f"{path}: cannot resume, the {' and '.join(differ)} data differ from the interrupted "
                              "run's (other dataset, split, --subset or files); use the same data or a new run folder")


def _check_same_precision(ckpt: dict, precision: str, path: Path) -> None:
    """A checkpoint from before precisions were recorded ran fp32 on CPU and its ``amp_dtype`` on CUDA."""
    cfg = TrainConfig.from_dict(ckpt["config"])
    device = precision.split()[0]
    legacy = f"{device} {'fp32' if device != 'cuda' or not cfg.amp else DTYPE_LABELS[cfg.amp_dtype]}"
    saved = ckpt.get("precision", legacy)
    if saved != precision:
        raise CheckpointError(f"{path}: cannot resume, the run trained in {saved} and would go on in {precision} "
                              "(other device, CPU or --amp); resume where it started or start a new run folder")
