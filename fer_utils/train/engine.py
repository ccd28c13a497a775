"""The training loop: device-resident batches, validation every epoch, checkpoints, exact resume.

``fit`` trains a model on a :class:`~fer_utils.data.FaceData`, validates after every epoch
without augmentation and keeps the best weights (validation accuracy). Given a ``run_dir`` it
writes the run folder's files (:mod:`fer_utils.train.run_folder`): ``config.json``,
``history.csv``/``history.json``, ``best.pt`` and ``last.pt``.

- With ``cfg.ema_decay`` the moving average of the weights is what is validated, chosen as best,
  written to ``best.pt`` and returned; ``last.pt`` holds both (the trained weights and the EMA).
- Without validation data the last epoch counts as best and early stopping is off; ``plateau``
  then monitors the training loss.
- A NaN/inf loss or weight raises ``TrainingDivergedError``; ``last.pt`` keeps the last good epoch.
- In a process group of several ranks (``torchrun``, :mod:`fer_utils.train.distributed`) the model
  trains with DistributedDataParallel: each rank holds its shard of the training set
  (``cfg.batch_size`` is the global batch), the history is averaged over ranks, validation is
  sharded and summed, and only rank 0 locks and writes the run folder (every rank reads it to resume).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from fer_utils.data import BatchIterator, BatchMix, FaceData, Preprocessing, create_augment
from fer_utils.devices import resolve_device, resolve_precision, seed_everything, uses_channels_last
from fer_utils.errors import TrainingDivergedError
from fer_utils.models.checkpoints import load_checkpoint
from fer_utils.models.pretrained import architecture_kwargs
from fer_utils.train.config import TrainConfig
from fer_utils.train.distributed import Rank, current
from fer_utils.train.optim import LRSchedule, create_optimizer, create_scheduler
from fer_utils.train.run_folder import (
    HISTORY_COLUMNS, CheckpointWriter, check_resumable, checkpoint_interval, json_value, rng_state, run_lock,
    set_rng_state, write_config,
)


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
    """sklearn's "balanced" weights ``N / (C * n_c)`` over the ``C`` classes present in ``labels``
    (0 for the classes of ``range(num_classes)`` that are absent)."""
    present = np.unique(labels)
    weights = np.zeros(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
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
    included) that ``cfg.ema_decay`` asks for (warmed up with ``cfg.ema_warmup``), else None."""
    if cfg.ema_decay is None:
        return None
    update = warmed_ema_update(cfg.ema_decay) if cfg.ema_warmup else get_ema_multi_avg_fn(cfg.ema_decay)
    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def warmed_ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """torch's EMA update at ``min(decay, (1 + t) / (10 + t))`` for the t-th average (timm's warm-up).
    ``t`` is the :class:`AveragedModel`'s own count, which its state dict keeps: a resumed run goes on exactly."""
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor) -> None:
        step = int(count)
        get_ema_multi_avg_fn(min(decay, (1 + step) / (10 + step)))(averaged, current, count)
    return update


class TrainStep:
    """One optimisation step with mixup/CutMix, autocast, gradient scaling, SAM and clipping, then the
    EMA update when given ``ema`` (shared with ``lr_find``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                 cfg: TrainConfig, device: torch.device, ema: AveragedModel | None = None,
                 preprocessing: Preprocessing | None = None) -> None:
        self.model, self.optimizer, self.criterion, self.cfg, self.ema = model, optimizer, criterion, cfg, ema
        self.preprocessing = preprocessing or Preprocessing()
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
        """The data's normalisation (its preprocessing record's mean/std, as evaluate and predict apply it),
        then channels-last layout for image batches of a 2-D convolutional model when configured."""
        x = self.preprocessing.normalise(x)
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


def check_finite(model: nn.Module, epoch: int, train_loss: float, val_loss: float | None,
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
class RunState:
    """Loop state stored in ``last.pt`` (besides weights, optimizer, schedule, scaler, RNG)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False

    def record(self, row: dict[str, Any], has_val: bool, cfg: TrainConfig) -> None:
        """Append an epoch's row; it is the new best (``best_epoch``) when validation improved, or always
        without validation."""
        self.history.append(row)
        if not has_val or row["val_acc"] > self.best_val_acc:
            self.best_val_acc, self.best_epoch, self.bad_epochs = row["val_acc"], row["epoch"], 0
        else:
            self.bad_epochs += 1
        patience = cfg.early_stopping_patience
        self.finished = row["epoch"] == cfg.epochs or (has_val and patience is not None
                                                       and self.bad_epochs >= patience)

    def result(self, model: nn.Module, cfg: TrainConfig, has_val: bool, run_dir: Path | None) -> FitResult:
        """What :func:`fit` returns once ``model`` holds the best weights."""
        history = pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))
        return FitResult(
            model=model.eval(), history=history, best_epoch=self.best_epoch,
            best_val_acc=json_value(self.best_val_acc) if has_val else None,
            train_seconds=float(history["seconds"].sum()),
            stopped_early=bool(self.finished and len(self.history) < cfg.epochs), run_dir=run_dir,
        )


