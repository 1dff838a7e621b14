"""A training epoch through ``reslab.train()`` vs a plain loop on torchvision's DataLoader.

Same model (CIFAR ResNet-18, same initial weights), same images, batch size, optimiser and
augmentation. ``train()`` uses its on-device batch loader and channels-last; the plain loop uses
a DataLoader with per-sample PIL transforms (2 workers) in float32 NCHW. The ratio printed is
training images/s of ``train()`` over the plain loop, measured in this one run. Target on a
2-core machine: at least 1.2x. On a GPU it also reports ``train()`` with bf16 + channels-last and
with ``compile``.

    python benchmarks/bench_train.py [--subset 2048] [--batch-size 128] [--device auto]
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from _common import cifar_train, describe, parse_args, pil_loader
from reslab import TrainConfig, create_model, load_dataset, train
from reslab.train import resolve_device


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet18_cifar", num_classes=10)


def plain_loop(data, batch_size: int, device: torch.device, warmup: int = 2) -> float:
    """Training images/s of a textbook loop (float32, NCHW, DataLoader with 2 workers)."""
    net = model().to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    n, t0 = 0, None
    for i, (x, y) in enumerate(pil_loader(data, batch_size, workers=2)):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += y.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def reslab_train(data, test, cfg: TrainConfig, warmup: int = 2) -> float:
    """Training images/s of ``train()`` (the warm-up steps run first, in a separate call)."""
    train(model(), data, test, cfg.replace(max_steps=warmup))
    h = train(model(), data, test, cfg)
    return h.rows[0]["images_per_s"]


def main() -> None:
    args = parse_args(__doc__, subset=2048, batch_size=128, device="auto")
    device = resolve_device(args.device)

    data = cifar_train(args.subset)
    test = load_dataset("cifar10", "test", subset=min(256, args.subset), download=False, allow_synthetic=True)
    print(f"data: {describe(data)}; batch {args.batch_size}; device {device}")
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, momentum=0.9, weight_decay=5e-4,
                      device=str(device), channels_last=True, progress=False)
    ours = reslab_train(data, test, cfg)
    print(f"reslab train() (batch loader, channels-last, fp32): {ours:8.1f} images/s")
    base = plain_loop(data, args.batch_size, device)
    print(f"plain loop (DataLoader + PIL, fp32, NCHW):          {base:8.1f} images/s")
    print(f"ratio (train() / plain loop): {ours / base:.2f}x  (target >= 1.2x)")
    if device.type == "cuda":
        bf16 = reslab_train(data, test, cfg.replace(amp=True))
        print(f"train() bf16 + channels-last:           {bf16:8.1f} images/s")
        compiled = reslab_train(data, test, cfg.replace(amp=True, compile=True), warmup=5)
        print(f"train() bf16 + channels-last + compile: {compiled:8.1f} images/s")


if __name__ == "__main__":
    main()
