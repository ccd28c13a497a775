"""Batch augmentation on the training device: one affine warp + photometric jitter + erasing.

Works on uint8 batches ``(B, H, W)`` (stills) or ``(B, T, H, W)`` (clips). The frames of a clip
are warped as channels of one image, so every frame of a clip gets the same transform.
:class:`BatchMix` (mixup / CutMix) mixes the converted float batch inside the training step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F


def _uniform(shape: tuple[int, ...], x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) numbers on ``x``'s device, drawn on ``g``'s device (a CPU generator gives
    the same numbers whatever device the batch is on)."""
    return torch.rand(shape, generator=g, device=x.device if g is None else g.device).to(x.device)


@dataclass(frozen=True)
class BatchAugment:
    """Random augmentation parameters; all zero/one means plain conversion to float [0, 1].

    shift: max translation as a fraction of the side (random crop/shift);
    flip: probability of a horizontal flip; rotation: max degrees either way;
    zoom: max relative scale change either way; brightness / contrast: max additive /
    multiplicative jitter; erase_p: probability of erasing one rectangle covering
    ``erase_area`` (min, max) of the image; crop: (min, max) side of a random square crop as a
    fraction of the image side, placed uniformly where it fits and resized to the full size (40-44
    px crops of 48: ``(40/48, 44/48)``; zoom and shift cannot say this: their scale range is
    symmetric around 1 and their shift ignores it). The crop is taken from the shifted, zoomed,
    rotated, flipped image, all in one affine warp.
    """

    shift: float = 0.0
    flip: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erase_p: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.15)
    crop: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if not 0 < self.crop[0] <= self.crop[1] <= 1:
            raise ValueError(f"crop must be (min, max) sides with 0 < min <= max <= 1, got {self.crop}")

    @property
    def cropped(self) -> bool:
        return tuple(self.crop) != (1.0, 1.0)

    @property
    def geometric(self) -> bool:
        return bool(self.shift or self.flip or self.rotation or self.zoom or self.cropped)

    def to_dict(self) -> dict:
        """Plain dict, for configs and checkpoints."""
        return asdict(self)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``(B,H,W)``/``(B,T,H,W)`` -> float32 ``(B,1,H,W)``/``(B,T,1,H,W)`` in [0, 1]."""
        if batch.dtype != torch.uint8 or batch.dim() not in (3, 4):
            raise ValueError(f"expected a uint8 batch (B,H,W) or (B,T,H,W), got {batch.dtype} {tuple(batch.shape)}")
        clip = batch.dim() == 4
        x = batch.float().div_(255.0)
        x = x if clip else x.unsqueeze(1)  # (B, C, H, W), C = T or 1
        if self.geometric:
            x = self._warp(x, generator)
        if self.brightness or self.contrast:
            x = self._jitter(x, generator)
        if self.erase_p:
            x = self._erase(x, generator)
        x = x.clamp_(0.0, 1.0)
        return x.unsqueeze(2) if clip else x

    def _rand(self, n: int, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """``n`` uniform numbers in [-1, 1) on ``x``'s device."""
        return _uniform((n,), x, g).mul_(2).sub_(1)

    def _warp(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b = x.shape[0]
        angle = self._rand(b, x, g) * math.radians(self.rotation)
        scale = 1.0 + self._rand(b, x, g) * self.zoom
        flip = torch.where(_uniform((b,), x, g) < self.flip, -1.0, 1.0)
        tx, ty = self._rand(b, x, g) * 2 * self.shift, self._rand(b, x, g) * 2 * self.shift
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([
            torch.stack([cos * flip, -sin, tx], dim=1),
            torch.stack([sin * flip, cos, ty], dim=1),
        ], dim=1)
        if self.cropped:  # output -> crop of side c at offset o -> input: [c A | A o + t]
            lo, hi = self.crop
            side = (lo + (hi - lo) * _uniform((b,), x, g)).view(b, 1, 1)
            offset = torch.stack([self._rand(b, x, g), self._rand(b, x, g)], dim=1).unsqueeze(2) * (1 - side)
            linear = theta[:, :, :2]
            theta = torch.cat([linear * side, linear @ offset + theta[:, :, 2:]], dim=2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b = x.shape[0]
        contrast = (1.0 + self._rand(b, x, g) * self.contrast).view(b, 1, 1, 1)
        brightness = (self._rand(b, x, g) * self.brightness).view(b, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean).mul_(contrast).add_(mean + brightness)

    def _erase(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        lo, hi = self.erase_area
        u = _uniform((b, 6), x, g)
        area = lo + (hi - lo) * u[:, 0]
        aspect = torch.exp((u[:, 1] * 2 - 1) * math.log(2.0))  # aspect ratio in [1/2, 2]
        eh = (area * aspect).sqrt().clamp(max=1.0) * h
        ew = (area / aspect).sqrt().clamp(max=1.0) * w
        top, left = u[:, 2] * (h - eh), u[:, 3] * (w - ew)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
                  & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)))
        mask = (inside & (u[:, 4] < self.erase_p).view(b, 1, 1)).unsqueeze(1)
        return torch.where(mask, u[:, 5].view(b, 1, 1, 1), x)


