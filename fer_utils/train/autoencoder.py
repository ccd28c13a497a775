"""Autoencoder pre-training with the engine's batches, optimizer, schedule and step.

The model definitions live in :mod:`fer_utils.models.autoencoder`; this is their training.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_utils.data import FaceData
from fer_utils.devices import resolve_device, seed_everything
from fer_utils.train.config import TrainConfig
from fer_utils.train.engine import TrainStep, create_optimization, train_epoch, training_batches

#: Adam without weight decay at a constant lr, fp32, faces as they are: the usual pre-training setting.
PRETRAIN_CONFIG = TrainConfig(epochs=10, batch_size=128, lr=1e-3, optimizer="adamw", weight_decay=0.0,
                              scheduler="none", augment="none", amp=False)


def pretrain_autoencoder(
    ae: nn.Module,
    faces: FaceData,
    cfg: TrainConfig = PRETRAIN_CONFIG,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[float]:
    """Train ``ae`` to reconstruct ``faces`` (mean squared error on images in [0, 1]) for
    ``cfg.epochs`` epochs with ``cfg``'s optimizer, schedule and augmentation; the labels are
    not used. Returns the mean loss of each epoch; ``ae`` is left on ``device`` in eval mode."""
    device = resolve_device(device)
    seed_everything(cfg.seed)
    batches = training_batches(faces, cfg, device)
    optimizer, schedule = create_optimization(ae.to(device), cfg, len(batches))
    step = TrainStep(ae, optimizer, nn.MSELoss(), cfg, device)
    losses = []
    for epoch in range(1, cfg.epochs + 1):
        loss, _ = train_epoch(step, schedule, batches, epoch, cfg.epochs, progress, reconstruct=True)
        schedule.step_epoch(-loss)
        losses.append(loss)
    ae.eval()
    return losses
