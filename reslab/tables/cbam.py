"""Seed 004 (CBAM / ResNet-50 on CIFAR-10 at 224x224): the five-row table and the "Scratch" audit.

The seed prints one results table (no table number): train accuracy, test accuracy and
parameters of Sample ResNet (CBAM, from scratch), ResNet50 (ImageNet weights, frozen backbone,
new 10-class ``fc``), ResNet Attention (ImageNet ResNet-50 frozen + CBAM bottleneck head),
ResNet50 Scratch and ResNet Attention Scratch; and a training log of "ResNet50 Scratch" (both
transcribed in ``reslab/claims/cbam.csv``).

**The audit.** That log shows 82.97% train accuracy after the first epoch and 95.83% test accuracy
after five: what fine-tuning every layer from ImageNet weights gives, not training from random
weights. So each "Scratch" row is run in two readings, side by side with the printed row:
``(ImageNet init, all layers)`` (``pretrained=True``, nothing frozen) and ``(random init)``. The
issue asks this of ResNet50 Scratch; ResNet Attention Scratch gets it too, because its printed
96.31% after 10 epochs raises the same question (it has no log to settle it).

**Input pipeline** (seed section 2), applied batch-wise on the device by
:class:`reslab.data.Augment`: ``Resize(224)`` -> ``RandomHorizontalFlip(0.5)`` ->
``RandomResizedCrop(224, scale=(0.8, 1), ratio=(1, 1))`` -> ImageNet normalisation. ``Augment``
flips first (on the 32x32 image; a flip commutes with the resize) and folds the resize into the
crop's bilinear resampling. **Test time** is not shown in the seed; we resize to 224 and normalise
(``Augment.eval()``), the usual deterministic counterpart.

**Recipes** (:data:`RECIPES`). The seed gives no optimiser, learning rate or batch size. ``paper``
(our choices): SGD, momentum 0.9, lr 0.01, batch 64, no weight decay, 10 epochs (the log), the
learning rate x0.1 after epoch 5. Why the step: the log's train loss falls smoothly (0.111, 0.084,
0.062) and then halves between epochs 5 and 6 (0.033), the mark of a learning-rate drop; lr 0.01
with momentum is the common fine-tuning setting for torchvision ResNet-50. bf16 autocast on CUDA.
``strong``: SGD-Nesterov 0.9, lr 0.01, batch 64, cosine with 1 warm-up epoch, label smoothing 0.1,
weight decay 5e-4, 10 epochs, the same flip + random-resized-crop pipeline. ``smoke``: 1 epoch,
batch 16, 1 optimiser step, inputs resized to 32 (not 224: ResNet-50 on a shared CPU), on the
smoke profile's subsets.

**Best accuracy.** The log evaluates after epochs 5 and 10 only, and its "best accuracy" (the
table's test accuracy) is the best of those. We evaluate after every epoch and report the best
over all epochs (``best_acc``), the best over the paper's evaluation epochs (every 5th and the
last: ``best_acc_paper_evals``, compared with the paper) and the final epoch's.

**Pretrained weights.** The frozen rows and the ImageNet-init readings need torchvision's
``ResNet50_Weights.IMAGENET1K_V1`` file. When it is missing, ``smoke`` runs those rows from random
weights and says so in the label; ``paper`` and ``strong`` stop with
:class:`reslab.models.PretrainedWeightsError` naming the file and the folder. ``weights="random"``
runs every row from random weights on purpose (labelled likewise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .. import plots
from ..claims import as_fraction, load_claims
from ..data import IMAGENET_MEAN_STD, Augment
from ..models import checkpoint_dir, load_weights_state_dict, tv_weights, weights_filename
from ..params import paper_models, param_table
from ..profiles import Profile, resolve_profile
from ..runs.spec import STRONG_CFG, Recipe, RunSpec, get_recipe
from ..stats import summarise
from ..train import TrainConfig
from ._common import TableOutput, TableRun, TableRuns, list_parameters, recipe_seeds

TABLE = "cbam_resnet50_cifar10"
PAPER = "cbam"
DATASET = "cifar10"
PAPER_EVAL_EVERY = 5  # the seed's log prints validation after epochs 5 and 10
WEIGHTS = ("imagenet", "random")
PAPER_SIZE = 224


def seed_augment(resize: int) -> Augment:
    """The seed's training pipeline at side ``resize`` (flip, random-resized-crop, ImageNet normalisation)."""
    mean, std = IMAGENET_MEAN_STD
    return Augment(flip=True, resize=resize, rrc_scale=(0.8, 1.0), rrc_ratio=(1.0, 1.0), mean=mean, std=std)


