"""The survey notebook (seed 002, Tables 5-8): parameters and CIFAR-10 / CIFAR-100 error rates.

The survey cites PyramidNet, DenseNet-BC, Residual Attention Networks, stochastic depth,
WRN-28-10 and EfficientNet-B7 from their original papers. :func:`run_survey` writes four tables
and one figure:

1. ``params.csv``: every row's parameter count from our implementation beside the survey's, with
   the difference and the model zoo's note (:func:`reslab.params.param_table`, the same rules as
   ``reslab params``).
2. ``consistency.csv``: every printed number checked against the survey's other tables and against
   the original paper's number (``reslab/claims/survey_originals.csv``, each row saying how sure
   its transcription is); rows with ``agrees == False`` are the findings.
3. ``runs.csv`` / ``error_rates.csv``: a budgeted training run of each chosen CIFAR model on
   CIFAR-10 and CIFAR-100 (one run per model serves every table row that names it), its best- and
   final-epoch error beside the cited error, with the difference.
4. ``error_vs_params.png``: error rate against parameters (log scale), cited points and ours.

Recipes (:data:`RECIPES`, one :class:`~reslab.train.TrainConfig` per profile and family):

- ``smoke``: every CIFAR model takes one SGD step of batch 4 on the smoke training subset and is
  evaluated on :data:`SMOKE_TEST_IMAGES` test images, on both data sets: a check that every network
  builds, trains, evaluates and lands in the tables and the figure, not a measurement. The budget is
  set by the largest networks (one step plus evaluation of DenseNet-BC-190 or PyramidNet-272 costs
  several seconds on a 2-core CPU); the whole notebook stays near 90 s. EfficientNet-B7 is never
  trained in ``smoke`` (a 600x600 input and ImageNet weights); it appears in the parameter table
  and as a cited point.
- ``paper``: each original paper's CIFAR protocol, on the full training set, evaluated on the full
  test set. Every hyperparameter was checked against the authors' code or the paper's text as
  quoted in a public repository; the source is named beside each recipe. Where the package does
  not follow the original (WRN's reflection padding and ZCA whitening, stochastic depth's
  validation hold-out) or no source gives the protocol (Residual Attention on CIFAR), the recipe
  lists it in ``deviations``: those runs are ``budget`` evidence and get no verdict.
  Every ``paper`` and ``strong`` recipe trains under bf16 autocast on CUDA (a speed choice of
  ours, stated in each row's ``precision``; the originals trained in float32).
  EfficientNet-B7 fine-tunes torchvision's ImageNet weights at 600x600 with a recipe of our
  choosing (Tan & Le borrow the fine-tuning settings of Kornblith et al. 2019 and GPipe, which
  are in those papers' supplementary material, not retrieved here).
- ``strong``: one modern recipe for every CIFAR model (SGD Nesterov 0.9, cosine with 5 warm-up
  epochs, label smoothing 0.1, weight decay 5e-4, flip + crop, bf16 autocast on CUDA, 200 epochs).
- ``budget=N``: every model trains N epochs under its profile's recipe (step milestones scaled
  to N), for a fixed-epoch ranking.
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from ..claims import as_fraction, load_claims
from ..data import IMAGENET_MEAN_STD, Augment, get_spec
from ..params import PaperModel, paper_models, param_table
from ..profiles import SMOKE, Profile, resolve_profile
from ..runs.spec import STRONG_CFG, Recipe, RunSpec, get_recipe
from ..stats import summarise
from ..train import TrainConfig
from ._common import TableOutput, TableRun, TableRuns, check_choice, check_seeds, list_parameters

TABLE = "survey_error_rates"
SURVEY, ORIGINAL = "survey", "survey_original"
DATASETS = ("cifar10", "cifar100")
# Smoke evaluates on a small stratified test subset: a forward pass of DenseNet-BC-190 costs
# ~0.3 s per 32x32 image on 2 CPU cores (measured), so the profile's 256 images would take minutes.
SMOKE_TEST_IMAGES = 8
EFFICIENTNET_SIZE = 600

# Which recipe family each model of the survey trains with.
MODEL_FAMILY = {
    "pyramidnet110_a48": "pyramidnet", "pyramidnet110_a84": "pyramidnet", "pyramidnet110_a270": "pyramidnet",
    "pyramidnet164_bottleneck_a270": "pyramidnet", "pyramidnet200_bottleneck_a240": "pyramidnet",
    "pyramidnet236_bottleneck_a220": "pyramidnet", "pyramidnet272_bottleneck_a200": "pyramidnet",
    "densenet_bc100_k12": "densenet", "densenet_bc250_k24": "densenet", "densenet_bc190_k40": "densenet",
    "attention92_cifar": "resattention", "attention236_cifar": "resattention", "attention452_cifar": "resattention",
    "wrn28_10": "wrn", "resnet110_sd": "stochastic_depth", "efficientnet_b7": "efficientnet",
}
_CIFAR_FAMILIES = sorted(set(MODEL_FAMILY.values()) - {"efficientnet"})

# One step of batch 4, no checkpoint (up to 200 MB of weights and momentum here, more than the run costs).
_SMOKE = Recipe(TrainConfig(epochs=1, batch_size=4, lr=0.05, weight_decay=5e-4, max_steps=1, eval_batch_size=256,
                            progress=False), test_subset=SMOKE_TEST_IMAGES, checkpoint=False)
_STRONG = Recipe(STRONG_CFG.replace(epochs=200))
#: Recipes per profile and model family (:data:`MODEL_FAMILY`); a family missing from a profile is
#: not trained under it (EfficientNet-B7 only under ``paper``).
RECIPES: dict[str, dict[str, Recipe]] = {
    "smoke": {family: _SMOKE for family in _CIFAR_FAMILIES},
    "strong": {family: _STRONG for family in _CIFAR_FAMILIES},
    "paper": {
        # Han et al. 2017: SGD Nesterov 0.9 (dampening 0), weight decay 1e-4, 300 epochs, lr 0.1 on CIFAR-10
        # and 0.5 on CIFAR-100, x0.1 at epochs 150 and 225 (the paper's training paragraph, quoted in
        # github:eeccxin/PyramidNet-Keras README.md; github:dyhan0920/PyramidNet-PyTorch train.py); batch 128
        # from the authors' command lines (github:jhkim89/PyramidNet README.md). Which statistic the paper
        # prints (best or final epoch) no retrieved text says; the authors' code tracks the best test error.
        "pyramidnet": Recipe(TrainConfig(epochs=300, batch_size=128, lr=0.1, nesterov=True, weight_decay=1e-4,
                                         schedule="multistep", milestones=(150, 225), amp=True, progress=False),
                             row_changes={"cifar100": {"lr": 0.5}}),
        # Huang et al. 2017 section 4.2: SGD Nesterov 0.9 without dampening, batch 64, weight decay 1e-4,
        # 300 epochs, lr 0.1 x0.1 at 50% and 75% of training; the paper reports the final test error of
        # one run (section 4.2 as transcribed in github:Mycenae/PaperWeekly DenseNet.md;
        # github:liuzhuang13/DenseNet README.md, train.lua, opts.lua).
        "densenet": Recipe(TrainConfig(epochs=300, batch_size=64, lr=0.1, nesterov=True, weight_decay=1e-4,
                                       schedule="multistep", milestones=(150, 225), amp=True, progress=False)),
        # Wang et al. 2017: the paper's CIFAR training details could not be retrieved (only its abstract;
        # github:fwang91/residual-attention-network holds ImageNet deploy prototxts only). The values below
        # (batch 64, weight decay 1e-4, momentum 0.9, lr 0.1 x0.1 at 64k and 96k of 160k iterations, i.e.
        # 82 / 123 of 205 epochs of 50,000 images) are unverified.
        "resattention": Recipe(TrainConfig(epochs=205, batch_size=64, lr=0.1, weight_decay=1e-4,
                                           schedule="multistep", milestones=(82, 123), amp=True, progress=False),
                               deviations=("recipe unverified: no public source gives the Residual Attention "
                                           "Network's CIFAR training protocol",)),
        # Zagoruyko & Komodakis 2016 (implementation details; github:szagoruyko/wide-residual-networks
        # scripts/train_cifar.sh, train.lua): SGD Nesterov 0.9, batch 128, weight decay 5e-4, 200 epochs,
        # lr 0.1 x0.2 at epochs 60, 120 and 160; no dropout for the cited row. The cited 4.17 / 20.50 are
        # the paper's Table 4, with ZCA-whitened inputs and crops padded by reflection; we normalise by
        # mean / std and pad with zeros, so a run is not that protocol.
        "wrn": Recipe(TrainConfig(epochs=200, batch_size=128, lr=0.1, nesterov=True, weight_decay=5e-4,
                                  schedule="multistep", milestones=(60, 120, 160), gamma=0.2, amp=True, progress=False),
                      deviations=("inputs normalised by mean/std and crops zero-padded; the cited Table 4 "
                                  "numbers use ZCA whitening and reflection padding",)),
        # Huang et al. 2016 section 4 (github:yueatsprograms/Stochastic_Depth main.lua): SGD Nesterov 0.9
        # (dampening 0), batch 128, weight decay 1e-4, 500 epochs, lr 0.1 x0.1 at epochs 250 and 375;
        # survival probability decays linearly to 0.5 (in the model). The paper trains on 45,000 images and
        # reports the test error at the epoch of lowest error on the 5,000 held out; we train on all 50,000.
        "stochastic_depth": Recipe(TrainConfig(epochs=500, batch_size=128, lr=0.1, nesterov=True, weight_decay=1e-4,
                                               schedule="multistep", milestones=(250, 375), amp=True, progress=False),
                                   deviations=("trains on all 50,000 images; the original holds out 5,000 and "
                                               "reports the test error at the best validation epoch",)),
        # Tan & Le 2019 section 5.3 borrow the fine-tuning settings of Kornblith et al. 2019 and GPipe, whose
        # numbers are in supplementary material not retrieved here: our choice is SGD Nesterov 0.9, batch
        # 64, lr 0.01 cosine with 1 warm-up epoch, 20 epochs, weight decay 1e-5, at 600x600 (B7's
        # resolution), flip + crop, ImageNet normalisation.
        "efficientnet": Recipe(
            TrainConfig(epochs=20, batch_size=64, lr=0.01, nesterov=True, weight_decay=1e-5, schedule="cosine",
                        warmup_epochs=1, amp=True, progress=False),
            train_augment=Augment(pad_crop=4, flip=True, resize=EFFICIENTNET_SIZE, mean=IMAGENET_MEAN_STD[0],
                                  std=IMAGENET_MEAN_STD[1]),
            deviations=("fine-tuning recipe of our choosing (Tan & Le's is in supplementary material not "
                        "retrieved)",)),
    },
}
PRETRAINED_FAMILIES = ("efficientnet",)  # fine-tune ImageNet weights (``pretrained=True``)


def survey_rows() -> list[PaperModel]:
    """The 19 printed rows of Tables 5-8 (as :func:`reslab.params.paper_models` lists them)."""
    return [s for s in paper_models() if s.paper == SURVEY]


def cifar_models() -> list[str]:
    """Every distinct survey model, in table order (EfficientNet-B7 last)."""
    return list(dict.fromkeys(s.model for s in survey_rows()))


def recipe(profile: str | Profile, model: str, dataset: str, budget: int | None = None, **overrides) -> Recipe:
    """The training recipe of ``model`` on ``dataset`` under ``profile`` (see the module docstring).

    Args:
        budget: Epochs for every model (step milestones scaled to it; an override); ``None`` = the recipe's.
        **overrides: :meth:`Recipe.with_overrides` arguments (``max_steps``, ``device``...).
    """
    out = RECIPES[resolve_profile(profile).name][MODEL_FAMILY[model]].for_row(dataset)
    if budget is not None:
        cfg = out.cfg
        scale = budget / cfg.epochs
        overrides |= {"epochs": budget, "milestones": tuple(max(1, round(m * scale)) for m in cfg.milestones),
                      "warmup_epochs": min(cfg.warmup_epochs, budget / 10)}
    return out.with_overrides(**overrides)


def _run_spec(profile: Profile, model: str, dataset: str, budget: int | None, **overrides) -> RunSpec:
    kwargs = {"pretrained": True} if MODEL_FAMILY[model] in PRETRAINED_FAMILIES else {}
    return RunSpec(TABLE, model, model, dataset, recipe(profile, model, dataset, budget, **overrides),
                   model_kwargs=kwargs)


def _check(profile: Profile, models: Sequence[str], datasets: Sequence[str], budget: int | None) -> None:
    families = get_recipe(RECIPES, profile, "the survey")
    for m in check_choice(models, cifar_models(), "models") if models else []:
        if MODEL_FAMILY[m] not in families:
            raise ValueError(
                f"{m} is only trained under profile='paper' (fine-tuning ImageNet weights at "
                f"{EFFICIENTNET_SIZE}x{EFFICIENTNET_SIZE}, as Tan & Le did); under {profile.name!r} it appears "
                "in the parameter table and as a cited point only. Remove it from models."
            )
    for d in datasets:
        get_spec(d)
    check_choice(datasets, DATASETS, "datasets")
    if budget is not None and int(budget) <= 0:
        raise ValueError(f"budget must be a positive number of epochs or None, got {budget!r}.")


def survey_runs(profile: str | Profile, device: str = "auto", seeds: Sequence[int] | None = None,
                models: Sequence[str] | None = None, datasets: Sequence[str] = DATASETS, budget: int | None = None,
                max_steps: int | None = None) -> TableRuns:
    """The runs :func:`run_survey` trains with these parameters (and ``reslab plan`` lists): every
    model on every data set, each with its family's recipe.

    Raises:
        ValueError: unknown profile, model or data set, EfficientNet-B7 outside ``paper``, bad budget or seeds.
    """
    prof = resolve_profile(profile)
    families = get_recipe(RECIPES, prof, "the survey")
    models = [m for m in cifar_models() if MODEL_FAMILY[m] in families] if models is None else list(models)
    datasets = list(datasets)
    _check(prof, models, datasets, budget)
    seeds = check_seeds(seeds)
    specs = [_run_spec(prof, m, d, budget, max_steps=max_steps, device=device) for d in datasets for m in models]
    return TableRuns(TABLE, specs, seeds)


# --------------------------------------------------------------------------------------------
# Consistency of the printed numbers


def _as_error(value: float, metric: str, unit: str) -> float:
    """A printed error rate or accuracy as an error rate in percent."""
    frac = as_fraction(value, unit)
    return round(100 * (1 - frac if metric == "test_acc" else frac), 6)


def consistency(claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check every printed survey number against the survey's other tables and the original paper.

    Rows: ``kind`` (``survey vs survey`` or ``survey vs original``), the survey's table, row label,
    model, data set, metric and value, the other source (table, paper, value), the difference
    (survey - other), ``agrees``, ``other_verified`` (the survey itself, or an original value whose
    public source was read: ``verified == 'yes'`` in ``survey_originals.csv``), the other source's
    note, and ``finding``: a sentence for each disagreement with a verified value. A disagreement
    with an unverified original is shown but is not a finding. An original accuracy is compared as
    an error rate (100 - accuracy).

    Args:
        claims: Claims to check (default: every claims file); needs the ``survey`` and
            ``survey_original`` rows.
    """
    claims = load_claims() if claims is None else claims
    survey = claims[claims["paper"] == SURVEY]
    originals = claims[claims["paper"] == ORIGINAL]
    labels = {(s.table, s.model): s.label for s in survey_rows()}
    rows = []

    def value_of(r) -> float:
        return r.value if r.metric == "params" else _as_error(r.value, r.metric, r.unit)

    def add(kind: str, r, other_table: str, other_source: str, other_label: str, other_value: float,
            verified: bool, note: str):
        mine = value_of(r)
        rows.append({
            "kind": kind, "survey_table": r.table, "survey_label": labels.get((r.table, r.model), r.model),
            "model": r.model, "dataset": r.dataset, "metric": r.metric, "survey_value": r.value, "unit": r.unit,
            "other_table": other_table, "other_label": other_label, "other_source": other_source,
            "other_value": other_value, "difference": round(mine - other_value, 6),
            "agrees": abs(mine - other_value) < 1e-9, "other_verified": verified, "other_note": note,
        })

    # Survey vs survey: a model printed in two tables (Table 8 repeats rows of Tables 5-7).
    for (model, dataset, metric), grp in survey.groupby(["model", "dataset", "metric"], sort=False):
        first = grp.iloc[0]
        for r in grp.iloc[1:].itertuples():
            add("survey vs survey", r, first.table, "the survey (seed 002)", labels.get((first.table, model), model),
                value_of(first), True, "")
    # Survey vs original paper (an original accuracy becomes an error rate).
    for r in survey.itertuples():
        metric = "params" if r.metric == "params" else None
        for o in originals[(originals["model"] == r.model) & (originals["dataset"] == r.dataset)].itertuples():
            if (o.metric == "params") != (metric == "params"):
                continue
            add("survey vs original", r, o.table, o.source, getattr(o, "row", "") or o.model, value_of(o),
                getattr(o, "verified", "") == "yes", o.note)
    out = pd.DataFrame(rows)
    out["finding"] = [_finding(r, survey, labels) for r in out.itertuples()]
    return out


