"""`TrainConfig`: every training hyper-parameter in one plain, JSON-serialisable dataclass."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULERS: tuple[str, ...] = ("onecycle", "cosine", "step", "plateau", "none")
AMP_DTYPES: tuple[str, ...] = ("bfloat16", "float16")
#: Fields that decide how a run is written, not what it computes: left out of :meth:`TrainConfig.identity`.
BOOKKEEPING_FIELDS: tuple[str, ...] = ("checkpoint_every",)
#: Fields added after runs were stored, with their "off" values: left out of :meth:`TrainConfig.identity`
#: at those values, so the hashes of stored experiments and the resume checks of older runs still match.
LATER_FIELDS: dict[str, Any] = {"ema_decay": None, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "sam_rho": 0.0,
                                "ema_warmup": False}
#: Identity key of runs with ``amp`` on since ``amp`` autocasts on CPU too: results stored when it meant
#: fp32 on CPU (before) are then not taken for bf16 ones.
CPU_AMP_KEY = "amp_on_cpu"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (recorded in ``config.json`` and checkpoints).

    optimizer: ``sgd`` (Nesterov momentum) or ``adamw``; weight decay skips biases and norm
    parameters. scheduler: ``onecycle`` / ``cosine`` (per batch, ``lr`` is the peak),
    ``step`` (x ``gamma`` every ``step_size`` epochs), ``plateau`` (x ``gamma`` after
    ``plateau_patience`` epochs without validation-accuracy gain), ``none``.
    warmup_epochs: linear warm-up for ``cosine``. class_weighting: inverse-frequency class
    weights in the training loss. amp: autocast in ``amp_dtype`` (CUDA: as asked, ``float16`` adds a
    gradient scaler; CPU: ``bfloat16`` where the CPU has it natively, else fp32, see
    :func:`fer_utils.devices.resolve_precision`). channels_last: the channels-last memory layout for
    2-D convolutional models (others ignore it). grad_clip: max global gradient norm.
    early_stopping_patience: stop after this many epochs without validation-accuracy gain.
    eval_batch_size: batch size for validation (no gradients, so larger).
    checkpoint_every: write ``last.pt`` every this many epochs, at the end, and when the run
    is interrupted or diverges; ``None`` chooses by model size; either way an epoch that ends 10 minutes
    or more after the last write writes it too (see ``fer_utils.train.run_folder``).
    ema_decay: keep an exponential moving average of the weights and buffers (updated after every
    step); validation, the best epoch and ``best.pt`` then use it. ``None``: off.
    ema_warmup: with ``ema_decay``, the t-th update uses ``min(ema_decay, (1 + t) / (10 + t))`` (timm's
    warm-up), so the average forgets the random start within a few hundred steps; without it, at 0.999,
    the first epochs validate weights and batch-norm statistics still mostly at their initial values.
    mixup_alpha / cutmix_alpha: Beta(alpha, alpha) mixing of each training batch with its reverse
    (:class:`~fer_utils.data.augment.BatchMix`, soft-target loss; both > 0: one or the other per
    batch, at random); 0: off.
    sam_rho: sharpness-aware minimisation (Foret et al., 2021): each step takes the gradient at the
    weights moved this far (L2) along the normalised gradient, two forward/backward passes per
    step; 0: off. The paper's default for SGD is 0.05.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "onecycle"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    plateau_patience: int = 3
    label_smoothing: float = 0.0
    class_weighting: bool = False
    augment: str = "standard"
    amp: bool = True
    amp_dtype: str = "bfloat16"
    channels_last: bool = True
    compile: bool = False
    grad_clip: float | None = None
    early_stopping_patience: int | None = None
    eval_batch_size: int = 512
    seed: int = 0
    checkpoint_every: int | None = None
    ema_decay: float | None = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    sam_rho: float = 0.0
    ema_warmup: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"),
            (self.amp_dtype in AMP_DTYPES, f"amp_dtype must be one of {AMP_DTYPES}, got {self.amp_dtype!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1 and self.eval_batch_size >= 1, "batch sizes must be >= 1"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None, got {self.grad_clip}"),
            (self.early_stopping_patience is None or self.early_stopping_patience >= 1,
             f"early_stopping_patience must be >= 1 or None, got {self.early_stopping_patience}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"checkpoint_every must be >= 1 or None, got {self.checkpoint_every}"),
            (self.ema_decay is None or 0.0 < self.ema_decay < 1.0,
             f"ema_decay must be in (0, 1) or None, got {self.ema_decay}"),
            (not self.ema_warmup or self.ema_decay is not None, "ema_warmup needs ema_decay"),
            (self.mixup_alpha >= 0 and self.cutmix_alpha >= 0,
             f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha} and {self.cutmix_alpha}"),
            (math.isfinite(self.sam_rho) and self.sam_rho >= 0, f"sam_rho must be >= 0, got {self.sam_rho}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and ``torch.load(weights_only=True)`` safe)."""
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """:meth:`to_dict` without :data:`BOOKKEEPING_FIELDS` nor :data:`LATER_FIELDS` at their off
        values, plus :data:`CPU_AMP_KEY` when ``amp`` is on: what config hashes and resume checks compare."""
        values = {k: v for k, v in self.to_dict().items()
                  if k not in BOOKKEEPING_FIELDS and (k not in LATER_FIELDS or v != LATER_FIELDS[k])}
        return {**values, CPU_AMP_KEY: True} if self.amp else values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
