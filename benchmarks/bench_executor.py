"""A table's runs one after the other (executor ``inline``) against ``jobs`` of them at once as local
processes (executor ``local``, submitit): the wall time of the same runs both ways.

``runs`` seeds of a CIFAR-stem ResNet-18 with Table 4's ``paper`` optimiser (SGD momentum 0.9,
batch 128, cosine; bf16 autocast on CUDA) for ``epochs`` epochs on the profile's CIFAR-10 splits
(``smoke``: 512 / 256 images, real under ``$RESLAB_DATA`` if there, else synthetic; ``paper``:
all 50,000 / 10,000). Each way trains into a fresh run store, timed from the outside, and the rows
must agree (same numbers: the runs are the same). The ratio printed is inline / local wall time,
from this one pair of calls. Target on one H100 with the ``paper`` splits and 4 jobs: >= 2x (the
small network leaves most of the GPU idle); on 2 CPU cores no gain is expected (both ways share
the same two cores).

    python benchmarks/bench_executor.py [--runs 4] [--jobs 4] [--epochs 1] [--profile smoke] [--device auto]
                                        [--model resnet18_cifar]
"""

from __future__ import annotations

import os
import tempfile
import time

from _common import parse_args

from reslab.runs.cost import device_words
from reslab.runs.execute import run_specs
from reslab.runs.jobs import Executor
from reslab.runs.spec import Recipe, RunSpec, load_splits
from reslab.tables.drstn import TABLE4_RECIPES
from reslab.train import resolve_device


def main() -> None:
    args = parse_args(__doc__, runs=4, jobs=4, epochs=1, profile="smoke", device="auto", model="resnet18_cifar")
    device = resolve_device(args.device)
    cfg = TABLE4_RECIPES["paper"].cfg.replace(epochs=args.epochs, device=str(device), progress=False)
    spec = RunSpec(table="bench_executor", label=args.model, model=args.model, dataset="cifar10",
                   recipe=Recipe(cfg=cfg))
    splits = {"cifar10": load_splits("cifar10", args.profile)}
    train, test = splits["cifar10"]
    seeds = list(range(args.runs))
    print(f"{args.runs} runs of {args.model}, {args.epochs} epoch(s) on {len(train)} {train.data_source} "
          f"training images ({len(test)} test), profile {args.profile}; device {device_words(device)}")
    walls, rows = {}, {}
    for kind in ("inline", "local"):
        with tempfile.TemporaryDirectory(prefix=f"reslab-bench-{kind}-") as runs:
            os.environ["RESLAB_RUNS"] = runs  # a fresh run store: every run trains
            t0 = time.perf_counter()
            out = run_specs([spec], args.profile, seeds, splits=splits,
                            executor=Executor(kind, jobs=args.jobs if kind == "local" else None, poll_s=0.5))
            walls[kind] = time.perf_counter() - t0
            rows[kind] = out.rows
        print(f"{kind}: {walls[kind]:.1f} s for {args.runs} runs"
              + (f" ({args.jobs} at once)" if kind == "local" else " (one after the other)"))
    same = rows["inline"][["seed", "best_acc", "final_acc"]].equals(rows["local"][["seed", "best_acc", "final_acc"]])
    print(f"same numbers both ways: {same}")
    print(f"ratio (inline / local wall time): {walls['inline'] / walls['local']:.2f} "
          f"(target on one H100, paper splits, 4 jobs: >= 2)")


if __name__ == "__main__":
    main()