def consistency_notes(table: pd.DataFrame) -> list[str]:
    """The findings (disagreements with a verified source) and the comparisons that rest on an
    unverified original value, which are shown but are not findings."""
    bad = table[~table["agrees"] & table["other_verified"]]
    notes = [f"{len(bad)} printed numbers disagree with a verified source (consistency table, finding):"]
    notes += [f"  - [{r.kind}] {r.finding}" for r in bad.itertuples()]
    unverified = table[~table["other_verified"]]
    if len(unverified):
        differ = unverified[~unverified["agrees"]]
        notes.append(
            f"{len(unverified)} comparisons rest on an original value that no public source could confirm "
            f"(survey_originals.csv, verified == 'no'); they are shown, not findings ({len(differ)} of them differ"
            + (": " + "; ".join(f"{r.survey_table} '{r.survey_label}' {r.metric}"
                                + (f" {r.dataset}" if r.dataset else "") for r in differ.itertuples()) if len(differ) else "")
            + ").")
    return notes


def _finding(r, survey: pd.DataFrame, labels: dict) -> str:
    """A sentence for a disagreement with a verified value, naming the survey row whose numbers the
    printed row repeats; empty where the values agree or the other value is unverified."""
    if r.agrees or not r.other_verified:
        return ""
    text = (f"{r.survey_table} '{r.survey_label}' prints {r.survey_value:g} ({r.metric}{', ' + r.dataset if r.dataset else ''}); "
            f"{r.other_source} {r.other_table} has {r.other_value:g}.")
    # Does the printed triple (params, CIFAR-10, CIFAR-100) belong to another row?
    key = lambda g: tuple(sorted(zip(g["dataset"], g["metric"], g["value"])))  # noqa: E731
    mine = key(survey[(survey["table"] == r.survey_table) & (survey["model"] == r.model)])
    for (tab, model), g in survey.groupby(["table", "model"], sort=False):
        if model != r.model and key(g) == mine:
            text += f" The row's three numbers are those of {tab} '{labels.get((tab, model), model)}'."
            break
    return text