@dataclass(frozen=True)
class BatchMix:
    """Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a float batch with its reverse.

    One ``lam ~ Beta(alpha, alpha)`` per batch (timm's "batch" mode, pairing each item with the
    batch reversed: the order is already random). Mixup blends the images; CutMix pastes a box of
    about ``1 - lam`` of the area from the partner and sets ``lam`` to the area kept. With both
    alphas > 0 each batch gets one of them (even odds). The scalars come from a NumPy generator:
    torchvision's ``v2.MixUp``/``v2.CutMix`` draw from the global RNG, which cannot be seeded per
    ``(seed, epoch)`` as the rest of the augmentation is.
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        """Float ``(B, ..., H, W)`` -> the mixed batch (a new tensor) and ``lam``, the weight of each
        item's own label (see :meth:`targets`)."""
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        partner = x.flip(0)
        if not cutmix:
            return x.lerp(partner, 1.0 - lam), lam
        h, w = x.shape[-2:]
        side = math.sqrt(1.0 - lam)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        top, bottom = max(cy - round(h * side / 2), 0), min(cy + round(h * side / 2), h)
        left, right = max(cx - round(w * side / 2), 0), min(cx + round(w * side / 2), w)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        return mixed, 1.0 - (bottom - top) * (right - left) / (h * w)

    @staticmethod
    def targets(labels: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
        """Soft targets of a mixed batch: ``lam`` on each item's label, ``1 - lam`` on its partner's
        (``labels``: int classes, or ``(B, C)`` class probabilities)."""
        one_hot = labels.float() if labels.dim() == 2 else F.one_hot(labels, num_classes).float()
        return one_hot.lerp(one_hot.flip(0), 1.0 - lam)


AUGMENT_PRESETS: dict[str, BatchAugment] = {
    "none": BatchAugment(),
    "light": BatchAugment(shift=0.05, flip=0.5),
    "standard": BatchAugment(shift=0.1, flip=0.5, rotation=10, zoom=0.1, brightness=0.2, contrast=0.2,
                             erase_p=0.25),
    "strong": BatchAugment(shift=0.15, flip=0.5, rotation=15, zoom=0.2, brightness=0.3, contrast=0.3,
                           erase_p=0.5),
    # the published FER2013 recipes' (RECIPES.md): 40-44 px crops of 48, flips, small rotations, erasing
    "crop": BatchAugment(flip=0.5, rotation=10, erase_p=0.5, crop=(40 / 48, 44 / 48)),
}


def create_augment(name: str = "standard", **overrides) -> BatchAugment:
    """A preset (``none``, ``light``, ``standard``, ``strong``, ``crop``) with optional field overrides."""
    if name not in AUGMENT_PRESETS:
        raise KeyError(f"unknown augmentation {name!r}; presets: {sorted(AUGMENT_PRESETS)}")
    return replace(AUGMENT_PRESETS[name], **overrides)


def list_augments() -> list[str]:
    """Names of the augmentation presets."""
    return sorted(AUGMENT_PRESETS)


def to_model_input(images, device: str | torch.device | None = None) -> torch.Tensor:
    """uint8 ``(B,H,W)``/``(B,T,H,W)`` array or tensor -> float model input on ``device``, no augmentation."""
    batch = torch.as_tensor(images)
    if device is not None:
        batch = batch.to(device, non_blocking=True)
    return AUGMENT_PRESETS["none"](batch)
