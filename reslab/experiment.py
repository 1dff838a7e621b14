"""Training runs of a table: one model, one recipe, one seed -> one result row with provenance.

Every paper table is a list of :class:`RunSpec` (a row label, a registered model, a data set, a
:class:`Recipe`) run over some seeds. :func:`run_specs` trains what is missing and reuses what is
finished: a run lives in :func:`run_dir` (``runs_root()/<profile>/<table>/<label>-s<seed>-<key>/``)
where ``key`` hashes everything that changes its numbers (model and its arguments, training
config, augmentation, initial weights, data fingerprints), so rerunning a notebook with the same
profile and seeds reuses its runs, an interrupted run resumes from its last epoch, and a changed
recipe trains anew. ``force=True`` retrains.

**One comparability rule** (:func:`evidence_of`): a run is judged against a paper only when it
ran a protocol profile (``paper``, ``strong``), on real and complete data, with the profile's
recipe unchanged in anything that changes numbers. Every result row carries the decision in
``evidence`` (``smoke`` / ``budget`` / ``protocol``) and the reason in ``evidence_note``; tables
combine rows with :func:`weakest_evidence` and the claims summary reads the decision as it is.

The run store is outside the results folders on purpose: ``reslab reproduce`` executes notebooks
into a staging folder, and runs must survive that (``RESLAB_RUNS``, default ``results/_runs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import torch

from . import distributed
from ._io import atomic_path, file_lock
from .data import Augment, BatchLoader, Dataset, load_dataset
from .executor import Executor, Outcome, Submission, run_jobs
from .models import count_params, create_model
from .profiles import BUDGET, EVIDENCE, PROTOCOL, SMOKE, Profile, resolve_profile
from .results import RECORD, file_sha256, make_row, results_root, write_csv, write_json
from .train import (
    CHECKPOINT_NAME,
    SPEED_FIELDS,
    TrainConfig,
    finish_checkpoint,
    load_checkpoint,
    resolve_device,
    train,
    use_channels_last,
)

RESULT_NAME = "result.json"
HISTORY_NAME = "history.csv"

#: Recipe fields (besides the TrainConfig's) a notebook may override.
RECIPE_OVERRIDES = ("input_size", "test_subset")


# --------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    """How a profile trains a table: the one recipe shape of every table.

    A table keeps one :class:`Recipe` per profile it supports (``RECIPES[profile.name]``), derives
    per-row variants with :meth:`replace` (part of the protocol), and applies a notebook's
    parameters with :meth:`with_overrides` (recorded in ``overrides``: they make a run
    ``budget``).

    Attributes:
        cfg: The training config (its ``seed`` is replaced by each run's seed).
        train_augment: Batch transform of training batches; ``None`` = :meth:`Augment.standard`
            of the data set (pad-crop and flip for CIFAR, none for (Fashion-)MNIST).
        test_augment: Batch transform of test batches; ``None`` = the training one's ``eval()``.
        input_size: Side length images are resized to (``None``: as stored).
        to_rgb: Repeat grey images to three channels.
        seeds: Default seeds (one run per row and seed); also the protocol's number of runs.
        rows: Default row labels (``None``: every row of the table).
        test_subset: A smaller stratified test subset than the profile's (``None``: the profile's).
        checkpoint: Write ``last.pt`` after every epoch (resume, transfer). ``False`` only for
            throwaway smoke runs of large networks, where a checkpoint costs more than the step.
        keep_checkpoint: Keep ``last.pt`` once the run has finished, as the final weights only (the
            optimiser state serves only to resume an unfinished run). ``False`` deletes it then:
            for runs whose weights no later notebook reads (a finished run is reused from its
            result row and history, never from its checkpoint). Not part of the run's key.
        row_changes: Named changes some rows of the table make by design, e.g. ``{"lr_decay":
            {"schedule": "cosine"}}`` or ``{"cifar100": {"lr": 0.5}}`` (:meth:`for_row`).
        overrides: What a notebook changed from the profile's recipe, one ``name=value (recipe:
            value)`` each; any entry makes the run ``budget``.
        deviations: Known differences between this recipe and the original protocol that the
            package does not (yet) follow, or protocol details no public source confirms; any
            entry makes the run ``budget``, with the entry as the reason.
    """

    cfg: TrainConfig
    train_augment: Augment | None = None
    test_augment: Augment | None = None
    input_size: int | None = None
    to_rgb: bool = False
    seeds: tuple[int, ...] = (0,)
    rows: tuple[str, ...] | None = None
    test_subset: int | None = None
    checkpoint: bool = True
    keep_checkpoint: bool = True
    row_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    deviations: tuple[str, ...] = ()

    def for_row(self, *features: str) -> "Recipe":
        """The recipe of a row that has ``features`` (keys of :attr:`row_changes`, e.g.
        ``lr_decay``; an absent key changes nothing): part of the protocol, not an override."""
        changes: dict[str, Any] = {}
        for feature in features:
            changes |= self.row_changes.get(feature, {})
        return self.replace(**changes) if changes else self

    def augments(self, dataset: str) -> tuple[Augment, Augment]:
        """The ``(train, test)`` batch transforms on ``dataset``, at :attr:`input_size`."""
        if self.train_augment is None:
            train_aug = Augment.standard(dataset, train=True, resize=self.input_size, to_rgb=self.to_rgb)
        else:
            train_aug = self._sized(self.train_augment)
        test_aug = self._sized(self.test_augment) if self.test_augment is not None else train_aug.eval()
        return train_aug, test_aug

    def _sized(self, aug: Augment) -> Augment:
        if self.input_size is None or aug.resize == self.input_size:
            return aug
        return dataclasses.replace(aug, resize=self.input_size)

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with recipe fields or :class:`TrainConfig` fields changed, as part of the
        protocol (not recorded as overrides): the rows of one table that differ by design."""
        cfg_changes = {k: v for k, v in changes.items() if k not in _RECIPE_FIELDS}
        own = {k: v for k, v in changes.items() if k in _RECIPE_FIELDS}
        return dataclasses.replace(self, cfg=self.cfg.replace(**cfg_changes) if cfg_changes else self.cfg, **own)

    def with_overrides(self, **overrides: Any) -> "Recipe":
        """Apply a notebook's parameters: :class:`TrainConfig` fields and :data:`RECIPE_OVERRIDES`.

        ``None`` keeps the recipe's value; a value equal to the recipe's is no override. Every
        other change is recorded in :attr:`overrides` (speed-only fields, :data:`SPEED_FIELDS`,
        are applied but not recorded).

        Raises:
            ValueError: for an unknown name or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(TrainConfig)} | set(RECIPE_OVERRIDES)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown override(s) {unknown}; valid: TrainConfig fields and {list(RECIPE_OVERRIDES)}.")
        recipe, notes = self, list(self.overrides)
        for name, value in overrides.items():
            if value is None:
                continue
            old = getattr(recipe if name in RECIPE_OVERRIDES else recipe.cfg, name)
            recipe = recipe.replace(**{name: value})
            new = getattr(recipe if name in RECIPE_OVERRIDES else recipe.cfg, name)
            if new != old and name not in SPEED_FIELDS:
                notes.append(f"{name}={new} (recipe: {old})")
        return dataclasses.replace(recipe, overrides=tuple(notes))

    def note_override(self, text: str) -> "Recipe":
        """Record a change made outside the recipe's fields (e.g. ``weights=random``)."""
        return dataclasses.replace(self, overrides=(*self.overrides, text))