# --------------------------------------------------------------------------------------------
# The notebook's one call


@list_parameters
def run_survey(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    seeds: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] = DATASETS,
    budget: int | None = None,
    max_steps: int | None = None,
    force: bool = False,
    executor: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Parameters, consistency of the printed numbers, budgeted training and the error/params figure.

    Writes ``params.csv``, ``consistency.csv``, ``runs.csv``, ``error_rates.csv``,
    ``error_vs_params.png`` and ``manifest.json`` into ``results/<profile>/survey_error_rates``.

    Args:
        profile: ``smoke``, ``paper`` or ``strong`` (see the module docstring).
        data_root: Folder with the data; default ``$RESLAB_DATA``.
        device: ``auto``, ``cpu`` or ``cuda``.
        seeds: Training seeds (one run per model, data set and seed); default ``[0]``.
        models: Models to train; ``None`` = every model the profile has a recipe for
            (EfficientNet-B7 only under ``paper``); ``[]`` trains none.
        datasets: ``cifar10`` and / or ``cifar100``.
        budget: Epochs for every model (a fixed-epoch ranking, ``budget``); ``None`` = each recipe's.
        max_steps: Step cap for every run; ``None`` = the recipe's (smoke: 1).
        force: Retrain runs that are already finished.
        executor: Where runs are made: ``inline``, ``local``, ``slurm`` or ``none`` (:mod:`reslab.runs.jobs`;
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``).
        out_dir: Where to write; default ``results/<profile>/survey_error_rates``.

    Raises:
        ValueError: unknown profile, model or data set, EfficientNet-B7 outside ``paper``, bad budget.
    """
    run = TableRun(TABLE, profile, out_dir, executor)
    planned = survey_runs(run.profile, device, seeds, models, datasets, budget, max_steps)
    specs, seeds, datasets = planned.specs, planned.seeds, list(datasets)
    models = list(dict.fromkeys(s.model for s in specs))
    claims = load_claims()

    params = param_table(survey_rows(), flops=False)  # FLOPs are not in the survey (and cost ~15 s here)
    params.insert(params.columns.get_loc("params") + 1, "params_m", (params["params"] / 1e6).round(3))
    run.out.tables["params"] = params.drop(columns=["paper", "mode", "num_classes", "metric", "trainable", "gflops"])
    run.out.tables["consistency"] = consistency(claims)
    runs = run.train(specs, seeds, data_root, force).rows if specs else pd.DataFrame()
    run.out.tables["runs"] = runs
    run.out.tables["error_rates"] = error_rates(claims, runs)
    run.out.figures["error_vs_params"] = error_vs_params_figure(run.out.tables["error_rates"], run.profile)

    run.out.notes.append(f"trained: {', '.join(models) or 'nothing'} on {', '.join(datasets)}, seeds {seeds}, "
                         f"profile {run.profile}" + (f", budget {budget} epochs." if budget else "."))
    run.out.notes += consistency_notes(run.out.tables["consistency"])
    return run.finish(parameters={"data_root": str(data_root) if data_root else None, "device": device,
                                  "seeds": seeds, "models": models, "datasets": datasets, "budget": budget,
                                  "max_steps": max_steps, "force": force})


def error_rates(claims: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Every survey row x data set: the cited error (survey and original, with whether the original's
    public source was read), ours (best and final epoch, mean / std / n over seeds) and the
    difference ours - cited in percentage points.

    ``evidence`` / ``evidence_note`` come from the runs (:func:`reslab.evidence.evidence_of`):
    only ``protocol`` rows may get a verdict.
    """
    survey = claims[(claims["paper"] == SURVEY) & (claims["metric"] == "error_rate")]
    printed_params = claims[(claims["paper"] == SURVEY) & (claims["metric"] == "params")]
    originals = claims[(claims["paper"] == ORIGINAL) & (claims["metric"] != "params") & (claims["dataset"] != "")]
    summary = summarise(runs, by=("model", "dataset")) if len(runs) else pd.DataFrame(columns=["model", "dataset"])
    rows = []
    for s in survey_rows():
        for r in survey[(survey["table"] == s.table) & (survey["model"] == s.model)].itertuples():
            orig = originals[(originals["model"] == s.model) & (originals["dataset"] == r.dataset)]
            ours = summary[(summary["model"] == s.model) & (summary["dataset"] == r.dataset)]
            cited_p = printed_params[(printed_params["table"] == s.table) & (printed_params["model"] == s.model)]
            row = {"table": s.table, "label": s.label, "model": s.model, "dataset": r.dataset,
                   "cited_params_m": cited_p["value"].iloc[0] if len(cited_p) else None, "cited_error": r.value,
                   "original_error": _as_error(orig.iloc[-1]["value"], orig.iloc[-1]["metric"], orig.iloc[-1]["unit"])
                   if len(orig) else None,
                   "original_verified": (orig.iloc[-1].get("verified", "") == "yes") if len(orig) else None,
                   "trained": bool(len(ours))}
            if len(ours):
                o = ours.iloc[0]
                row |= {"best_error": round(100 * (1 - o.best_acc_mean), 2),
                        "best_error_std": round(100 * o.best_acc_std, 2) if pd.notna(o.best_acc_std) else None,
                        "final_error": round(100 * (1 - o.final_acc_mean), 2), "n": int(o.n), "params": int(o.params),
                        "epochs": o.epochs, "data_source": o.data_source, "profile": o.profile,
                        "evidence": o.evidence, "evidence_note": o.evidence_note}
                row["diff_pp"] = round(row["best_error"] - r.value, 2)
            rows.append(row)
    cols = ["table", "label", "model", "dataset", "cited_params_m", "cited_error", "original_error", "original_verified", "trained", "best_error",
            "best_error_std", "final_error", "n", "diff_pp", "evidence", "evidence_note", "params", "epochs",
            "data_source", "profile"]
    return pd.DataFrame(rows).reindex(columns=cols).astype({"n": "Int64", "params": "Int64"})


