"""The on-device batch loader: a whole split lives on the training device, batches are made there.

On a 2-core machine feeding a fast GPU, per-sample Python and DataLoader workers are the
bottleneck, so :class:`BatchLoader` indexes the split's tensors directly and hands each batch to
an :class:`~reslab.data.augment.Augment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .augment import Augment
from .specs import Dataset


@dataclass
class BatchLoader:
    """Holds a whole split on a device and yields augmented batches.

    Shuffling and augmentation draw from a generator seeded with ``(seed, epoch)``, so an epoch's
    batches depend only on the seed and the epoch number: a resumed run sees the same batches.

    Args:
        data: A :class:`Dataset`.
        batch_size: Images per batch.
        augment: The batch transform (for evaluation use ``augment.eval()``).
        shuffle: Reshuffle every epoch.
        drop_last: Drop the last incomplete batch (training).
        device: Where the split lives and batches are made.
        seed: Base seed of shuffling and augmentation.
        channels_last: Return batches in channels-last memory format.
    """

    data: Dataset
    batch_size: int
    augment: Augment = field(default_factory=Augment)
    shuffle: bool = False
    drop_last: bool = False
    device: str | torch.device = "cpu"
    seed: int = 0
    channels_last: bool = False
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}.")
        self.device = torch.device(self.device)
        self.images = self.data.images.to(self.device)
        self.labels = self.data.labels.to(self.device)

    @classmethod
    def for_split(cls, data: Dataset, batch_size: int, augment: Augment, train: bool,
                  device: str | torch.device = "cpu", seed: int = 0, channels_last: bool = False) -> "BatchLoader":
        """The loader of a training (``train=True``: shuffled, last incomplete batch dropped unless
        the split is smaller than one batch) or an evaluation split (in order, every image)."""
        return cls(data, batch_size, augment=augment, shuffle=train, drop_last=train and len(data) > batch_size,
                   device=device, seed=seed, channels_last=channels_last)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and augmentation the next iteration uses."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        return g

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        n = len(self.data)
        order = torch.randperm(n, device=self.device, generator=g) if self.shuffle else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.augment(self.images[idx], g if self.augment.random else None)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