def _recipe(cfg: TrainConfig, size: int, keep_checkpoint: bool = True) -> Recipe:
    return Recipe(cfg, train_augment=seed_augment(size), input_size=size, keep_checkpoint=keep_checkpoint)


#: Per-profile recipes (the module docstring gives the reasons); smoke runs at 32x32.
RECIPES: dict[str, Recipe] = {
    "smoke": _recipe(TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0,
                                 max_steps=1, eval_batch_size=256, progress=False), 32, keep_checkpoint=False),
    "paper": _recipe(TrainConfig(epochs=10, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0,
                                 schedule="step", step_size=5, gamma=0.1, amp=True, eval_batch_size=500,
                                 progress=False), PAPER_SIZE),
    "strong": _recipe(STRONG_CFG.replace(epochs=10, batch_size=64, lr=0.01, warmup_epochs=1.0, eval_batch_size=500),
                      PAPER_SIZE),
}


@dataclass(frozen=True)
class CbamRow:
    """One measured row: a printed row of the table in one reading.

    Attributes:
        paper_row: The row label as printed.
        model: Registered model name.
        pretrained: Start from torchvision's ImageNet weights.
        freeze_backbone: Train only the new head (the seed's fine-tuning rows).
        reading: Which reading of ``paper_row`` this is (empty when there is one).
    """

    paper_row: str
    model: str
    pretrained: bool
    freeze_backbone: bool
    reading: str = ""

    @property
    def label(self) -> str:
        return f"{self.paper_row} ({self.reading})" if self.reading else self.paper_row

    @property
    def init(self) -> str:
        if not self.pretrained:
            return "random init"
        return "ImageNet weights, frozen backbone" if self.freeze_backbone else "ImageNet weights, all layers trained"


ROWS: tuple[CbamRow, ...] = (
    CbamRow("Sample ResNet", "cbam_sample_resnet", pretrained=False, freeze_backbone=False),
    CbamRow("ResNet50", "resnet50", pretrained=True, freeze_backbone=True),
    CbamRow("ResNet Attention", "cbam_resnet50_attention", pretrained=True, freeze_backbone=True),
    CbamRow("ResNet50 Scratch", "resnet50", True, False, "ImageNet init, all layers"),
    CbamRow("ResNet50 Scratch", "resnet50", False, False, "random init"),
    CbamRow("ResNet Attention Scratch", "cbam_resnet50_attention", True, False, "ImageNet init, all layers"),
    CbamRow("ResNet Attention Scratch", "cbam_resnet50_attention", False, False, "random init"),
)
AUDITED_ROW = "ResNet50 Scratch"  # the printed row whose log is shown


def paper_claims() -> pd.DataFrame:
    """The seed's printed numbers, one row per number; ``row`` is the printed row label (the
    claims' ``model`` column holds registered names, and ResNet50 / ResNet50 Scratch share one)."""
    return load_claims(PAPER)


