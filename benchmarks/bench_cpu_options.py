"""The CPU speed options (channels-last, ``torch.compile``) for the Table 4 networks, in one run.

Issue 27 asks, before a run of three or more hours on the CPU (ConvNeXt-tiny's 50 epochs of CIFAR-10
under Table 4's ``paper`` recipe), whether channels-last or ``torch.compile`` makes it shorter. Each
line is ``reslab.train()`` with Table 4's ``paper`` recipe (SGD momentum 0.9, batch 128, pad-crop and
flip, float32 on the CPU) on a CIFAR-10 subset, the same model and initial weights, with one speed
setting changed (neither is part of a run's key or a recipe override); images/s over the epochs
after the first (which compiles and warms up). Printed: images/s of each setting and its ratio to
the CPU default (eager, NCHW), measured in this run. Time it on an idle machine.

    python benchmarks/bench_cpu_options.py [--models convnext_tiny,drstn_v5,resnet18] [--subset 1024] [--epochs 3]
"""

from __future__ import annotations

import torch
from _common import cifar_train, describe, parse_args

from reslab import create_model, load_dataset, train
from reslab.runs.cost import device_words
from reslab.tables.drstn import TABLE4_RECIPES

#: (label, TrainConfig changes): the CPU default first.
SETTINGS = (
    ("eager, NCHW (the CPU default)", {}),
    ("eager, channels-last", {"channels_last": True}),
    ("torch.compile default, NCHW", {"compile": "default"}),
    ("torch.compile default, channels-last", {"compile": "default", "channels_last": True}),
)


def main() -> None:
    args = parse_args(__doc__, models="convnext_tiny,drstn_v5,resnet18", subset=1024, epochs=3)
    data = cifar_train(args.subset)
    test = load_dataset("cifar10", "test", subset=128, download=False, allow_synthetic=True)
    cfg = TABLE4_RECIPES["paper"].cfg.replace(epochs=max(2, args.epochs), device="cpu", progress=False)
    print(f"data: {describe(data)}; Table 4 paper recipe, batch {cfg.batch_size}, {cfg.epochs} epochs; "
          f"{device_words(torch.device('cpu'))}; torch {torch.__version__}")
    for name in args.models.split(","):
        print(f"\n{name}:")
        rates = {}
        for label, change in SETTINGS:
            torch.manual_seed(0)
            model = create_model(name, num_classes=10)
            try:
                h = train(model, data, test, cfg.replace(**change))
            except Exception as exc:  # a setting that cannot run here is reported, the others go on
                print(f"  {label:40s} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
                continue
            rows = h.rows[1:]
            rates[label] = sum(r["train_images"] for r in rows) / sum(r["train_seconds"] for r in rows)
            base = rates.get(SETTINGS[0][0])
            ratio = f"ratio {rates[label] / base:.2f}x" if base else ""
            print(f"  {label:40s} {rates[label]:8.1f} images/s  {ratio}  (compile={h.setup['compile']})")
        best = max(rates, key=rates.get)
        print(f"  fastest: {best} ({rates[best] / rates[SETTINGS[0][0]]:.2f}x the CPU default)")


if __name__ == "__main__":
    main()
