"""Making runs: one run (:func:`run_one`), one in a process of its own (:func:`run_alone`, the
job :class:`RunJob`), and every run of a table over its seeds (:func:`run_specs`), inline or as
jobs of an executor (:mod:`reslab.runs.jobs`).

A finished run is reused from the run store (:mod:`reslab.runs.store`) or the record of finished
runs; an interrupted one resumes from its last epoch; ``force=True`` retrains. Every result row
carries the evidence decision of :func:`reslab.evidence.evidence_of`, made afresh on every read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from .. import distributed
from ..data import BatchLoader, Dataset
from ..evidence import PROTOCOL_RUNS, evidence_of, row_deviations, weakest_evidence
from ..models import count_params
from ..paths import Paths
from ..profiles import BUDGET, SMOKE, Profile, resolve_profile
from ..results import make_row, write_csv, write_json
from ..checkpoint import CHECKPOINT_NAME, finish_checkpoint, load_checkpoint
from ..train import UNRECORDED_DEVICE, History, resolve_device, train, use_channels_last
from . import cost
from .jobs import JOB_FILE, NOT_TRAINED, Executor, Outcome, run_jobs
from .spec import RunSpec, build_model, load_splits
from .store import FINISHED, HISTORY_NAME, NOT_RUN, RESULT_NAME, RunStore, init_digest, run_lock

#: Whole-number columns of a result row (kept whole beside the empty cells of a run not run).
_COUNT_COLUMNS = ("epochs", "params", "trainable_params", "best_epoch", "train_images", "test_images",
                  "fresh_from_init", "resumed_from_epoch", "cpu_threads", "world_size")


def _init_weights(model: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Load matching weights from a checkpoint; return the names left at their fresh values."""
    ckpt = load_checkpoint(path)
    source = ckpt.get("model", ckpt)
    own = model.state_dict()
    kept = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))


def _trained_on(row: dict[str, Any]) -> str:
    """``trained_on`` of a row filed before rows said it: the epochs since the run last resumed were
    trained on the row's device; where those before were trained was not recorded."""
    epochs, start = int(row.get("epochs") or 0), int(row.get("resumed_from_epoch") or 0)
    segments = [[1, min(start, epochs), UNRECORDED_DEVICE]] if start else []
    if epochs > start:
        segments.append([start + 1, epochs, row.get("device", "?")])
    return History(devices=segments).trained_on()


