"""A batch iterator that keeps the whole dataset on the training device."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fer_utils.data.augment import BatchAugment, to_model_input
from fer_utils.data.dataset import FaceData
from fer_utils.devices import resolve_device


class BatchIterator:
    """Shuffled, augmented mini-batches from a uint8 dataset resident on ``device``.

    The images are copied to the device once; each epoch draws a permutation and the
    augmentation's random numbers from a generator seeded by ``(seed, epoch)``, so epoch ``e``
    is reproducible on its own (:meth:`set_epoch` before iterating, e.g. after a resume).
    ``cpu_rng`` draws them on the CPU instead of ``device``: the same batches on CPU and CUDA.
    Without :meth:`set_epoch`, each new iteration advances to the next epoch.
    Yields ``(x, y)``: float ``(B,1,H,W)`` or ``(B,T,1,H,W)`` in [0, 1] and int64 labels, or float
    ``(B, C)`` class probabilities when ``labels`` is a float ``(N, C)`` array (soft labels).
    """

    def __init__(
        self,
        images: FaceData | np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | None = None,
        *,
        batch_size: int = 128,
        device: str | torch.device | None = None,
        shuffle: bool = True,
        augment: BatchAugment | None = None,
        seed: int = 0,
        drop_last: bool = False,
        cpu_rng: bool = False,
    ) -> None:
        if isinstance(images, FaceData):
            images, labels = images.images, images.labels if labels is None else labels
        if labels is None:
            raise ValueError("labels are required unless a FaceData is given")
        self.device = resolve_device(device)
        self.images = torch.as_tensor(images).to(self.device)
        labels = np.asarray(labels)
        soft = labels.dtype.kind == "f" and labels.ndim == 2  # class probabilities (soft labels)
        self.labels = torch.as_tensor(labels, dtype=torch.float32 if soft else torch.int64).to(self.device)
        if self.images.dtype != torch.uint8 or len(self.images) != len(self.labels):
            raise ValueError(
                f"expected uint8 images and one label each, got {self.images.dtype} "
                f"{tuple(self.images.shape)} and {len(self.labels)} labels"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        self.rng_device = torch.device("cpu") if cpu_rng else self.device

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and augmentation are fixed by it)."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        gen = torch.Generator(device=self.rng_device)
        gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        return gen

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = self._generator()
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=gen, device=self.rng_device).to(self.device) if self.shuffle \
            else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            batch = self.images[idx]
            x = self.augment(batch, gen) if self.augment is not None else to_model_input(batch)
            yield x, self.labels[idx]
