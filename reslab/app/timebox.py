"""``reslab reproduce --minutes N``: the most that a short slice of machine time can judge.

Within N minutes of wall time it trains unfinished runs of the chosen notebooks; then the notebooks
make their tables of what is finished, every other run ``not run: not trained`` (executor ``none``,
:mod:`reslab.runs.jobs`), each row the mean of the runs it has, judged as ``n = k of N``. A second
call, here or on another machine that has the record of finished runs, goes on where this one
stopped: a finished run is never trained again.

Order (:func:`queue`): one seed of every row before a second seed of any, notebooks in ``reslab
reproduce``'s order and rows in table order, so each slice judges the most claims, and a run that
starts from another's checkpoint (Table 5's from Table 4's DRSTN V5, same seed) comes after its
source. A run starts only when its estimate fits the time left: the cost plan's minutes to go
(:func:`reslab.app.plan.make_plan`, steps timed on this device; for a run cut off earlier, here or
by the end of a slice, only the epochs after its checkpoint's) times the runs sharing the device,
until a run of the same network has finished in this call, whose wall time then serves. When the
next run does not fit, a later one that does is started instead. A started run is never stopped
(all but its last epoch's checkpoint would be lost); a run that raises is reported and the others
go on; a run whose source checkpoint is missing waits for the source, or is not started.

With ``jobs`` > 1 each run is a ``reslab train`` process, ``jobs`` at once (small networks leave a
large GPU mostly idle), logs in ``<results>/_logs/minutes/``; with 1, runs train in this process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .._errors import error_words
from ..catalog import run_params, run_spec
from ..paths import Paths
from ..profiles import Profile, resolve_profile
from ..runs.execute import run_alone
from ..runs.store import FINISHED, RunStore, slug
from .plan import Plan, make_plan

WAITING, RUNNING, TRAINED = "waiting", "running", "trained"
#: Seconds between looks at the ``reslab train`` processes.
POLL_S = 1.0


@dataclass
class Slot:
    """One unfinished run and what became of it.

    Attributes:
        notebook, table, label, model, dataset, seed: The run.
        estimate_s: The cost plan's seconds for what is left of it on this device, alone on the
            device (NaN: not timed).
        left: The fraction of the whole run's time that is left (1: it starts afresh; less: it resumes
            from its checkpoint), which scales a measurement of a whole run of its network.
        epochs_done: Epochs in its checkpoint, after which it resumes (0: none).
        status: ``waiting``, ``running``, ``trained``, ``failed: <why>`` or ``not started: <why>``.
        seconds: Its wall time in this call.
        log: Its log (``reslab train`` processes only).
    """

    notebook: str
    table: str
    label: str
    model: str
    dataset: str
    seed: int
    estimate_s: float
    left: float = 1.0
    epochs_done: int = 0
    status: str = WAITING
    seconds: float = math.nan
    log: str = ""

    @property
    def name(self) -> str:
        return f"{self.table} {self.label!r} on {self.dataset}, seed {self.seed}"

    @property
    def resumes(self) -> str:
        """``, from epoch k`` for a run that resumes from its checkpoint, else ``""``."""
        return f", from its checkpoint after epoch {self.epochs_done}" if self.epochs_done else ""


def queue(plan: Plan) -> list[Slot]:
    """The plan's unfinished runs in training order: by the rank of their seed among their
    notebook's seeds, then notebook, then the plan's (table) order."""
    rows = plan.rows[plan.rows["kind"] == "run"].reset_index(drop=True)
    if len(rows) != len(plan.runs):
        raise ValueError("the plan's runs and rows differ; make the plan with reslab.app.plan.make_plan.")
    seeds: dict[str, list[int]] = {}
    for run in plan.runs:
        seeds.setdefault(run.notebook, [])
        if run.seed not in seeds[run.notebook]:
            seeds[run.notebook].append(run.seed)
    position = {name: i for i, name in enumerate(seeds)}
    slots = [(sorted(seeds[run.notebook]).index(run.seed), position[run.notebook], i,
              Slot(run.notebook, run.spec.table, run.spec.label, run.spec.model, run.spec.dataset, run.seed,
                   float(row.minutes_to_go) * 60, _fraction(row.minutes_to_go, row.minutes), run.epochs_done))
             for i, (run, row) in enumerate(zip(plan.runs, rows.itertuples())) if run.status != FINISHED]
    return [s for *_, s in sorted(slots, key=lambda t: t[:3])]


def _fraction(part: float, whole: float) -> float:
    """``part / whole`` within (0, 1]; 1 when it cannot be told (not timed)."""
    if not (math.isfinite(part) and math.isfinite(whole)) or whole <= 0 or part <= 0:
        return 1.0
    return min(part / whole, 1.0)


@dataclass
class TimeBox:
    """Trains :class:`Slot` s within a deadline (see the module docstring).

    Attributes:
        profile: The profile of the runs.
        paths: The folders (data, run store, record); the processes of ``jobs`` > 1 get them too.
        params: Notebook parameters; each run takes those its notebook declares.
        device: The training device (``None``: each recipe's).
        jobs: Runs at once (> 1: ``reslab train`` processes).
        settings: Environment of those processes besides the folders (``RESLAB_COMPILE``...).
        compile_mode: ``torch.compile`` mode of runs trained in this process.
        clock: Seconds, monotonic (a test gives its own).
        say: Where progress lines go.
    """

    profile: Profile
    paths: Paths
    params: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    jobs: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    compile_mode: str = "off"
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = lambda line: print(line, flush=True)

    def __post_init__(self) -> None:
        self.profile = resolve_profile(self.profile)
        if isinstance(self.jobs, bool) or int(self.jobs) < 1:
            raise ValueError(f"jobs must be a positive integer (runs at once), got {self.jobs!r}.")
        self._measured: dict[tuple[str, str], float] = {}

    def estimate(self, slot: Slot) -> float:
        """Seconds ``slot`` is expected to take here: a whole run of its network measured in this call
        (times the fraction of ``slot`` left), else the plan's time for what is left of it alone times
        the runs sharing the device."""
        whole = self._measured.get((slot.table, slot.model))
        return slot.estimate_s * self.jobs if whole is None else whole * slot.left

    def run(self, slots: Sequence[Slot], minutes: float, start: float | None = None) -> list[Slot]:
        """Train ``slots`` (in order, see the module docstring) within ``minutes`` from ``start``
        (a :attr:`clock` reading; default now); every slot's ``status`` then says what became of it.

        Raises:
            ValueError: for minutes that are not a positive number.
        """
        if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not minutes > 0:
            raise ValueError(f"minutes must be a positive number (the time for training), got {minutes!r}.")
        deadline = (self.clock() if start is None else start) + 60 * minutes
        pending, running = list(slots), []
        while pending or running:
            for slot, proc, started in list(running):
                if proc.poll() is not None:
                    running.remove((slot, proc, started))
                    self._done(slot, self.clock() - started, "" if proc.returncode == 0 else
                               f"reslab train exited with {proc.returncode} (log: {slot.log})")
            slot, resolved = self._next(pending, running, deadline - self.clock())
            if slot is None:
                if not running:
                    break
                time.sleep(POLL_S)
                continue
            pending.remove(slot)
            if self.jobs == 1:
                self._train_here(slot, resolved)
            else:
                running.append((slot, self._start(slot), self.clock()))
        left = deadline - self.clock()
        for slot in pending:
            est = self.estimate(slot)
            slot.status = (f"not started: {slot.status[len('wait: '):]}" if slot.status.startswith("wait: ") else
                           "not started: not timed by the cost plan" if math.isnan(est) else
                           f"not started: about {est / 60:.1f} min, {max(left, 0) / 60:.1f} min left of {minutes:g}")
        return list(slots)

    def _next(self, pending: list[Slot], running: list, left: float) -> tuple[Slot | None, Any]:
        """The first pending slot that fits ``left`` seconds and can start now, with its resolved
        ``(spec, seed)``; ``(None, None)`` if none. A slot whose source run is missing waits while
        that run may still come, else it is not started."""
        if len(running) >= self.jobs:
            return None, None
        for slot in list(pending):
            if not self.estimate(slot) <= left:  # NaN (not timed) never fits
                continue
            try:
                return slot, self._spec(slot)
            except ValueError as exc:  # its source run has not finished (yet)
                source_may_come = any(s.seed == slot.seed and s.notebook != slot.notebook for s in pending) or any(
                    s.seed == slot.seed for s, *_ in running)
                slot.status = f"wait: {exc}"
                if not source_may_come:
                    pending.remove(slot)
                    slot.status = f"not started: {exc}"
        return None, None

    def _spec(self, slot: Slot):
        """The run's spec as ``reslab train`` would resolve it (``ValueError``: its source run is missing)."""
        return run_spec(slot.table, self.profile, slot.label, dataset=slot.dataset, seed=slot.seed,
                        params=run_params(slot.notebook, self.params), device=self.device, paths=self.paths)

    def _train_here(self, slot: Slot, resolved: tuple) -> None:
        self.say(f"[reslab] --minutes: training {slot.name} here (about {self.estimate(slot) / 60:.1f} min"
                 f"{slot.resumes})")
        started = self.clock()
        try:
            spec, seed = resolved
            spec = dataclasses.replace(spec, recipe=spec.recipe.replace(cuda_compile=self.compile_mode))
            row, _ = run_alone(spec, self.profile, seed, self.paths)
            RunStore.of(self.paths).record_run(row["run_dir"])
            error = ""
        except Exception as exc:  # a run that raises is reported; the others go on
            error = error_words(exc, 300)[:300]
        self._done(slot, self.clock() - started, error)

    def _start(self, slot: Slot) -> subprocess.Popen:
        folder = self.paths.results / "_logs" / "minutes"
        folder.mkdir(parents=True, exist_ok=True)
        slot.log = str(folder / f"{slug(slot.table)}-{slug(slot.label)}-{slot.dataset}-s{slot.seed}.log")
        cmd = [sys.executable, "-m", "reslab.cli", "train", slot.table, "--label", slot.label, "--dataset",
               slot.dataset, "--seed", str(slot.seed), "--profile", self.profile.name]
        if self.device:
            cmd += ["--device", self.device]
        for k, v in run_params(slot.notebook, self.params).items():
            cmd += ["--param", f"{k}={json.dumps(v)}"]
        env = {**os.environ, **self.paths.env(), **self.settings}
        self.say(f"[reslab] --minutes: started {slot.name} (about {self.estimate(slot) / 60:.1f} min{slot.resumes}; "
                 f"log {slot.log})")
        slot.status = RUNNING
        with open(slot.log, "w") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _done(self, slot: Slot, seconds: float, error: str) -> None:
        slot.seconds = seconds
        slot.status = f"failed: {error}" if error else TRAINED
        if not error:
            key = (slot.table, slot.model)
            self._measured[key] = max(self._measured.get(key, 0.0), seconds / slot.left)  # a whole run
        self.say(f"[reslab] --minutes: {slot.name}: {slot.status} ({seconds / 60:.1f} min)")


def train_for(minutes: float, names: Sequence[str], box: TimeBox) -> list[Slot]:
    """Plan the runs of notebooks ``names`` (:func:`reslab.app.plan.make_plan`, on ``box``'s device
    and parameters), then train the unfinished ones with ``box`` within ``minutes`` from now (the
    plan's timing of the steps counts)."""
    start = box.clock()
    plan = make_plan(box.profile, only=list(names), device=box.device or "auto", paths=box.paths, params=box.params)
    slots = queue(plan)
    total = len(plan.runs)
    box.say(f"[reslab] --minutes {minutes:g}: {total - len(slots)} of {total} run(s) finished already; {len(slots)} "
            f"to train, seed-major, {box.jobs} at once, a run started only when its estimate fits the time left")
    return box.run(slots, minutes, start)


def report(slots: Sequence[Slot]) -> pd.DataFrame:
    """One row per slot: the run, its estimate and wall time in minutes, and its status."""
    return pd.DataFrame([{"notebook": s.notebook, "label": s.label, "dataset": s.dataset, "seed": s.seed,
                          "estimate_min": round(s.estimate_s / 60, 2), "minutes": round(s.seconds / 60, 2),
                          "status": s.status} for s in slots],
                        columns=["notebook", "label", "dataset", "seed", "estimate_min", "minutes", "status"])


def write_report(slots: Sequence[Slot], paths: Paths, profile: Profile) -> Path:
    """The report as ``<results>/_logs/minutes-<profile>.csv`` (git-ignored)."""
    path = paths.results / "_logs" / f"minutes-{profile.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    report(slots).to_csv(path, index=False)
    return path
