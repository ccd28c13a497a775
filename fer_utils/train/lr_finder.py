"""Learning-rate range test: sweep the lr exponentially and watch the loss (Smith, 2017)."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fer_utils.data import BatchIterator, FaceData
from fer_utils.train.config import TrainConfig
from fer_utils.devices import resolve_device
from fer_utils.train.engine import TrainStep, make_criterion, training_batches
from fer_utils.train.optim import create_optimizer

SUGGESTIONS: tuple[str, ...] = ("steepest", "min_div10")


@dataclass
class LRFindResult:
    """Learning rates tried, their smoothed and raw losses, and the suggested lr."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggested_lr: float
    min_loss_lr: float


def suggest_lr(lrs: np.ndarray, losses: np.ndarray, method: str = "steepest") -> float:
    """``steepest``: lr of the most negative slope of loss vs log(lr) before the minimum loss, the first
    tenth of the sweep left out (``min_div10`` when fewer than 2 points remain); ``min_div10``: min-loss lr / 10.

    The first tenth is left out because the bias-corrected moving average is still settling there: its
    first points fall steeply whatever the rate (on FER2013 the steepest slope was the sweep's first point).
    """
    if method not in SUGGESTIONS:
        raise KeyError(f"unknown suggestion method {method!r}; known: {list(SUGGESTIONS)}")
    best = int(np.argmin(losses))
    settled = max(1, len(lrs) // 10)
    if method == "steepest" and best - settled >= 2:
        slope = np.gradient(losses, np.log(lrs))[settled:best]  # central differences, strictly before the minimum
        return float(lrs[settled + int(np.argmin(slope))])
    return float(lrs[best] / 10)


def _endless(batches: BatchIterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of epoch 0, 1, 2, ... without end."""
    epoch = 0
    while True:
        batches.set_epoch(epoch)
        yield from batches
        epoch += 1


def lr_find(
    model: nn.Module,
    train: FaceData,
    cfg: TrainConfig = TrainConfig(),
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    device: str | torch.device | None = None,
    *,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    method: str = "steepest",
) -> LRFindResult:
    """Train ``num_iter`` batches with the lr growing exponentially from ``start_lr`` to ``end_lr``.

    Uses ``cfg``'s optimizer, loss, augmentation, amp and batch size. The loss is smoothed
    with a bias-corrected exponential moving average; the sweep stops once the smoothed loss
    exceeds ``diverge_factor`` x its minimum (or is not finite). Batch order and augmentation
    are drawn on the CPU, so CPU and CUDA sweeps see the same batches. The model's weights and
    train/eval mode are restored afterwards. Plot with :func:`fer_utils.plots.plot_lr_find`.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_iter < 2:
        raise ValueError(f"num_iter must be >= 2, got {num_iter}")
    device = resolve_device(device)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.to(device).train()
    batches = training_batches(train, cfg, device, cpu_rng=True)
    optimizer = create_optimizer(model, cfg.optimizer, lr=start_lr, weight_decay=cfg.weight_decay,
                                 momentum=cfg.momentum)
    step = TrainStep(model, optimizer, make_criterion(cfg, train, device), cfg, device,
                     preprocessing=train.preprocessing)
    factor = (end_lr / start_lr) ** (1.0 / (num_iter - 1))
    lrs, losses, raw = [], [], []
    avg, best = 0.0, math.inf
    try:
        for i, (x, y) in zip(range(num_iter), _endless(batches)):
            lr = start_lr * factor ** i
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = step(x, y)[0].item()
            avg = smoothing * avg + (1 - smoothing) * loss
            smoothed = avg / (1 - smoothing ** (i + 1))
            lrs.append(lr)
            raw.append(loss)
            losses.append(smoothed)
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
                break
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    finite = np.isfinite(losses)
    lr_arr, loss_arr = np.asarray(lrs)[finite], np.asarray(losses)[finite]
    if len(lr_arr) == 0:
        raise FloatingPointError(f"lr_find: loss not finite even at start_lr={start_lr}")
    return LRFindResult(
        lrs=[float(v) for v in lrs], losses=[float(v) for v in losses], raw_losses=[float(v) for v in raw],
        suggested_lr=suggest_lr(lr_arr, loss_arr, method),
        min_loss_lr=float(lr_arr[int(np.argmin(loss_arr))]),
    )