def cbam_claims() -> pd.DataFrame:
    """The five-row table as transcribed: train / test accuracy (fractions) and the parameter count."""
    claims = paper_claims()
    table = claims[claims["table"] == "results table"]
    rows = []
    for paper_row, grp in table.groupby("row", sort=False):
        by_metric = grp.set_index("metric")
        count = by_metric.loc[by_metric.index.isin(["params", "trainable_params"])].iloc[0]
        rows.append({
            "paper_row": paper_row, "model": grp["model"].iloc[0],
            "train_acc": as_fraction(by_metric.loc["train_acc", "value"], by_metric.loc["train_acc", "unit"]),
            "test_acc": as_fraction(by_metric.loc["test_acc", "value"], by_metric.loc["test_acc", "unit"]),
            "parameters": int(count["value"]), "parameters_counted": count.name,
        })
    return pd.DataFrame(rows)


def paper_log() -> pd.DataFrame:
    """The seed's training log of ResNet50 Scratch: one row per epoch (test values at 5 and 10 only)."""
    claims = paper_claims()
    log = claims[claims["table"] == "training log"]
    parts = log["metric"].str.extract(r"^(?P<what>.+)_epoch_(?P<epoch>\d+)$")
    wide = log.assign(what=parts["what"], epoch=parts["epoch"].astype(int)).pivot_table(
        index="epoch", columns="what", values="value").reset_index()
    wide.columns.name = None
    return wide.assign(label=f"paper log: {AUDITED_ROW}", seed=0)


def cbam_params() -> pd.DataFrame:
    """Parameter counts of the five models against the printed integers (:func:`reslab.params.param_table`)."""
    cols = ["label", "model", "mode", "params", "trainable", "paper_value", "metric", "diff", "match", "note"]
    return param_table([s for s in paper_models() if s.paper == PAPER])[cols].rename(columns={"label": "paper_row"})


def imagenet_weights_on_disk() -> bool:
    """Whether ResNet-50's ImageNet weights file is in ``$TORCH_HOME/hub/checkpoints`` (no download)."""
    # cbam_resnet50_attention loads the same file
    return os.path.isfile(os.path.join(checkpoint_dir(), weights_filename(tv_weights("resnet50"))))


def imagenet_weights_found(profile: Profile) -> bool:
    """Whether ResNet-50's ImageNet weights are on disk (downloading them if the profile may).

    Raises:
        PretrainedWeightsError: when the file is missing, cannot be downloaded and the profile
            does not allow random weights in its place; the message names the file and the folder.
    """
    if imagenet_weights_on_disk():
        return True
    if profile.allow_random_weights:  # never downloads: the rows run from random weights, labelled so
        return False
    load_weights_state_dict(tv_weights("resnet50"))
    return True


def select_rows(rows: Sequence[str] | None) -> list[CbamRow]:
    """The rows named by printed label (all its readings) or by full label; ``None`` = all.

    Raises:
        ValueError: for a name that is neither.
    """
    if rows is None:
        return list(ROWS)
    if isinstance(rows, str):
        rows = [rows]
    known = {r.paper_row for r in ROWS} | {r.label for r in ROWS}
    unknown = [r for r in rows if r not in known]
    if unknown or not rows:
        raise ValueError(f"unknown row(s) {unknown}; use printed labels or full labels from: {sorted(known)}")
    return [r for r in ROWS if r.paper_row in rows or r.label in rows]


def cbam_specs(recipe: Recipe, rows: Sequence[CbamRow], imagenet: bool, weights: str = "imagenet") -> list[RunSpec]:
    """One :class:`RunSpec` per row. Without ImageNet weights (``imagenet=False``) a pretrained
    row runs from random weights: its ``init`` tag says so, ``weights_missing`` is set when the
    file was missing (rather than ``weights='random'``), and its label carries a marker."""
    specs = []
    for row in rows:
        pretrained = row.pretrained and imagenet
        init, label, missing = row.init, row.label, False
        if row.pretrained and not imagenet:
            missing = weights == "imagenet"
            why = "ImageNet file missing" if missing else "weights='random'"
            init, label = f"random init [{why}]", f"{row.label} [random weights: {why}]"
        specs.append(RunSpec(
            table=TABLE, label=label, model=row.model, dataset=DATASET,
            recipe=recipe.note_override("ImageNet weights missing: random init") if missing else recipe,
            # freeze_backbone only where set: Sample ResNet has no backbone to freeze
            model_kwargs={"pretrained": pretrained} | ({"freeze_backbone": True} if row.freeze_backbone else {}),
            tags={"paper_row": row.paper_row, "init": init, "weights_missing": missing}))
    return specs


