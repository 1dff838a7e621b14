"""Where runs are filed: the run store and the record of finished runs.

A run lives in :meth:`RunStore.run_dir` (``<runs>/<profile>/<table>/<label>-s<seed>-<key>/``: its
checkpoint ``last.pt``, ``history.csv`` and ``result.json``), where ``key`` (:func:`run_key`)
hashes everything that changes its numbers (model and its arguments, training config,
augmentation, initial weights, data fingerprints), so rerunning a notebook with the same profile
and seeds reuses its runs, an interrupted run resumes from its last epoch, and a changed recipe
trains anew.

The run store is outside the results folders on purpose: ``reslab reproduce`` executes notebooks
into a staging folder, and runs must survive that (:attr:`reslab.paths.Paths.runs`, default
``results/_runs``). The record (:attr:`RunStore.record`) mirrors it without checkpoints and is
committed with the results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator

from .. import distributed
from .._io import atomic_path, file_lock
from ..data import Dataset
from ..paths import Paths
from ..profiles import Profile, resolve_profile
from ..results import file_sha256, write_json
from ..checkpoint import CHECKPOINT_NAME, checkpoint_epoch
from ..train import SPEED_FIELDS
from .spec import RunSpec

#: A run's status, one word for each meaning everywhere (result rows, the plan, the record):
#: finished (its result row is in the run store or the record), still to train, not run (its job
#: did not finish; a row's status then reads ``not run: <why>``), or not looked up (no data, so no key).
FINISHED, TO_TRAIN, NOT_RUN, NOT_LOOKED_UP = "finished", "to train", "not run", "run store not checked"

RESULT_NAME = "result.json"


HISTORY_NAME = "history.csv"


def slug(text: str) -> str:
    """A file-name-safe version of a row label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def checkpoint_digest(path: str | os.PathLike) -> str:
    """The digest of a checkpoint as run keys hold it (the first 16 hex digits of its SHA-256).

    Raises:
        FileNotFoundError: when ``path`` is not a file on this machine.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from checkpoint {path} does not exist; train the run it comes from first.")
    return file_sha256(path)[:16]


def init_digest(spec: RunSpec) -> str | None:
    """:func:`checkpoint_digest` of the checkpoint ``spec`` starts from (its ``init_from``); ``None``
    for a run from random weights."""
    return checkpoint_digest(spec.init_from) if spec.init_from else None


def run_key(spec: RunSpec, seed: int, train_data: Dataset | str, test_data: Dataset | str,
            init: str | None = None) -> str:
    """A hash of everything that changes a run's numbers (not :data:`~reslab.train.SPEED_FIELDS`).

    Args:
        init: The digest of ``spec.init_from`` when it is known without the file (a finished run's
            result keeps it); default: read from the file (:func:`init_digest`).
    """
    cfg = _without_speed(spec.cfg.replace(seed=seed).to_dict())
    train_aug, test_aug = spec.augments()
    payload = {
        "model": spec.model,
        "model_kwargs": spec.model_kwargs,
        "dataset": spec.dataset,
        "cfg": cfg,
        "train_augment": repr(train_aug),
        "test_augment": repr(test_aug),
        "init_from": (init or init_digest(spec)) if spec.init_from else None,
        "data": [getattr(d, "fingerprint", d) for d in (train_data, test_data)],  # a Dataset or its fingerprint
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _without_speed(cfg: dict) -> dict:
    """A training config without :data:`~reslab.train.SPEED_FIELDS` (which change no numbers)."""
    return {k: v for k, v in cfg.items() if k not in SPEED_FIELDS}


def _jsonable(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@contextlib.contextmanager
def run_lock(folder: Path, what: str) -> Iterator[None]:
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


@dataclasses.dataclass(frozen=True)
class RunStore:
    """The run store and the record of finished runs of one command or notebook run: where a run
    lives (:meth:`run_dir`), whether it is finished, and its record.

    Attributes:
        root: The run store (:attr:`reslab.paths.Paths.runs`).
        record: The record of finished runs (:attr:`reslab.paths.Paths.record`): it mirrors the run
            store without checkpoints (``<profile>/<table>/<run>/result.json`` and ``history.csv``)
            and is committed with the results, so that a fresh clone, or another machine, knows
            which runs are finished and renders their tables without training them again.
            ``reslab train`` and ``reslab reproduce`` write it (:meth:`record_run`); a notebook run
            on its own only reads it.
    """

    root: Path
    record: Path

    @classmethod
    def of(cls, paths: Paths) -> "RunStore":
        return cls(root=paths.runs, record=paths.record)

    def run_dir(self, spec: RunSpec, profile: str | Profile, seed: int, train_data: Dataset | str,
                test_data: Dataset | str) -> Path:
        """The folder of one run (its checkpoint, history and result row).

        A run that starts from a checkpoint not on this machine (``init_from``) cannot be keyed by
        that file's digest: its folder is then the one of its finished run, in the run store or the
        record, that started from the same checkpoint (:meth:`_finished_from`); none: the
        ``FileNotFoundError`` of :func:`init_digest`.
        """
        prof = resolve_profile(profile)
        if spec.init_from and not Path(spec.init_from).is_file():
            found = self._finished_from(spec, prof, seed, train_data, test_data)
            if found is not None:
                return found
        key = run_key(spec, seed, train_data, test_data)
        return self.root / prof.name / spec.table / f"{slug(spec.label)}-s{seed}-{key}"

    def _finished_from(self, spec: RunSpec, prof: Profile, seed: int, train_data: Dataset | str,
                       test_data: Dataset | str) -> Path | None:
        """The run-store folder of the finished run of ``spec`` (in the run store or the record) whose
        ``init_from`` checkpoint is not on this machine (Table 5's transfer runs, where DRSTN V5's
        checkpoint stayed with the machine that trained it), else ``None``.

        The run that made that checkpoint keeps its digest in its result (``checkpoint_digest``):
        with it, the folder is the one of the key made from it. A run from before results kept it
        is looked for among the finished runs (same row and seed) whose result row started from the
        same checkpoint path on the same data: one whose result kept the digest it started from
        (``init_digest``) is taken when its folder is that digest's key, one from before when its
        recipe (the training config but its speed settings, and the model's arguments) is
        ``spec``'s. Exactly one must remain: two (a source run trained twice under one key, before
        results kept digests) leave unknown which started from the checkpoint meant.
        """
        data = [getattr(d, "fingerprint", d) for d in (train_data, test_data)]
        name = f"{slug(spec.label)}-s{seed}-"
        source = self._result(Path(spec.init_from).parent)
        if source is not None and source.get("checkpoint_digest"):
            folder = self.root / prof.name / spec.table / (name + run_key(spec, seed, *data, source["checkpoint_digest"]))
            return folder if self.is_finished(folder) else None
        want, cfg = self.relative(spec.init_from), _jsonable(_without_speed(spec.cfg.replace(seed=seed).to_dict()))
        found = set()
        for base in (self.root, self.record):
            for candidate in (base / prof.name / spec.table).glob(name + "*"):
                stored = self._result(candidate)
                try:
                    row = stored["row"]
                    same = (row["init_from"] == want and row["model"] == spec.model
                            and [row["train_fingerprint"], row["test_fingerprint"]] == data)
                except (KeyError, TypeError):  # unfinished (None) or not a result
                    continue
                if not same or not (candidate / HISTORY_NAME).is_file():
                    continue
                if stored.get("init_digest"):
                    same = candidate.name == name + run_key(spec, seed, *data, stored["init_digest"])
                else:
                    same = (_jsonable(_without_speed(stored.get("config", {}))) == cfg
                            and _jsonable(stored.get("model_kwargs")) == _jsonable(spec.model_kwargs))
                if same:
                    found.add(candidate.name)
        return self.root / prof.name / spec.table / found.pop() if len(found) == 1 else None

    def _result(self, folder: Path, use_record: bool = True) -> dict | None:
        """The ``result.json`` of the run of run-store folder ``folder`` (or of a record's folder), from
        the run store, else (with ``use_record``) the record; ``None`` when neither has it or it cannot
        be read."""
        for where in (Path(folder), self.recorded(folder) if use_record else None):
            if where is not None and (where / RESULT_NAME).is_file():
                try:
                    return json.loads((where / RESULT_NAME).read_text())
                except (OSError, ValueError):
                    return None
        return None

    def checkpoint_path(self, spec: RunSpec, profile: str | Profile, seed: int, train_data: Dataset,
                        test_data: Dataset) -> Path:
        """Where the final checkpoint of ``spec`` (``last.pt``) is or will be."""
        return self.run_dir(spec, profile, seed, train_data, test_data) / CHECKPOINT_NAME

    def checkpoint_of(self, spec: RunSpec, profile: str | Profile, seed: int,
                      splits: tuple[Dataset, Dataset] | None = None) -> Path | None:
        """Where the checkpoint of the run of ``spec`` is or will be: keyed by the data's fingerprints
        when ``splits`` are given; without them (no data on this machine), the one of the finished
        run :meth:`find_run` finds, else ``None``. What a run that starts from another's checkpoint
        (:data:`reslab.tables._common.FROM_FIRST_RUN`) starts from."""
        if splits is not None:
            return self.checkpoint_path(spec, profile, seed, *splits)
        found = self.find_run(spec, profile, seed)
        return found / CHECKPOINT_NAME if found is not None else None

    def recorded(self, folder: Path) -> Path | None:
        """The record of the run whose run-store folder is ``folder``, if the record holds it finished."""
        try:
            rel = Path(folder).relative_to(self.root)
        except ValueError:
            return None
        rec = self.record / rel
        return rec if (rec / RESULT_NAME).is_file() and (rec / HISTORY_NAME).is_file() else None

    def has_checkpoint(self, folder: Path) -> bool:
        """Whether the run of run-store folder ``folder`` is finished in this run store with its
        checkpoint (its result row and ``last.pt``): what a run that starts from it, or a notebook
        that reads its weights, needs. The record keeps no checkpoints, and a ``last.pt`` without
        its result row is an interrupted run's."""
        return (Path(folder) / RESULT_NAME).is_file() and (Path(folder) / CHECKPOINT_NAME).is_file()

    def is_finished(self, folder: Path, use_record: bool = True) -> bool:
        """Whether the run of run-store folder ``folder`` is finished, in the run store or (with
        ``use_record``) in the record."""
        return (Path(folder) / RESULT_NAME).is_file() or (use_record and self.recorded(folder) is not None)

    def epochs_done(self, folder: Path) -> int:
        """Epochs an unfinished run of run-store folder ``folder`` has trained (its checkpoint's; 0:
        none), from which it resumes."""
        return checkpoint_epoch(Path(folder) / CHECKPOINT_NAME)

    def record_run(self, folder: str | os.PathLike) -> Path | None:
        """Copy a finished run's result row and history from the run store into the record (atomically).

        Args:
            folder: The run's folder in the run store, or its ``<runs>/...`` form from a result row.

        Returns:
            The record's folder, or ``None`` when the run store has no finished run there.
        """
        text = str(folder)
        folder = self.root / text.removeprefix("<runs>/") if text.startswith("<runs>/") else Path(folder)
        if not (folder / RESULT_NAME).is_file() or not (folder / HISTORY_NAME).is_file():
            return None
        rec = self.record / folder.resolve().relative_to(self.root.resolve())
        self.keep_checkpoint_digest(folder)
        for name in (HISTORY_NAME, RESULT_NAME):  # the row last: a record with a row is whole
            data = (folder / name).read_bytes()
            if not (rec / name).is_file() or (rec / name).read_bytes() != data:
                with atomic_path(rec / name) as tmp:
                    tmp.write_bytes(data)
        return rec

    def keep_checkpoint_digest(self, folder: Path) -> None:
        """Give the result of a finished run whose final checkpoint is here the ``checkpoint_digest``
        (read from the checkpoint itself) if it lacks it: a run just finished, or one that finished
        before results kept it. The record keeps it, so that it finds the runs that start from this
        checkpoint where the checkpoint is not (:meth:`run_dir`)."""
        folder = Path(folder)
        if not (folder / CHECKPOINT_NAME).is_file():
            return
        result = self._result(folder, use_record=False)
        if result is not None and "checkpoint_digest" not in result:
            write_json(result | {"checkpoint_digest": checkpoint_digest(folder / CHECKPOINT_NAME)}, folder / RESULT_NAME)

    def relative(self, path: str | os.PathLike) -> str:
        """A run-store path as ``<runs>/...`` (no machine paths in committed CSVs)."""
        try:
            return str(Path("<runs>") / Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def find_run(self, spec: RunSpec, profile: str | Profile, seed: int) -> Path | None:
        """The folder of a finished run of ``spec``, found without its data: a candidate folder (same
        row and seed) is taken when the key made from the data fingerprints its result row recorded
        is its own key. ``None`` when there is none; the latest finished if several (runs of the
        same recipe on other data, e.g. official CIFAR-10 and its JPEG copy)."""
        folder = self.root / resolve_profile(profile).name / spec.table
        found = []
        for candidate in folder.glob(f"{slug(spec.label)}-s{seed}-*"):
            try:
                row = (self._result(candidate, use_record=False) or {})["row"]
                key = run_key(spec, seed, row["train_fingerprint"], row["test_fingerprint"])
            except (OSError, ValueError, KeyError):  # unfinished, unreadable, or an init_from not here
                continue
            if candidate.name == f"{slug(spec.label)}-s{seed}-{key}":
                found.append(candidate)
        return max(found, key=lambda p: (p / RESULT_NAME).stat().st_mtime) if found else None

    def jobs_folder(self, profile: str, table: str) -> Path:
        """Where the jobs of ``table`` keep their logs: ``<run store>/_jobs/<profile>/<table>``."""
        return self.root / "_jobs" / profile / table
