"""The cost plan's estimate of DRSTN Table 4 runs against the runs themselves.

DRSTN V5, ResNet-18 and ConvNeXt-tiny (the fastest, a middle and the slowest network of Table 4)
with Table 4's ``paper`` recipe (SGD momentum 0.9, lr 0.01, batch 128, cosine, pad-crop and flip;
bf16 autocast on CUDA) but on a CIFAR-10 subset (real images under ``$RESLAB_DATA`` if there, else
synthetic) for a few epochs. For each network, first the plan's estimate of that run
(``reslab.runs.cost``: a step timed on this device, training + evaluation + per-run overhead), then
the run itself through the run machinery (``reslab.runs.execute.run_one``: model build, ``train()``
with an evaluation and a checkpoint after every epoch, the result row), timed from the outside. The
ratio printed is estimate / measured, one per run, then the one furthest from 1. Target: 0.7-1.3.
Time it on an idle machine: other work slows the run and the timed steps alike, but not evenly.

    python benchmarks/bench_plan.py [--train 1024] [--test 512] [--epochs 2] [--device auto]
                                    [--models drstn_v5,resnet18,convnext_tiny]
"""

from __future__ import annotations

import os
import tempfile
import time

from _common import describe, parse_args

from reslab import load_dataset
from reslab.profiles import resolve_profile
from reslab.runs.cost import PlannedRun, cost_runs, device_words, duration
from reslab.runs.execute import run_one
from reslab.tables.drstn import TABLE4_RECIPES, table4_specs
from reslab.train import resolve_device


def main() -> None:
    args = parse_args(__doc__, train=1024, test=512, epochs=2, device="auto", models="drstn_v5,resnet18,convnext_tiny")
    device = resolve_device(args.device)
    train = load_dataset("cifar10", "train", subset=args.train, seed=0, download=False, allow_synthetic=True)
    test = load_dataset("cifar10", "test", subset=args.test, seed=0, download=False, allow_synthetic=True)
    recipe = TABLE4_RECIPES["paper"].with_overrides(epochs=args.epochs, device=str(device), progress=False)
    print(f"data: {describe(train)}; {len(test)} test images; Table 4 paper recipe, {args.epochs} epoch(s); "
          f"device {device_words(device)}")
    ratios = {model: bench(spec, train, test, device) for model in args.models.split(",")
              for spec in table4_specs(recipe, models=[model])}
    worst = max(ratios, key=lambda m: abs(ratios[m] - 1))
    print(f"ratio (estimate / measured), furthest from 1: {ratios[worst]:.2f} ({worst}; target 0.7-1.3)")


def bench(spec, train, test, device) -> float:
    """Plan one run, make it, print both; return estimate / measured."""
    t0 = time.perf_counter()
    est = cost_runs([PlannedRun("bench", spec, 0, len(train), len(test))], device).iloc[0]
    print(f"{spec.model}: plan (made in {time.perf_counter() - t0:.1f} s): {est['steps']} steps of "
          f"{est['step_s']:.3f} s at batch {spec.cfg.batch_size} ({est['timing']}); training "
          f"{est['train_min'] * 60:.1f} s, evaluation {est['eval_min'] * 60:.1f} s, overhead "
          f"{est['overhead_min'] * 60:.1f} s: estimate {est['minutes'] * 60:.1f} s")
    with tempfile.TemporaryDirectory(prefix="reslab-bench-plan-") as runs:
        os.environ["RESLAB_RUNS"] = runs  # a fresh run store: the run trains, never reused
        t0 = time.perf_counter()
        row, history = run_one(spec, resolve_profile("paper"), 0, train, test)
        measured = time.perf_counter() - t0
    train_s = float(history["train_seconds"].sum())
    epochs_s = float(history["seconds"].sum())
    ratio = est["minutes"] * 60 / measured
    print(f"{spec.model}: run: {len(history)} epoch(s) on {row['device']}: training {train_s:.1f} s, evaluation and "
          f"checkpoints {epochs_s - train_s:.1f} s, outside the epochs {measured - epochs_s:.1f} s: measured "
          f"{measured:.1f} s ({duration(measured / 60)}); ratio (estimate / measured) {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