def cbam_runs(profile: str | Profile, seeds: Sequence[int] | None = None, epochs: int | None = None,
              max_steps: int | None = None, resize: int | None = None, device: str = "auto",
              weights: str = "imagenet", rows: Sequence[str] | None = None, imagenet: bool | None = None) -> TableRuns:
    """The runs :func:`run_cbam` trains with these parameters (and ``reslab plan`` lists).

    Args:
        imagenet: Whether the ImageNet weights will be there; ``None`` asks
            :func:`imagenet_weights_found` (the run: it may download them, or stop). ``reslab
            plan`` passes what it assumes, so that it never downloads.

    Raises:
        ValueError: unknown profile, weights or row, bad budgets or resize.
        PretrainedWeightsError: ImageNet weights missing where the profile allows no substitute
            (only with ``imagenet=None``).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
    if resize is not None and int(resize) < 32:
        raise ValueError(f"resize must be at least 32 (ResNet-50 downsamples 32x), got {resize}.")
    prof = resolve_profile(profile)
    recipe = get_recipe(RECIPES, prof, "the CBAM table").with_overrides(
        device=device, epochs=epochs, max_steps=max_steps, input_size=None if resize is None else int(resize))
    seeds, recipe = recipe_seeds(seeds, recipe)
    if weights == "random":
        recipe = recipe.note_override("weights=random")
    chosen = select_rows(rows)
    needs_imagenet = weights == "imagenet" and any(r.pretrained for r in chosen)
    if needs_imagenet and imagenet is None:
        imagenet = imagenet_weights_found(prof)  # raises when missing and not allowed
    imagenet = bool(needs_imagenet and imagenet)
    notes = []
    if not imagenet:
        chosen, notes = _without_twins(chosen)
    return TableRuns(TABLE, cbam_specs(recipe, chosen, imagenet, weights), seeds, recipe, notes=notes)


def _best_at_paper_evals(histories: pd.DataFrame) -> pd.DataFrame:
    """Per run: the best test accuracy over epochs the seed evaluates (every 5th and the last)."""
    def best(h: pd.DataFrame) -> float:
        last = h["epoch"].max()
        return h.loc[(h["epoch"] % PAPER_EVAL_EVERY == 0) | (h["epoch"] == last), "test_acc"].max()

    return histories.groupby(["label", "seed"], sort=False).apply(best, include_groups=False).rename(
        "best_acc_paper_evals").reset_index()


def _audit(histories: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per epoch: the audited row's readings beside the seed's log (with each reading's evidence)."""
    log = paper_log().drop(columns=["label", "seed"]).add_prefix("paper_").rename(columns={"paper_epoch": "epoch"})
    h = histories[histories["paper_row"] == AUDITED_ROW]
    if h.empty:
        return pd.DataFrame(), []
    ours = list(dict.fromkeys(h["label"]))
    mean = h.groupby(["label", "epoch"], sort=False)[["train_acc", "test_acc", "train_loss"]].mean().reset_index()
    audit = mean.merge(log, on="epoch", how="left")
    audit["train_acc_diff"] = audit["train_acc"] - audit["paper_train_acc"]
    audit["test_acc_diff"] = audit["test_acc"] - audit["paper_test_acc"]
    audit = audit.merge(table[["label", "profile", "data_source", "evidence", "evidence_note"]], on="label", how="left")
    first = audit[(audit["epoch"] == 1) & (audit["evidence"] == "protocol")]
    if len(first) == len(ours) and len(ours) > 1:
        closer = first.loc[first["train_acc_diff"].abs().idxmin()]
        notes = [f"audit: after epoch 1 the paper's log shows train accuracy {closer['paper_train_acc']:.4f}; the "
                 f"closest reading is {closer['label']!r} ({closer['train_acc']:.4f}); see cbam_audit.csv."]
    else:
        notes = ["audit: no reading is chosen (not every reading of the audited row is a protocol run, or only one "
                 "ran); see cbam_audit.csv for the numbers."]
    return audit, notes