def run_one(
    spec: RunSpec,
    profile: str | Profile,
    seed: int,
    train_data: Dataset,
    test_data: Dataset,
    force: bool = False,
    use_record: bool = True,
    paths: Paths | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train (or reuse) one run and return its result row and per-epoch history.

    A finished run is reused from the run store, else from the record of finished runs
    (:attr:`RunStore.record`; not with ``use_record=False``, for a caller that needs the checkpoint,
    which the record does not keep).

    Args:
        paths: Where the run store and the record are (default: resolved from the environment).

    Returns:
        ``(row, history)``: the row carries every provenance column of
        :data:`reslab.results.PROVENANCE_COLUMNS` plus ``label``, ``trainable_params``,
        ``train_acc``, ``run_key``, ``reused``, the data fingerprints, ``run_dir``, the spec's
        tags, and ``evidence`` / ``evidence_note`` (:func:`evidence_of`); the history has one row
        per epoch with ``label``, ``model``, ``seed`` and the tags as columns.
    """
    prof = resolve_profile(profile)
    store = RunStore.of(paths or Paths.from_env())
    folder = store.run_dir(spec, prof, seed, train_data, test_data)
    result_path = folder / RESULT_NAME
    with run_lock(folder, f"run {spec.label} (seed {seed}, {prof.name})"):
        source = folder if result_path.is_file() else store.recorded(folder) if use_record else None
        if source is not None and not force:
            stored = json.loads((source / RESULT_NAME).read_text())
            row = {k: stored["row"][k] for k in stored["columns"]} | {"reused": True}
            row.setdefault("trained_on", _trained_on(row))
            history = pd.read_csv(source / HISTORY_NAME)
            if not spec.recipe.keep_checkpoint:  # a run store from before the recipe said so
                (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
        else:
            if force and distributed.current().is_main:
                shutil.rmtree(folder, ignore_errors=True)
            distributed.barrier()
            row, history = _train_run(spec, prof, seed, train_data, test_data, folder, store)
    # Decided afresh on every read, so a stored run is judged by today's rule.
    kind, note = evidence_of(prof, (*spec.recipe.deviations, *spec.recipe.overrides, *row_deviations(row)),
                             [train_data.data_source, test_data.data_source],
                             complete=train_data.subset is None and test_data.subset is None,
                             runs=spec.recipe.runs_of_protocol)
    row |= {"run_dir": store.relative(folder), **spec.tags, "evidence": kind, "evidence_note": note,
            PROTOCOL_RUNS: len(spec.recipe.seeds)}
    return row, history.assign(**spec.tags)


def run_alone(spec: RunSpec, profile: str | Profile, seed: int, paths: Paths | None = None,
              force: bool = False, fingerprints: Sequence[str] | None = None,
              use_record: bool = True) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run in a process of its own (a job of the ``local`` or ``slurm`` executor, ``reslab
    train``, each process of a ``torchrun``): load the spec's splits as :func:`run_specs` does, then
    :func:`run_one`.

    Args:
        paths: The data root, cache, run store and record (default: resolved from the environment).
        fingerprints: ``(train, test)`` fingerprints the caller saw: the run is refused when this
            process reads other data (a data folder that differs between machines), so that a job
            never files its run under a key the notebook does not look for.

    Raises:
        ValueError: when the data read here does not have ``fingerprints``.
    """
    paths = paths or Paths.from_env()
    train_data, test_data = load_splits(spec.dataset, profile, paths, spec.recipe.test_subset)
    seen = (train_data.fingerprint, test_data.fingerprint)
    if fingerprints is not None and tuple(fingerprints) != seen:
        raise ValueError(f"this process read {spec.dataset} with fingerprints {seen}, the caller {tuple(fingerprints)}: "
                         f"the data differ between them. Give data_root (or $RESLAB_DATA) as a folder that every "
                         f"machine running jobs reads identically.")
    return run_one(spec, profile, seed, train_data, test_data, force=force, use_record=use_record, paths=paths)


def _train_run(spec: RunSpec, prof: Profile, seed: int, train_data: Dataset, test_data: Dataset,
               folder: Path, store: RunStore) -> tuple[dict[str, Any], pd.DataFrame]:
    torch.manual_seed(seed)  # the model's initial weights depend on the run's seed only
    model = build_model(spec, train_data.num_classes, train_data.images.shape[1])
    init = init_digest(spec)  # what the run's key holds of init_from, kept with its result
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
    # wall_s: this process's time plus the epochs trained before it resumed (a resumed run's whole time).
    row = make_row(
        table=spec.table, model=spec.model, dataset=spec.dataset, data_source=train_data.data_source,
        profile=prof.name, seed=seed, epochs=summary["epochs"], params=count_params(model),
        final_acc=summary["final_acc"], best_acc=summary["best_acc"], best_epoch=summary["best_epoch"],
        wall_s=round(history.seconds_before_resume + time.perf_counter() - t0, 3), images_per_s=summary["images_per_s"], device=summary["device"],
        **{k: summary.get(k, "not recorded") for k in ("precision", "compile", "channels_last", "cpu_threads",
                                                      "world_size", "batch_norm", "tf32", "cudnn_benchmark",
                                                      "deterministic", "cudnn", "trained_on")},
        label=spec.label, trainable_params=count_params(model, trainable_only=True),
        train_acc=history.rows[-1]["train_acc"] if history.rows else float("nan"),
        train_images=len(train_data), test_images=len(test_data),
        train_fingerprint=train_data.fingerprint, test_fingerprint=test_data.fingerprint,
        init_from=store.relative(spec.init_from) if spec.init_from else "", fresh_from_init=len(fresh),
        resumed_from_epoch=history.resumed_from_epoch, run_key=folder.name.rsplit("-", 1)[-1], reused=False,
    )
    frame = history.to_frame().assign(label=spec.label, model=spec.model, seed=seed)
    if not dist.is_main:  # rank 0 files the run; the others wait until it has
        distributed.barrier()
        return row, frame
    write_csv(frame, folder / HISTORY_NAME)
    # init_digest: the part of the run's key that names init_from, for a machine without that file.
    result = {"row": row, "columns": list(row), "config": cfg.to_dict(), "model_kwargs": spec.model_kwargs,
              "init_digest": init}
    write_json(result, folder / RESULT_NAME)
    # Only now, with the result row on disk: a run killed before this point resumes from last.pt.
    if not spec.recipe.keep_checkpoint:
        (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
    elif finish_checkpoint(folder / CHECKPOINT_NAME) is not None:
        store.keep_checkpoint_digest(folder)
    distributed.barrier()
    return row, frame


@dataclass
class Runs:
    """What :func:`run_specs` returns: one row per run, the histories, and the splits it loaded
    (``{dataset: (train, test)}``, for the manifest; never reloaded)."""

    rows: pd.DataFrame
    histories: pd.DataFrame
    splits: dict[str, tuple[Dataset, Dataset]]

    def __iter__(self):  # ``rows, histories = run_specs(...)``
        return iter((self.rows, self.histories))


def load_missing_splits(specs: Sequence[RunSpec], profile: str | Profile, paths: Paths,
                        splits: dict[str, tuple[Dataset, Dataset]]) -> dict[str, tuple[Dataset, Dataset]]:
    """``splits`` (``{dataset: (train, test)}``, filled in place and returned) with the splits of
    every data set of ``specs`` it lacks, loaded with the profile's subsets and the recipe's
    ``test_subset``."""
    for spec in specs:
        if spec.dataset not in splits:
            splits[spec.dataset] = load_splits(spec.dataset, profile, paths, spec.recipe.test_subset)
    return splits


def run_specs(
    specs: Sequence[RunSpec],
    profile: str | Profile,
    seeds: Sequence[int],
    paths: Paths | None = None,
    force: bool = False,
    splits: dict[str, tuple[Dataset, Dataset]] | None = None,
    executor: "str | Executor | None" = None,
    use_record: bool = True,
) -> Runs:
    """Run every spec for every seed (data loaded once per data set).

    Args:
        paths: The data root, cache, run store and record (default: resolved from the environment;
            a job gets the caller's).
        splits: Splits already loaded, ``{dataset: (train, test)}``; missing ones are loaded with
            the profile's subsets (and the recipe's ``test_subset``) and added to it.
        executor: Where the runs not yet finished are made (:mod:`reslab.runs.jobs`): ``inline``
            (here, one after the other), ``local`` (processes on this machine, ``$RESLAB_JOBS`` at
            once), ``slurm`` (a job array) or ``none`` (nothing: runs made elsewhere are reused);
            ``None``: ``$RESLAB_EXECUTOR``, else ``inline``. With ``local`` and ``slurm``, a run whose
            job failed gets a row with ``status`` ``not run: <why> (log: <path>)``, no numbers, and
            the other rows as usual; with ``none``, each run not finished gets ``not run: not trained
            (executor none)``.
        use_record: Reuse runs finished only in the record of finished runs; ``False`` trains them
            into the run store (a caller that needs their checkpoints).

    Returns:
        A :class:`Runs` (unpacks as ``rows, histories``); every row has a ``status``.

    Raises:
        ValueError: on an empty ``seeds`` or ``specs``, an unknown executor, or ``force`` with ``none``.
    """
    if not specs:
        raise ValueError("no runs to make: specs is empty.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. [0].")
    prof = resolve_profile(profile)
    paths = paths or Paths.from_env()
    store = RunStore.of(paths)
    splits = load_missing_splits(specs, prof, paths, {} if splits is None else splits)
    ex = Executor.resolve(executor)
    if force and not ex.trains:
        raise ValueError("force retrains finished runs, but executor 'none' trains nothing: drop force, or choose "
                         "the inline, local or slurm executor.")
    estimate = announce_cost(specs, prof, seeds, splits, force, use_record, store) if ex.trains else ""
    if estimate:
        print(estimate, flush=True)
    pairs = [(spec, seed) for spec in specs for seed in seeds]
    outcomes = {} if ex.inline else _run_as_jobs(ex, pairs, prof, splits, paths, force, use_record)
    if not ex.trains:  # each row is the mean of the runs it has: its evidence counts those
        made = {id(spec): sum((id(spec), seed) not in outcomes for seed in seeds) for spec in specs}
        judged = {id(spec): _with_runs(spec, made[id(spec)]) for spec in specs}
    else:
        judged = {id(spec): spec for spec in specs}
    rows, histories = [], []
    for spec, seed in pairs:
        outcome = outcomes.get((id(spec), seed))
        if outcome is not None and not outcome.finished:
            rows.append(_not_run_row(judged[id(spec)], prof, seed, *splits[spec.dataset], outcome, store))
            continue
        row, hist = run_one(judged[id(spec)], prof, seed, *splits[spec.dataset], force=force and ex.inline,
                            use_record=use_record, paths=paths)
        if outcome is not None:  # trained by a job of this call, not reused
            row["reused"] = False
        rows.append(row | {"status": FINISHED})
        histories.append(hist)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=["label", "epoch"])
    frame = pd.DataFrame(rows)
    if len(frame) > len(histories):  # rows of runs not run have no counts: keep the others' whole numbers
        for col in _COUNT_COLUMNS:  # a column that also holds words ("not recorded") stays as it is
            values = pd.to_numeric(frame[col], errors="coerce") if col in frame else None
            if values is not None and values.notna().eq(frame[col].notna()).all() and (values.dropna() % 1 == 0).all():
                frame[col] = values.astype("Int64")
    return Runs(frame, history, splits)


def _run_as_jobs(ex: Executor, pairs: list[tuple[RunSpec, int]], prof: Profile,
                 splits: dict[str, tuple[Dataset, Dataset]], paths: Paths,
                 force: bool, use_record: bool = True) -> dict[tuple[int, int], Outcome]:
    """Make the runs of ``pairs`` that are not finished (all of them with ``force``) as jobs of
    ``ex``; ``{(id(spec), seed): outcome}`` of those submitted (a label may name runs on several
    data sets)."""
    store = RunStore.of(paths)
    pending = [(spec, seed) for spec, seed in pairs
               if force or not store.is_finished(store.run_dir(spec, prof, seed, *splits[spec.dataset]), use_record)]
    if not pending:
        return {}
    subs = [Submission(spec=spec, profile=prof.name, seed=seed, paths=paths, force=force,
                       fingerprints=tuple(d.fingerprint for d in splits[spec.dataset]),
                       use_record=use_record) for spec, seed in pending]
    table = pending[0][0].table
    outcomes = run_jobs(ex, RunJob(), subs, store.jobs_folder(prof.name, table), table)
    return {(id(spec), seed): o for (spec, seed), o in zip(pending, outcomes)}


def _with_runs(spec: RunSpec, made: int) -> RunSpec:
    """``spec`` with its recipe counting ``made`` runs of the row (the evidence note's ``n = made of N``;
    not part of the run key)."""
    if made >= len(spec.recipe.seeds) or made == (spec.recipe.runs or len(spec.recipe.seeds)):
        return spec
    return dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, runs=made))