@dataclass
class _Training:
    """What one run trains with: the model, its EMA, the training step (DDP, compile), the step that
    validates (the EMA's when there is one), optimizer, schedule and the batches of this rank."""

    model: nn.Module
    ema: AveragedModel | None
    step: TrainStep
    evaluator: TrainStep
    schedule: LRSchedule
    train_batches: BatchIterator
    val_batches: BatchIterator | None
    val_share: int  # validation items of this rank

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated, kept as best and returned."""
        return self.model if self.ema is None else self.ema.module


def _build_training(model: nn.Module, train: FaceData, val: FaceData | None, cfg: TrainConfig,
                    device: torch.device, ddp: Rank | None) -> _Training:
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
                     make_criterion(cfg, train, device), cfg, device, ema, train.preprocessing)
    evaluator = step if ddp is None and ema is None else TrainStep(
        model if ema is None else ema.module, optimizer, step.criterion, cfg, device, preprocessing=train.preprocessing)
    return _Training(model, ema, step, evaluator, schedule, train_batches, val_batches,
                     0 if rank_val is None else len(rank_val))


def _restore(run: _Training, path: Path, cfg: TrainConfig, classes: tuple[str, ...],
             data_fingerprint: dict[str, str | None]) -> RunState:
    """Load ``path`` (a ``last.pt``) into ``run`` and the RNGs; returns the loop state it saved."""
    ckpt = load_checkpoint(path)
    check_resumable(ckpt, cfg, classes, run.step.precision.label, data_fingerprint, path)
    run.model.load_state_dict(ckpt["model_state"])
    run.step.optimizer.load_state_dict(ckpt["optimizer_state"])
    run.schedule.load_state_dict(ckpt["scheduler_state"])
    run.step.scaler.load_state_dict(ckpt["scaler_state"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema_state"])
    set_rng_state(ckpt["rng_state"])
    return RunState(**{f.name: ckpt[f.name] for f in fields(RunState)})


def _run_epoch(run: _Training, epoch: int, cfg: TrainConfig, ddp: Rank | None, progress: bool,
               run_dir: Path | None) -> dict[str, Any]:
    """Train one epoch, validate, check for divergence, step the schedule; the epoch's history row."""
    t0 = time.perf_counter()
    lr = run.step.optimizer.param_groups[0]["lr"]
    train_loss, train_acc = train_epoch(run.step, run.schedule, run.train_batches, epoch, cfg.epochs, progress)
    if ddp is not None:
        train_loss, train_acc = ddp.mean((train_loss, train_acc))
        ddp.share_buffers(run.model)
        if run.ema is not None:
            ddp.share_buffers(run.ema.module)
    val_loss, val_acc = math.nan, math.nan
    if run.val_batches is not None:
        val_loss, val_acc = evaluate_loss_acc(run.evaluator, run.val_batches)
        if ddp is not None:
            val_loss, val_acc = ddp.mean((val_loss, val_acc), weight=run.val_share)
    check_finite(run.model, epoch, train_loss, None if run.val_batches is None else val_loss, run_dir)
    run.schedule.step_epoch(-train_loss if run.val_batches is None else val_acc)
    return dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                lr=lr, seconds=time.perf_counter() - t0)


