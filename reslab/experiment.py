"""Training runs of a table: one model, one recipe, one seed -> one result row with provenance.

Every paper table is a list of :class:`RunSpec` (a row label, a registered model, a data set, a
:class:`~reslab.train.TrainConfig`) run over some seeds. :func:`run_specs` trains what is missing
and reuses what is finished: a run lives in ``runs_root()/<profile>/<table>/<label>-s<seed>-<key>/``
where ``key`` hashes everything that changes its numbers (model and its arguments, recipe,
augmentation, initial weights, data fingerprints), so rerunning a notebook with the same profile
and seeds reuses its runs, an interrupted run resumes from its last epoch, and a changed recipe
trains anew. ``force=True`` retrains.

The run store is outside the results folders on purpose: ``reslab reproduce`` executes notebooks
into a staging folder, and runs must survive that (``RESLAB_RUNS``, default ``results/_runs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from .data import Augment, BatchLoader, Dataset, load_dataset
from .models import count_params, create_model
from .profiles import get_profile
from .results import make_row, results_root, write_csv, write_json
from .train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, resolve_device, train

RESULT_NAME = "result.json"
HISTORY_NAME = "history.csv"


@dataclass
class RunSpec:
    """One row of a table: what to train.

    Attributes:
        table: The table (notebook) name, e.g. ``drstn_table4_cifar10``.
        label: The row label (the paper's name of the row where it has one).
        model: A registered model name.
        dataset: ``cifar10``, ``mnist``, ``fashion_mnist``.
        cfg: The training recipe (its ``seed`` is replaced by each run's seed).
        model_kwargs: Passed to :func:`reslab.models.create_model` (``pretrained``, ``freeze_backbone``...).
        train_augment: Batch transform of training batches; default :meth:`Augment.standard`.
        test_augment: Batch transform of test batches; default ``train_augment.eval()``.
        init_from: A checkpoint (``last.pt`` of another run) whose model weights start this run;
            entries whose shapes differ (a new head) keep their fresh initialisation.
        checkpoint: Write ``last.pt`` after every epoch (resume, ``init_from``). ``False`` only for
            throwaway smoke runs of large networks, where the checkpoint (model and momentum, up
            to 200 MB) costs more than the one step it saves. Not part of the run's key.
    """

    table: str
    label: str
    model: str
    dataset: str
    cfg: TrainConfig
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_augment: Augment | None = None
    test_augment: Augment | None = None
    init_from: str | os.PathLike | None = None
    checkpoint: bool = True

    def augments(self) -> tuple[Augment, Augment]:
        train_aug = self.train_augment or Augment.standard(self.dataset, train=True)
        return train_aug, self.test_augment or train_aug.eval()


def runs_root() -> Path:
    """Where runs live: ``$RESLAB_RUNS``, else ``<results root>/_runs``."""
    env = os.environ.get("RESLAB_RUNS")
    return Path(env).expanduser() if env else results_root() / "_runs"


def slug(text: str) -> str:
    """A file-name-safe version of a row label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def load_splits(dataset: str, profile: str, data_root: str | os.PathLike | None = None,
                test_subset: int | None = None) -> tuple[Dataset, Dataset]:
    """The train and test splits a profile uses (its subsets; the subset seed is fixed at 0 so
    every model and seed of a table sees the same images).

    Args:
        test_subset: A smaller stratified test subset than the profile's (a table whose smoke
            run evaluates large networks); ``None`` = the profile's.
    """
    prof = get_profile(profile)
    kwargs = {split: prof.data_kwargs(split) for split in ("train", "test")}
    if test_subset is not None:
        kwargs["test"]["subset"] = int(test_subset)
    return tuple(load_dataset(dataset, split, root=data_root, seed=0, **kwargs[split]) for split in ("train", "test"))


def _file_digest(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint {path} does not exist; train the run it comes from first.")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_key(spec: RunSpec, seed: int, train_data: Dataset, test_data: Dataset) -> str:
    """A hash of everything that changes a run's numbers."""
    cfg = spec.cfg.replace(seed=seed).to_dict()
    for k in ("device", "progress", "eval_batch_size"):
        cfg.pop(k)
    train_aug, test_aug = spec.augments()
    payload = {
        "model": spec.model,
        "model_kwargs": spec.model_kwargs,
        "dataset": spec.dataset,
        "cfg": cfg,
        "train_augment": repr(train_aug),
        "test_augment": repr(test_aug),
        "init_from": _file_digest(Path(spec.init_from)) if spec.init_from else None,
        "data": [train_data.fingerprint, test_data.fingerprint],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _init_weights(model: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Load matching weights from a checkpoint; return the names left at their fresh values."""
    ckpt = load_checkpoint(path)
    source = ckpt.get("model", ckpt)
    own = model.state_dict()
    kept = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))


def run_one(
    spec: RunSpec,
    profile: str,
    seed: int,
    train_data: Dataset,
    test_data: Dataset,
    force: bool = False,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train (or reuse) one run and return its result row and per-epoch history.

    Returns:
        ``(row, history)``: the row carries every provenance column of
        :data:`reslab.results.PROVENANCE_COLUMNS` plus ``label``, ``trainable_params``,
        ``train_acc``, ``run_key``, ``reused`` and the data fingerprints; the history has one row
        per epoch with ``label``, ``model`` and ``seed`` columns.
    """
    key = run_key(spec, seed, train_data, test_data)
    folder = runs_root() / profile / spec.table / f"{slug(spec.label)}-s{seed}-{key}"
    result_path = folder / RESULT_NAME
    if result_path.is_file() and not force:
        stored = json.loads(result_path.read_text())
        row = {k: stored["row"][k] for k in stored["columns"]} | {"reused": True}
        return row, pd.read_csv(folder / HISTORY_NAME)
    if force:
        shutil.rmtree(folder, ignore_errors=True)

    torch.manual_seed(seed)  # the model's initial weights depend on the run's seed only
    model = create_model(spec.model, num_classes=train_data.num_classes, in_chans=_in_chans(spec, train_data),
                         **spec.model_kwargs)
    fresh = _init_weights(model, spec.init_from) if spec.init_from else []
    train_aug, test_aug = spec.augments()
    cfg = spec.cfg.replace(seed=seed)
    device = resolve_device(cfg.device)
    train_loader = BatchLoader.for_split(train_data, cfg.batch_size, train_aug, train=True, device=device, seed=seed,
                                         channels_last=cfg.channels_last)
    test_loader = BatchLoader.for_split(test_data, cfg.eval_batch_size, test_aug, train=False, device=device,
                                        channels_last=cfg.channels_last)
    t0 = time.perf_counter()
    history = train(model, train_loader, test_loader, cfg, checkpoint_dir=folder if spec.checkpoint else None)
    summary = history.summary()
    row = make_row(
        table=spec.table, model=spec.model, dataset=spec.dataset, data_source=train_data.data_source,
        profile=profile, seed=seed, epochs=summary["epochs"], params=count_params(model),
        final_acc=summary["final_acc"], best_acc=summary["best_acc"], best_epoch=summary["best_epoch"],
        wall_s=round(time.perf_counter() - t0, 3), images_per_s=summary["images_per_s"], device=summary["device"],
        label=spec.label, trainable_params=count_params(model, trainable_only=True),
        train_acc=history.rows[-1]["train_acc"] if history.rows else float("nan"),
        train_images=len(train_data), test_images=len(test_data),
        train_fingerprint=train_data.fingerprint, test_fingerprint=test_data.fingerprint,
        init_from=str(spec.init_from) if spec.init_from else "", fresh_from_init=len(fresh),
        resumed_from_epoch=history.resumed_from_epoch, run_key=key, reused=False,
    )
    frame = history.to_frame().assign(label=spec.label, model=spec.model, seed=seed)
    write_csv(frame, folder / HISTORY_NAME)
    write_json({"row": row, "columns": list(row), "config": cfg.to_dict(), "model_kwargs": spec.model_kwargs},
               result_path)
    return row, frame


def _in_chans(spec: RunSpec, data: Dataset) -> int:
    train_aug, _ = spec.augments()
    return 3 if train_aug.to_rgb else data.images.shape[1]


def checkpoint_path(spec: RunSpec, profile: str, seed: int, train_data: Dataset, test_data: Dataset) -> Path:
    """Where the final checkpoint of ``spec`` (``last.pt``) is or will be."""
    key = run_key(spec, seed, train_data, test_data)
    return runs_root() / profile / spec.table / f"{slug(spec.label)}-s{seed}-{key}" / CHECKPOINT_NAME


def run_specs(
    specs: Sequence[RunSpec],
    profile: str,
    seeds: Sequence[int],
    data_root: str | os.PathLike | None = None,
    force: bool = False,
    test_subset: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every spec for every seed (data loaded once per data set).

    Args:
        test_subset: Passed to :func:`load_splits` (``None`` = the profile's test subset).

    Returns:
        ``(rows, histories)`` as DataFrames.

    Raises:
        ValueError: on an empty ``seeds`` or ``specs``.
    """
    if not specs:
        raise ValueError("no runs to make: specs is empty.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. [0].")
    splits: dict[str, tuple[Dataset, Dataset]] = {}
    rows, histories = [], []
    for spec in specs:
        if spec.dataset not in splits:
            splits[spec.dataset] = load_splits(spec.dataset, profile, data_root, test_subset)
        for seed in seeds:
            row, hist = run_one(spec, profile, seed, *splits[spec.dataset], force=force)
            rows.append(row)
            histories.append(hist)
    return pd.DataFrame(rows), pd.concat(histories, ignore_index=True)


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("label", "model", "dataset")) -> pd.DataFrame:
    """Mean, standard deviation and n over seeds of final- and best-epoch accuracy.

    The data sources, profile, epochs and parameter counts are carried along (they must agree
    within a group; if not, the group lists them all).
    """
    def join(values: pd.Series) -> str:
        return ",".join(sorted({str(v) for v in values}))

    grouped = rows.groupby(list(by), sort=False)
    out = grouped.agg(
        best_acc_mean=("best_acc", "mean"), best_acc_std=("best_acc", "std"),
        final_acc_mean=("final_acc", "mean"), final_acc_std=("final_acc", "std"),
        train_acc_mean=("train_acc", "mean"), n=("seed", "count"),
        params=("params", "first"), trainable_params=("trainable_params", "first"),
        epochs=("epochs", join), data_source=("data_source", join), profile=("profile", join),
        seeds=("seed", join), device=("device", join),
    ).reset_index()
    return out


# --------------------------------------------------------------------------------------------
# Paired comparison over seeds (added with the SELU ablation; generic: any table with a baseline)

# Two-sided 95 % Student-t quantiles t_{0.975, df} for df = 1..30 (scipy.stats.t.ppf, 6 digits),
# so that the interval needs no scipy at run time (scipy is not a declared dependency).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
         2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922,
         2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
         2.048407, 2.04523, 2.042272)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (for 95 % intervals).

    A table for ``df <= 30``; beyond it the Cornish-Fisher expansion around the normal quantile
    (error below 1e-5 there).

    Raises:
        ValueError: for ``df < 1``.
    """
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom (2 paired runs), got df={df}.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963985
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def paired_comparison(
    rows: pd.DataFrame,
    pairs: dict[str, str],
    metrics: Sequence[str] = ("best_acc", "final_acc"),
    by: str = "label",
) -> pd.DataFrame:
    """Per seed, ``row - baseline`` on the same seed; mean difference and a 95 % t-interval.

    Args:
        rows: Result rows (from :func:`run_specs`) with ``by``, ``seed`` and the metric columns.
        pairs: ``{label: baseline label}``; each label is compared with its baseline on the seeds
            both have run.
        metrics: The columns compared.
        by: The column naming the rows.

    Returns:
        One row per (label, metric): ``label``, ``baseline``, ``metric``, ``n`` (paired seeds),
        ``seeds``, ``mean_diff``, ``std_diff``, ``ci95_low``, ``ci95_high`` (NaN when ``n < 2``)
        and ``ci_method``.

    Raises:
        ValueError: if a label or baseline is not in ``rows``.
    """
    present = set(rows[by])
    missing = sorted({*pairs, *pairs.values()} - present)
    if missing:
        raise ValueError(f"paired comparison: no rows labelled {missing}; present: {sorted(present)}.")
    out = []
    for label, base in pairs.items():
        a = rows[rows[by] == label].set_index("seed")
        b = rows[rows[by] == base].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        for metric in metrics:
            d = (a.loc[seeds, metric] - b.loc[seeds, metric]).astype(float)
            n = len(d)
            mean = float(d.mean()) if n else float("nan")
            std = float(d.std(ddof=1)) if n > 1 else float("nan")
            half = t_quantile_975(n - 1) * std / n**0.5 if n > 1 else float("nan")
            out.append({"label": label, "baseline": base, "metric": metric, "n": n,
                        "seeds": ",".join(str(s) for s in seeds), "mean_diff": mean, "std_diff": std,
                        "ci95_low": mean - half, "ci95_high": mean + half,
                        "ci_method": "paired t (same seeds), 95 %, df = n - 1"})
    return pd.DataFrame(out, columns=["label", "baseline", "metric", "n", "seeds", "mean_diff", "std_diff",
                                      "ci95_low", "ci95_high", "ci_method"])
