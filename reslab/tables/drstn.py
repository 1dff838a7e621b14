"""DRSTN (seed 000): Table 4 (CIFAR-10), Table 5 (transfer to MNIST / Fashion-MNIST), Table 1 (Grad-CAM).

The paper (Cao & Zhu, Computer Science 51(6A), 2024) gives no training recipe at all: no epochs,
optimiser, learning rate, batch size, augmentation or number of runs; only that the eight models
of Table 4 were trained "under the same training conditions" on a Windows PC (i5-10400 CPU,
16 GB). The ``paper`` profile is therefore a stated choice, the same for every model:

``TABLE4_RECIPES['paper']`` (CIFAR-10, 32x32 as stored, no resizing):
    SGD, momentum 0.9, lr 0.01, weight decay 5e-4, batch 128, 50 epochs, cosine decay (per
    step, no warm-up), no label smoothing, pad-4 crop + horizontal flip, CIFAR mean/std
    normalisation, bf16 autocast on CUDA. Why: the plainest common CIFAR recipe a PyTorch user
    would write; lr 0.01 rather than 0.1 as a conservative rate for a recipe without warm-up
    that must suit all eight networks, ConvNeXt-tiny (LayerNorm, designed for AdamW) included.
    The paper gives no epoch count; 50 is our choice (the ``epochs`` parameter overrides it).
    One run per model, as the paper reports single numbers (more ``seeds`` give mean/std/n).
``TABLE4_RECIPES['strong']``:
    the common modern recipe (:data:`reslab.runs.spec.STRONG_CFG`) for every model: SGD nesterov, momentum 0.9, lr 0.1,
    weight decay 5e-4, batch 128, 100 epochs, 5 warm-up epochs then cosine, label smoothing
    0.1, pad-4 crop + flip, bf16 autocast on CUDA.
``TABLE4_RECIPES['smoke']``:
    the same optimiser as ``paper`` with batch 16 and ``max_steps=1`` on the smoke subsets:
    a check that everything runs, never a result. ``channels_last=False``: on this project's
    CPU test machine channels-last made a DRSTN V4 training step about 8x slower at 32x32.

Table 5 (section 4.3, "pre-trained parameter transfer"): DRSTN V5 starts from the final
checkpoint (``last.pt``) of its Table 4 run of the same profile and seed, then trains on MNIST
and on Fashion-MNIST. Choices:

- Every weight is transferred, the 10-class head included (both tasks have 10 classes, so the
  shapes match; class indices mean different things, the head is only a starting point), and
  the BatchNorm running statistics too. The paper took "the parameters at the best accuracy";
  the run store keeps the last epoch's weights, which under a cosine schedule are the
  converged ones.
- Grey 28x28 images are repeated to 3 channels and resized bilinearly to 32x32 (the CIFAR
  size the network was trained at), then normalised with the data set's own mean/std
  replicated to 3 channels (``Augment.standard(name, train, resize=32, to_rgb=True)``); no
  other augmentation.
- ``TABLE5_RECIPES['paper']``: SGD momentum 0.9, lr 0.01, weight decay 5e-4, batch 128, 10
  epochs, cosine, no label smoothing (the paper says only "a small amount of training").
  ``strong``: nesterov, lr 0.05, 20 epochs, 1 warm-up epoch, cosine, label smoothing 0.1
  (its training loss then includes the smoothing term: not comparable with Table 5's).
- Beside every transfer run, the same recipe from random initialisation, so the table shows
  what the transfer is worth.

Table 1 (Grad-CAM, :func:`run_drstn_table1`): the images are the first test image of each of the
first ``n_images`` classes (of the profile's test subset, subset seed 0). Each network explains its
own top-1 class with Grad-CAM at the target layer of :data:`CAM_MODELS`. Weights
(``weights='auto'``): ImageNet when available (a profile that never downloads uses the file only
when it is on disk), else the network's CIFAR-10 checkpoint from the Table 4 notebook (ResNet-18
and DRSTN V5 only; same profile; seed 0's, else the first of :data:`CAM_SEEDS` whose run is finished
in the run store, and ``table1_weights`` names the seed), else random weights (smoke, or
``allow_random=True``), else the network is not shown and ``table1_weights`` says what was tried.
The paper used an ImageNet bee photo; it does not say which weights its networks had. Inputs:
ImageNet and random weights get the image resized bilinearly to ``image_size`` with ImageNet
normalisation; CIFAR-10 weights get the 32x32 image with CIFAR-10 normalisation. Only ImageNet
weights under ``paper`` / ``strong`` with the default ``weights`` and ``image_size`` count as the
protocol (``evidence`` in ``table1_weights.csv``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import gradcam, plots
from ..claims import as_fraction, load_claims
from ..data import IMAGENET_MEAN_STD, Augment, load_dataset
from ..evidence import evidence_fields, evidence_of, group_evidence
from ..models import PretrainedWeightsError, checkpoint_dir, count_params, create_model, tv_weights, weights_filename
from ..paths import Paths
from ..profiles import Profile, resolve_profile
from ..runs.execute import load_missing_splits, run_specs
from ..runs.spec import STRONG_CFG, Recipe, RunSpec, get_recipe, load_splits
from ..runs.store import NOT_RUN, RunStore
from ..stats import paired_comparison, summarise
from ..checkpoint import CHECKPOINT_NAME, load_checkpoint
from ..train import TrainConfig, resolve_device
from ._common import FROM_FIRST_RUN, TableOutput, TableRun, TableRuns, check_choice, list_parameters, recipe_seeds

PAPER = "drstn"
TABLE4 = "drstn_table4_cifar10"
TABLE5 = "drstn_table5_transfer"
TABLE1 = "drstn_table1_gradcam"

#: Table 4's rows in the paper's order: (label as printed, registered model).
TABLE4_ROWS: tuple[tuple[str, str], ...] = (
    ("SKNet-18", "skresnet18"),
    ("Original_Resnet18", "resnet18"),
    ("ConvNeXt_tiny", "convnext_tiny"),
    ("DRSTN", "drstn_v1"),
    ("DRSTN_KS(3 * 3)", "drstn_v2"),
    ("DRSTN_KS(3 * 3)_RB(1:1:1:1)", "drstn_v3"),
    ("DRSTN_KS(3 * 3)_RB(2:3:5:2)", "drstn_v4"),
    ("DRSTN_KS(3 * 3)_RB(2:2:2)", "drstn_v5"),
)
#: Rows of ours beside the paper's (no claim): V5's network without soft thresholding, so that V5 minus
#: it is what soft thresholding adds to V5 (as V1 minus ResNet-18 is what it adds to ResNet-18).
TABLE4_CONTROLS: tuple[tuple[str, str], ...] = (
    ("DRSTN_KS(3 * 3)_RB(2:2:2) without soft thresholding (control)", "drstn_v5_no_st"),
)
#: What the controls separate, as paired differences over seeds (``table4_effects.csv``):
#: (effect, network with it, network without it). V5 over ResNet-18 (the abstract's gain, 7.45
#: points in Table 4) is soft thresholding on V5's network plus V5's structure (3x3 Conv_1, no
#: Conv_5) without it.
TABLE4_EFFECTS: tuple[tuple[str, str, str], ...] = (
    ("soft thresholding, on V5's network", "drstn_v5", "drstn_v5_no_st"),
    ("soft thresholding, on ResNet-18 (V1)", "drstn_v1", "resnet18"),
    ("V5's structure without soft thresholding, over ResNet-18", "drstn_v5_no_st", "resnet18"),
    ("DRSTN V5 over ResNet-18 (both together)", "drstn_v5", "resnet18"),
)
#: The network transferred in Table 5 and compared in the abstract.
TRANSFER_MODEL = "drstn_v5"
TRANSFER_DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist")
TRANSFER_SIZE = 32  # 28x28 -> the CIFAR-10 size DRSTN V5 was trained at

_PAPER4 = TrainConfig(epochs=50, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                      schedule="cosine", amp=True)
_SMOKE = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                     schedule="none", max_steps=1, eval_batch_size=256, channels_last=False, progress=False)
#: Per-profile recipes of Table 4 (module docstring says why each value).
TABLE4_RECIPES: dict[str, Recipe] = {
    "smoke": Recipe(_SMOKE, keep_checkpoint=False),  # but for the rows later tables read (table4_specs)
    "paper": Recipe(_PAPER4),
    "strong": Recipe(STRONG_CFG),
}
#: Per-profile recipes of Table 5: grey images repeated to RGB and resized to 32x32.
TABLE5_RECIPES: dict[str, Recipe] = {
    "smoke": Recipe(_SMOKE, input_size=TRANSFER_SIZE, to_rgb=True, keep_checkpoint=False),
    "paper": Recipe(_PAPER4.replace(epochs=10), input_size=TRANSFER_SIZE, to_rgb=True),
    "strong": Recipe(STRONG_CFG.replace(epochs=20, lr=0.05, warmup_epochs=1),
                     input_size=TRANSFER_SIZE, to_rgb=True),
}

#: Table 1's networks: (label as printed, registered model, Grad-CAM target layer). The target
#: is the last convolutional feature map before global pooling (pytorch-grad-cam's usual choice).
CAM_MODELS: tuple[tuple[str, str, str], ...] = (
    ("Squeezenet1_1", "squeezenet1_1", "features.12"),
    ("AlexNet", "alexnet", "features.11"),
    ("VGG-16", "vgg16", "features.29"),
    ("ResNet-18", "resnet18", "layer4"),
    ("DRSTN_KS(3 * 3)_RB(2:2:2)", "drstn_v5", "stages"),
)
CAM_WEIGHTS = ("auto", "imagenet", "cifar10", "random")
#: The Table 4 seeds whose CIFAR-10 checkpoint Table 1 may read, in order: seed 0's, else the next
#: one finished in this run store (a checkpoint stays with the machine that trained it; the record
#: committed with the results has the numbers, not the weights).
CAM_SEEDS = (0, 1, 2)
#: Table 4 networks whose checkpoints later tables read: Table 5 starts from DRSTN V5's, Table 1
#: may show Grad-CAM of a network's CIFAR-10 weights. Their runs keep ``last.pt`` in every profile.
READ_LATER = frozenset({TRANSFER_MODEL} | {m for _, m, _ in CAM_MODELS})


# --------------------------------------------------------------------------------------------
# Shared helpers


def _claims(table: str) -> pd.DataFrame:
    claims = load_claims(PAPER)
    return claims[claims["table"] == table]


def claims_table(tables: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's numbers this package compares with (``reslab/claims/drstn.csv``).

    Args:
        tables: Keep only these ``table`` values (``Table 4``, ``Table 5``, ``abstract``).
    """
    claims = load_claims(PAPER)
    if tables is not None:
        claims = claims[claims["table"].isin(list(tables))]
    return claims[["table", "row", "model", "dataset", "metric", "value", "unit"]].reset_index(drop=True)