def _check_fit_arguments(train: FaceData, val: FaceData | None, resume: bool, run_dir: Path | None) -> None:
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run_dir of the interrupted run")
    if val is not None and tuple(val.classes) != tuple(train.classes):
        raise ValueError(f"train classes {train.classes} differ from validation classes {val.classes}")


def _resume_state(run: _Training, epoch: int, state: RunState, data_fingerprint: dict[str, str | None]
                  ) -> dict[str, Any]:
    """What ``last.pt`` holds besides the weights."""
    return dict(epoch=epoch, optimizer_state=run.step.optimizer.state_dict(), scheduler_state=run.schedule.state_dict(),
                scaler_state=run.step.scaler.state_dict(), ema_state=None if run.ema is None else run.ema.state_dict(),
                rng_state=rng_state(), data_fingerprint=data_fingerprint, **asdict(state))


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
    """Train ``model`` on ``train``, validating on ``val`` (may be ``None``) after each epoch (module
    docstring: EMA, no validation, divergence, DDP).

    ``run_dir``: the run folder (locked while training; nothing written if None). ``resume``: go on from
    its ``last.pt``, which must have the same config, precision and data; the result equals an uninterrupted
    run (bit-exact on CPU). ``model_name``/``model_kwargs``: what checkpoints record so that ``load_model``
    rebuilds the model (default: class name; init-only arguments such as ``pretrained`` are left out).
    ``run_info``: extra JSON-able facts for ``config.json``. ``on_epoch_end``: called with each history row.
    """
    device, ddp, run_dir = resolve_device(device), current(), Path(run_dir) if run_dir is not None else None
    out_dir = run_dir if ddp is None or ddp.is_main else None  # where run files are written
    progress = progress and (ddp is None or ddp.is_main)
    _check_fit_arguments(train, val, resume, run_dir)
    seed_everything(cfg.seed)
    run = _build_training(model, train, val, cfg, device, ddp)
    meta = dict(model_name=model_name or type(model).__name__, model_kwargs=architecture_kwargs(model_kwargs or {}),
                classes=list(train.classes), preprocessing=train.preprocessing.to_dict(), config=cfg.to_dict(),
                precision=run.step.precision.label)
    fingerprint = {"train": train.fingerprint(), "val": None if val is None else val.fingerprint()}
    with run_lock(out_dir) if out_dir is not None else nullcontext():
        state, best = RunState(), None
        if resume:
            state = _restore(run, run_dir / "last.pt", cfg, train.classes, fingerprint)
            best = load_checkpoint(run_dir / "best.pt")["model_state"] if (run_dir / "best.pt").is_file() else None
        if out_dir is not None:
            write_config(out_dir, meta, len(train), 0 if val is None else len(val), run_info)
        checkpoints = CheckpointWriter(out_dir, meta, checkpoint_interval(cfg, model), best)
        try:
            for epoch in range(len(state.history) + 1, cfg.epochs + 1):
                if state.finished:
                    break
                row = _run_epoch(run, epoch, cfg, ddp, progress, run_dir)
                state.record(row, run.val_batches is not None, cfg)
                checkpoints.epoch_done(state.history, state.best_epoch, state.finished, model, run.evaluated,
                                       lambda: _resume_state(run, epoch, state, fingerprint))
                if progress:
                    tqdm.write(_summary(row, state.best_epoch))
                if on_epoch_end is not None:
                    on_epoch_end(dict(row))
        finally:
            checkpoints.flush()
    if checkpoints.best_weights is not None:
        model.load_state_dict(checkpoints.best_weights)
    return state.result(model, cfg, has_val=val is not None, run_dir=run_dir)


def _rank_share(ddp: Rank, train: FaceData, val: FaceData | None,
                cfg: TrainConfig) -> tuple[FaceData, FaceData | None, TrainConfig]:
    """A rank's training shard and validation part, and its config: the per-rank batch, and an
    augmentation seed of its own (rank 0 keeps ``cfg.seed``)."""
    rank_cfg = replace(cfg, batch_size=ddp.local_batch_size(cfg.batch_size), seed=cfg.seed + 1_000_003 * ddp.rank)
    return ddp.shard(train, cfg.seed), None if val is None else ddp.strided(val), rank_cfg


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
