"""What both benchmarks share: the CIFAR-10 split they measure on, and the per-sample baseline."""

from __future__ import annotations

import argparse

import torch
import torchvision.transforms as T
from PIL import Image

from reslab.data import MEAN_STD, Dataset, load_dataset


def cifar_train(subset: int, seed: int = 0) -> Dataset:
    """CIFAR-10 training images: real ones under ``$RESLAB_DATA`` if there, else synthetic."""
    return load_dataset("cifar10", "train", subset=subset, seed=seed, download=False, allow_synthetic=True)


class PILCifar(torch.utils.data.Dataset):
    """The torchvision way: one PIL image per sample, transformed one at a time."""

    def __init__(self, data: Dataset):
        self.images = data.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) as torchvision's CIFAR10 holds it
        self.labels = data.labels.numpy()
        mean, std = MEAN_STD["cifar10"]
        self.transform = T.Compose([
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def pil_loader(data: Dataset, batch_size: int, workers: int, seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(PILCifar(data), batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers, generator=g, persistent_workers=False)


def parse_args(doc: str, **defaults) -> argparse.Namespace:
    """Parse ``--subset``, ``--batch-size`` and ``--device`` with a benchmark's defaults."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, value in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return p.parse_args()


def describe(data: Dataset) -> str:
    return f"{len(data)} CIFAR-10 training images ({data.data_source}), {torch.get_num_threads()} torch threads"


__all__ = ["cifar_train", "pil_loader", "describe", "parse_args"]