def _not_run_row(spec: RunSpec, prof: Profile, seed: int, train_data: Dataset, test_data: Dataset,
                 outcome: Outcome, store: RunStore) -> dict[str, Any]:
    """The row of a run that was not made: what it is, why not, where its log is; no numbers.

    A run whose job failed makes its row's evidence at most ``budget``: leaving it out could favour
    the runs that went well. A run not trained at all (executor ``none``, :data:`NOT_TRAINED`) is
    missing for want of time, whatever its numbers would be: its row is the mean of the runs it has
    (``spec.recipe.runs`` of them), judged as such, unless it has none."""
    untrained = outcome.error == NOT_TRAINED
    kind, note = evidence_of(prof, (*spec.recipe.deviations, *spec.recipe.overrides),
                             [train_data.data_source, test_data.data_source],
                             complete=train_data.subset is None and test_data.subset is None,
                             runs=spec.recipe.runs_of_protocol if untrained else None)
    if not untrained or spec.recipe.runs == 0:
        kind, note = weakest_evidence([kind, BUDGET], [note, f"{spec.label} seed {seed} not run"])
    nan = float("nan")
    return {"table": spec.table, "model": spec.model, "dataset": spec.dataset, "data_source": train_data.data_source,
            "profile": prof.name, "seed": seed, "epochs": nan, "final_acc": nan, "best_acc": nan, "train_acc": nan,
            "label": spec.label, "reused": False,
            "run_dir": store.relative(store.run_dir(spec, prof, seed, train_data, test_data)), **spec.tags,
            "evidence": kind, "evidence_note": note, PROTOCOL_RUNS: len(spec.recipe.seeds),
            "status": f"{NOT_RUN}: {outcome.error}" + (f" (log: {store.relative(outcome.log)})" if outcome.log else "")}


