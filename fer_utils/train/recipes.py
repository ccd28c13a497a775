"""Named training recipes shared by the notebooks and the command line."""
from __future__ import annotations

from typing import Any

from fer_utils.train.config import TrainConfig

#: The FER2013 recipe shared by the notebooks (SGD + Nesterov, one-cycle, label smoothing).
FER2013_RECIPE: dict[str, Any] = dict(
    epochs=60, batch_size=128, lr=0.05, optimizer="sgd", scheduler="onecycle", weight_decay=5e-4,
    label_smoothing=0.1, augment="standard",
)
#: The CK+48 recipe (small data: AdamW, small batches). 60 epochs: on CPU, early_fusion at width 16
#: reached 93.8% (10-fold by subject) with 60 epochs against 88.0% with 30 (90.4% at width 32, 30 epochs).
CKPLUS_RECIPE: dict[str, Any] = dict(
    epochs=60, batch_size=32, lr=3e-3, optimizer="adamw", weight_decay=0.01, scheduler="onecycle",
    augment="standard",
)
#: The FER2013 recipe for ``vgg_gap`` (RECIPES.md: what the best from-scratch runs share): a long
#: schedule (250 epochs as WuJie1010's; cosine after 5 warm-up epochs, so it ends where it was planned,
#: not when a plateau rule fires), 40-44 px random crops + flips + 10 degree rotations + erasing
#: (``crop``; ten-crop averaging at test), EMA of the weights (0.999: a horizon of ~5 epochs of 201
#: steps), SGD with Nesterov momentum, label smoothing. Mixup / CutMix and SAM are variants to try
#: (``--mixup-alpha``, ``--cutmix-alpha``, ``--sam-rho``: twice the cost per step), not part of it.
FER2013_STRONG_RECIPE: dict[str, Any] = dict(
    epochs=250, batch_size=128, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=5e-4, scheduler="cosine",
    warmup_epochs=5, label_smoothing=0.1, augment="crop", ema_decay=0.999, channels_last=True,
)
#: Recipes by the name ``train --recipe`` takes.
RECIPES: dict[str, dict[str, Any]] = {"fer2013": FER2013_RECIPE, "strong": FER2013_STRONG_RECIPE}
#: FER2013 training of the ``frame_cnn`` that initialises CK+48 models (notebooks 06 and 08).
FRAME_CNN_OVERRIDES: dict[str, Any] = dict(lr=0.02)


def recipe(base: dict[str, Any], smoke: bool, seed: int = 0, **overrides: Any) -> TrainConfig:
    """``base`` with ``overrides`` and ``seed``; one epoch in smoke mode."""
    values = {**base, **overrides, "seed": seed}
    if smoke:
        values["epochs"] = 1
    return TrainConfig(**values)