def error_vs_params_figure(errors: pd.DataFrame, profile: Profile):
    """Error rate against parameters (log x), one panel per data set: cited points (the survey's
    printed parameters and error, numbered; the key beside the panels names each row and its table)
    and ours (our parameter count and best-epoch error, numbered as the model's first printed row)."""
    sets = list(dict.fromkeys(errors["dataset"]))
    cited_rows = errors.drop_duplicates(["table", "model"])[["table", "label", "model"]]
    # One number per printed row; Table 8 repeats rows of Tables 5-7, so some points coincide.
    numbers: dict[tuple[str, str], int] = {}
    key_lines = []
    for r in cited_rows.itertuples():
        numbers[r.table, r.model] = len(key_lines) + 1
        key_lines.append(f"{len(key_lines) + 1}: {r.label} [{r.table}]")
    import matplotlib.pyplot as plt  # here, not at import: ``import reslab`` stays free of pyplot

    first_number = {model: n for (table, model), n in reversed(numbers.items())}  # ours: the model's first row
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets) + 2.6, 4.6), dpi=80, squeeze=False)
    for ax, dataset in zip(axes[0], sets):
        sub = errors[errors["dataset"] == dataset]
        ax.scatter(sub["cited_params_m"] * 1e6, sub["cited_error"], marker="o", color="tab:blue",
                   label="cited (survey)")
        for i, r in enumerate(sub.itertuples()):
            ax.annotate(str(numbers[r.table, r.model]), (r.cited_params_m * 1e6, r.cited_error), fontsize=6,
                        xytext=(3, 2 + 5 * (i % 3)), textcoords="offset points")
        ours = sub[sub["trained"]].drop_duplicates("model")
        if len(ours):
            ax.scatter(ours["params"], ours["best_error"], marker="x", color="tab:red", label=f"ours ({profile})")
            for i, r in enumerate(ours.itertuples()):
                ax.annotate(str(first_number[r.model]), (r.params, r.best_error), fontsize=6, color="tab:red",
                            xytext=(3, -8 - 5 * (i % 3)), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{dataset}" + (" (smoke: not comparable)" if profile.evidence == SMOKE else ""), fontsize=10)
        ax.legend(fontsize=7)
    fig.text(1.0, 0.5, "\n".join(key_lines), fontsize=6.5, va="center", ha="left", family="monospace")
    fig.tight_layout()
    return fig
