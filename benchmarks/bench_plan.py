"""The cost plan's estimate of one DRSTN run against the run itself.

DRSTN V5 with Table 4's ``paper`` recipe (SGD momentum 0.9, lr 0.01, batch 128, cosine, pad-crop
and flip; bf16 autocast on CUDA) but on a CIFAR-10 subset (real images under ``$RESLAB_DATA`` if
there, else synthetic) for a few epochs. First the plan's estimate of that run (``reslab.runs.cost``:
a step timed on this device, training + evaluation + per-run overhead), then the run itself
through the run machinery (``reslab.runs.execute.run_one``: model build, ``train()`` with an
evaluation and a checkpoint after every epoch, the result row), timed from the outside. The ratio
printed is estimate / measured, from this one run. Target: 0.7-1.3.

    python benchmarks/bench_plan.py [--train 1024] [--test 512] [--epochs 2] [--device auto]
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
    args = parse_args(__doc__, train=1024, test=512, epochs=2, device="auto")
    device = resolve_device(args.device)
    train = load_dataset("cifar10", "train", subset=args.train, seed=0, download=False, allow_synthetic=True)
    test = load_dataset("cifar10", "test", subset=args.test, seed=0, download=False, allow_synthetic=True)
    recipe = TABLE4_RECIPES["paper"].with_overrides(epochs=args.epochs, device=str(device), progress=False)
    spec = table4_specs(recipe, models=["drstn_v5"])[0]
    print(f"data: {describe(train)}; {len(test)} test images; DRSTN V5, Table 4 paper recipe (batch "
          f"{spec.cfg.batch_size}), {args.epochs} epoch(s); device {device_words(device)}")

    t0 = time.perf_counter()
    est = cost_runs([PlannedRun("bench", spec, 0, len(train), len(test))], device).iloc[0]
    print(f"plan (made in {time.perf_counter() - t0:.1f} s): {est['steps']} steps of {est['step_s']:.3f} s "
          f"({est['timing']}); training {est['train_min'] * 60:.1f} s, evaluation {est['eval_min'] * 60:.1f} s, "
          f"overhead {est['overhead_min'] * 60:.1f} s: estimate {est['minutes'] * 60:.1f} s")

    with tempfile.TemporaryDirectory(prefix="reslab-bench-plan-") as runs:
        os.environ["RESLAB_RUNS"] = runs  # a fresh run store: the run trains, never reused
        t0 = time.perf_counter()
        row, history = run_one(spec, resolve_profile("paper"), 0, train, test)
        measured = time.perf_counter() - t0
    train_s = float(history["train_seconds"].sum())
    epochs_s = float(history["seconds"].sum())
    print(f"run: {len(history)} epoch(s) on {row['device']}: training {train_s:.1f} s, evaluation and checkpoints "
          f"{epochs_s - train_s:.1f} s, outside the epochs {measured - epochs_s:.1f} s: measured {measured:.1f} s "
          f"({duration(measured / 60)})")
    print(f"ratio (estimate / measured): {est['minutes'] * 60 / measured:.2f} (target 0.7-1.3)")


if __name__ == "__main__":
    main()
