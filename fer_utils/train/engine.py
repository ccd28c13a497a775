"""The training loop: device-resident batches, checkpoints every few epochs, exact resume.

``fit`` trains a model on a :class:`~fer_utils.data.FaceData`, validates after every epoch
without augmentation, keeps the best weights (validation accuracy) and, given a ``run_dir``,
writes ``config.json``, ``history.csv``/``history.json``, ``best.pt`` (weights + metadata) and
``last.pt`` (everything needed to resume: optimizer, schedule, scaler, EMA, RNG states, history),
both every ``checkpoint_every`` epochs, at the end, and when the run stops on an error.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from fer_utils.data import BatchIterator, BatchMix, DatasetError, FaceData, create_augment
from fer_utils.models.checkpoints import CheckpointMismatchError, load_checkpoint, save_checkpoint
from fer_utils.models.pretrained import architecture_kwargs
from fer_utils.devices import DTYPE_LABELS, resolve_device, resolve_precision, seed_everything, uses_channels_last
from fer_utils.files import atomic_write, write_json
from fer_utils.train.config import TrainConfig
from fer_utils.train.distributed import Rank, current
from fer_utils.train.optim import LRSchedule, create_optimizer, create_scheduler

HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
#: Held by the process training into a run folder (it contains that process's id).
LOCK_NAME = ".lock"
#: ``checkpoint_every=None``: ``last.pt`` every epoch for weights under this many bytes, else every
#: ``LARGE_MODEL_EVERY`` epochs (vgg_fer's ``last.pt`` is 323 MB).
LARGE_MODEL_BYTES = 50_000_000
LARGE_MODEL_EVERY = 5


class TrainingDivergedError(DatasetError):
    """The loss or the weights became NaN/inf: the run stops, ``last.pt`` keeps the last good epoch."""


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while training into ``run_dir``: ``DatasetError`` if another live
    process holds it; a lock left by a dead process is taken over; re-entrant in one process."""
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_NAME
    mine = str(os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = None
    while owner != os.getpid():
        tmp = run_dir / f"{LOCK_NAME}.{mine}"
        tmp.write_text(mine)
        try:  # link() of a file already holding our pid: atomic, and the lock is never empty
            os.link(tmp, lock)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise DatasetError(f"{run_dir}: another training process (pid {owner}) is writing this "
                                   f"run folder; wait for it or remove {lock} if it is gone") from None
            if owner != os.getpid():  # stale: its process is gone
                print(f"{run_dir}: taking over {LOCK_NAME} left by process {owner}, which has ended", file=sys.stderr)
                lock.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
    if owner == os.getpid():  # already held by this process (nested use)
        yield
        return
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@dataclass
class FitResult:
    """What :func:`fit` returns; ``model`` holds the best weights (the EMA's with ``ema_decay``), in eval mode."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_val_acc: float | None
    train_seconds: float
    stopped_early: bool
    run_dir: Path | None


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``N / (C * n_c)`` (0 for classes absent from ``labels``)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def training_batches(train: FaceData, cfg: TrainConfig, device: torch.device, cpu_rng: bool = False) -> BatchIterator:
    """Shuffled, augmented training batches seeded by ``cfg.seed`` (a ragged last batch dropped), with
    ``train``'s soft labels as targets when it has them; ``cpu_rng``: order and augmentation drawn on
    the CPU, so every device sees the same batches."""
    return BatchIterator(
        train.images, train.labels if train.soft_labels is None else train.soft_labels,
        batch_size=cfg.batch_size, device=device, shuffle=True,
        augment=create_augment(cfg.augment), seed=cfg.seed, drop_last=len(train) > cfg.batch_size, cpu_rng=cpu_rng,
    )


def create_optimization(model: nn.Module, cfg: TrainConfig,
                        steps_per_epoch: int) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """``cfg``'s optimizer over ``model`` and its learning-rate schedule."""
    optimizer = create_optimizer(model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 momentum=cfg.momentum)
    schedule = create_scheduler(
        optimizer, cfg.scheduler, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr, step_size=cfg.step_size, gamma=cfg.gamma,
        plateau_patience=cfg.plateau_patience,
    )
    return optimizer, schedule


def make_criterion(cfg: TrainConfig, train: FaceData, device: torch.device) -> nn.Module:
    """Training loss: cross-entropy with the configured label smoothing and class weights."""
    weight = class_weights(train.labels, len(train.classes)).to(device) if cfg.class_weighting else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def create_ema(model: nn.Module, cfg: TrainConfig) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights and buffers (batch-norm statistics
    included) that ``cfg.ema_decay`` asks for, else None."""
    if cfg.ema_decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)


class TrainStep:
    """One optimisation step with mixup/CutMix, autocast, gradient scaling, SAM and clipping, then the
    EMA update when given ``ema`` (shared with ``lr_find``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                 cfg: TrainConfig, device: torch.device, ema: AveragedModel | None = None) -> None:
        self.model, self.optimizer, self.criterion, self.cfg, self.ema = model, optimizer, criterion, cfg, ema
        self.precision = resolve_precision(device, cfg.amp, cfg.amp_dtype)
        self.channels_last = cfg.channels_last and uses_channels_last(model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.dtype == torch.float16)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.mix = BatchMix(cfg.mixup_alpha, cfg.cutmix_alpha)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Seed the mixing draws of epoch ``epoch`` by ``(cfg.seed, epoch)``, as the augmentation's."""
        self.mix_rng = np.random.default_rng((self.cfg.seed % 2**63, epoch))

    def autocast(self) -> torch.autocast:
        """Autocast context of the run's precision (a no-op in fp32)."""
        return self.precision.autocast()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last layout for image batches of a 2-D convolutional model when configured."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and update; returns the detached loss and logits (of the mixed batch)."""
        lam = 1.0
        if self.mix.enabled:
            x, lam = self.mix(x, self.mix_rng)
        x = self.prepare(x)
        loss, logits = self.backward(x, y, lam)
        if self.cfg.sam_rho > 0:
            with self.sharpest_nearby():
                self.backward(x, y, lam)
        self.update()
        return loss.detach(), logits.detach()

    def backward(self, x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the loss on ``x`` (mixed with weight ``lam``) in place of the old ones; the loss and logits."""
        with self.autocast():
            logits = self.model(x)
        target = self.mix.targets(y, lam, logits.shape[1]) if self.mix.enabled else y
        loss = self.criterion(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss, logits

    @contextmanager
    def sharpest_nearby(self) -> Iterator[None]:
        """SAM (Foret et al., 2021): inside, the weights are moved ``cfg.sam_rho`` along the normalised
        gradient (the loss's steepest rise), so a backward there gives the gradient SAM steps with; then
        weights and buffers (batch-norm statistics) are put back exactly. Hand-written: the ascent must sit
        between this step's autocast, scaled backward and update, which an optimizer wrapper cannot see.
        The gradient scaler's factor cancels in the normalisation; a gradient that overflowed (float16
        scaling) moves nothing, so that step is a plain one."""
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            scale = torch.where(torch.isfinite(norm), self.cfg.sam_rho / (norm + 1e-12), 0.0)
            weights = [p.detach().clone() for p in self.params]
            buffers = [b.detach().clone() for b in self.model.buffers()]
            for p, g in zip(self.params, grads):
                p.add_(torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) * scale.to(g.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, weights):
                    p.copy_(w)
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)

    def update(self) -> None:
        """The update once the scaled loss is back-propagated: unscale and clip, optimizer and scaler
        steps, EMA update."""
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)


@torch.no_grad()
def evaluate_loss_acc(step: TrainStep, batches: BatchIterator) -> tuple[float, float]:
    """Mean (unweighted, unsmoothed) cross-entropy and accuracy over ``batches``, eval mode."""
    step.model.eval()
    loss_sum = torch.zeros((), device=batches.device)
    correct = torch.zeros((), device=batches.device)
    for x, y in batches:
        with step.autocast():
            logits = step.model(step.prepare(x)).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = len(batches.labels)
    return loss_sum.item() / n, correct.item() / n


def _rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain values (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _json_value(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, for JSON."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def write_history(history: list[dict[str, Any]], run_dir: Path) -> None:
    """``history.csv`` and ``history.json`` (one record per epoch)."""
    with atomic_write(run_dir / "history.csv", "w") as handle:
        pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(handle, index=False)
    write_json(run_dir / "history.json", [{k: _json_value(v) for k, v in row.items()} for row in history])


def epochs_saved(run_dir: Path) -> int:
    """Epochs a resume of ``run_dir`` starts after: ``last.pt``'s epoch (0 without one). Memory-maps the
    file, so the weights are not read."""
    last = run_dir / "last.pt"
    return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"]) if last.is_file() else 0


def _check_resumable(ckpt: dict, cfg: TrainConfig, classes: tuple[str, ...], path: Path) -> None:
    saved = TrainConfig.from_dict(ckpt["config"]).identity()
    now = cfg.identity()
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        raise DatasetError(
            f"{path}: cannot resume, the training config differs in {differ} "
            f"(saved {[saved.get(k) for k in differ]}, now {[now.get(k) for k in differ]}); resume with the "
            "run's own settings (config.json) or train into a new folder"
        )
    if list(ckpt["classes"]) != list(classes):
        raise CheckpointMismatchError(f"{path}: classes {ckpt['classes']} differ from the data's {list(classes)}")


def _check_same_precision(ckpt: dict, precision: str, path: Path) -> None:
    """``DatasetError`` when ``ckpt`` was trained in another precision (a checkpoint from before
    precisions were recorded ran fp32 on CPU and its ``amp_dtype`` on CUDA)."""
    cfg = TrainConfig.from_dict(ckpt["config"])
    device = precision.split()[0]
    legacy = f"{device} {'fp32' if device != 'cuda' or not cfg.amp else DTYPE_LABELS[cfg.amp_dtype]}"
    saved = ckpt.get("precision", legacy)
    if saved != precision:
        raise DatasetError(f"{path}: cannot resume, the run trained in {saved} and would go on in {precision} "
                           "(other device, CPU or --amp); resume where it started or start a new run folder")


def _check_same_data(ckpt: dict, data_fingerprint: dict[str, str | None], path: Path) -> None:
    saved = ckpt.get("data_fingerprint")
    if saved is not None and saved != data_fingerprint:
        differ = [k for k in data_fingerprint if saved.get(k) != data_fingerprint[k]]
        raise DatasetError(f"{path}: cannot resume, the {' and '.join(differ)} data differ from the interrupted "
                           "run's (other dataset, split, --subset or files); use the same data or a new run folder")


def _check_finite(model: nn.Module, epoch: int, train_loss: float, val_loss: float | None,
                  run_dir: Path | None) -> None:
    """``TrainingDivergedError`` when the training loss, the validation loss (None: no
    validation) or any weight is not finite."""
    weights_ok = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if math.isfinite(train_loss) and (val_loss is None or math.isfinite(val_loss)) and weights_ok:
        return
    where = f"{run_dir}: " if run_dir is not None else ""
    raise TrainingDivergedError(
        f"{where}training diverged in epoch {epoch} (train loss {train_loss:.4g}, val loss {val_loss}, "
        f"{'finite' if weights_ok else 'non-finite'} weights); lower --lr or set --grad-clip"
        + ("; last.pt keeps the last good epoch" if run_dir is not None and (run_dir / "last.pt").is_file() else ""))


@dataclass
class _RunState:
    """Loop state stored in ``last.pt`` (besides weights, optimizer, schedule, scaler, RNG)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False

    def record(self, row: dict[str, Any], has_val: bool, cfg: TrainConfig) -> bool:
        """Append an epoch's row; returns whether it is the new best (always, without validation)."""
        self.history.append(row)
        improved = not has_val or row["val_acc"] > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch, self.bad_epochs = row["val_acc"], row["epoch"], 0
        else:
            self.bad_epochs += 1
        patience = cfg.early_stopping_patience
        self.finished = row["epoch"] == cfg.epochs or (has_val and patience is not None
                                                       and self.bad_epochs >= patience)
        return improved


def checkpoint_interval(cfg: TrainConfig, model: nn.Module) -> int:
    """Epochs between ``last.pt`` writes: ``cfg.checkpoint_every``, or when ``None`` every epoch for
    weights under :data:`LARGE_MODEL_BYTES` and every :data:`LARGE_MODEL_EVERY` epochs above."""
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 1 if size < LARGE_MODEL_BYTES else LARGE_MODEL_EVERY


def _cpu_copy(value: Any) -> Any:
    """A CPU copy of the tensors nested in dicts, lists and tuples: a snapshot that later steps leave alone."""
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def _write_config(run_dir: Path, meta: dict[str, Any], train: FaceData, val: FaceData | None,
                  run_info: dict[str, Any] | None) -> None:
    info = {**{k: meta[k] for k in ("model_name", "model_kwargs", "classes", "preprocessing", "precision")},
            "train": meta["config"], "train_size": len(train), "val_size": 0 if val is None else len(val),
            **(run_info or {})}
    write_json(run_dir / "config.json", info)


def fit(
    model: nn.Module,
    train: FaceData,
    val: FaceData | None,
    cfg: TrainConfig = TrainConfig(),
    run_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
    model_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train``, validating on ``val`` (may be ``None``) after each epoch.

    Args:
        run_dir: folder for ``config.json``, ``history.*``, ``best.pt``, ``last.pt`` (none if None).
        resume: continue from ``run_dir/last.pt`` (same config required); the result equals an
            uninterrupted run (bit-exact on CPU).
        model_name, model_kwargs: registry name and arguments recorded in checkpoints so that
            :func:`fer_utils.models.checkpoints.load_model` can rebuild the model (default: class name);
            init-only ones (``encoder_weights``, ``pretrained``...) are left out: the weights are in the state.
        run_info: extra JSON-able facts written into ``config.json``.
        on_epoch_end: called with each epoch's history row once the epoch is recorded.

    With ``cfg.ema_decay`` the moving average of the weights is what is validated, chosen as best,
    written to ``best.pt`` and returned; ``last.pt`` holds both (the trained weights and the EMA).
    Without ``val`` the last epoch counts as best and early stopping is off; ``plateau`` then
    monitors the training loss. ``run_dir`` is locked (:func:`run_lock`) while training; resuming
    checks the data's fingerprint; a NaN/inf loss or weight raises ``TrainingDivergedError``.
    ``best.pt`` and ``last.pt`` are written together every :func:`checkpoint_interval` epochs, at
    the end, and, for the last finished epoch, when anything (an interrupt, a divergence) stops the loop.

    In a process group of several ranks (``torchrun``, see :mod:`fer_utils.train.distributed`) the
    model trains with DistributedDataParallel: each rank holds its shard of ``train`` on ``device``
    (``cfg.batch_size`` is the global batch), the history is averaged over ranks, validation is
    sharded and summed, and only rank 0 locks and writes ``run_dir`` (every rank reads it to resume).
    """
    device = resolve_device(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    ddp = current()
    out_dir = run_dir if ddp is None or ddp.is_main else None  # where run files are written
    progress = progress and (ddp is None or ddp.is_main)
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir of the interrupted run")
    if val is not None and tuple(val.classes) != tuple(train.classes):
        raise ValueError(f"train classes {train.classes} differ from validation classes {val.classes}")
    meta = dict(model_name=model_name or type(model).__name__, model_kwargs=architecture_kwargs(model_kwargs or {}),
                classes=list(train.classes), preprocessing=train.preprocessing.to_dict(), config=cfg.to_dict())

    data_fingerprint = {"train": train.fingerprint(), "val": None if val is None else val.fingerprint()}
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.channels_last and uses_channels_last(model):
        model.to(memory_format=torch.channels_last)
    rank_train, rank_val, rank_cfg = (train, val, cfg) if ddp is None else _rank_share(ddp, train, val, cfg)
    train_batches = training_batches(rank_train, rank_cfg, device)
    val_batches = None if rank_val is None else BatchIterator(
        rank_val.images, rank_val.labels, batch_size=cfg.eval_batch_size, device=device, shuffle=False)
    optimizer, schedule = create_optimization(model, cfg, len(train_batches))
    trained = model if ddp is None else nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
    ema = create_ema(model, cfg)
    step = TrainStep(torch.compile(trained) if cfg.compile else trained, optimizer,
                     make_criterion(cfg, train, device), cfg, device, ema)
    meta["precision"] = step.precision.label
    evaluated = model if ema is None else ema.module  # what validation, best.pt and the result use
    evaluator = step if ddp is None and ema is None else TrainStep(evaluated, optimizer, step.criterion, cfg, device)

    lock = run_lock(out_dir) if out_dir is not None else nullcontext()
    with lock:
        state, best_weights = _RunState(), None
        if resume:
            last_path = run_dir / "last.pt"
            ckpt = load_checkpoint(last_path)
            _check_resumable(ckpt, cfg, train.classes, last_path)
            _check_same_precision(ckpt, step.precision.label, last_path)
            _check_same_data(ckpt, data_fingerprint, last_path)
            model.load_state_dict(ckpt["model_state"])
            optimizer.load_state_dict(ckpt["optimizer_state"])
            schedule.load_state_dict(ckpt["scheduler_state"])
            step.scaler.load_state_dict(ckpt["scaler_state"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema_state"])
            state = _RunState(**{f.name: ckpt[f.name] for f in fields(_RunState)})
            if (run_dir / "best.pt").is_file():
                best_weights = load_checkpoint(run_dir / "best.pt")["model_state"]
            _set_rng_state(ckpt["rng_state"])
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_config(out_dir, meta, train, val, run_info)

        every = checkpoint_interval(cfg, model)
        pending: tuple[dict[str, Any], dict[str, Any]] | None = None  # last.pt not written yet: weights, rest
        best_info: dict[str, Any] | None = None  # best.pt not written yet
        try:
            for epoch in range(len(state.history) + 1, cfg.epochs + 1):
                if state.finished:
                    break
                t0 = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                train_loss, train_acc = train_epoch(step, schedule, train_batches, epoch, cfg.epochs, progress)
                if ddp is not None:
                    train_loss, train_acc = ddp.mean((train_loss, train_acc))
                    ddp.share_buffers(model)
                    if ema is not None:
                        ddp.share_buffers(ema.module)
                val_loss, val_acc = (math.nan, math.nan) if val_batches is None \
                    else evaluate_loss_acc(evaluator, val_batches)
                if ddp is not None and val_batches is not None:
                    val_loss, val_acc = ddp.mean((val_loss, val_acc), weight=len(rank_val))
                _check_finite(model, epoch, train_loss, None if val_batches is None else val_loss, run_dir)
                schedule.step_epoch(-train_loss if val_batches is None else val_acc)
                row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                           val_acc=val_acc, lr=lr, seconds=time.perf_counter() - t0)
                improved = state.record(row, val_batches is not None, cfg)
                # without EMA one CPU snapshot of the weights serves as best weights and as last.pt's weights
                weights = _cpu_copy(model.state_dict()) if improved or out_dir is not None else None
                if improved:
                    best_weights = weights if ema is None else _cpu_copy(evaluated.state_dict())
                    best_info = dict(epoch=epoch, val_acc=_json_value(val_acc))
                if out_dir is not None:
                    pending = weights, _cpu_copy(dict(
                        epoch=epoch, optimizer_state=optimizer.state_dict(), scheduler_state=schedule.state_dict(),
                        scaler_state=step.scaler.state_dict(), ema_state=None if ema is None else ema.state_dict(),
                        rng_state=_rng_state(),
                        data_fingerprint=data_fingerprint, **asdict(state)))
                    if epoch % every == 0 or state.finished:
                        _write_checkpoints(out_dir, meta, pending, best_weights, best_info)
                        pending = best_info = None
                    write_history(state.history, out_dir)
                if progress:
                    tqdm.write(_summary(row, state.best_epoch))
                if on_epoch_end is not None:
                    on_epoch_end(dict(row))
        finally:
            if pending is not None:
                _write_checkpoints(out_dir, meta, pending, best_weights, best_info)

    if best_weights is not None:
        model.load_state_dict(best_weights)
    frame = pd.DataFrame(state.history, columns=list(HISTORY_COLUMNS))
    return FitResult(
        model=model.eval(), history=frame, best_epoch=state.best_epoch,
        best_val_acc=None if val is None else _json_value(state.best_val_acc),
        train_seconds=float(frame["seconds"].sum()),
        stopped_early=bool(state.finished and len(state.history) < cfg.epochs), run_dir=run_dir,
    )


def _rank_share(ddp: Rank, train: FaceData, val: FaceData | None,
                cfg: TrainConfig) -> tuple[FaceData, FaceData | None, TrainConfig]:
    """A rank's training shard and validation part, and its config: the per-rank batch, and an
    augmentation seed of its own (rank 0 keeps ``cfg.seed``)."""
    rank_cfg = replace(cfg, batch_size=ddp.local_batch_size(cfg.batch_size), seed=cfg.seed + 1_000_003 * ddp.rank)
    return ddp.shard(train, cfg.seed), None if val is None else ddp.strided(val), rank_cfg


def _write_checkpoints(run_dir: Path, meta: dict[str, Any], last: tuple[dict[str, Any], dict[str, Any]],
                       best_weights: dict[str, torch.Tensor] | None, best_info: dict[str, Any] | None) -> None:
    """``best.pt`` (when a new best epoch is not written yet), then ``last.pt``."""
    if best_info is not None and best_weights is not None:
        save_checkpoint(run_dir / "best.pt", best_weights, **meta, **best_info)
    weights, rest = last
    save_checkpoint(run_dir / "last.pt", weights, **meta, **rest)


def train_epoch(step: TrainStep, schedule: LRSchedule, batches: BatchIterator, epoch: int, epochs: int,
                progress: bool, *, reconstruct: bool = False) -> tuple[float, float]:
    """One pass over the shuffled, augmented training set; returns mean loss and accuracy.

    ``reconstruct``: the target is the input batch itself (autoencoders); accuracy is then NaN.
    """
    step.model.train()
    batches.set_epoch(epoch)
    step.set_epoch(epoch)
    loss_sum = torch.zeros((), device=batches.device)
    correct = torch.zeros((), device=batches.device)
    seen = 0
    bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False, unit="batch")
    for i, (x, y) in enumerate(bar):
        loss, output = step(x, x if reconstruct else y)
        schedule.step_batch()
        loss_sum += loss * len(y)
        if not reconstruct:  # with soft labels: agreement with their most likely class
            correct += (output.argmax(1) == (y if y.dim() == 1 else y.argmax(1))).sum()
        seen += len(y)
        if progress and (i % 20 == 0 or i == len(batches) - 1):
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
    accuracy = math.nan if reconstruct else correct.item() / max(seen, 1)
    return loss_sum.item() / max(seen, 1), accuracy


def _summary(row: dict[str, Any], best_epoch: int) -> str:
    text = (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
            f" | lr {row['lr']:.2e} | {row['seconds']:.1f}s")
    if not math.isnan(row["val_acc"]):
        text += f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} (best epoch {best_epoch})"
    return text