def announce_cost(specs: Sequence[RunSpec], profile: Profile, seeds: Sequence[int],
                  splits: dict[str, tuple[Dataset, Dataset]], force: bool = False,
                  use_record: bool = True, store: RunStore | None = None) -> str | None:
    """What :func:`run_specs` prints before training: the cost of the runs still to train.

    Under a protocol profile (``paper``, ``strong``), on any device, the plan of those runs
    (:mod:`reslab.runs.cost`: images, FLOPs, a measured step, minutes; then the total); under a budget
    profile on the CPU, one line from the same machinery; ``None`` under ``smoke``,
    when nothing is left to train, or (budget) off the CPU. An estimate never stops the run it
    describes: if it fails, the text says so and training goes on.
    """
    if profile.evidence == SMOKE:
        return None
    store = store or RunStore.of(Paths.from_env())
    try:
        where = [(spec, s, store.run_dir(spec, profile, s, *splits[spec.dataset])) for spec in specs for s in seeds]
        pending = [(spec, s, folder) for spec, s, folder in where
                   if (force or not store.is_finished(folder, use_record)) and _device_type(spec.cfg.device) in (
                       ("cpu",) if profile.evidence == BUDGET else ("cpu", "cuda"))]
        if not pending:
            return None
        runs = [cost.PlannedRun("", spec, s, len(splits[spec.dataset][0]), len(splits[spec.dataset][1]),
                                epochs_done=0 if force else store.epochs_done(folder))
                for spec, s, folder in pending]
        return cost.before_training(cost.with_totals(cost.cost_runs(runs)), profile)
    except Exception as exc:  # an estimate must never stop the run it describes
        return f"[reslab] no cost estimate ({type(exc).__name__}: {exc}); training goes on."


