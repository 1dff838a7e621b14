"""The on-device batch loader: a whole split lives on the training device, batches are made there.

On a 2-core machine feeding a fast GPU, per-sample Python and DataLoader workers are the
bottleneck, so :class:`BatchLoader` indexes the split's tensors directly and hands each batch to
an :class:`~reslab.data.augment.Augment`.

In a run of several processes (:mod:`reslab.distributed`) each rank's loader has the same
``batch_size``, the global one: a training loader draws the epoch's permutation and every batch's
augmentation for the global batch, exactly as one process would, and hands rank ``r`` the
``r``-th contiguous slice of it, so the ranks' slices put together are the one-process batch. An
evaluation loader gives each rank a contiguous share of the split instead.
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
        rank: This process's rank in a run of ``world_size`` processes.
        world_size: Processes sharing each batch (training) or the split (evaluation).
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
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}.")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} does not fit a world of {self.world_size} process(es).")
        if self.shuffle and self.world_size > 1:
            if self.batch_size % self.world_size:
                raise ValueError(f"the global batch of {self.batch_size} images does not split evenly between "
                                 f"{self.world_size} processes; choose a batch_size divisible by the process count.")
            if not self.drop_last:
                raise ValueError(f"{len(self.data)} training images are fewer than one global batch of "
                                 f"{self.batch_size}; lower batch_size or run fewer processes.")
        self.device = torch.device(self.device)
        self.images = self.data.images.to(self.device)
        self.labels = self.data.labels.to(self.device)

    @classmethod
    def for_split(cls, data: Dataset, batch_size: int, augment: Augment, train: bool,
                  device: str | torch.device = "cpu", seed: int = 0, channels_last: bool = False,
                  rank: int = 0, world_size: int = 1) -> "BatchLoader":
        """The loader of a training (``train=True``: shuffled, last incomplete batch dropped unless
        the split is smaller than one batch) or an evaluation split (in order, every image)."""
        return cls(data, batch_size, augment=augment, shuffle=train, drop_last=train and len(data) > batch_size,
                   device=device, seed=seed, channels_last=channels_last, rank=rank, world_size=world_size)

    @property
    def _span(self) -> tuple[int, int]:
        """The images this rank iterates over: all of them, or its share of an evaluation split."""
        n = len(self.data)
        if self.shuffle or self.world_size == 1:
            return 0, n
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

    def __len__(self) -> int:
        start, stop = self._span
        n = stop - start
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and augmentation the next iteration uses."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        return g

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        start, stop = self._span
        if self.shuffle:
            order = torch.randperm(stop - start, device=self.device, generator=g)
        else:
            order = torch.arange(start, stop, device=self.device)
        shard = self.batch_size // self.world_size if self.shuffle else self.batch_size
        keep = slice(self.rank * shard, (self.rank + 1) * shard)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            # The draws are made for the whole global batch, then this rank keeps its slice.
            x = self.augment(self.images[idx], g if self.augment.random else None)
            if self.shuffle and self.world_size > 1:
                x, idx = x[keep], idx[keep]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
