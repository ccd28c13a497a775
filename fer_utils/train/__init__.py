"""Training: config, optimizer/schedule factories, the fit loop with exact resume, LR range test;
autoencoder pre-training in :mod:`fer_utils.train.autoencoder`."""
from fer_utils.train.config import TrainConfig
from fer_utils.train.engine import FitResult, fit
from fer_utils.train.lr_finder import LRFindResult, lr_find, suggest_lr
from fer_utils.train.optim import LRSchedule, create_optimizer, create_scheduler, list_optimizers, list_schedulers

__all__ = [
    "FitResult", "LRFindResult", "LRSchedule", "TrainConfig", "create_optimizer", "create_scheduler", "fit",
    "list_optimizers", "list_schedulers", "lr_find", "suggest_lr",
]
