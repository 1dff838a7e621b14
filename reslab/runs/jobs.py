"""Where a table's runs are made: in the notebook's process, as local processes, or as SLURM jobs.

An executor (:class:`Executor`) is chosen by a notebook's ``executor`` parameter, ``reslab
reproduce --executor`` or ``$RESLAB_EXECUTOR`` (default ``inline``):

- ``inline``: every run in the notebook's own process, one after the other (no submitit needed);
- ``local``: each run (model x seed) a process of its own on this machine, through submitit's
  local executor, ``jobs`` of them at once (``$RESLAB_JOBS``, default 2). On one GPU they share
  the device: the CIFAR-size networks here leave most of a large GPU idle;
- ``slurm``: each run a SLURM job through submitit, submitted as one job array per call (one GPU
  per run by default; ``gpus`` > 1 runs one process per GPU under DistributedDataParallel).
  Settings come from ``$RESLAB_SLURM_<NAME>`` (:data:`SLURM_SETTINGS`); the run store
  (``$RESLAB_RUNS``) and the data must sit on a filesystem every node reads;
- ``none``: nothing is trained. Runs finished in the run store or the record of finished runs are
  reused; every other run gets a row ``not run: not trained (executor none)`` with no numbers. A
  table of the runs made elsewhere (a time-boxed GPU slice, another machine's record), where the
  rest would take hours here. Which runs are missing depends on time, not on their numbers, so a
  row is the protocol's mean of the runs it has (``n = 3 of 10``, :func:`reslab.evidence.evidence_of`).

:func:`run_jobs` submits the jobs it is given (:mod:`reslab.runs.execute` gives it the runs not yet finished), waits with a progress bar of finished
runs, and reports each run that did not finish with the path of its log. A job whose process
died without a Python error (killed, preempted, its node lost) is submitted again up to
``retries`` times and resumes from its last epoch checkpoint; a job that SLURM stops at its time
limit or preempts is requeued by submitit's checkpointing hook (:class:`reslab.runs.execute.RunJob`) and resumes the
same way. A job that raised is not retried: the same error would come back.

Logs of each job are in ``<run store>/_jobs/<profile>/<table>/`` (``<job id>_0_log.err`` /
``.out``; a job array's ``<array id>_<index>_0_log.*``); the run folder's ``job.json`` says which
job, host and process trained it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

EXECUTORS = ("inline", "local", "slurm", "none")
#: The ``error`` of an :class:`Outcome` of a run that executor ``none`` did not train.
NOT_TRAINED = "not trained (executor none)"
EXECUTOR_ENV = "RESLAB_EXECUTOR"
JOBS_ENV = "RESLAB_JOBS"
SLURM_ENV_PREFIX = "RESLAB_SLURM_"
#: SLURM settings, each from ``$RESLAB_SLURM_<NAME>`` (or ``reslab reproduce --slurm NAME=VALUE``):
#: name -> what it sets.
SLURM_SETTINGS = {
    "partition": "sbatch --partition",
    "account": "sbatch --account",
    "qos": "sbatch --qos",
    "constraint": "sbatch --constraint (e.g. a100)",
    "time": "time limit per job in minutes, or D-HH:MM:SS / HH:MM:SS (default 1440)",
    "gpus": "GPUs per run, one process each under DistributedDataParallel (default 1)",
    "nodes": "nodes per run (default 1)",
    "cpus": "CPUs per process (default 8)",
    "mem": "memory per node, e.g. 64G (default: the partition's)",
    "setup": "shell lines run before each job, separated by ';' (e.g. module load cuda; source venv/bin/activate)",
    "extra": "further sbatch options, 'key=value' separated by ';' (e.g. mail-type=END;exclude=node3)",
}
#: The files of a job in the run folder it trains.
JOB_FILE = "job.json"
DEFAULT_JOBS = 2
DEFAULT_TIME_MIN = 24 * 60


@dataclass(frozen=True)
class Executor:
    """How a table's runs are made (:data:`EXECUTORS`).

    Attributes:
        kind: ``inline``, ``local``, ``slurm`` or ``none`` (trains nothing).
        jobs: Runs at once: local processes, or the job array's parallelism on SLURM
            (``None``: :data:`DEFAULT_JOBS` locally, no limit on SLURM).
        slurm: :data:`SLURM_SETTINGS` given, as strings.
        retries: Submissions again of a run whose job died without a Python error.
        poll_s: Seconds between looks at the jobs.
    """

    kind: str = "inline"
    jobs: int | None = None
    slurm: dict[str, str] = field(default_factory=dict)
    retries: int = 1
    poll_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.kind!r} (set by the notebook's executor "
                             f"parameter, reslab reproduce --executor, or ${EXECUTOR_ENV}).")
        if self.jobs is not None and (isinstance(self.jobs, bool) or int(self.jobs) < 1):
            raise ValueError(f"jobs (runs at once, ${JOBS_ENV}) must be a positive integer, got {self.jobs!r}.")
        unknown = sorted(set(self.slurm) - set(SLURM_SETTINGS))
        if unknown:
            raise ValueError(f"unknown SLURM setting(s) {unknown}; known: {sorted(SLURM_SETTINGS)} "
                             f"(${SLURM_ENV_PREFIX}<NAME> or --slurm NAME=VALUE).")
        if self.kind == "slurm":
            self.slurm_parameters()  # every setting checked before anything is submitted

    @classmethod
    def resolve(cls, executor: "str | Executor | None" = None) -> "Executor":
        """The executor named (``None``: ``$RESLAB_EXECUTOR``, else ``inline``), with ``jobs`` from
        ``$RESLAB_JOBS`` and the SLURM settings from ``$RESLAB_SLURM_<NAME>``.

        Raises:
            ValueError: for an unknown executor or setting, or a setting that is not valid.
        """
        if isinstance(executor, Executor):
            return executor
        kind = (executor or os.environ.get(EXECUTOR_ENV, "") or "inline").strip().lower()
        jobs = os.environ.get(JOBS_ENV, "").strip()
        if jobs and not jobs.isdigit():
            raise ValueError(f"${JOBS_ENV}={jobs!r}: give the number of runs at once, e.g. 4.")
        slurm = {k[len(SLURM_ENV_PREFIX):].lower(): v for k, v in os.environ.items()
                 if k.startswith(SLURM_ENV_PREFIX) and v.strip()}
        return cls(kind=kind, jobs=int(jobs) if jobs else None, slurm=slurm)

    @property
    def inline(self) -> bool:
        return self.kind == "inline"

    @property
    def trains(self) -> bool:
        """Whether runs not yet finished are made (all but ``none``)."""
        return self.kind != "none"

    def slurm_parameters(self, array_size: int | None = None) -> dict[str, Any]:
        """The parameters of submitit's ``SlurmExecutor`` for these settings (one task per GPU).

        Raises:
            ValueError: naming a setting that is not valid.
        """
        s = self.slurm
        gpus = _positive(s.get("gpus", "1"), "gpus")
        params: dict[str, Any] = {
            "job_name": "reslab",
            "time": parse_minutes(s.get("time", str(DEFAULT_TIME_MIN))),
            "nodes": _positive(s.get("nodes", "1"), "nodes"),
            "ntasks_per_node": gpus,
            "gpus_per_node": gpus,
            "cpus_per_task": _positive(s.get("cpus", "8"), "cpus"),
            "signal_delay_s": 120,  # time to finish the step and leave before SLURM's kill
        }
        for name in ("partition", "account", "qos", "constraint", "mem"):
            if s.get(name):
                params[name] = s[name].strip()
        if s.get("setup"):
            params["setup"] = [line.strip() for line in s["setup"].split(";") if line.strip()]
        if s.get("extra"):
            params["additional_parameters"] = parse_options(s["extra"])
        if self.jobs is not None:
            params["array_parallelism"] = int(self.jobs)
        return params


def _positive(value: str, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"SLURM setting {name}={value!r} must be a positive whole number "
                         f"(${SLURM_ENV_PREFIX}{name.upper()}).")
    return int(text)


def parse_minutes(value: str) -> int:
    """A SLURM time limit as whole minutes: ``90``, ``1:30:00``, ``2-00:00:00``.

    Raises:
        ValueError: for any other form.
    """
    text = str(value).strip()
    days, _, clock = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = clock.split(":")
    if not (days.isdigit() and all(p.isdigit() for p in parts) and 1 <= len(parts) <= 3):
        raise ValueError(f"SLURM setting time={value!r}: give minutes (1440), HH:MM:SS (24:00:00) or D-HH:MM:SS.")
    if len(parts) == 1:
        minutes = int(parts[0])
    else:
        h, m, sec = ([int(p) for p in parts] + [0])[:3] if len(parts) == 2 else [int(p) for p in parts]
        minutes = h * 60 + m + (1 if sec else 0)
    minutes += int(days) * 24 * 60
    if minutes < 1:
        raise ValueError(f"SLURM setting time={value!r} must be at least one minute.")
    return minutes


def parse_options(text: str) -> dict[str, str]:
    """``'mail-type=END;exclude=node3'`` -> ``{"mail-type": "END", "exclude": "node3"}``.

    Raises:
        ValueError: for an entry without ``=``.
    """
    options = {}
    for item in (i.strip() for i in text.split(";")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip().lstrip("-"):
            raise ValueError(f"SLURM setting extra: {item!r} is not key=value; write e.g. 'mail-type=END;exclude=node3'.")
        options[key.strip().lstrip("-")] = value.strip()
    return options


# --------------------------------------------------------------------------------------------
# Submitting and waiting


@dataclass
class Outcome:
    """What became of one submitted run.

    Attributes:
        label, seed: The run.
        finished: Whether its result row is in the run store.
        error: Why not (the exception's last line), ``""`` if finished.
        log: The job's log (stderr) to read.
        attempts: Jobs submitted for it.
    """

    label: str
    seed: int
    finished: bool
    error: str = ""
    log: str = ""
    attempts: int = 1


def _submitit_executor(executor: Executor, folder: Path, gpu: int | None = None):
    try:
        import submitit
    except ImportError as exc:
        raise ImportError(f"the {executor.kind!r} executor needs submitit: pip install submitit "
                          "(or run the table with executor='inline').") from exc
    if executor.kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=3)
        ex.update_parameters(timeout_min=60 * 24 * 30, gpus_per_node=0 if gpu is None else 1,
                             **({"visible_gpus": (gpu,)} if gpu is not None else {}))
    else:
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise RuntimeError(f"the slurm executor submits with sbatch and runs with srun, and {' and '.join(missing)} "
                               "is not on PATH: run the notebook on a SLURM login node, or use executor='local'.")
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        ex.update_parameters(**executor.slurm_parameters())
    return ex


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch CUDA: the jobs run on the CPU
        return 0


def submit(executor: Executor, job: Callable[[Any], Any], subs: Sequence[Any], folder: Path,
           gpu: int | None = None) -> list[Any]:
    """Submit ``job(sub)`` for each of ``subs`` (SLURM: one job array; local: one process each) and
    return submitit's jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    ex = _submitit_executor(executor, folder, gpu)
    if executor.kind == "slurm" and len(subs) > 1:
        with ex.batch():
            jobs = [ex.submit(job, sub) for sub in subs]
        return jobs
    return [ex.submit(job, sub) for sub in subs]


def _failure(job: Any) -> tuple[str, bool]:
    """``(why the job did not finish, whether submitting it again may help)``."""
    from submitit.core.utils import FailedJobError

    exc = job.exception()
    if exc is None:
        return "", False
    if not isinstance(exc, FailedJobError):  # no result at all: the process was stopped from outside
        return f"the job stopped without a Python error (killed, preempted or its node lost; state {job.state})", True
    # The message holds the job's traceback between two rules of dashes; its last line is the error.
    parts = str(exc).split("-" * 22)
    trace = parts[1] if len(parts) > 2 else str(exc)
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500], False