_TABLE_COLUMNS = [
    "label", "paper_row", "init", "weights_missing", "model", "dataset", "data_source", "profile", "input_size",
    "epochs", "n", "seeds", "params", "trainable_params", "paper_params", "paper_params_metric", "params_diff",
    "params_match", "params_note", "train_acc_mean", "paper_train_acc", "train_acc_diff", "final_acc_mean",
    "final_acc_std", "best_acc_mean", "best_acc_std", "best_acc_paper_evals_mean", "paper_test_acc", "test_acc_diff",
    "evidence", "evidence_note", "device"]


def _cbam_table(runs: pd.DataFrame, histories: pd.DataFrame, input_size: int) -> pd.DataFrame:
    """One row per measured row: accuracies over seeds beside the printed row and its parameter count."""
    runs = runs.merge(_best_at_paper_evals(histories), on=["label", "seed"])
    tags = runs.groupby("label", sort=False)[["paper_row", "init", "weights_missing"]].first().reset_index()
    summary = summarise(runs).merge(
        runs.groupby("label", sort=False)["best_acc_paper_evals"].agg(best_acc_paper_evals_mean="mean").reset_index(),
        on="label").merge(tags, on="label")
    claimed = cbam_claims().rename(columns={"train_acc": "paper_train_acc", "test_acc": "paper_test_acc",
                                            "parameters": "paper_params", "parameters_counted": "paper_params_metric"})
    params = cbam_params()[["paper_row", "diff", "match", "note"]].rename(
        columns={"diff": "params_diff", "match": "params_match", "note": "params_note"})
    table = summary.merge(claimed.drop(columns="model"), on="paper_row", how="left").merge(params, on="paper_row",
                                                                                          how="left")
    table["train_acc_diff"] = table["train_acc_mean"] - table["paper_train_acc"]
    table["test_acc_diff"] = table["best_acc_paper_evals_mean"] - table["paper_test_acc"]
    table["input_size"] = input_size
    return table[_TABLE_COLUMNS]


def _curves(histories: pd.DataFrame, size: int, profile: Profile) -> dict:
    log = paper_log()
    return {"train_acc_per_epoch": plots.curves(
                pd.concat([histories, log], ignore_index=True), y="train_acc", ylabel="train accuracy",
                title=f"CIFAR-10 at {size}x{size}, {profile}: train accuracy per epoch"),
            "test_acc_per_epoch": plots.curves(
                pd.concat([histories, log.dropna(subset=["test_acc"])], ignore_index=True), y="test_acc",
                ylabel="test accuracy", title=f"CIFAR-10 at {size}x{size}, {profile}: test accuracy per epoch")}


def _notes(runs: pd.DataFrame, recipe: Recipe, profile: Profile) -> list[str]:
    notes = [f"data: {', '.join(sorted(set(runs['data_source'])))}; inputs resized to {recipe.input_size}x"
             f"{recipe.input_size}; profile {profile}; {recipe.cfg.epochs} epoch(s), max_steps "
             f"{recipe.cfg.max_steps or 'none'}."]
    if runs["weights_missing"].any():
        notes.append(f"ImageNet weights {weights_filename(tv_weights('resnet50'))} not found in "
                     "$TORCH_HOME/hub/checkpoints: rows marked 'random weights' ran from random weights.")
    notes.append("test_acc_diff = best_acc_paper_evals_mean (best of the epochs the seed evaluates: every 5th "
                 "and the last) - the printed test accuracy; train_acc_diff uses the final epoch.")
    return notes


