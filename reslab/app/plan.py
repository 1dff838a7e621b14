"""``reslab plan``: the cost plan of the notebooks' runs before a long run.

For every run a notebook would train (model x seed, at the notebook's default parameters for a
profile; the specs come from the function its ``run_<table>()`` calls, :func:`reslab.catalog.table_runs`,
so the two cannot differ) the plan lists the images to process, the FLOPs, a training step
measured on the current device, the memory of that step, the estimated minutes and whether the run
is already finished in the run store (then nothing is left to do); then the totals per notebook
and overall. A run whose step needs more memory than its GPU holds (from the CPU: one 80 GiB GPU)
is flagged before training. How a run is costed: :mod:`reslab.runs.cost`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from ..catalog import list_notebooks, planners, run_params, table_runs
from ..paths import Paths
from ..profiles import PROFILES, SMOKE, Profile, resolve_profile
from ..results import write_csv
from ..runs.cost import (PlannedRun, cost_runs, device_words, duration, format_runs, memory_lines, split_sizes,
                         total_line, with_totals)
from ..runs.spec import RunSpec, load_splits
from ..runs.store import FINISHED, NOT_LOOKED_UP, TO_TRAIN, RunStore
from ..tables._common import FROM_FIRST_RUN, starting_from
from ..train import resolve_device
from . import DESCRIPTIONS, command_paths


@dataclass
class Plan:
    """What :func:`make_plan` found.

    Attributes:
        profile: The profile planned.
        device: Where the step times were measured.
        rows: Runs and totals (:data:`PLAN_COLUMNS`; :func:`with_totals`).
        notes: Per notebook, what the plan says besides its runs (trains nothing, no recipe...).
        not_checked: Data sets whose splits were not found, so their runs' status is unknown.
        seconds: Wall time of making the plan.
        busy: A warning when other work kept the CPU busy while the steps were timed (:func:`busy_note`).
        paths: The folders the plan looked runs up in (and writes its CSV under).
        runs: The runs, in the order of :attr:`rows`' ``kind == "run"`` rows.
    """

    profile: Profile
    device: torch.device
    rows: pd.DataFrame
    notes: dict[str, list[str]] = field(default_factory=dict)
    not_checked: list[str] = field(default_factory=list)
    seconds: float = 0.0
    busy: str = ""
    paths: Paths | None = None
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def overall(self) -> pd.Series:
        return self.rows[self.rows["kind"] == "overall"].iloc[0]

    def text(self) -> str:
        """The plan as printed: per notebook its runs and total, then the overall total and what it
        means on this device."""
        where = device_words(self.device)
        lines = [f"[reslab] plan of profile {self.profile.name}: step times measured on {where}", ""]
        names = list(dict.fromkeys([*self.notes, *self.rows.loc[self.rows["kind"] == "run", "notebook"]]))
        for name in names:
            runs = self.rows[(self.rows["notebook"] == name)]
            lines.append(f"== {name}")
            lines += [f"   {n}" for n in self.notes.get(name, [])]
            if (runs["kind"] == "run").any():
                lines.append(format_runs(runs))
                lines.append("   " + total_line(runs[runs["kind"] == "notebook"].iloc[0], "total"))
                lines += [f"   {line}" for line in memory_lines(runs)]
            lines.append("")
        lines.append(total_line(self.overall, f"[reslab] overall ({self.profile.name})"))
        if self.not_checked:
            lines.append(f"[reslab] run store not checked for {', '.join(self.not_checked)} (data not found: set "
                         "RESLAB_DATA or --data-root); those runs count as still to train.")
        lines.append(self.honesty())
        if self.busy:
            lines.append(f"[reslab] {self.busy}")
        return "\n".join(lines)

    def honesty(self) -> str:
        """What the total means on the device it was measured on."""
        to_go = float(self.overall["minutes_to_go"])
        if self.device.type == "cpu":
            text = (f"[reslab] on this CPU ({device_words(self.device)}), profile {self.profile.name} would take about "
                    f"{duration(to_go)} of computing")
            if self.profile.evidence != SMOKE and to_go > 24 * 60:
                text += (f". It is meant for a GPU: run `reslab plan --profile {self.profile.name} --device cuda` "
                         "there for its estimate")
            return text + "."
        return (f"[reslab] on {device_words(self.device)}, profile {self.profile.name} would take about "
                f"{duration(to_go)} (one run after another on this one device).")

    def write_csv(self, path: str | os.PathLike | None = None) -> Path:
        """Write :attr:`rows` as CSV (default :func:`default_csv`) and return the path."""
        path = Path(path) if path else default_csv(self.profile, self.device, self.paths or Paths.from_env())
        write_csv(self.rows, path)
        return path


def default_csv(profile: str | Profile, device: torch.device, paths: Paths) -> Path:
    """``<results root>/_plan/plan-<profile>-<device type>.csv`` (git-ignored)."""
    return paths.results / "_plan" / f"plan-{resolve_profile(profile).name}-{device.type}.csv"


def _load_splits(dataset: str, test_subset: int | None, profile: Profile, paths: Paths) -> tuple | None:
    """The splits a run of ``profile`` uses, without downloading; ``None`` when not found."""
    try:
        return load_splits(dataset, profile, paths, test_subset, download=False)
    except (FileNotFoundError, OSError, ValueError, RuntimeError):
        return None


def make_plan(profile: str | Profile, only: Sequence[str] | None = None, device: str = "auto",
              paths: Paths | None = None, check_store: bool = True, params: dict | None = None) -> Plan:
    """The cost plan of the notebooks' runs under ``profile`` (see the module docstring).

    Args:
        profile: ``smoke``, ``paper`` or ``strong``.
        only: Notebook names (default every notebook, in ``reslab reproduce``'s order).
        device: Where to measure step times: ``auto``, ``cpu``, ``cuda``...
        paths: The data root (only the run-store check needs it), cache and run store (default:
            resolved from the environment).
        check_store: Look finished runs up in the run store (needs the data's fingerprints).
        params: Notebook parameters (``reslab reproduce --param``); each notebook takes those it
            declares (``seeds``, ``epochs``...), as its run would.

    Raises:
        ValueError: for an unknown profile, notebook or device.
    """
    t0 = time.perf_counter()
    prof = resolve_profile(profile)
    dev = resolve_device(device)
    paths = paths or Paths.from_env()
    store = RunStore.of(paths)
    known = [n for n in list_notebooks() if n != "summary"] or list(planners())
    if only is not None:
        if isinstance(only, str):
            only = [only]
        unknown = [n for n in only if n not in known and n != "summary"]
        if unknown or not only:
            raise ValueError(f"unknown notebook(s) {list(unknown)}; choose from {', '.join(known)}.")
    names = [n for n in known if only is None or n in only]
    notes: dict[str, list[str]] = {}
    splits: dict[tuple[str, int | None], tuple | None] = {}

    def splits_of(spec: RunSpec):
        key = (spec.dataset, spec.recipe.test_subset)
        if key not in splits:
            splits[key] = _load_splits(spec.dataset, spec.recipe.test_subset, prof, paths) if check_store else None
        return splits[key]

    planned: list[PlannedRun] = []
    seen: set[str] = set()
    for name in names:
        if name not in planners():
            notes[name] = ["trains nothing."]
            continue
        try:
            runs = table_runs(name, prof, run_params(name, params), device=device, notes=notes.setdefault(name, []))
        except ValueError as exc:  # e.g. a table without a recipe for this profile: its notebook stops so
            notes[name] = [f"not run under {prof.name}: {exc}"]
            continue
        notes[name] = notes.get(name, []) + list(runs.notes)
        for spec, seed in runs.pairs():
            source_splits_missing = None  # the source run's splits, when its checkpoint is not here
            if spec.init_from == FROM_FIRST_RUN:
                source_splits = splits_of(runs.first[0])
                source = store.checkpoint_of(runs.first[0], prof, seed, source_splits) if source_splits else None
                spec = starting_from(spec, source)
                if source is not None and not source.is_file():
                    source_splits_missing = source_splits
            identity = _identity(spec, seed)
            if identity in seen:  # Table 5's source run, already listed under Table 4
                notes[name].append(f"{spec.table} {spec.label!r} seed {seed}: counted under {spec.table}.")
                continue
            seen.add(identity)
            planned.append(_planned(name, spec, seed, prof, splits_of(spec), store))
            if source_splits_missing is not None and planned[-1].status == TO_TRAIN:  # not finished from it either
                _note_missing_source(notes[name], runs.first[0], spec, seed, prof, source_splits_missing, store)
    rows = with_totals(cost_runs(planned, dev))
    not_checked = sorted({p.spec.dataset for p in planned if p.status == NOT_LOOKED_UP})
    return Plan(prof, dev, rows, notes, not_checked, time.perf_counter() - t0, busy_note(dev), paths, planned)


def busy_note(device: torch.device) -> str:
    """A warning when the machine ran other work while the CPU steps were timed: the 1-minute load
    average above this process's own torch threads (which timing keeps busy) by more than 0.75.
    Step times are then too long. Empty on a GPU, or where the load average cannot be read."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return ""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= torch.get_num_threads() + 0.75:
        return ""
    return (f"the machine was busy while timing (load average {load:.1f} on {cores} CPU(s)): other work slows "
            "the timed steps down, so these estimates are likely too long; plan again when it is idle.")


def _identity(spec: RunSpec, seed: int) -> str:
    """Everything that makes a run the same run (its run key without the data), as text."""
    cfg = spec.cfg.to_dict()
    for k in ("device", "progress", "eval_batch_size"):
        cfg.pop(k)
    return json.dumps([spec.table, spec.label, spec.model, spec.dataset, spec.model_kwargs, cfg,
                       [repr(a) for a in spec.augments()], str(spec.init_from), seed], sort_keys=True, default=str)


def _note_missing_source(notes: list[str], first: RunSpec, spec: RunSpec, seed: int, profile: Profile,
                         splits: tuple, store: RunStore) -> None:
    """Say why a run that starts from another run's checkpoint is still to train: the checkpoint is
    not in the run store (a fresh clone, or another machine), though the source run may be finished
    in the record, which keeps no checkpoints."""
    folder = store.run_dir(first, profile, seed, *splits)
    where = ("finished in the record of finished runs, which keeps no checkpoints, so it is trained again "
             "first" if store.is_finished(folder) else "not trained yet")
    line = (f"{spec.label!r} seed {seed} starts from the checkpoint of {first.table}'s {first.label!r} run: "
            f"not in the run store ({where}).")
    if line not in notes:
        notes.append(line)


def _planned(notebook: str, spec: RunSpec, seed: int, profile: Profile, splits: tuple | None,
             store: RunStore) -> PlannedRun:
    if splits is None:
        return PlannedRun(notebook, spec, seed, *split_sizes(spec, profile), status=NOT_LOOKED_UP)
    train, test = splits
    try:  # a run from a checkpoint not here is found only when it finished from it (the record keeps it)
        folder = store.run_dir(spec, profile, seed, train, test)
    except FileNotFoundError:
        return PlannedRun(notebook, spec, seed, len(train), len(test), TO_TRAIN)
    if store.is_finished(folder):
        return PlannedRun(notebook, spec, seed, len(train), len(test), FINISHED)
    return PlannedRun(notebook, spec, seed, len(train), len(test), TO_TRAIN, store.epochs_done(folder))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab plan", description=DESCRIPTIONS["plan"] + " For every run of the chosen notebooks (model x "
        "seed, at the notebook's default parameters) it prints the images to process, forward GFLOPs per image, "
        "a training step timed on this device, the GPU memory of that step (measured on a GPU, estimated from "
        "the CPU and compared with one 80 GiB GPU), the minutes of training, evaluation and overhead, and "
        "whether the run is already finished in the run store; then the totals per notebook and overall. No data "
        "set is needed, only to look runs up in the run store.")
    parser.add_argument("--profile", default="paper",
                        help=f"The profile to plan: one of {', '.join(PROFILES)} (default: paper).")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="Plan only these notebooks (default: all).")
    parser.add_argument("--device", default="auto",
                        help="Where to time the steps: auto, cpu, cuda or cuda:N (default: auto).")
    parser.add_argument("--csv", metavar="PATH",
                        help="Where to write the plan as CSV (default: <results>/_plan/plan-<profile>-<device>.csv).")
    parser.add_argument("--data-root", help="The folder that holds the data sets, to look finished runs up in the "
                        "run store (default: $RESLAB_DATA).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``reslab plan``: print the cost plan of a profile's runs and write it as CSV."""
    parser = build_parser()
    args = parser.parse_args(argv)
    paths = command_paths(parser, args.data_root)
    try:
        result = make_plan(args.profile, only=args.only, device=args.device, paths=paths)
    except ValueError as exc:
        parser.error(str(exc))
    print(result.text())
    path = result.write_csv(args.csv)
    print(f"[reslab] plan written to {path} (made in {result.seconds:.0f} s)")
    return 0