def _recipe(recipes: dict[str, Recipe], profile: Profile, device: str, **overrides) -> Recipe:
    return get_recipe(recipes, profile, "this DRSTN table").with_overrides(device=device, **overrides)


# --------------------------------------------------------------------------------------------
# Table 4: CIFAR-10


def table4_param_counts() -> pd.DataFrame:
    """Parameters of the eight Table 4 networks with a 10-class head (deterministic)."""
    rows = []
    for label, model in TABLE4_ROWS:
        rows.append({"label": label, "model": model,
                     "params": count_params(create_model(model, num_classes=10, in_chans=3))})
    return pd.DataFrame(rows)


def table4_specs(recipe: Recipe, models: Sequence[str] | None = None) -> list[RunSpec]:
    """The Table 4 runs of a recipe (Table 5 uses this to find DRSTN V5's checkpoint).

    Args:
        recipe: A Table 4 recipe (:data:`TABLE4_RECIPES`, possibly with overrides).
        models: A subset of Table 4's registered models; default all eight, in the paper's order,
            then the controls (:data:`TABLE4_CONTROLS`).

    Raises:
        ValueError: for a model that is not in Table 4.
    """
    rows = TABLE4_ROWS + TABLE4_CONTROLS
    chosen = check_choice(models, [m for _, m in rows], "models")
    return [RunSpec(table=TABLE4, label=label, model=model, dataset="cifar10",
                    recipe=recipe.replace(keep_checkpoint=True) if model in READ_LATER else recipe)
            for label, model in rows if model in chosen]


