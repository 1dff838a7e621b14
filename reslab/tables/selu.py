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
  weight decay (Adam's defaults), batch size 128, no augmentation (the paper mentions none),
  bf16 autocast on CUDA (every ``paper`` and ``strong`` recipe: a speed choice, stated in each
  result row's ``precision``).
  The decay schedule is not given ("the learning rate decreases with the number of
  iterations"): we decay it by x0.8 after every epoch (``schedule='exponential'``), a schedule
  that depends on the iteration count only, not on the run's length, so the 10- and 20-epoch
  rows share it (lr 1e-3 -> 1.3e-4 after 10 epochs, 1.4e-5 after 20).
- ``strong``: the common modern recipe (:data:`reslab.runs.spec.STRONG_CFG`): SGD (Nesterov,
  momentum 0.9), lr 0.1, label smoothing 0.1, weight decay 5e-4, pad-4 crop and flip; changed here
  to 1 warm-up epoch, 30 epochs (60 for the 2x rows), 3 runs. "LR decay" is the ablated factor, so rows with decay use cosine and rows without keep
  the constant learning rate after the warm-up.
- ``smoke``: a plumbing check in CPU seconds: 2 steps of batch 16 per run, images resized to
  14x14 (the Inception stem runs at full resolution, and at 28x28 it costs ~4x more), 2 seeds
  (the fewest that give an interval). The 2x-epoch rows are left out by default: under a step
  cap they would repeat the 1x rows.

A reduced CPU budget (800 images, 2 epochs: 44 +- 23 % for the baseline) was retired: it judged
nothing, and the ``paper`` protocol's baseline, LR-decay and SELU rows fit a CPU (about 2.6 min per
epoch on all 60k images on 2 cores); a mean of fewer runs than the paper's 10 is judged with its
own interval and says ``n = 3 of 10`` (:func:`reslab.evidence.evidence_of`).

Input: Fashion-MNIST is 1x28x28 grey; the models are built with ``in_chans=1`` (the stem's first
convolution takes one channel) and get images normalised with the training split's mean and
std (0.2860, 0.3530). SELU models use LeCun-normal initialisation (``N(0, 1/fan_in)``, set by the
model), ReLU models He initialisation.

Every recipe here flushes denormal floats to zero while training on the CPU
(``TrainConfig.flush_denormals``, applied by :func:`reslab.train.train` wherever the run trains: in
the notebook, a job, or ``reslab train``): SELU's exponential produces many, and they made a SELU
ResNet-34 step 2-4x slower than a ReLU one here; the effect on the numbers is below float32
resolution of normal values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .. import plots
from ..claims import as_fraction, load_claims
from ..data import MEAN_STD, Augment
from ..evidence import evidence_fields, group_evidence
from ..profiles import Profile, resolve_profile
from ..runs.spec import STRONG_CFG, Recipe, RunSpec, get_recipe
from ..stats import paired_comparison, summarise
from ..train import TrainConfig
from ._common import TableOutput, TableRun, TableRuns, check_choice, list_parameters, recipe_seeds

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
        lr_decay: Whether the learning rate decays (the recipe's ``row_changes['lr_decay']`` says how).
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

    def recipe(self, recipe: Recipe) -> Recipe:
        """This row's recipe: the decay schedule if it decays, twice the epochs (and step cap) if long."""
        out = recipe.for_row("lr_decay") if self.lr_decay else recipe
        return out.replace(epochs=2 * out.cfg.epochs, max_steps=2 * out.cfg.max_steps) if self.long else out


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

_MEAN, _STD = MEAN_STD[DATASET]
_NORM = Augment(mean=_MEAN, std=_STD)
_PAPER_CFG = TrainConfig(epochs=PAPER_EPOCHS, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=0.0,
                         schedule="none", amp=True, progress=False, flush_denormals=True)
_PAPER_DECAY = {"lr_decay": {"schedule": "exponential", "gamma": 0.8}}
_SMOKE_NORM = Augment(resize=14, mean=_MEAN, std=_STD)

#: One recipe per profile; ``cfg`` is the recipe of rows without LR decay.
RECIPES: dict[str, Recipe] = {
    "paper": Recipe(_PAPER_CFG, _NORM, _NORM, seeds=tuple(range(10)), row_changes=_PAPER_DECAY),
    "strong": Recipe(STRONG_CFG.replace(epochs=30, schedule="none", warmup_epochs=1.0, flush_denormals=True),
                     Augment(pad_crop=4, flip=True, mean=_MEAN, std=_STD), _NORM, seeds=(0, 1, 2),
                     row_changes={"lr_decay": {"schedule": "cosine"}}),
    "smoke": Recipe(_PAPER_CFG.replace(epochs=1, batch_size=16, max_steps=2), _SMOKE_NORM, _SMOKE_NORM,
                    seeds=(0, 1), rows=_SHORT, row_changes=_PAPER_DECAY, keep_checkpoint=False),
}


def _check_variants(variants: Sequence[str] | None, default: Sequence[str] | None) -> tuple[list[Variant], list[str]]:
    """The rows to run in table order, with their baselines added; and notes on what was added."""
    names = check_choice(variants, list(_BY_LABEL), "variants", default)
    added = sorted({_BY_LABEL[n].baseline for n in names if _BY_LABEL[n].baseline} - set(names))
    wanted = set(names) | set(added)
    notes = [f"added baseline row {a!r}: the paired comparison needs it." for a in added]
    return [v for v in VARIANTS if v.label in wanted], notes


def make_specs(recipe: Recipe, variants: Sequence[Variant]) -> list[RunSpec]:
    """The :class:`RunSpec` of every row (``recipe``: the profile's, with a notebook's overrides)."""
    return [RunSpec(table=TABLE, label=v.label, model=v.model, dataset=DATASET, recipe=v.recipe(recipe),
                    tags={"lr_decay": v.lr_decay}) for v in variants]


def selu_runs(profile: str | Profile, seeds: Sequence[int] | None = None, epochs: int | None = None,
              max_steps: int | None = None, batch_size: int | None = None, variants: Sequence[str] | None = None,
              device: str = "auto") -> TableRuns:
    """The runs :func:`run_selu_ablation` trains with these parameters (and ``reslab plan`` lists);
    its notes say which baselines were added.

    Raises:
        ValueError: unknown profile or variant, bad seeds or budgets.
    """
    recipe = get_recipe(RECIPES, resolve_profile(profile), "the SELU ablation").with_overrides(
        device=device, epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    seed_list, recipe = recipe_seeds(seeds, recipe)
    rows_wanted, notes = _check_variants(variants, recipe.rows)
    return TableRuns(TABLE, make_specs(recipe, rows_wanted), seed_list, recipe, notes=notes)


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


def _loss_figure(histories: pd.DataFrame, labels: Sequence[str], title: str):
    sub = histories[histories["label"].isin(labels)]
    return plots.curves(sub, y="train_loss", title=title, ylabel="training loss (epoch mean)")


def _ablation_table(runs: pd.DataFrame, paired: pd.DataFrame, variants: Sequence[Variant],
                    specs: Sequence[RunSpec]) -> pd.DataFrame:
    """One row per variant: accuracy over seeds, the paper's numbers, the paired gain and its interval."""
    claims = load_claims(PAPER)
    by_label = {v.label: v for v in variants}
    schedules = {s.label: s.cfg.schedule for s in specs}
    extra = []
    for label in dict.fromkeys(runs["label"]):
        v = by_label[label]
        paper_acc, printed_in = _paper_numbers(v, claims, "test_acc")
        gain, _ = _paper_numbers(v, claims, "test_acc_gain")
        extra.append({"label": label, "lr_decay": v.lr_decay, "schedule": schedules[label],
                      "paper_tables": printed_in or v.tables, "paper_epochs": v.paper_epochs,
                      "paper_acc": paper_acc, "baseline": v.baseline or "", "paper_gain": gain})
    table = summarise(runs).merge(pd.DataFrame(extra), on="label")
    table["diff_best"] = table["best_acc_mean"] - table["paper_acc"]
    table["diff_final"] = table["final_acc_mean"] - table["paper_acc"]
    for metric, short in (("best_acc", "best"), ("final_acc", "final")):
        p = paired[paired["metric"] == metric].set_index("label")
        if metric == "best_acc":
            table["paired_n"] = table["label"].map(p["n"])
        for col, name in (("mean_diff", f"d_{short}"), ("ci95_low", f"d_{short}_ci95_low"),
                          ("ci95_high", f"d_{short}_ci95_high")):
            table[name] = table["label"].map(p[col])
    return table


def _figures(histories: pd.DataFrame, labels: set[str]) -> dict:
    figures = {}
    long = [lbl for lbl in ("ResNet34 (2x epochs)", "ResNet34+LR decay (2x epochs)") if lbl in labels]
    decay_rows = long if len(long) == 2 else [lbl for lbl in ("ResNet34", "ResNet34+LR decay") if lbl in labels]
    if len(decay_rows) == 2:
        figures["fig4_5_lr_decay_loss"] = _loss_figure(histories, decay_rows,
                                                       "Fig. 4-5: training loss without and with LR decay")
    if "ResNet34+SELU" in labels:
        figures["fig6_selu_vs_relu_loss"] = _loss_figure(histories, ["ResNet34", "ResNet34+SELU"],
                                                         "Fig. 6: convergence of SELU and ReLU")
    return figures


@list_parameters
def run_selu_ablation(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    variants: Sequence[str] | None = None,
    device: str = "auto",
    force: bool = False,
    executor: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Train the ablation of Tables 2-5 and compare it with the paper.

    Writes ``selu_ablation.csv`` (per variant: final- and best-epoch accuracy as mean/std/n, the
    paper's number and the differences, the paired gain over the baseline with its 95 % interval,
    ``evidence``), ``paired.csv``, ``runs.csv``, ``histories.csv``, ``claims.csv``, the Fig. 4-5
    and Fig. 6 loss curves and ``manifest.json`` into ``results/<profile>/selu_ablation_fashion_mnist``.

    Args:
        profile: ``smoke`` (default), ``paper`` or ``strong`` (see the module docstring).
        data_root: Folder with Fashion-MNIST; default ``$RESLAB_DATA``.
        seeds: One run per seed and row; default the recipe's (10 in ``paper``; fewer are judged
            as the mean of that many protocol runs, ``n = 3 of 10``: the paper prints means of 10).
        epochs: Epochs of the 1x rows (the 2x rows run twice as many); default the recipe's.
        max_steps: Step cap per 1x run (0 = none); default the recipe's.
        batch_size: Training batch size; default the recipe's.
        variants: Row labels (:data:`VARIANTS`); default the recipe's; missing baselines are added.
        device: ``auto``, ``cpu``, ``cuda``...
        force: Retrain finished runs.
        executor: Where runs are made: ``inline``, ``local``, ``slurm`` or ``none`` (:mod:`reslab.runs.jobs`;
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``).
        out_dir: Where to write.

    Raises:
        ValueError: unknown profile, variant or device; bad seeds or budgets.
        FileNotFoundError: no real data for a profile that needs it.
    """
    run = TableRun(TABLE, profile, out_dir, executor)
    planned = selu_runs(run.profile, seeds, epochs, max_steps, batch_size, variants, device)
    specs, seed_list, recipe, notes = planned.specs, planned.seeds, planned.recipe, planned.notes
    rows_wanted = [_BY_LABEL[s.label] for s in specs]
    runs, histories = run.train(specs, seed_list, data_root, force)

    paired = paired_comparison(runs, {v.label: v.baseline for v in rows_wanted if v.baseline})
    table = _ablation_table(runs, paired, rows_wanted, specs)
    # A gain is as strong as the weaker of its two rows.
    paired = paired.merge(table[["label", "paper_gain"]], on="label", how="left").merge(
        _pair_evidence(table, paired), on="label", how="left")
    claims = load_claims(PAPER)
    run.out.tables = {"selu_ablation": table, "paired": paired, "runs": runs, "histories": histories,
                      "claims": claims.drop(columns=["file"]).astype({"epochs": int})}
    run.out.figures = _figures(histories, set(table["label"]))
    run.out.notes = notes + [
        f"profile {run.profile}: {run.profile.description}; {len(seed_list)} run(s) per row (seeds {seed_list}); "
        f"epochs of the 1x rows: {sorted({int(e) for e in runs[~runs['label'].str.contains('2x')]['epochs'].dropna()})}."]
    return run.finish(parameters={
        "data_root": str(data_root) if data_root else None, "seeds": seed_list, "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "variants": [v.label for v in rows_wanted],
        "device": device, "force": force, "recipes": {s.label: s.cfg.to_dict() for s in specs},
        "overrides": list(recipe.overrides), "train_augment": repr(recipe.train_augment),
        "test_augment": repr(recipe.test_augment)})


def _pair_evidence(table: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """``evidence`` / ``evidence_note`` of each paired gain: the weaker of the row and its baseline
    (and the protocol's run count, where the table has it)."""
    ev = table.set_index("label")
    rows = [{"label": label} | group_evidence(ev.loc[[label, base]])
            for label, base in dict(zip(paired["label"], paired["baseline"])).items()]
    return pd.DataFrame(rows, columns=["label", *evidence_fields(table)])