def _device_type(device: str) -> str | None:
    """``cpu`` / ``cuda`` for the device ``device`` resolves to; ``None`` for one that cannot be had
    (training reports that, not the estimate)."""
    try:
        return resolve_device(device).type
    except ValueError:
        return None



@dataclass
class Submission:
    """One run to make as a job: what :class:`RunJob` is called with."""

    spec: RunSpec
    profile: str
    seed: int
    paths: Paths  # the caller's folders: its run store, whatever this node's default
    fingerprints: tuple[str, str]
    force: bool = False
    use_record: bool = True  # reuse a run finished only in the record (False: its checkpoint is needed)

    @property
    def label(self) -> str:
        return self.spec.label


class RunJob:
    """The callable each job runs: one run (:func:`run_alone`) in the job's
    process(es). On SLURM with several GPUs per run, each process is one rank of
    DistributedDataParallel. :meth:`checkpoint` is submitit's hook at the time limit or on
    preemption: the job is requeued and resumes from the run's last epoch checkpoint."""

    def __call__(self, sub: Submission) -> dict[str, Any]:
        spec = dataclasses.replace(sub.spec, recipe=sub.spec.recipe.replace(progress=False))
        if str(spec.cfg.device).startswith("cuda:"):  # a job sees only its own GPUs
            spec = dataclasses.replace(spec, recipe=spec.recipe.replace(device="cuda"))
        dist = distributed.init_from_env(spec.cfg.device)  # a job of several tasks (gpus > 1): one run on all
        folder = RunStore.of(sub.paths).run_dir(spec, sub.profile, sub.seed, *sub.fingerprints)
        if dist.is_main:
            if sub.force:  # retrain: as run_one(force=True) would, but keeping this job's record
                shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            _write_job_file(folder)
        distributed.barrier()
        row, _ = run_alone(spec, sub.profile, sub.seed, sub.paths, fingerprints=sub.fingerprints,
                           use_record=sub.use_record)
        return {"label": row["label"], "seed": row["seed"], "best_acc": row["best_acc"], "run_dir": row["run_dir"]}

    def checkpoint(self, sub: Submission) -> Any:
        """Requeue with the same run; it resumes from ``last.pt`` (never retrains from scratch)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunJob(), dataclasses.replace(sub, force=False))


def _write_job_file(folder: Path) -> None:
    env = {k: os.environ[k] for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                      "SUBMITIT_LOCAL_JOB_ID", "SUBMITIT_EXECUTOR") if k in os.environ}
    write_json({"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **{k.lower(): v for k, v in env.items()}}, folder / JOB_FILE)