def table4_runs(profile: str | Profile, device: str = "auto", seeds: Sequence[int] | None = None,
                models: Sequence[str] | None = None, epochs: int | None = None, max_steps: int | None = None,
                batch_size: int | None = None) -> TableRuns:
    """The runs :func:`run_drstn_table4` trains with these parameters (and ``reslab plan`` lists).

    Raises:
        ValueError: for an unknown profile or model, bad seeds or budgets.
    """
    prof = resolve_profile(profile)
    recipe = _recipe(TABLE4_RECIPES, prof, device, epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    seeds, recipe = recipe_seeds(seeds, recipe)
    return TableRuns(TABLE4, table4_specs(recipe, models), seeds, recipe)


def table4_source_spec(profile: str | Profile, model: str = TRANSFER_MODEL) -> RunSpec:
    """The Table 4 run of ``model`` at the profile's unchanged recipe (the run later tables read)."""
    return table4_specs(get_recipe(TABLE4_RECIPES, resolve_profile(profile), "DRSTN Table 4"), models=[model])[0]


def table4_checkpoint(profile: str | Profile, seed: int, paths: Paths | None = None,
                      model: str = TRANSFER_MODEL) -> tuple[RunSpec, Path]:
    """The Table 4 run of ``model`` at the profile's unchanged recipe, and where its ``last.pt`` is.

    With CIFAR-10 on disk the run is the one of that data; without it, a finished run found in the
    run store from the data fingerprints it recorded (a GPU machine that was given Table 4's runs
    but not CIFAR-10, to run Table 5), else where the run will be once CIFAR-10 is downloaded.

    Args:
        paths: The data root, cache and run store (default: resolved from the environment).
    """
    prof = resolve_profile(profile)
    paths = paths or Paths.from_env()
    store = RunStore.of(paths)
    spec = table4_source_spec(prof, model)
    try:
        splits = load_splits("cifar10", prof, paths, download=False)
    except FileNotFoundError:
        splits = None
    path = store.checkpoint_of(spec, prof, seed, splits)
    if path is None:  # neither the data nor the run here: downloads when allowed, else says what is missing
        path = store.checkpoint_of(spec, prof, seed, load_splits("cifar10", prof, paths))
    return spec, path


def _gain_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The abstract's relative gains of DRSTN V5 over three baselines, measured and claimed.

    A gain whose model or baseline has not run is NaN, and its note says which side is missing.
    """
    rows = []
    by_model = summary.set_index("model")
    for _, claim in _claims("abstract").iterrows():
        if not claim["metric"].startswith("test_acc_gain_vs_"):
            continue
        base = claim["metric"].removeprefix("test_acc_gain_vs_")
        sides = [m for m in (claim["model"], base) if m in by_model.index]
        missing = [m for m in (claim["model"], base) if m not in by_model.index]
        measured = (by_model.loc[claim["model"], "best_acc_mean"] / by_model.loc[base, "best_acc_mean"] - 1) * 100 \
            if not missing else np.nan
        found = group_evidence(by_model.loc[sides]) if sides else {"evidence": "smoke", "evidence_note": ""}
        rows.append({
            "model": claim["model"], "baseline": base, "metric": "relative gain of best test accuracy",
            "measured_pct": round(measured, 2) if np.isfinite(measured) else np.nan, "claimed_pct": claim["value"],
            "difference_pct": round(measured - claim["value"], 2) if np.isfinite(measured) else np.nan,
            # A ratio of two means: as many runs as the side with fewer.
            "n": int(by_model.loc[sides, "n"].min()) if not missing else 0,
            "profile": ",".join(sorted(set(by_model.loc[sides, "profile"]))) if sides else "",
            "data_source": ",".join(sorted(set(by_model.loc[sides, "data_source"]))) if sides else "",
            "missing": ",".join(missing), **found,
            "evidence_note": "; ".join(filter(None, [found["evidence_note"],
                                                     f"not run: {', '.join(missing)}" if missing else ""])),
        })
    return pd.DataFrame(rows)


def _effects_table(rows: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """What soft thresholding adds (:data:`TABLE4_EFFECTS`): per effect, the best-epoch accuracy of
    the network with it minus the one without it on the same seeds, in percentage points, with a
    paired 95 % t-interval from two seeds on; beside it the difference of Table 4's printed numbers
    where both networks are the paper's (implied, not printed as a claim). An effect whose networks
    were not both asked for is left out; one whose runs have not finished has n = 0."""
    by_model = summary.set_index("model")
    claimed = dict(zip(summary["model"], summary["claimed_best_acc"]))
    wanted = [e for e in TABLE4_EFFECTS if e[1] in by_model.index and e[2] in by_model.index]
    label = by_model["label"].to_dict()
    out = []
    for effect, with_, without in wanted:  # one call each: a network may be "with" in two effects
        p = next(paired_comparison(rows, {label[with_]: label[without]}, metrics=("best_acc",)).itertuples())
        sides = [with_, without]
        implied = (claimed[with_] - claimed[without]) * 100
        out.append({
            "effect": effect, "with": with_, "without": without, "metric": "best-epoch test accuracy",
            "n": p.n, "seeds": p.seeds, "mean_diff_pp": round(100 * p.mean_diff, 4),
            "std_diff_pp": round(100 * p.std_diff, 4), "ci95_low_pp": round(100 * p.ci95_low, 4),
            "ci95_high_pp": round(100 * p.ci95_high, 4),
            "paper_implied_pp": round(implied, 4) if np.isfinite(implied) else np.nan,
            "data_source": ",".join(sorted(set(by_model.loc[sides, "data_source"]))),
            "profile": ",".join(sorted(set(by_model.loc[sides, "profile"]))), **group_evidence(by_model.loc[sides]),
        })
    return pd.DataFrame(out, columns=["effect", "with", "without", "metric", "n", "seeds", "mean_diff_pp",
                                      "std_diff_pp", "ci95_low_pp", "ci95_high_pp", "paper_implied_pp",
                                      "data_source", "profile", *evidence_fields(summary)])


@list_parameters
def run_drstn_table4(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    seeds: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    force: bool = False,
    executor: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Train the eight Table 4 networks on CIFAR-10 and compare their best accuracy with the paper.

    Writes into ``results/<profile>/drstn_table4_cifar10/`` (or ``out_dir``): ``table4.csv``
    (one row per model: parameters, best- and final-epoch test accuracy as mean/std/n over
    seeds, the paper's value and the difference, ``evidence`` and ``evidence_note``, the
    checkpoint of each seed in the run store), ``table4_runs.csv`` (one row per run with full
    provenance), ``table4_gains.csv`` (the abstract's relative gains, measured and claimed),
    ``table4_effects.csv`` (what soft thresholding adds, from the controls: paired differences over
    seeds in percentage points, beside the difference Table 4's printed numbers imply),
    ``table4_history.csv``, and the Fig. 3 equivalent ``fig3_test_loss.png`` /
    ``fig3_test_acc.png``. Finished runs are reused; ``force`` retrains.

    Args:
        profile: ``smoke`` | ``paper`` | ``strong`` (recipes in :data:`TABLE4_RECIPES`).
        data_root: Folder with the data; default ``$RESLAB_DATA``.
        device: ``auto``, ``cpu``, ``cuda``...
        seeds: One run per model and seed (default the recipe's: ``[0]``).
        models: A subset of Table 4's models (default all eight).
        epochs, max_steps, batch_size: Override the profile's recipe (``None`` keeps it; any
            other value makes the rows ``budget``).
        force: Retrain finished runs.
        executor: Where runs are made: ``inline``, ``local``, ``slurm`` or ``none`` (:mod:`reslab.runs.jobs`;
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``).
        out_dir: Where to write.
    """
    run = TableRun(TABLE4, profile, out_dir, executor)
    planned = table4_runs(run.profile, device, seeds, models, epochs, max_steps, batch_size)
    specs, seeds, recipe = planned.specs, planned.seeds, planned.recipe
    rows, hist = run.train(specs, seeds, data_root, force)
    # Only the checkpoints the run store keeps (in smoke, the ones a later table reads).
    kept = {s.label: s.recipe.checkpoint and s.recipe.keep_checkpoint for s in specs}
    rows["checkpoint"] = [f"{d}/{CHECKPOINT_NAME}" if kept[label] else "" for d, label in zip(rows["run_dir"], rows["label"])]

    summary = summarise(rows)
    claims = _claims("Table 4").set_index("model")
    summary["claimed_best_acc"] = [as_fraction(claims.loc[m, "value"], claims.loc[m, "unit"]) if m in claims.index
                                   else np.nan for m in summary["model"]]  # a control has no claim
    summary["difference"] = (summary["best_acc_mean"] - summary["claimed_best_acc"]).round(4)
    summary["checkpoints"] = [";".join(rows.loc[rows["label"] == label, "checkpoint"]) for label in summary["label"]]

    run.out.tables.update({"table4": summary, "table4_runs": rows, "table4_gains": _gain_table(summary),
                           "table4_effects": _effects_table(rows, summary), "table4_history": hist})
    source = ",".join(sorted(rows["data_source"].unique()))
    for y, name in (("test_loss", "loss"), ("test_acc", "accuracy")):
        run.out.figures[f"fig3_{y}"] = plots.curves(
            hist, y=y, title=f"Fig. 3 equivalent: CIFAR-10 test {name} ({run.profile}, {source}, seeds {seeds})")
    return run.finish(parameters={"seeds": seeds, "models": [s.model for s in specs], "recipe": recipe.cfg.to_dict(),
                                  "overrides": list(recipe.overrides)})


# --------------------------------------------------------------------------------------------
# Table 5: transfer to MNIST and Fashion-MNIST


def table5_specs(recipe: Recipe, init_from: str | os.PathLike | None,
                 datasets: Sequence[str] = TRANSFER_DATASETS) -> list[RunSpec]:
    """DRSTN V5 on each target data set, from ``init_from`` (transfer) and from random weights.

    Raises:
        ValueError: for a data set outside MNIST / Fashion-MNIST.
    """
    specs = []
    for name in check_choice(datasets, TRANSFER_DATASETS, "datasets"):
        for init, source in (("transfer", init_from), ("random", None)):
            if init == "transfer" and source is None:
                continue
            specs.append(RunSpec(table=TABLE5, label=f"{name} {init}", model=TRANSFER_MODEL, dataset=name,
                                 recipe=recipe, init_from=source, tags={"init": init}))
    return specs


def table5_runs(profile: str | Profile, device: str = "auto", seeds: Sequence[int] | None = None,
                datasets: Sequence[str] = TRANSFER_DATASETS, epochs: int | None = None, max_steps: int | None = None,
                batch_size: int | None = None, source_checkpoint: str | os.PathLike | None = None) -> TableRuns:
    """The runs :func:`run_drstn_table5` trains with these parameters (and ``reslab plan`` lists).

    Without ``source_checkpoint``, :attr:`~reslab.tables._common.TableRuns.first` holds DRSTN V5's
    Table 4 run (trained first where missing) and the transfer specs start from
    :data:`~reslab.tables._common.FROM_FIRST_RUN`, its checkpoint of the same seed, which need not
    exist yet.

    Raises:
        ValueError: for an unknown profile or data set, bad seeds or budgets.
        FileNotFoundError: if ``source_checkpoint`` does not exist.
    """
    prof = resolve_profile(profile)
    recipe = _recipe(TABLE5_RECIPES, prof, device, epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    seeds, recipe = recipe_seeds(seeds, recipe)
    check_choice(datasets, TRANSFER_DATASETS, "datasets")
    if source_checkpoint is None:
        return TableRuns(TABLE5, table5_specs(recipe, FROM_FIRST_RUN, datasets), seeds, recipe,
                         first=[table4_source_spec(prof)])
    if not Path(source_checkpoint).is_file():
        raise FileNotFoundError(f"source_checkpoint {source_checkpoint} does not exist; leave it None to use "
                                f"(or train) DRSTN V5's Table 4 run.")
    recipe = recipe.note_override("source_checkpoint given (not the profile's Table 4 run)")
    return TableRuns(TABLE5, table5_specs(recipe, Path(source_checkpoint), datasets), seeds, recipe)


def _source_checkpoint(run: TableRun, planned: TableRuns, seed: int, data_root) -> Path:
    """DRSTN V5's Table 4 checkpoint for ``seed``; trained first (and said so) when missing or unfinished.

    A V5 run finished only in the record of finished runs (which keeps no checkpoints) is trained
    again into the run store, and the table's notes say so, unless every Table 5 run of ``seed``
    is finished (in the run store or the record) from that run's checkpoint where it was trained:
    those are reused as they are (the path returned is then where the checkpoint was).

    Raises:
        FileNotFoundError: when the checkpoint is needed and the call's executor trains nothing
            (``none``), or training left no checkpoint.
    """
    paths = run.data_paths(data_root)
    store = RunStore.of(paths)
    spec, path = table4_checkpoint(run.profile, seed, paths)
    if store.has_checkpoint(path.parent):
        return path
    recorded = store.recorded(path.parent) is not None
    if recorded and _finished_from(run, planned.for_seed(path), seed, paths):
        run.out.notes.append(
            f"seed {seed}: DRSTN V5's Table 4 run ({run.profile}, {store.relative(path.parent)}) is finished in the "
            f"record of finished runs, without its checkpoint; Table 5's runs of this seed, which started from that "
            f"checkpoint where it was trained, are finished too and are reused, not trained again.")
        return path
    if not run.executor.trains:
        raise FileNotFoundError(
            f"Table 5 seed {seed} starts from DRSTN V5's Table 4 checkpoint ({store.relative(path)}), which is not in "
            f"this run store, and its runs from it are not all finished here or in the record; executor "
            f"{run.executor.kind!r} trains nothing. Run with executor inline, local or slurm, or train V5 first: "
            f"reslab train {TABLE4} --label {spec.label} --seed {seed} --profile {run.profile.name}.")
    if recorded:
        why = (f"is finished in the record of finished runs ({store.relative(path.parent)}), which keeps no "
               f"checkpoints, and this run store does not have it, so it was trained again here (its Table 4 row "
               f"now comes from this run; point RESLAB_RUNS at the run store that trained it to reuse that one).")
    else:  # missing, or interrupted (a last.pt without its result row is not the finished network)
        why = f"was missing, so it was trained first with Table 4's {run.profile} recipe."
    run.out.notes.append(f"seed {seed}: DRSTN V5's Table 4 run ({run.profile}), whose checkpoint Table 5 starts from, "
                         + why)
    print(f"[reslab] {run.out.notes[-1]}", flush=True)
    run_specs(run.prepare([spec]), run.profile, [seed], paths=paths, splits=run.splits, executor=run.executor,
              use_record=False)
    if not path.is_file():
        raise FileNotFoundError(f"training DRSTN V5 for Table 4 did not leave a checkpoint at {path}.")
    return path


def _finished_from(run: TableRun, specs: list[RunSpec], seed: int, paths: Paths) -> bool:
    """Whether every run of ``specs`` for ``seed`` is finished, in the run store or the record."""
    store = RunStore.of(paths)
    load_missing_splits(specs, run.profile, paths, run.splits)
    try:
        return all(store.is_finished(store.run_dir(s, run.profile, seed, *run.splits[s.dataset])) for s in specs)
    except FileNotFoundError:  # a run from a checkpoint not here, and not finished from it
        return False


def _table5(rows: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Per data set, initialisation and metric: the best value over epochs as mean/std/n over
    seeds, the paper's value for the transfer rows, and the transfer's gain over random init."""
    best = hist.groupby(["label", "seed"], sort=False).agg(
        train_loss=("train_loss", "min"), test_loss=("test_loss", "min"),
        train_acc=("train_acc", "max"), test_acc=("test_acc", "max")).reset_index()
    best = best.merge(rows[["label", "seed", "dataset", "init", "data_source", "profile", "epochs",
                            *evidence_fields(rows)]], on=["label", "seed"])
    claims = _claims("Table 5")
    table = []
    for (dataset, init), group in best.groupby(["dataset", "init"], sort=False):
        evidence = group_evidence(group)
        for metric in ("train_loss", "test_loss", "train_acc", "test_acc"):
            claim = claims[(claims["dataset"] == dataset) & (claims["metric"] == metric)]
            claimed = float(claim["value"].iloc[0]) if init == "transfer" and len(claim) else np.nan
            mean = group[metric].mean()
            table.append({
                "dataset": dataset, "init": init, "metric": f"best_{metric}", "mean": round(mean, 4),
                "std": round(group[metric].std(), 4), "n": len(group), "claimed": claimed,
                "difference": round(mean - claimed, 4) if np.isfinite(claimed) else np.nan,
                "profile": ",".join(sorted(set(group["profile"]))),
                "data_source": ",".join(sorted(set(group["data_source"]))),
                "epochs": ",".join(map(str, sorted(group["epochs"].unique()))),
                "seeds": ",".join(map(str, sorted(group["seed"]))), **evidence,
            })
    table = pd.DataFrame(table)
    random_mean = table[table["init"] == "random"].set_index(["dataset", "metric"])["mean"]
    table["transfer_minus_random"] = [
        round(r["mean"] - random_mean.get((r["dataset"], r["metric"]), np.nan), 4) if r["init"] == "transfer" else np.nan
        for _, r in table.iterrows()]
    return table


@list_parameters
def run_drstn_table5(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    seeds: Sequence[int] | None = None,
    datasets: Sequence[str] = TRANSFER_DATASETS,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    source_checkpoint: str | os.PathLike | None = None,
    force: bool = False,
    executor: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Transfer DRSTN V5 from CIFAR-10 to MNIST and Fashion-MNIST, beside training from scratch.

    Seed ``s`` starts from seed ``s`` of DRSTN V5's Table 4 run of the same profile (trained
    first if missing, and the notes say so), unless ``source_checkpoint`` names a ``last.pt``
    (then the rows are ``budget``: not the profile's source run).
    Writes ``table5.csv`` (per data set and initialisation: best train loss, best test loss,
    best train accuracy, best test accuracy over epochs as mean/std/n over seeds, the paper's
    value and difference for the transfer rows, the transfer's gain over random
    initialisation, ``evidence``), ``table5_runs.csv`` (provenance per run), ``table5_history.csv``
    and the Fig. 4 equivalent ``fig4_test_acc.png`` / ``fig4_test_loss.png``.

    Args:
        profile: ``smoke`` | ``paper`` | ``strong`` (recipes in :data:`TABLE5_RECIPES`).
        data_root: Folder with the data; default ``$RESLAB_DATA``.
        device: ``auto``, ``cpu``, ``cuda``...
        seeds: Seeds of the target runs (and of their source runs); default ``[0]``.
        datasets: Target data sets.
        epochs, max_steps, batch_size: Override the profile's Table 5 recipe.
        source_checkpoint: A DRSTN V5 CIFAR-10 ``last.pt`` to start every seed from.
        force: Retrain finished target runs (the source runs are never retrained here).
        executor: Where runs are made: ``inline``, ``local``, ``slurm`` or ``none`` (:mod:`reslab.runs.jobs`;
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``).
        out_dir: Where to write.

    Raises:
        FileNotFoundError: if ``source_checkpoint`` does not exist.
    """
    run = TableRun(TABLE5, profile, out_dir, executor)
    planned = table5_runs(run.profile, device, seeds, datasets, epochs, max_steps, batch_size, source_checkpoint)
    seeds, recipe = planned.seeds, planned.recipe
    parts = []
    for seed in seeds:
        source = _source_checkpoint(run, planned, seed, data_root) if planned.first else None
        parts.append(run.train(planned.for_seed(source), [seed], data_root, force))
    rows = pd.concat([p.rows for p in parts], ignore_index=True)
    hist = pd.concat([p.histories for p in parts], ignore_index=True)

    run.out.tables.update({"table5": _table5(rows, hist), "table5_runs": rows, "table5_history": hist})
    data_source = ",".join(sorted(rows["data_source"].unique()))
    for y, name in (("test_acc", "accuracy"), ("test_loss", "loss")):
        run.out.figures[f"fig4_{y}"] = plots.curves(
            hist, y=y, title=f"Fig. 4 equivalent: DRSTN V5 test {name}, transfer vs random init "
                             f"({run.profile}, {data_source})")
    return run.finish(parameters={"seeds": seeds, "datasets": list(datasets), "recipe": recipe.cfg.to_dict(),
                                  "overrides": list(recipe.overrides),
                                  "source_checkpoint": str(source_checkpoint) if source_checkpoint else None})


# --------------------------------------------------------------------------------------------
# Table 1: Grad-CAM


def _imagenet_net(model: str, profile: Profile) -> torch.nn.Module:
    """``model`` with torchvision's ImageNet weights; a profile that never downloads
    (``download=False``) uses the file only when it is already on disk."""
    if profile.download is False:
        path = os.path.join(checkpoint_dir(), weights_filename(tv_weights(model)))
        if not os.path.isfile(path):
            raise PretrainedWeightsError(f"not on disk ({path}) and profile {profile} never downloads")
    return create_model(model, num_classes=1000, pretrained=True)


def _cam_model(model: str, weights: str, profile: Profile, paths: Paths, allow_random: bool
               ) -> tuple[torch.nn.Module, str, str, int | None]:
    """Build one Table 1 network; return ``(model, weights used, detail, Table 4 seed or None)``.

    ``auto`` tries ImageNet weights, then the model's Table 4 CIFAR-10 checkpoint (same profile, the
    first of :data:`CAM_SEEDS` finished in the run store), then random weights when allowed.
    """
    order = {"auto": ["imagenet", "cifar10", "random"]}.get(weights, [weights])
    tried = []
    for kind in order:
        if kind == "imagenet":
            try:
                return _imagenet_net(model, profile), "imagenet", "torchvision ImageNet-1k", None
            except (PretrainedWeightsError, ValueError) as exc:
                tried.append(f"imagenet: {str(exc).splitlines()[0]}")
        elif kind == "cifar10":
            if model not in {m for _, m in TABLE4_ROWS}:
                tried.append("cifar10: not a Table 4 model, so no CIFAR-10 checkpoint")
                continue
            found = _table4_cam_checkpoint(model, profile, paths)
            if isinstance(found, str):
                tried.append(found)
                continue
            seed, path, where = found
            net = create_model(model, num_classes=10)
            net.load_state_dict(load_checkpoint(path)["model"])
            return net, "cifar10", f"Table 4 {profile} checkpoint, seed {seed}: {where}", seed
        elif allow_random:
            torch.manual_seed(0)
            return create_model(model, num_classes=1000), "random", "random initialisation (seed 0)", None
        else:
            tried.append(f"random: not allowed in profile {profile} (allow_random=True allows it)")
    raise FileNotFoundError(f"no usable weights for {model} (weights={weights!r}): " + "; ".join(tried))


def _table4_cam_checkpoint(model: str, profile: Profile, paths: Paths) -> tuple[int, Path, str] | str:
    """``(seed, path, where)`` of the first finished Table 4 run of ``model`` among :data:`CAM_SEEDS`
    (its ``last.pt`` and result beside it in the run store), else what was looked for, in words."""
    store, missing = RunStore.of(paths), []
    for seed in CAM_SEEDS:
        _, path = table4_checkpoint(profile, seed, paths, model=model)
        where = store.relative(path)
        if store.has_checkpoint(path.parent):
            return seed, path, where
        missing.append(f"seed {seed}: {where}")  # none, or an unfinished run's
    return (f"cifar10: no Table 4 checkpoint yet in this run store ({'; '.join(missing)}); run that notebook first "
            "(a run recorded on another machine brings its numbers here, not its weights)")


def _check_table1(weights: str, n_images: int, image_size: int) -> None:
    if weights not in CAM_WEIGHTS:
        raise ValueError(f"weights must be one of {CAM_WEIGHTS}, got {weights!r}.")
    if not 1 <= int(n_images) <= 10:
        raise ValueError(f"n_images must be between 1 and 10 (one image per CIFAR-10 class), got {n_images}.")
    if int(image_size) < 64:
        raise ValueError(f"image_size must be at least 64 (AlexNet needs 63x63), got {image_size}.")


def table1_runs(profile: str | Profile, weights: str = "auto", n_images: int = 4, image_size: int = 224) -> TableRuns:
    """What :func:`run_drstn_table1` trains: nothing. It reads the networks' weights (ImageNet, or
    Table 4's checkpoints) and explains ``n_images`` test images, seconds of work on any device.

    Raises:
        ValueError: for an unknown profile or a bad ``weights``, ``n_images`` or ``image_size``.
    """
    resolve_profile(profile)
    _check_table1(weights, n_images, image_size)
    return TableRuns(TABLE1, [], [], notes=[
        f"trains nothing: Grad-CAM of {len(CAM_MODELS)} networks on {n_images} test image(s) (seconds); with "
        f"weights={weights!r} it may read the CIFAR-10 checkpoints that {TABLE4} trains."])


def _explain(label: str, model: str, layer: str, net: torch.nn.Module, kind: str, images: torch.Tensor,
             image_size: int, dev: torch.device) -> tuple[np.ndarray, torch.Tensor, int, str]:
    """Grad-CAM maps and class probabilities of one network on ``images`` (its own input pipeline),
    its input size, and the target layer's grid (``HxW``) the maps are made on."""
    if kind == "cifar10":
        aug = Augment.standard("cifar10", train=False)
    else:
        aug = Augment(resize=image_size, mean=IMAGENET_MEAN_STD[0], std=IMAGENET_MEAN_STD[1])
    inputs = aug(images.to(dev))
    cams, probs = gradcam.grad_cam(net.to(dev), inputs, layer)
    grid = "x".join(map(str, gradcam.layer_grid(net, inputs, layer)))
    return cams, probs, inputs.shape[-1], grid


def run_drstn_table1(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    weights: str = "auto",
    n_images: int = 4,
    image_size: int = 224,
    allow_random: bool | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Grad-CAM of SqueezeNet1_1, AlexNet, VGG-16, ResNet-18 and DRSTN V5 on fixed CIFAR-10 test images.

    The images, the weights each network gets (``weights='auto'``: ImageNet, else the Table 4
    checkpoint, else random when allowed) and their inputs are described in the module docstring.
    Writes ``table1_cam_stats.csv`` (per model and image: weights, prediction,
    :func:`reslab.gradcam.cam_stats`), ``table1_weights.csv`` (per network: the weights used,
    ``evidence``, and ``cam_grid``, the target layer's output size the map is made on: a 1x1 grid,
    torchvision's ResNet-18 at 32x32, makes a uniform map, and a note says so) and the grid
    ``table1_gradcam.png``.

    A network with no usable weights (e.g. SqueezeNet under ``paper`` without ImageNet weights on
    disk and without ``allow_random``) is left out of the maps and listed in ``table1_weights`` as
    ``not run: no usable weights``, with what was tried; the others are shown.

    Raises:
        ValueError: for a bad ``weights``, ``n_images`` or ``image_size``.
        FileNotFoundError: when no network has usable weights.
    """
    table1_runs(profile, weights, n_images, image_size)  # checks the parameters
    run = TableRun(TABLE1, profile, out_dir)
    allow_random = run.profile.allow_random_weights if allow_random is None else bool(allow_random)
    dev = resolve_device(device)
    paths = run.data_paths(data_root)
    test = load_dataset("cifar10", "test", root=paths.data, cache=paths.cache, seed=0, **run.profile.data_kwargs("test"))
    run.describe(test)
    idx = [int(torch.nonzero(test.labels == c)[0]) for c in range(int(n_images))]
    images = test.images[idx]  # (N, 3, 32, 32) uint8
    display = Augment(resize=image_size)(images).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    display = display.permute(0, 2, 3, 1).numpy()  # (N, S, S, 3) for the overlays
    overrides = [f"{k}={v}" for k, v, d in (("weights", weights, "auto"), ("image_size", image_size, 224)) if v != d]

    stats, used, overlays, missing = [], [], {}, []
    for label, model, layer in CAM_MODELS:
        try:
            net, kind, detail, seed = _cam_model(model, weights, run.profile, paths, allow_random)
        except FileNotFoundError as exc:  # shown without it; the table says why (all missing: an error)
            missing.append({"label": label, "model": model, "weights": "none", "detail": str(exc),
                            "target_layer": layer, "status": f"{NOT_RUN}: no usable weights"})
            continue
        cams, probs, size, grid = _explain(label, model, layer, net, kind, images, image_size, dev)
        evidence, note = evidence_of(run.profile, overrides + ([] if kind == "imagenet" else [f"{kind} weights"]),
                                     [test.data_source], complete=test.subset is None)
        used.append({"label": label, "model": model, "weights": kind, "seed": seed, "detail": detail,
                     "target_layer": layer, "input_size": size, "cam_grid": grid, "evidence": evidence,
                     "evidence_note": note, "status": "shown"})
        overlays[label] = [gradcam.overlay(display[i], cams[i]) for i in range(len(idx))]
        for i, k in enumerate(idx):
            pred = int(probs[i].argmax())
            stats.append({
                "label": label, "model": model, "weights": kind, "image": i, "test_index": k,
                "true_class": test.classes[int(test.labels[k])],
                "predicted": test.classes[pred] if kind == "cifar10" else f"{'imagenet' if kind == 'imagenet' else 'class'}_{pred}",
                "probability": round(float(probs[i, pred]), 4), "input_size": size,
                **gradcam.cam_stats(cams[i]), "profile": run.profile.name, "data_source": test.data_source,
            })
        del net
    if not used:
        raise FileNotFoundError("no network of Table 1 has usable weights: " + "; ".join(m["detail"] for m in missing))

    order = [label for label, _, _ in CAM_MODELS]
    listing = sorted(used + missing, key=lambda u: order.index(u["label"]))
    run.out.tables.update({"table1_cam_stats": pd.DataFrame(stats),
                           "table1_weights": pd.DataFrame(listing).reindex(columns=list(used[0]))
                           .astype({"seed": "Int64"})})
    weights_line = ", ".join(f"{u['label']}: {u['weights']}" for u in used)
    run.out.figures["table1_gradcam"] = _cam_grid(display, overlays, used, test,
                                                  f"Table 1 equivalent: Grad-CAM ({run.profile}, {test.data_source} "
                                                  f"CIFAR-10 test images); weights - {weights_line}")
    if any(u["weights"] == "random" for u in used):
        run.out.notes.append("Some networks have RANDOM weights (see table1_weights): their maps show architecture, "
                             "not learned attention.")
    flat = [u["label"] for u in used if u["cam_grid"] == "1x1"]
    if flat:
        run.out.notes.append(f"{', '.join(flat)}: the target layer is 1x1 at this input size (cam_grid in table1_weights), "
                             "so the Grad-CAM map is one value spread over the image: uniform, and no evidence of "
                             "where the network looks.")
    if missing:
        run.out.notes.append(f"Not shown, for want of usable weights (table1_weights says what was tried): "
                             f"{', '.join(m['label'] for m in missing)}. ImageNet weights in $TORCH_HOME/hub/checkpoints "
                             "(or allow_random=True) bring them in.")
    return run.finish(parameters={"weights": weights, "n_images": n_images, "image_size": image_size,
                                  "allow_random": allow_random, "weights_used": used})


def _cam_grid(display: np.ndarray, overlays: dict[str, list[np.ndarray]], used: list[dict], test, title: str):
    """Rows: images; columns: the original, then one Grad-CAM overlay per network."""
    import matplotlib.pyplot as plt  # here, not at import: ``import reslab`` stays free of pyplot

    n, cols = display.shape[0], 1 + len(overlays)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.9 * n + 0.6), squeeze=False, dpi=70)
    names = {"imagenet": "ImageNet weights", "cifar10": "CIFAR-10 checkpoint", "random": "RANDOM weights"}
    kinds = {u["label"]: names[u["weights"]] + ("" if u["seed"] is None else f", seed {u['seed']}") + ")"
             + ("\n1x1 grid: a uniform map" if u["cam_grid"] == "1x1" else "") for u in used}
    for i in range(n):
        panels = [("Original", display[i])] + [(f"{label}\n({kinds[label]}", ov[i]) for label, ov in overlays.items()]
        for j, (name, img) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    return fig
