"""The SELU paper's ablation (seed 003, Tables 2-5): ResNet-34 variants on Fashion-MNIST.

One call, :func:`run_selu_ablation`, trains every row of Tables 2-5 over the same seeds, and
writes one table with every variant (mean, std and n of final- and best-epoch test accuracy,
the paper's number and the difference, a paired comparison with the baseline on the same
seeds), the loss curves with and without learning-rate decay (the paper's Fig. 4-5) and SELU
against ReLU (Fig. 6).

Rows (:data:`VARIANTS`); the models are those of :mod:`reslab.models.selu_resnet`:

- ``ResNet34``: the baseline of Tables 2-5 (ReLU, 7x7 conv + max-pool stem, zero-padding shortcuts).
- ``ResNet34+LR decay``: the same model with a decaying learning rate (Table 2).
- ``ResNet34+SELU`` (Table 3), ``ResNet34+Inception`` (Table 4): one change each, no decay.
- ``All improvements`` (Table 5): SELU, Inception stem, 1x1 projection shortcuts and LR decay.
- ``ResNet34 (2x epochs)``, ``ResNet34+LR decay (2x epochs)``: Table 2's second row, twice the
  profile's epochs (20 in ``paper``).

Recipes (:data:`RECIPES`, one per profile); where the paper is silent, the choice and its reason:

- ``paper``: Adam, cross-entropy (section 4.1), 10 epochs, 10 runs (section 4.2, "10 次迭代" read
  as 10 epochs), 20 epochs for Table 2's second row. Not given, chosen: learning rate 1e-3 and no
  weight decay (Adam's defaults), batch size 128, no augmentation (the paper mentions none).
  The decay schedule is not given ("the learning rate decreases with the number of
  iterations"): we decay it by x0.8 after every epoch (``schedule='exponential'``), a schedule
  that depends on the iteration count only, not on the run's length, so the 10- and 20-epoch
  rows share it (lr 1e-3 -> 1.3e-4 after 10 epochs, 1.4e-5 after 20).
- ``strong``: DESIGN.md's common recipe: SGD (Nesterov, momentum 0.9), lr 0.1, 1 warm-up epoch,
  label smoothing 0.1, weight decay 5e-4, pad-4 crop and flip, 30 epochs (60 for the 2x rows),
  3 runs. "LR decay" is the ablated factor, so rows with decay use cosine and rows without keep
  the constant learning rate after the warm-up.
- ``smoke``: a plumbing check in CPU seconds: 2 steps of batch 16 per run, images resized to
  14x14 (the Inception stem runs at full resolution, and at 28x28 it costs ~4x more), 2 seeds
  (the fewest that give an interval). The 2x-epoch rows are left out by default: under a step
  cap they would repeat the 1x rows.
- ``cpu15``: the largest budget that fits about 15 minutes on 2 CPU cores: the profile's
  subsets (800 train / 500 test images), the ``paper`` recipe with 2 epochs (4 for the 2x rows),
  batch 64, 2 seeds. Not comparable with the paper (subsets, few epochs).

Input: Fashion-MNIST is 1x28x28 grey; the models are built with ``in_chans=1`` (the stem's first
convolution takes one channel) and get images normalised with the training split's mean and
std (0.2860, 0.3530). SELU models use LeCun-normal initialisation (``N(0, 1/fan_in)``, set by the
model), ReLU models He initialisation.

On the CPU, denormal floats are flushed to zero while training (``torch.set_flush_denormal``):
SELU's exponential produces many, and they made a SELU ResNet-34 step 2-4x slower than a ReLU one
here; the effect on the numbers is below float32 resolution of normal values.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pandas as pd
import torch

from .. import plots
from ..claims import as_fraction, load_claims
from ..data import MEAN_STD, Augment
from ..experiment import RunSpec, load_splits, paired_comparison, run_specs, summarise
from ..profiles import get_profile
from ..results import output_dir
from ..train import TrainConfig, resolve_device
from ._common import TableOutput

TABLE = "selu_ablation_fashion_mnist"
DATASET = "fashion_mnist"
PAPER = "selu"
PAPER_EPOCHS = 10  # the paper's run length of Tables 2-5; Table 2's second row is twice it


@dataclass(frozen=True)
class Variant:
    """One row of the ablation.

    Attributes:
        label: The row label.
        model: A registered model name.
        lr_decay: Whether the learning rate decays (the recipe says how).
        long: Table 2's second row: twice the profile's epochs.
        baseline: The row it is compared with on the same seeds (``None`` for a baseline).
        tables: The paper's tables that print this row.
    """

    label: str
    model: str
    lr_decay: bool
    long: bool = False
    baseline: str | None = None
    tables: str = ""

    @property
    def paper_epochs(self) -> int:
        return 2 * PAPER_EPOCHS if self.long else PAPER_EPOCHS


VARIANTS: tuple[Variant, ...] = (
    Variant("ResNet34", "selu_resnet34_baseline", False, tables="Tables 2-5"),
    Variant("ResNet34+LR decay", "selu_resnet34_baseline", True, baseline="ResNet34", tables="Table 2"),
    Variant("ResNet34+SELU", "selu_resnet34_selu", False, baseline="ResNet34", tables="Table 3"),
    Variant("ResNet34+Inception", "selu_resnet34_inception", False, baseline="ResNet34", tables="Table 4"),
    Variant("All improvements", "selu_resnet34_all", True, baseline="ResNet34", tables="Table 5"),
    Variant("ResNet34 (2x epochs)", "selu_resnet34_baseline", False, long=True, tables="Table 2"),
    Variant("ResNet34+LR decay (2x epochs)", "selu_resnet34_baseline", True, long=True,
            baseline="ResNet34 (2x epochs)", tables="Table 2"),
)
_BY_LABEL = {v.label: v for v in VARIANTS}
_SHORT = tuple(v.label for v in VARIANTS if not v.long)


@dataclass(frozen=True)
class Recipe:
    """How one profile trains the ablation.

    Attributes:
        cfg: The recipe of rows without LR decay.
        decay: TrainConfig fields that rows with LR decay change.
        train_augment: Batch transform of training batches.
        test_augment: Batch transform of test batches.
        seeds: Default seeds (one run per seed and row).
        variants: Default row labels.
    """

    cfg: TrainConfig
    decay: dict[str, Any]
    train_augment: Augment
    test_augment: Augment
    seeds: tuple[int, ...]
    variants: tuple[str, ...] = field(default=tuple(v.label for v in VARIANTS))


_MEAN, _STD = MEAN_STD[DATASET]
_NORM = Augment(mean=_MEAN, std=_STD)
_PAPER_CFG = TrainConfig(epochs=PAPER_EPOCHS, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=0.0,
                         schedule="none", progress=False)
_PAPER_DECAY = {"schedule": "exponential", "gamma": 0.8}

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(_PAPER_CFG, _PAPER_DECAY, _NORM, _NORM, seeds=tuple(range(10))),
    "strong": Recipe(
        TrainConfig(epochs=30, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, schedule="none", warmup_epochs=1.0, label_smoothing=0.1, progress=False),
        {"schedule": "cosine"}, Augment(pad_crop=4, flip=True, mean=_MEAN, std=_STD), _NORM, seeds=(0, 1, 2)),
    "smoke": Recipe(_PAPER_CFG.replace(epochs=1, batch_size=16, max_steps=2), _PAPER_DECAY,
                    Augment(resize=14, mean=_MEAN, std=_STD), Augment(resize=14, mean=_MEAN, std=_STD),
                    seeds=(0, 1), variants=_SHORT),
    "cpu15": Recipe(_PAPER_CFG.replace(epochs=2, batch_size=64), _PAPER_DECAY, _NORM, _NORM, seeds=(0, 1)),
}


def get_recipe(profile: str) -> Recipe:
    """The ablation's recipe for ``profile``.

    Raises:
        ValueError: for an unknown profile or one this table has no recipe for.
    """
    get_profile(profile)
    if profile not in RECIPES:
        raise ValueError(f"the SELU ablation has no {profile!r} recipe; use one of {', '.join(RECIPES)}.")
    return RECIPES[profile]


def _check_variants(variants: Sequence[str] | None, default: Sequence[str]) -> tuple[list[Variant], list[str]]:
    """The rows to run in table order, with their baselines added; and notes on what was added."""
    if isinstance(variants, str):
        raise ValueError(f"variants must be a list of row labels, got the string {variants!r}.")
    names = list(default if variants is None else variants)
    unknown = [n for n in names if n not in _BY_LABEL]
    if unknown or not names:
        raise ValueError(f"unknown or no variant(s) {unknown}; choose from {list(_BY_LABEL)}.")
    wanted = set(names)
    added = sorted({_BY_LABEL[n].baseline for n in names if _BY_LABEL[n].baseline} - wanted)
    wanted |= set(added)
    notes = [f"added baseline row {a!r}: the paired comparison needs it." for a in added]
    return [v for v in VARIANTS if v.label in wanted], notes


def _check_seeds(seeds: Sequence[int] | None, default: Sequence[int]) -> list[int]:
    values = list(default if seeds is None else seeds)
    if not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must not repeat (a repeated seed is the same run), got {values}.")
    return values


def make_specs(
    profile: str,
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
) -> list[RunSpec]:
    """The :class:`RunSpec` of every row for ``profile``.

    Args:
        profile: ``smoke``, ``paper``, ``strong`` or ``cpu15``.
        variants: Row labels (default: the recipe's); missing baselines are added.
        epochs: Epochs of the 1x rows (the 2x rows run twice as many); default the recipe's.
        max_steps: Step cap of the 1x rows (doubled for the 2x rows); 0 = none; default the recipe's.
        batch_size: Training batch size; default the recipe's.
        device: ``auto``, ``cpu``, ``cuda``...
    """
    recipe = get_recipe(profile)
    rows, _ = _check_variants(variants, recipe.variants)
    changes: dict[str, Any] = {"device": device}
    for name, value in (("epochs", epochs), ("max_steps", max_steps), ("batch_size", batch_size)):
        if value is not None:
            changes[name] = value
    base = recipe.cfg.replace(**changes)
    specs = []
    for v in rows:
        cfg = base.replace(**recipe.decay) if v.lr_decay else base
        if v.long:
            cfg = cfg.replace(epochs=2 * cfg.epochs, max_steps=2 * cfg.max_steps)
        specs.append(RunSpec(table=TABLE, label=v.label, model=v.model, dataset=DATASET, cfg=cfg,
                             train_augment=recipe.train_augment, test_augment=recipe.test_augment))
    return specs


def _paper_numbers(v: Variant, claims: pd.DataFrame, metric: str) -> tuple[float, str]:
    """The claim (as a fraction) printed for a row, and the tables that print it."""
    hit = claims[(claims["model"] == v.model) & (claims["metric"] == metric)
                 & (claims["epochs"].astype(int) == v.paper_epochs)
                 & (claims["lr_decay"] == ("yes" if v.lr_decay else "no"))]
    if hit.empty:
        return float("nan"), ""
    values = {as_fraction(val, "percent") if unit == "percentage points" else as_fraction(val, unit)
              for val, unit in zip(hit["value"], hit["unit"])}
    if len(values) != 1:  # the baseline is printed in four tables; they must agree
        raise ValueError(f"the claims of row {v.label!r} disagree: {sorted(values)}; fix reslab/claims/selu.csv.")
    return values.pop(), ", ".join(hit["table"])


@contextlib.contextmanager
def _flush_denormals(device: str) -> Iterator[None]:
    """Flush denormals to zero while training on the CPU (see the module docstring)."""
    on_cpu = resolve_device(device).type == "cpu"
    if on_cpu:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on_cpu:
            torch.set_flush_denormal(False)


def comparable(profile: str, data_sources: Sequence[str]) -> bool:
    """Whether a row may be compared with the paper: real data and the profile's full splits."""
    prof = get_profile(profile)
    full = prof.train_subset is None and prof.test_subset is None
    return full and profile != "smoke" and "synthetic" not in set(data_sources)


def _loss_figure(histories: pd.DataFrame, labels: Sequence[str], title: str):
    sub = histories[histories["label"].isin(labels)]
    return plots.curves(sub, y="train_loss", title=title, ylabel="training loss (epoch mean)")


def run_selu_ablation(
    profile: str = "smoke",
    data_root: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    variants: Sequence[str] | None = None,
    device: str = "auto",
    force: bool = False,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Train the ablation of Tables 2-5 and compare it with the paper.

    Writes into ``out_dir`` (default ``results/<profile>/selu_ablation_fashion_mnist``):
    ``selu_ablation.csv`` (one row per variant: mean, std and n of final- and best-epoch test
    accuracy, the paper's number and the differences, the paired difference with the baseline and
    its 95 % interval, ``comparable``), ``paired.csv`` (the paired comparison, both metrics),
    ``runs.csv`` (one row per run, with provenance), ``histories.csv`` (per epoch),
    ``claims.csv`` (the paper's numbers as transcribed), ``fig4_5_lr_decay_loss.png``,
    ``fig6_selu_vs_relu_loss.png`` and ``manifest.json``.

    Args:
        profile: ``smoke`` (default), ``paper``, ``strong`` or ``cpu15`` (see the module docstring).
        data_root: Folder with Fashion-MNIST; default ``$RESLAB_DATA``.
        seeds: One run per seed and row; default the recipe's (10 in ``paper``).
        epochs: Epochs of the 1x rows; default the recipe's (10 in ``paper``).
        max_steps: Step cap per 1x run (0 = none); default the recipe's.
        batch_size: Training batch size; default the recipe's.
        variants: Row labels (:data:`VARIANTS`); default the recipe's.
        device: ``auto``, ``cpu``, ``cuda``...
        force: Retrain finished runs.
        out_dir: Where to write.

    Raises:
        ValueError: unknown profile, variant or device; bad seeds or budgets.
        FileNotFoundError: no real data for a profile that needs it.
    """
    recipe = get_recipe(profile)
    seed_list = _check_seeds(seeds, recipe.seeds)
    rows_wanted, notes = _check_variants(variants, recipe.variants)
    specs = make_specs(profile, [v.label for v in rows_wanted], epochs, max_steps, batch_size, device)
    t0 = time.perf_counter()
    with _flush_denormals(device):
        runs, histories = run_specs(specs, profile, seed_list, data_root=data_root, force=force)

    claims = load_claims(PAPER)
    summary = summarise(runs)
    by_label = {v.label: v for v in rows_wanted}
    cfgs = {s.label: s.cfg for s in specs}
    pairs = {v.label: v.baseline for v in rows_wanted if v.baseline}
    paired = paired_comparison(runs, pairs)
    extra = []
    for label in summary["label"]:
        v = by_label[label]
        paper_acc, printed_in = _paper_numbers(v, claims, "test_acc")
        gain, _ = _paper_numbers(v, claims, "test_acc_gain")
        extra.append({"label": label, "lr_decay": v.lr_decay, "schedule": cfgs[label].schedule,
                      "paper_tables": printed_in or v.tables, "paper_epochs": v.paper_epochs,
                      "paper_acc": paper_acc, "baseline": v.baseline or "", "paper_gain": gain})
    table = summary.merge(pd.DataFrame(extra), on="label")
    table["diff_best"] = table["best_acc_mean"] - table["paper_acc"]
    table["diff_final"] = table["final_acc_mean"] - table["paper_acc"]
    for metric, short in (("best_acc", "best"), ("final_acc", "final")):
        p = paired[paired["metric"] == metric].set_index("label")
        if metric == "best_acc":
            table["paired_n"] = table["label"].map(p["n"])
        for col, name in (("mean_diff", f"d_{short}"), ("ci95_low", f"d_{short}_ci95_low"),
                          ("ci95_high", f"d_{short}_ci95_high")):
            table[name] = table["label"].map(p[col])
    table["comparable"] = [comparable(profile, ds.split(",")) for ds in table["data_source"]]
    paired = paired.merge(table[["label", "paper_gain", "comparable"]], on="label", how="left")

    out = TableOutput(out_dir=output_dir(TABLE, profile, out_dir))
    out.tables = {"selu_ablation": table, "paired": paired, "runs": runs, "histories": histories,
                  "claims": claims.drop(columns=["file"]).astype({"epochs": int})}
    long = [lbl for lbl in ("ResNet34 (2x epochs)", "ResNet34+LR decay (2x epochs)") if lbl in by_label]
    decay_rows = long if len(long) == 2 else [lbl for lbl in ("ResNet34", "ResNet34+LR decay") if lbl in by_label]
    if len(decay_rows) == 2:
        out.figures["fig4_5_lr_decay_loss"] = _loss_figure(
            histories, decay_rows, "Fig. 4-5: training loss without and with LR decay")
    if "ResNet34+SELU" in by_label:
        out.figures["fig6_selu_vs_relu_loss"] = _loss_figure(
            histories, ["ResNet34", "ResNet34+SELU"], "Fig. 6: convergence of SELU and ReLU")

    sources = sorted(set(runs["data_source"]))
    notes.append(f"profile {profile}: {get_profile(profile).description}; data source(s): {', '.join(sources)}; "
                 f"{len(seed_list)} run(s) per row (seeds {seed_list}); epochs of the 1x rows: "
                 f"{sorted(set(runs[~runs['label'].str.contains('2x')]['epochs']))}.")
    if "synthetic" in sources:
        notes.append("no real Fashion-MNIST found: SYNTHETIC data used; the numbers test the code, not the paper.")
    if not table["comparable"].any():
        notes.append("not comparable with the paper (smoke, synthetic data or data subsets): no verdicts.")
    if runs["reused"].any():
        notes.append(f"{int(runs['reused'].sum())} of {len(runs)} run(s) reused from the run store (force=True retrains).")
    described = [d.describe() for d in load_splits(DATASET, profile, data_root)]
    out.notes = notes
    out.save(TABLE, profile, described, time.perf_counter() - t0, parameters={
        "data_root": str(data_root) if data_root else None, "seeds": seed_list, "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "variants": [v.label for v in rows_wanted],
        "device": device, "force": force, "recipes": {s.label: s.cfg.to_dict() for s in specs},
        "train_augment": repr(recipe.train_augment), "test_augment": repr(recipe.test_augment)})
    return out
