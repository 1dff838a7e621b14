"""Batch loader vs torchvision's DataLoader with per-sample PIL transforms (CIFAR augmentation).

Both produce normalised float batches with pad-4 random crop and horizontal flip from the same
uint8 images; the ratio printed is images/s of reslab's BatchLoader over the best DataLoader
setting (0 or 2 workers), measured in this one run. Target on a 2-core machine: at least 5x.

    python benchmarks/bench_loader.py [--subset 10000] [--batch-size 256] [--device cpu]
"""

from __future__ import annotations

import time

import torch
from _common import cifar_train, describe, parse_args, pil_loader

from reslab.data import Augment, BatchLoader


def images_per_s(loader, epochs: int = 2) -> float:
    """Images/s over ``epochs`` passes, after one warm-up pass."""
    def one_pass() -> int:
        n = 0
        for x, y in loader:
            n += y.shape[0]
        if x.is_cuda:
            torch.cuda.synchronize()
        return n

    one_pass()
    t0 = time.perf_counter()
    n = sum(one_pass() for _ in range(epochs))
    return n / (time.perf_counter() - t0)


def main() -> None:
    args = parse_args(__doc__, subset=10000, batch_size=256, device="cpu")

    data = cifar_train(args.subset)
    print(f"data: {describe(data)}; batch {args.batch_size}; device {args.device}")
    ours_loader = BatchLoader(data, args.batch_size, augment=Augment.standard("cifar10", train=True),
                              shuffle=True, drop_last=True, device=args.device)
    ours = images_per_s(ours_loader)
    print(f"reslab BatchLoader (on-device batch augmentation): {ours:10.0f} images/s")
    baseline = {}
    for workers in (0, 2):
        baseline[workers] = images_per_s(pil_loader(data, args.batch_size, workers))
        print(f"DataLoader + PIL transforms, {workers} workers:     {baseline[workers]:10.0f} images/s")
    best = max(baseline.values())
    print(f"ratio (BatchLoader / best DataLoader): {ours / best:.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