#: The one modern recipe of the ``strong`` profile; a table changes it only where it must (its
#: epochs, a fine-tuning learning rate), and says why in its module docstring.
STRONG_CFG = TrainConfig(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=5, label_smoothing=0.1, amp=True,
                         progress=False)

_RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)} - {"cfg"}


def get_recipe(recipes: dict[str, Recipe], profile: Profile, what: str) -> Recipe:
    """``recipes[profile.name]``, or a clear error naming the profiles ``what`` supports.

    Raises:
        ValueError: when the table has no recipe for the profile.
    """
    if profile.name not in recipes:
        raise ValueError(f"{what} has no {profile.name!r} recipe; use one of {', '.join(recipes)}.")
    return recipes[profile.name]


# --------------------------------------------------------------------------------------------
# Evidence: the one comparability rule


def evidence_of(profile: Profile, overrides: Sequence[str] = (), data_sources: Iterable[str] = (),
                complete: bool = True) -> tuple[str, str]:
    """What a run (or a table row made of runs) may be used for: ``(evidence, note)``.

    ``smoke`` for the smoke profile or synthetic data; ``budget`` for a reduced-budget profile,
    incomplete data (subsets) or any override of the recipe; ``protocol`` (judged against the
    paper) otherwise. The note says what made it so.
    """
    sources = sorted({str(s) for s in data_sources})
    if profile.evidence == SMOKE:
        return SMOKE, f"profile {profile.name}: checks the code"
    if any("synthetic" in s for s in sources):
        return SMOKE, "synthetic data"
    reasons = []
    if profile.evidence == BUDGET:
        reasons.append(f"profile {profile.name} (reduced budget)")
    if not complete:
        reasons.append("data subsets")
    reasons += list(overrides)
    return (BUDGET, "; ".join(reasons)) if reasons else (PROTOCOL, "")