def run_jobs(executor: Executor, job: Callable[[Any], Any], subs: Sequence[Any], folder: Path,
             table: str) -> list[Outcome]:
    """Make ``job(sub)`` for every submission as a job, ``jobs`` at once, logs in ``folder``, and wait
    with a progress bar of finished runs. Returns one :class:`Outcome` per submission, in order.

    Args:
        job: The callable a job runs (picklable; submitit's ``checkpoint`` hook, if it has one,
            requeues it at a time limit).
        subs: What each job is called with; each has ``label`` and ``seed`` (the messages name them).
        table: The table the runs belong to (the messages name it).

    Raises:
        ImportError: when submitit is not installed.
        ValueError: for the ``inline`` executor (nothing to submit).
    """
    if executor.inline:
        raise ValueError("run_jobs makes runs as jobs; the inline executor runs them in this process.")
    if not executor.trains:  # ``none``: nothing is submitted, and each run says why it has no numbers
        return [Outcome(sub.label, sub.seed, finished=False, error=NOT_TRAINED, attempts=0) for sub in subs]
    poll = executor.poll_s if executor.poll_s is not None else (1.0 if executor.kind == "local" else 30.0)
    # SLURM: every run in one job array, its parallelism set by ``jobs``; locally ``jobs`` processes.
    limit = (executor.jobs or DEFAULT_JOBS) if executor.kind == "local" else len(subs)
    gpus = _local_gpus() if executor.kind == "local" else 0
    outcomes: dict[int, Outcome] = {}
    attempts = {i: 0 for i in range(len(subs))}
    queue = list(range(len(subs)))
    active: dict[int, Any] = {}
    at_once = limit if executor.kind == "local" else (executor.jobs or "all")
    print(f"[reslab] {len(subs)} run(s) of {table} as {executor.kind} jobs ({at_once} at once); logs in {folder}",
          flush=True)
    bar = tqdm(total=len(subs), desc=f"{table}: runs finished", unit="run")
    try:
        while queue or active:
            room = limit - len(active)
            if queue and room > 0:
                batch, queue = queue[:room], queue[room:]
                if executor.kind == "local":
                    jobs = [submit(executor, job, [subs[i]], folder, gpu=(i % gpus) if gpus else None)[0] for i in batch]
                else:
                    jobs = submit(executor, job, [subs[i] for i in batch], folder)
                for i, submitted in zip(batch, jobs):
                    active[i] = submitted
                    attempts[i] += 1
            time.sleep(poll if active else 0)
            for i, running in list(active.items()):
                if not running.done():
                    continue
                del active[i]
                error, retriable = _failure(running)
                if error and retriable and attempts[i] <= executor.retries:
                    print(f"[reslab] {subs[i].label} seed {subs[i].seed}: {error}; submitted again, it resumes "
                          f"from its last checkpoint (log of the stopped job: {running.paths.stderr})", flush=True)
                    queue.insert(0, i)
                    continue
                outcomes[i] = Outcome(subs[i].label, subs[i].seed, finished=not error, error=error,
                                      log=str(running.paths.stderr), attempts=attempts[i])
                bar.update(1)
    except KeyboardInterrupt:
        for running in active.values():
            running.cancel(check=False)
        raise
    finally:
        bar.close()
    for o in outcomes.values():
        if not o.finished:
            print(f"[reslab] NOT RUN: {o.label} seed {o.seed}: {o.error}\n         log: {o.log}", file=sys.stderr,
                  flush=True)
    return [outcomes[i] for i in range(len(subs))]


def describe(executor: Executor) -> str:
    """One line for a manifest or the notes: the executor and its settings."""
    if executor.inline or not executor.trains:
        return executor.kind
    settings = json.dumps(executor.slurm, sort_keys=True) if executor.kind == "slurm" else ""
    return f"{executor.kind} (jobs={executor.jobs or 'default'}{', ' + settings if settings else ''})"
