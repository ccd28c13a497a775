"""Optimizer and learning-rate schedule factories, looked up by name."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau, StepLR

from fer_utils.train.config import OPTIMIZERS, SCHEDULERS


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with decay; biases and norm parameters (1-D) without."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def create_optimizer(
    model: nn.Module, name: str = "sgd", *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``sgd`` (Nesterov momentum) or ``adamw`` over ``model``'s trainable parameters."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise KeyError(f"unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")


def list_optimizers() -> list[str]:
    """Names accepted by :func:`create_optimizer`."""
    return list(OPTIMIZERS)


def list_schedulers() -> list[str]:
    """Names accepted by :func:`create_scheduler`."""
    return list(SCHEDULERS)


class LRSchedule:
    """A torch LR scheduler plus when to step it: after each ``batch`` or ``epoch``.

    ``plateau`` steps once per epoch on a monitored value (higher is better).
    """

    def __init__(self, name: str, scheduler: Any | None, interval: str) -> None:
        self.name, self.scheduler, self.interval = name, scheduler, interval

    def step_batch(self) -> None:
        """Call after every optimizer step."""
        if self.interval == "batch":
            self.scheduler.step()

    def step_epoch(self, monitored: float) -> None:
        """Call once per epoch with the monitored value (validation accuracy)."""
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "plateau":
            self.scheduler.step(monitored)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


def _cosine_factor(total: int, warmup: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "onecycle",
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
    step_size: int = 10,
    gamma: float = 0.1,
    plateau_patience: int = 3,
) -> LRSchedule:
    """A schedule around ``optimizer`` whose current lr is the peak/base lr.

    ``onecycle``: per batch, warm-up fraction ``warmup_epochs / epochs`` (0.3 when 0).
    ``cosine``: per batch, linear warm-up then cosine decay to ``min_lr``.
    ``step``: per epoch, x ``gamma`` every ``step_size`` epochs.
    ``plateau``: per epoch, x ``gamma`` after ``plateau_patience`` epochs without gain.
    ``none``: constant.
    """
    total = epochs * steps_per_epoch
    lr = optimizer.param_groups[0]["lr"]
    if name == "onecycle":
        pct = warmup_epochs / epochs if warmup_epochs > 0 else 0.3
        return LRSchedule(name, OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=pct), "batch")
    if name == "cosine":
        factor = _cosine_factor(total, round(warmup_epochs * steps_per_epoch), min_lr / lr)
        return LRSchedule(name, LambdaLR(optimizer, factor), "batch")
    if name == "step":
        return LRSchedule(name, StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch")
    if name == "plateau":
        plateau = ReduceLROnPlateau(optimizer, mode="max", factor=gamma, patience=plateau_patience, min_lr=min_lr)
        return LRSchedule(name, plateau, "plateau")
    if name == "none":
        return LRSchedule(name, None, "none")
    raise KeyError(f"unknown scheduler {name!r}; known: {list(SCHEDULERS)}")