def weakest_evidence(evidence: Iterable[str], notes: Iterable[str] = ()) -> tuple[str, str]:
    """The evidence of a row made of several (a mean over seeds, a gain of one row over another):
    the weakest of them, with every distinct note.

    Raises:
        ValueError: when ``evidence`` is empty or holds an unknown kind.
    """
    kinds = [str(e) for e in evidence]
    if not kinds or any(k not in EVIDENCE for k in kinds):
        raise ValueError(f"evidence must be a non-empty list of {EVIDENCE}, got {kinds}.")
    weakest = min(kinds, key=EVIDENCE.index)
    # A note is a "; "-separated list of reasons: each distinct reason once.
    seen = dict.fromkeys(part for n in notes if isinstance(n, str) and n for part in n.split("; ") if part)
    return weakest, "; ".join(seen)


def evidence_columns(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``evidence`` and ``evidence_note`` per group of ``frame`` (weakest of the group)."""
    rows = []
    for key, grp in frame.groupby(list(by), sort=False):
        kind, note = weakest_evidence(grp["evidence"], grp["evidence_note"])
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,))) | {"evidence": kind, "evidence_note": note})
    return pd.DataFrame(rows, columns=[*by, "evidence", "evidence_note"])


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class RunSpec:
    """One row of a table: what to train.

    Attributes:
        table: The table (notebook) name, e.g. ``drstn_table4_cifar10``.
        label: The row label (the paper's name of the row where it has one).
        model: A registered model name.
        dataset: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``.
        recipe: How it trains (config, augmentation, input size, overrides).
        model_kwargs: Passed to :func:`reslab.models.create_model` (``pretrained``, ``freeze_backbone``...).
        init_from: A checkpoint (``last.pt`` of another run) whose model weights start this run;
            entries whose shapes differ (a new head) keep their fresh initialisation.
        tags: Facts about the row that its result row and history carry as columns (the printed
            row it measures, its initialisation, whether pretrained weights were missing...).
            Not part of the run's key: they describe, ``model_kwargs`` and ``recipe`` decide.
    """

    table: str
    label: str
    model: str
    dataset: str
    recipe: Recipe
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | os.PathLike | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> TrainConfig:
        return self.recipe.cfg

    def augments(self) -> tuple[Augment, Augment]:
        return self.recipe.augments(self.dataset)


def runs_root() -> Path:
    """Where runs live: ``$RESLAB_RUNS``, else ``<results root>/_runs``."""
    env = os.environ.get("RESLAB_RUNS")
    return Path(env).expanduser() if env else results_root() / "_runs"


def record_root() -> Path:
    """The record of finished runs: ``$RESLAB_RECORD``, else ``<results root>/_finished``.

    It mirrors the run store without checkpoints (``<profile>/<table>/<run>/result.json`` and
    ``history.csv``) and is committed with the results, so that a fresh clone, or another machine,
    knows which runs are finished and renders their tables without training them again
    (:func:`run_one` reuses a recorded run). ``reslab train`` and ``reslab reproduce`` write it
    (:func:`record_run`); a notebook run on its own only reads it.
    """
    env = os.environ.get("RESLAB_RECORD")
    return Path(env).expanduser() if env else results_root() / RECORD


def recorded(folder: Path) -> Path | None:
    """The record of the run whose run-store folder is ``folder``, if the record holds it finished."""
    try:
        rel = Path(folder).relative_to(runs_root())
    except ValueError:
        return None
    rec = record_root() / rel
    return rec if (rec / RESULT_NAME).is_file() and (rec / HISTORY_NAME).is_file() else None


def is_finished(folder: Path, use_record: bool = True) -> bool:
    """Whether the run of run-store folder ``folder`` is finished, in the run store or (with
    ``use_record``) in the record."""
    return (Path(folder) / RESULT_NAME).is_file() or (use_record and recorded(folder) is not None)


def record_run(folder: str | os.PathLike) -> Path | None:
    """Copy a finished run's result row and history from the run store into the record (atomically).

    Args:
        folder: The run's folder in the run store, or its ``<runs>/...`` form from a result row.

    Returns:
        The record's folder, or ``None`` when the run store has no finished run there.
    """
    text = str(folder)
    folder = runs_root() / text.removeprefix("<runs>/") if text.startswith("<runs>/") else Path(folder)
    if not (folder / RESULT_NAME).is_file() or not (folder / HISTORY_NAME).is_file():
        return None
    rec = record_root() / folder.resolve().relative_to(runs_root().resolve())
    for name in (HISTORY_NAME, RESULT_NAME):  # the row last: a record with a row is whole
        data = (folder / name).read_bytes()
        if not (rec / name).is_file() or (rec / name).read_bytes() != data:
            with atomic_path(rec / name) as tmp:
                tmp.write_bytes(data)
    return rec


def slug(text: str) -> str:
    """A file-name-safe version of a row label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def relative_to_runs(path: str | os.PathLike) -> str:
    """A run-store path as ``<runs>/...`` (no machine paths in committed CSVs)."""
    try:
        return str(Path("<runs>") / Path(path).relative_to(runs_root()))
    except ValueError:
        return str(path)


def load_splits(dataset: str, profile: str | Profile, data_root: str | os.PathLike | None = None,
                test_subset: int | None = None, download: bool | None = None) -> tuple[Dataset, Dataset]:
    """The train and test splits a profile uses (its subsets; the subset seed is fixed at 0 so
    every model and seed of a table sees the same images).

    Args:
        test_subset: A smaller stratified test subset than the profile's (a table whose smoke
            run evaluates large networks); ``None`` = the profile's.
        download: ``False`` never downloads (the data set must be on disk); ``None`` = the profile's.
    """
    prof = resolve_profile(profile)
    subsets = {"train": None, "test": test_subset}
    splits = []
    for split in ("train", "test"):
        kwargs = prof.data_kwargs(split, subsets[split])
        if download is not None:
            kwargs["download"] = download
        splits.append(load_dataset(dataset, split, root=data_root, seed=0, **kwargs))
    return tuple(splits)


def _file_digest(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint {path} does not exist; train the run it comes from first.")
    return file_sha256(path)[:16]


def run_key(spec: RunSpec, seed: int, train_data: Dataset | str, test_data: Dataset | str) -> str:
    """A hash of everything that changes a run's numbers (not :data:`~reslab.train.SPEED_FIELDS`)."""
    cfg = spec.cfg.replace(seed=seed).to_dict()
    for k in SPEED_FIELDS:
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
        "data": [getattr(d, "fingerprint", d) for d in (train_data, test_data)],  # a Dataset or its fingerprint
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_dir(spec: RunSpec, profile: str | Profile, seed: int, train_data: Dataset, test_data: Dataset) -> Path:
    """The folder of one run in the run store (its checkpoint, history and result row)."""
    key = run_key(spec, seed, train_data, test_data)
    return runs_root() / resolve_profile(profile).name / spec.table / f"{slug(spec.label)}-s{seed}-{key}"


def find_run(spec: RunSpec, profile: str | Profile, seed: int) -> Path | None:
    """The folder of a finished run of ``spec`` in the run store, found without its data: a
    candidate folder (same row and seed) is taken when the key made from the data fingerprints its
    result row recorded is its own key. ``None`` when there is none; the latest finished if several
    (runs of the same recipe on other data, e.g. official CIFAR-10 and its JPEG copy)."""
    folder = runs_root() / resolve_profile(profile).name / spec.table
    found = []
    for candidate in folder.glob(f"{slug(spec.label)}-s{seed}-*"):
        try:
            row = json.loads((candidate / RESULT_NAME).read_text())["row"]
            key = run_key(spec, seed, row["train_fingerprint"], row["test_fingerprint"])
        except (OSError, ValueError, KeyError):  # unfinished, unreadable, or an init_from not here
            continue
        if candidate.name == f"{slug(spec.label)}-s{seed}-{key}":
            found.append(candidate)
    return max(found, key=lambda p: (p / RESULT_NAME).stat().st_mtime) if found else None


def checkpoint_path(spec: RunSpec, profile: str | Profile, seed: int, train_data: Dataset, test_data: Dataset) -> Path:
    """Where the final checkpoint of ``spec`` (``last.pt``) is or will be."""
    return run_dir(spec, profile, seed, train_data, test_data) / CHECKPOINT_NAME


@contextlib.contextmanager
def _run_lock(folder: Path, what: str) -> Iterator[None]:
    """One process at a time trains a run: two processes asked for the same run at once (two
    notebooks, a resubmitted job beside its original) do not both train it; the second waits,
    then reuses the run the first filed (or, if the first died, resumes it from its checkpoint).

    The lock file sits beside the run's folder (``.<folder>.lock``), so ``force`` can remove the
    folder under it. Of the processes of one distributed run, rank 0 holds it; the others wait at
    a barrier until rank 0 has it.
    """
    if not distributed.current().is_main:
        distributed.barrier()
        yield
        return
    with file_lock(folder.parent / f".{folder.name}.lock", what=f"{what} into {folder}"):
        distributed.barrier()
        yield


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
    profile: str | Profile,
    seed: int,
    train_data: Dataset,
    test_data: Dataset,
    force: bool = False,
    use_record: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train (or reuse) one run and return its result row and per-epoch history.

    A finished run is reused from the run store, else from the record of finished runs
    (:func:`record_root`; not with ``use_record=False``, for a caller that needs the checkpoint,
    which the record does not keep).

    Returns:
        ``(row, history)``: the row carries every provenance column of
        :data:`reslab.results.PROVENANCE_COLUMNS` plus ``label``, ``trainable_params``,
        ``train_acc``, ``run_key``, ``reused``, the data fingerprints, ``run_dir``, the spec's
        tags, and ``evidence`` / ``evidence_note`` (:func:`evidence_of`); the history has one row
        per epoch with ``label``, ``model``, ``seed`` and the tags as columns.
    """
    prof = resolve_profile(profile)
    folder = run_dir(spec, prof, seed, train_data, test_data)
    result_path = folder / RESULT_NAME
    with _run_lock(folder, f"run {spec.label} (seed {seed}, {prof.name})"):
        source = folder if result_path.is_file() else recorded(folder) if use_record else None
        if source is not None and not force:
            stored = json.loads((source / RESULT_NAME).read_text())
            row = {k: stored["row"][k] for k in stored["columns"]} | {"reused": True}
            history = pd.read_csv(source / HISTORY_NAME)
            if not spec.recipe.keep_checkpoint:  # a run store from before the recipe said so
                (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
        else:
            if force and distributed.current().is_main:
                shutil.rmtree(folder, ignore_errors=True)
            distributed.barrier()
            row, history = _train_run(spec, prof, seed, train_data, test_data, folder)
    # Decided afresh on every read, so a stored run is judged by today's rule.
    per_process = str(row.get("batch_norm", "")).startswith("per process")
    kind, note = evidence_of(prof, (*spec.recipe.deviations, *spec.recipe.overrides,
                                    *(["batch-norm statistics per process, not over the global batch (sync_bn off)"]
                                      if per_process else [])),
                             [train_data.data_source, test_data.data_source],
                             complete=train_data.subset is None and test_data.subset is None)
    row |= {"run_dir": relative_to_runs(folder), **spec.tags, "evidence": kind, "evidence_note": note}
    return row, history.assign(**spec.tags)


def run_alone(spec: RunSpec, profile: str | Profile, seed: int, data_root: str | os.PathLike | None = None,
              force: bool = False, fingerprints: Sequence[str] | None = None,
              use_record: bool = True) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run in a process of its own (a job of the ``local`` or ``slurm`` executor, ``reslab
    train``, each process of a ``torchrun``): load the spec's splits as :func:`run_specs` does, then
    :func:`run_one`.

    Args:
        fingerprints: ``(train, test)`` fingerprints the caller saw: the run is refused when this
            process reads other data (a data folder that differs between machines), so that a job
            never files its run under a key the notebook does not look for.

    Raises:
        ValueError: when the data read here does not have ``fingerprints``.
    """
    train_data, test_data = load_splits(spec.dataset, profile, data_root, spec.recipe.test_subset)
    seen = (train_data.fingerprint, test_data.fingerprint)
    if fingerprints is not None and tuple(fingerprints) != seen:
        raise ValueError(f"this process read {spec.dataset} with fingerprints {seen}, the caller {tuple(fingerprints)}: "
                         f"the data differ between them. Give data_root (or $RESLAB_DATA) as a folder that every "
                         f"machine running jobs reads identically.")
    return run_one(spec, profile, seed, train_data, test_data, force=force, use_record=use_record)


def _train_run(spec: RunSpec, prof: Profile, seed: int, train_data: Dataset, test_data: Dataset,
               folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    torch.manual_seed(seed)  # the model's initial weights depend on the run's seed only
    model = build_model(spec, train_data.num_classes, train_data.images.shape[1])
    fresh = _init_weights(model, spec.init_from) if spec.init_from else []
    train_aug, test_aug = spec.augments()
    cfg = spec.cfg.replace(seed=seed)
    dist = distributed.current()
    device = resolve_device(distributed.device_for(cfg.device))
    channels_last = use_channels_last(cfg, device)
    ranks = {"rank": dist.rank, "world_size": dist.world_size}
    train_loader = BatchLoader.for_split(train_data, cfg.batch_size, train_aug, train=True, device=device, seed=seed,
                                         channels_last=channels_last, **ranks)
    test_loader = BatchLoader.for_split(test_data, cfg.eval_batch_size, test_aug, train=False, device=device,
                                        channels_last=channels_last, **ranks)
    t0 = time.perf_counter()
    history = train(model, train_loader, test_loader, cfg, checkpoint_dir=folder if spec.recipe.checkpoint else None,
                    name=f"{spec.table} {spec.label} ({spec.dataset}, seed {seed}, {prof.name})")
    summary = history.summary()
    row = make_row(
        table=spec.table, model=spec.model, dataset=spec.dataset, data_source=train_data.data_source,
        profile=prof.name, seed=seed, epochs=summary["epochs"], params=count_params(model),
        final_acc=summary["final_acc"], best_acc=summary["best_acc"], best_epoch=summary["best_epoch"],
        wall_s=round(time.perf_counter() - t0, 3), images_per_s=summary["images_per_s"], device=summary["device"],
        **{k: summary.get(k, "not recorded") for k in ("precision", "compile", "channels_last", "cpu_threads",
                                                      "world_size", "batch_norm")},
        label=spec.label, trainable_params=count_params(model, trainable_only=True),
        train_acc=history.rows[-1]["train_acc"] if history.rows else float("nan"),
        train_images=len(train_data), test_images=len(test_data),
        train_fingerprint=train_data.fingerprint, test_fingerprint=test_data.fingerprint,
        init_from=relative_to_runs(spec.init_from) if spec.init_from else "", fresh_from_init=len(fresh),
        resumed_from_epoch=history.resumed_from_epoch, run_key=folder.name.rsplit("-", 1)[-1], reused=False,
    )
    frame = history.to_frame().assign(label=spec.label, model=spec.model, seed=seed)
    if not dist.is_main:  # rank 0 files the run; the others wait until it has
        distributed.barrier()
        return row, frame
    write_csv(frame, folder / HISTORY_NAME)
    write_json({"row": row, "columns": list(row), "config": cfg.to_dict(), "model_kwargs": spec.model_kwargs},
               folder / RESULT_NAME)
    # Only now, with the result row on disk: a run killed before this point resumes from last.pt.
    if spec.recipe.keep_checkpoint:
        finish_checkpoint(folder / CHECKPOINT_NAME)
    else:
        (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
    distributed.barrier()
    return row, frame


def build_model(spec: RunSpec, num_classes: int, channels: int, pretrained: bool = True) -> torch.nn.Module:
    """The network of ``spec`` for a data set of ``num_classes`` classes and ``channels`` stored
    channels (three when the recipe repeats grey images to RGB).

    Args:
        pretrained: ``False`` builds it without reading pretrained weights: the same shapes and
            the same speed, for the cost plan (:mod:`reslab.plan`); a frozen backbone stays frozen.
    """
    kwargs = dict(spec.model_kwargs)
    if not pretrained:
        kwargs.pop("pretrained", None)
    train_aug, _ = spec.augments()
    return create_model(spec.model, num_classes=num_classes, in_chans=3 if train_aug.to_rgb else channels, **kwargs)


@dataclass
class Runs:
    """What :func:`run_specs` returns: one row per run, the histories, and the splits it loaded
    (``{dataset: (train, test)}``, for the manifest; never reloaded)."""

    rows: pd.DataFrame
    histories: pd.DataFrame
    splits: dict[str, tuple[Dataset, Dataset]]

    def __iter__(self):  # ``rows, histories = run_specs(...)``
        return iter((self.rows, self.histories))

    def described(self) -> list[dict]:
        return [d.describe() for pair in self.splits.values() for d in pair]


def run_specs(
    specs: Sequence[RunSpec],
    profile: str | Profile,
    seeds: Sequence[int],
    data_root: str | os.PathLike | None = None,
    force: bool = False,
    splits: dict[str, tuple[Dataset, Dataset]] | None = None,
    executor: "str | Executor | None" = None,
    use_record: bool = True,
) -> Runs:
    """Run every spec for every seed (data loaded once per data set).

    Args:
        splits: Splits already loaded, ``{dataset: (train, test)}``; missing ones are loaded with
            the profile's subsets (and the recipe's ``test_subset``) and added to it.
        executor: Where the runs not yet finished are made (:mod:`reslab.executor`): ``inline``
            (here, one after the other), ``local`` (processes on this machine, ``$RESLAB_JOBS`` at
            once) or ``slurm`` (a job array); ``None``: ``$RESLAB_EXECUTOR``, else ``inline``. With
            ``local`` and ``slurm``, a run whose job failed gets a row with ``status`` ``not run:
            <why> (log: <path>)``, no numbers, and the other rows as usual.
        use_record: Reuse runs finished only in the record of finished runs; ``False`` trains them
            into the run store (a caller that needs their checkpoints).

    Returns:
        A :class:`Runs` (unpacks as ``rows, histories``); every row has a ``status``.

    Raises:
        ValueError: on an empty ``seeds`` or ``specs``, or an unknown executor.
    """
    if not specs:
        raise ValueError("no runs to make: specs is empty.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. [0].")
    prof = resolve_profile(profile)
    splits = {} if splits is None else splits
    for spec in specs:
        if spec.dataset not in splits:
            splits[spec.dataset] = load_splits(spec.dataset, prof, data_root, spec.recipe.test_subset)
    ex = Executor.resolve(executor)
    estimate = announce_cost(specs, prof, seeds, splits, force, use_record)
    if estimate:
        print(estimate, flush=True)
    pairs = [(spec, seed) for spec in specs for seed in seeds]
    outcomes = {} if ex.inline else _run_as_jobs(ex, pairs, prof, splits, data_root, force, use_record)
    rows, histories = [], []
    for spec, seed in pairs:
        outcome = outcomes.get((id(spec), seed))
        if outcome is not None and not outcome.finished:
            rows.append(_not_run_row(spec, prof, seed, *splits[spec.dataset], outcome))
            continue
        row, hist = run_one(spec, prof, seed, *splits[spec.dataset], force=force and ex.inline, use_record=use_record)
        if outcome is not None:  # trained by a job of this call, not reused
            row["reused"] = False
        rows.append(row | {"status": FINISHED})
        histories.append(hist)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=["label", "epoch"])
    frame = pd.DataFrame(rows)
    if len(frame) > len(histories):  # rows of runs not run have no counts: keep the others' whole numbers
        for col in _COUNT_COLUMNS:
            if col in frame and frame[col].dropna().map(lambda v: float(v).is_integer()).all():
                frame[col] = frame[col].astype("Int64")
    return Runs(frame, history, splits)


#: Whole-number columns of a result row (kept whole beside the empty cells of a run not run).
_COUNT_COLUMNS = ("epochs", "params", "trainable_params", "best_epoch", "train_images", "test_images",
                  "fresh_from_init", "resumed_from_epoch", "cpu_threads", "world_size")


#: ``status`` of a run whose result row is in the run store; any other status starts with ``not run``.
FINISHED = "finished"
NOT_RUN = "not run"


def _run_as_jobs(ex: Executor, pairs: list[tuple[RunSpec, int]], prof: Profile,
                 splits: dict[str, tuple[Dataset, Dataset]], data_root: str | os.PathLike | None,
                 force: bool, use_record: bool = True) -> dict[tuple[int, int], Outcome]:
    """Make the runs of ``pairs`` that are not finished (all of them with ``force``) as jobs of
    ``ex``; ``{(id(spec), seed): outcome}`` of those submitted (a label may name runs on several
    data sets)."""
    pending = [(spec, seed) for spec, seed in pairs
               if force or not is_finished(run_dir(spec, prof, seed, *splits[spec.dataset]), use_record)]
    if not pending:
        return {}
    root = str(Path(data_root).expanduser().resolve()) if data_root is not None else None
    subs = [Submission(spec=spec, profile=prof.name, seed=seed, data_root=root, force=force,
                       fingerprints=tuple(d.fingerprint for d in splits[spec.dataset]),
                       runs_root=str(runs_root().resolve()), use_record=use_record) for spec, seed in pending]
    outcomes = run_jobs(ex, subs, table=pending[0][0].table, profile=prof.name)
    return {(id(spec), seed): o for (spec, seed), o in zip(pending, outcomes)}


def _not_run_row(spec: RunSpec, prof: Profile, seed: int, train_data: Dataset, test_data: Dataset,
                 outcome: Outcome) -> dict[str, Any]:
    """The row of a run whose job did not finish: what it is, why not, where its log is; no numbers.
    Its evidence is at most ``budget`` (a table row missing some of its runs is not the protocol)."""
    kind, note = evidence_of(prof, (*spec.recipe.deviations, *spec.recipe.overrides),
                             [train_data.data_source, test_data.data_source],
                             complete=train_data.subset is None and test_data.subset is None)
    kind, note = weakest_evidence([kind, BUDGET], [note, f"{spec.label} seed {seed} not run"])
    nan = float("nan")
    return {"table": spec.table, "model": spec.model, "dataset": spec.dataset, "data_source": train_data.data_source,
            "profile": prof.name, "seed": seed, "epochs": nan, "final_acc": nan, "best_acc": nan, "train_acc": nan,
            "label": spec.label, "reused": False,
            "run_dir": relative_to_runs(run_dir(spec, prof, seed, train_data, test_data)), **spec.tags,
            "evidence": kind, "evidence_note": note,
            "status": f"{NOT_RUN}: {outcome.error} (log: {relative_to_runs(outcome.log)})"}


def announce_cost(specs: Sequence[RunSpec], profile: Profile, seeds: Sequence[int],
                  splits: dict[str, tuple[Dataset, Dataset]], force: bool = False,
                  use_record: bool = True) -> str | None:
    """What :func:`run_specs` prints before training: the cost of the runs still to train.

    Under a protocol profile (``paper``, ``strong``), on any device, the plan of those runs
    (:mod:`reslab.plan`: images, FLOPs, a measured step, minutes; then the total); under a budget
    profile (``cpu15``) on the CPU, one line from the same machinery; ``None`` under ``smoke``,
    when nothing is left to train, or (budget) off the CPU. An estimate never stops the run it
    describes: if it fails, the text says so and training goes on.
    """
    if profile.evidence == SMOKE:
        return None
    try:
        pending = [(spec, s) for spec in specs for s in seeds
                   if force or not is_finished(run_dir(spec, profile, s, *splits[spec.dataset]), use_record)]
        pending = [(spec, s) for spec, s in pending if _device_type(spec.cfg.device) in (
            ("cpu",) if profile.evidence == BUDGET else ("cpu", "cuda"))]
        if not pending:
            return None
        from . import plan  # here: reslab.plan builds on this module

        runs = [plan.PlannedRun("", spec, s, len(splits[spec.dataset][0]), len(splits[spec.dataset][1]))
                for spec, s in pending]
        return plan.before_training(plan.with_totals(plan.cost_runs(runs)), profile)
    except Exception as exc:  # an estimate must never stop the run it describes
        return f"[reslab] no cost estimate ({type(exc).__name__}: {exc}); training goes on."


def _device_type(device: str) -> str | None:
    """``cpu`` / ``cuda`` for the device ``device`` resolves to; ``None`` for one that cannot be had
    (training reports that, not the estimate)."""
    try:
        return resolve_device(device).type
    except ValueError:
        return None


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("label", "model", "dataset")) -> pd.DataFrame:
    """Mean, standard deviation and n over seeds of final- and best-epoch accuracy (``n`` counts the
    runs made; a run ``not run`` adds nothing but makes its group's evidence at most ``budget``).

    The data sources, profile, epochs, devices, precision and parameter counts are carried along
    (they must agree within a group; if not, the group lists them all), and the group's evidence is
    the weakest of its runs (:func:`weakest_evidence`).
    """
    def join(values: pd.Series) -> str:  # runs not made (``status`` not run) have no values
        return ",".join(sorted({str(v) for v in values if pd.notna(v)}))

    grouped = rows.groupby(list(by), sort=False)
    out = grouped.agg(
        best_acc_mean=("best_acc", "mean"), best_acc_std=("best_acc", "std"),
        final_acc_mean=("final_acc", "mean"), final_acc_std=("final_acc", "std"),
        train_acc_mean=("train_acc", "mean"), n=("best_acc", "count"),
        params=("params", "first"), trainable_params=("trainable_params", "first"),
        epochs=("epochs", join), data_source=("data_source", join), profile=("profile", join),
        seeds=("seed", join), device=("device", join),
        **({"precision": ("precision", join)} if "precision" in rows else {}),
    ).reset_index()
    return out.merge(evidence_columns(rows, by), on=list(by))


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
            both have run (a row without the metric, ``not run``, pairs with nothing).
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
        common = sorted(set(a.index) & set(b.index))
        for metric in metrics:
            d = (a.loc[common, metric] - b.loc[common, metric]).astype(float).dropna()  # a run not run pairs with none
            seeds = list(d.index)
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