def _without_twins(chosen: list[CbamRow]) -> tuple[list[CbamRow], list[str]]:
    """Without ImageNet weights an "ImageNet init, all layers" reading is its random-init twin: keep one."""
    twins = {(r.paper_row, r.model) for r in chosen if not r.pretrained}
    skipped = [r.label for r in chosen if r.pretrained and not r.freeze_backbone and (r.paper_row, r.model) in twins]
    notes = [f"not run without ImageNet weights (identical to their random-init reading): {skipped}."] if skipped else []
    return [r for r in chosen if r.label not in skipped], notes


@list_parameters
def run_cbam(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    resize: int | None = None,
    device: str = "auto",
    weights: str = "imagenet",
    rows: Sequence[str] | None = None,
    force: bool = False,
    executor: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Train the table's rows and compare them with the seed's table and log.

    Writes ``cbam_table.csv`` (per measured row: init, input size, parameters beside the printed
    count, train / final / best / best-at-the-paper's-evaluations accuracy beside the printed
    values, ``evidence``), ``cbam_runs.csv``, ``cbam_history.csv``, ``cbam_audit.csv`` (the
    ResNet50 Scratch readings beside the seed's log), ``cbam_params.csv``, two figures and
    ``manifest.json`` into ``results/<profile>/cbam_resnet50_cifar10`` (or ``out_dir``).

    Args:
        profile: ``smoke``, ``paper`` or ``strong`` (:data:`RECIPES`).
        data_root: Folder with CIFAR-10; default ``$RESLAB_DATA``.
        seeds: One run per seed and row (default ``[0]``).
        epochs, max_steps: Override the recipe's (``None``: the profile's; ``max_steps=0``: no cap).
        resize: Input side length (``None``: the recipe's, 224; 32 in smoke).
        device: ``auto``, ``cpu``, ``cuda``...
        weights: ``imagenet`` (torchvision's file in ``$TORCH_HOME/hub/checkpoints``) or ``random``
            (every row from random weights: an override).
        rows: Printed row labels (all their readings) or full labels; ``None``: every row.
        force: Retrain finished runs.
        executor: Where runs are made: ``inline``, ``local``, ``slurm`` or ``none`` (:mod:`reslab.runs.jobs`;
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``).
        out_dir: Where to write.

    Raises:
        ValueError: unknown profile, weights or row, bad budgets or resize.
        PretrainedWeightsError: ImageNet weights missing where the profile allows no substitute.
    """
    run = TableRun(TABLE, profile, out_dir, executor)
    planned = cbam_runs(run.profile, seeds, epochs, max_steps, resize, device, weights, rows)
    seeds, recipe = planned.seeds, planned.recipe
    run.out.notes += planned.notes
    runs, histories = run.train(planned.specs, seeds, data_root, force)

    table = _cbam_table(runs, histories, recipe.input_size)
    audit, audit_notes = _audit(histories, table)
    run.out.tables.update({"cbam_table": table, "cbam_runs": runs, "cbam_history": histories, "cbam_audit": audit,
                           "cbam_params": cbam_params()})
    run.out.figures.update(_curves(histories, recipe.input_size, run.profile))
    run.out.notes += _notes(runs, recipe, run.profile) + audit_notes
    return run.finish(parameters={"seeds": seeds, "epochs": recipe.cfg.epochs, "max_steps": recipe.cfg.max_steps,
                                  "resize": recipe.input_size, "device": device, "weights": weights,
                                  "rows": [s.label for s in planned.specs], "overrides": list(recipe.overrides),
                                  "data_root": str(data_root) if data_root else None},
                      recipe=recipe.cfg.to_dict())
