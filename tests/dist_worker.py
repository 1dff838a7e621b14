"""One process of a small distributed training run, for tests/test_distributed.py.

Run as ``torchrun --nproc-per-node N tests/dist_worker.py OUT [--ckpt DIR] [--stop-at-step K]
[--no-sync-bn] [--model tiny|depth|frozen]``, or imported by the test for the one-process reference. Rank 0 writes the final
state dict and history to ``OUT``. ``--stop-at-step K`` stops every rank at its K-th forward pass
(all ranks take the same steps, so they stop together), as a killed job would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_cnn  # noqa: E402

from reslab import distributed  # noqa: E402
from reslab.data import Augment, BatchLoader, Dataset  # noqa: E402
from reslab.train import TrainConfig, train  # noqa: E402

#: The recipe: a global batch of 16 (8 images per rank with two processes), 6 steps an epoch.
CFG = dict(epochs=3, batch_size=16, lr=0.05, schedule="cosine", warmup_epochs=0.5, device="cpu", progress=False,
           eval_batch_size=16)
AUGMENT = Augment(pad_crop=2, flip=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class Stop(Exception):
    """The stand-in for a job killed mid-epoch."""


def split(name: str, n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return Dataset(name="cifar10", split=name, images=images, labels=labels, classes=[str(i) for i in range(10)],
                   source="synthetic", data_source="synthetic", fingerprint=f"test-{name}", path="")


MODELS = ("tiny", "depth", "frozen")


def model(name: str = "tiny") -> nn.Module:
    """``tiny``: a small CNN; ``depth``: a small CIFAR ResNet whose blocks stochastic depth drops
    per batch (as ``resnet110_sd``); ``frozen``: the small CNN with its first conv and batch norm
    frozen (as a frozen pretrained backbone)."""
    torch.manual_seed(0)
    if name == "depth":
        from reslab.models.resnet import BasicBlock, ResNet

        return ResNet(BasicBlock, (2, 2, 2), widths=(8, 16, 32), stem="cifar", shortcut="zeropad_avg",
                      final_survival=0.5, sd_mode="batch", num_classes=10, in_chans=3)
    net = tiny_cnn(width=8)
    if name == "frozen":
        from reslab.models._pretrained import freeze

        freeze([net[0], net[1]])
    return net


def loaders(cfg: TrainConfig) -> tuple[BatchLoader, BatchLoader]:
    d = distributed.current()
    ranks = dict(rank=d.rank, world_size=d.world_size, device="cpu", seed=cfg.seed)
    return (BatchLoader.for_split(split("train", 96, 1), cfg.batch_size, AUGMENT, train=True, **ranks),
            BatchLoader.for_split(split("test", 40, 2), cfg.eval_batch_size, AUGMENT.eval(), train=False, **ranks))


def run(ckpt: str | None = None, stop_at_step: int = 0, name: str = "tiny", **changes) -> tuple[nn.Module, object]:
    """Train the test model ``name`` (:func:`model`); returns ``(model, history)``. Raises
    :class:`Stop` at ``stop_at_step``."""
    cfg = TrainConfig(**{**CFG, **changes})
    net = model(name)
    if stop_at_step:
        calls = {"n": 0}

        def stop(module, inputs):
            if module.training:
                calls["n"] += 1
                if calls["n"] == stop_at_step:
                    raise Stop

        net.register_forward_pre_hook(stop)
    history = train(net, *loaders(cfg), cfg, checkpoint_dir=ckpt)
    return net, history


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--ckpt")
    parser.add_argument("--stop-at-step", type=int, default=0)
    parser.add_argument("--no-sync-bn", action="store_true")
    parser.add_argument("--model", choices=MODELS, default="tiny")
    args = parser.parse_args()
    dist = distributed.init_from_env("cpu")
    try:
        net, history = run(args.ckpt, args.stop_at_step, args.model, sync_bn=not args.no_sync_bn)
    except Stop:
        return 0
    if dist.is_main:
        torch.save({"state": net.state_dict(), "rows": history.rows, "setup": history.setup}, args.out)
    distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
