"""What every table shares: :class:`TableRun`, the scaffolding of a ``run_<table>()`` call, the
:class:`TableOutput` it returns, and :class:`TableRuns`, the runs it trains (built by one function
per table that ``reslab plan`` calls too).

A table module holds its recipes (one :class:`~reslab.runs.spec.Recipe` per profile), builds its
:class:`~reslab.runs.spec.RunSpec` list and turns the runs into the paper's table; everything else
(profile resolution, seed and choice checks, timing, the output folder, the standard notes,
the data description for the manifest, saving) happens here, once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .. import plots
from .._env import compile_setting
from ..data import Dataset
from ..paths import Paths
from ..profiles import BUDGET, SMOKE, Profile, resolve_profile
from ..results import output_dir, save_figure, scratch_note, write_csv, write_manifest
from ..runs.execute import NOT_RUN, Runs, run_specs
from ..runs.jobs import Executor
from ..runs.jobs import describe as describe_executor
from ..runs.spec import Recipe, RunSpec


@dataclass
class TableOutput:
    """What a ``run_<table>()`` call produced.

    Attributes:
        tables: Name -> DataFrame, each also written as ``<name>.csv``.
        figures: Name -> matplotlib Figure, each also written as ``<name>.png``.
        out_dir: Where the files are.
        notes: Lines the notebook prints under the table (data sources, choices, warnings).
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def save(self, table: str, profile: str, data: list[dict], wall_s: float, **extra: Any) -> None:
        """Write every table, figure and the manifest into ``out_dir``."""
        assert self.out_dir is not None
        files = []
        for name, frame in self.tables.items():
            write_csv(frame, self.out_dir / f"{name}.csv")
            files.append(f"{name}.csv")
        for name, fig in self.figures.items():
            save_figure(fig, self.out_dir / f"{name}.png")
            plots.close(fig)  # the notebook displays it once, from ``figures``
            files.append(f"{name}.png")
        devices = {str(d) for frame in self.tables.values() if "device" in frame.columns
                   for d in frame["device"].dropna()}
        write_manifest(self.out_dir, table, profile, data, wall_s, files=files + ["manifest.json"],
                       devices=sorted(devices), notes=self.notes, **extra)


def check_seeds(seeds: Sequence[int] | None, default: Sequence[int] = (0,)) -> list[int]:
    """Distinct non-negative integer seeds, at least one (``None``: ``default``).

    Raises:
        ValueError: naming what was wrong.
    """
    values = list(default if seeds is None else seeds)
    if isinstance(seeds, (str, bytes)) or not values or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers such as [0, 1, 2], got {seeds!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must not repeat (a repeated seed is the same run), got {values}.")
    return values


def check_choice(names: Sequence[str] | str | None, known: Sequence[str], what: str,
                 default: Sequence[str] | None = None) -> list[str]:
    """The chosen names in ``known``'s order (``None``: ``default``, else all of ``known``).

    Raises:
        ValueError: for a bare string, an empty list or an unknown name, listing the known ones.
    """
    if isinstance(names, str):
        raise ValueError(f"{what} must be a list, e.g. [{names!r}], got the string {names!r}.")
    chosen = list((default if default is not None else known) if names is None else names)
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise ValueError(f"{what} must be a non-empty subset of {list(known)}; got {chosen}"
                         + (f" (unknown: {unknown})." if unknown else "."))
    return [n for n in known if n in set(chosen)]


def recipe_seeds(seeds: Sequence[int] | None, recipe: Recipe) -> tuple[list[int], Recipe]:
    """Checked seeds (``None``: the recipe's) and the recipe, which records how many runs are made
    when fewer than the protocol's number (the paper's mean of n runs): not an override, since every
    run is the protocol; the rows say ``n = 3 of 10`` and are judged with their own interval.

    Raises:
        ValueError: for seeds that are not distinct non-negative integers (:func:`check_seeds`).
    """
    values = check_seeds(seeds, recipe.seeds)
    if len(values) < len(recipe.seeds):
        recipe = dataclasses.replace(recipe, runs=len(values))
    return values, recipe


#: ``init_from`` of a spec that starts from the checkpoint of :attr:`TableRuns.first` for the same
#: seed, which may not exist yet (Table 5 starts from DRSTN V5's Table 4 run). It names no file on
#: purpose: :meth:`TableRuns.for_seed` puts the real checkpoint in its place before training, and a
#: spec that still holds it cannot be keyed (:func:`reslab.runs.store.run_key` finds no such file).
FROM_FIRST_RUN = Path("<the checkpoint of the run trained first, same seed>")


def starting_from(spec: RunSpec, checkpoint: str | os.PathLike | None) -> RunSpec:
    """``spec`` with :data:`FROM_FIRST_RUN` replaced by ``checkpoint`` (the first run's ``last.pt``
    for the run's seed); a spec that names its own ``init_from``, or none, and ``checkpoint`` ``None``
    leave it as it is. The one place the placeholder is resolved (the notebooks, ``reslab plan`` and
    ``reslab train``)."""
    if checkpoint is None or spec.init_from != FROM_FIRST_RUN:
        return spec
    return dataclasses.replace(spec, init_from=checkpoint)


@dataclass
class TableRuns:
    """The training runs of one ``run_<table>()`` call at given parameters.

    Each table builds this with one function (``table4_runs``, ``selu_runs``...) that its
    ``run_<table>()`` calls and ``reslab plan`` calls too, so the plan lists exactly the runs the
    notebook trains.

    Attributes:
        table: The table (notebook) name.
        specs: Every run spec, trained for every seed in :attr:`seeds`.
        seeds: The seeds.
        recipe: The recipe the specs derive from (``None`` where each spec has its own).
        first: Runs of another table trained first, for the same seeds, when not finished (Table 5
            trains DRSTN V5's Table 4 run); specs whose ``init_from`` is :data:`FROM_FIRST_RUN`
            start from its checkpoint.
        notes: What the call decided that the caller should say (baselines added, rows skipped).
    """

    table: str
    specs: list[RunSpec]
    seeds: list[int]
    recipe: Recipe | None = None
    first: list[RunSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def for_seed(self, checkpoint: str | os.PathLike | None) -> list[RunSpec]:
        """:attr:`specs` with :data:`FROM_FIRST_RUN` replaced by ``checkpoint`` (the first run's
        ``last.pt`` for one seed); ``None`` leaves them as they are."""
        return [starting_from(s, checkpoint) for s in self.specs]

    def pairs(self) -> list[tuple[RunSpec, int]]:
        """Every ``(spec, seed)`` the call trains: the :attr:`first` runs, then the table's own."""
        return [(s, seed) for s in self.first for seed in self.seeds] + [
            (s, seed) for s in self.specs for seed in self.seeds]


def parse_list(value: Any, what: str) -> Any:
    """A list parameter as given on a command line: a JSON list (``'["drstn_v5", "resnet18"]'``, or
    ``'[0, 1]'``) or comma-separated names (``'drstn_v5,resnet18'``, ``'0,1'``); whole numbers
    become ``int``. Anything that is not a string is returned unchanged.

    Raises:
        ValueError: for a string that starts like a JSON list but is not one, or holds a nested value.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what}: {value!r} is not a valid JSON list ({exc.msg}); write it as "
                             f"'[\"a\", \"b\"]' or as comma-separated names 'a,b'.") from None
        if not isinstance(items, list) or any(isinstance(i, (list, dict)) for i in items):
            raise ValueError(f"{what}: {value!r} must be a flat list of names or numbers.")
        return items
    items = [part.strip().strip("'\"") for part in text.split(",")]
    return [int(i) if re.fullmatch(r"-?\d+", i) else i for i in items if i]


def list_parameters(fn: Callable) -> Callable:
    """Let every list parameter of a ``run_<table>()`` (annotated ``Sequence[...]``) also be given
    as a string, as papermill's ``-p`` and a JupyterLab parameters cell pass it (:func:`parse_list`)."""
    sig = inspect.signature(fn)
    names = [n for n, p in sig.parameters.items() if "Sequence[" in str(p.annotation)]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        for name in names:
            if name in bound.arguments:
                bound.arguments[name] = parse_list(bound.arguments[name], name)
        return fn(*bound.args, **bound.kwargs)

    wrapper.list_parameters = tuple(names)
    return wrapper


class TableRun:
    """The scaffolding of one ``run_<table>()`` call: resolve the profile once, time the call,
    train through the run store, add the standard notes and save.

    Usage::

        run = TableRun(TABLE, profile, out_dir)
        seeds, recipe = recipe_seeds(seeds, recipe)
        runs = run.train(specs, seeds, data_root, force)
        run.out.tables["..."] = ...
        return run.finish(parameters={...})

    Attributes:
        table: The table (notebook) name.
        profile: The resolved :class:`~reslab.profiles.Profile`.
        paths: The folders of this call (:class:`~reslab.paths.Paths`), resolved here, once: a
            table function is where a notebook enters the package.
        cuda_compile: The ``torch.compile`` mode of runs whose recipe says ``auto``, on CUDA
            (``$RESLAB_COMPILE``, read here; :meth:`prepare` puts it into the specs).
        out: The :class:`TableOutput` being filled.
        splits: Every split loaded so far, ``{dataset: (train, test)}`` (described in the manifest).
    """

    def __init__(self, table: str, profile: str | Profile, out_dir: str | os.PathLike | None = None,
                 executor: str | Executor | None = None, paths: Paths | None = None):
        self.table = table
        self.profile = resolve_profile(profile)
        self.executor = Executor.resolve(executor)
        self.paths = paths or Paths.from_env()
        self.cuda_compile = compile_setting()
        self.t0 = time.perf_counter()
        self.out = TableOutput(out_dir=output_dir(table, self.profile.name, out_dir, create=False, paths=self.paths))
        self.scratch = not out_dir and self.paths.scratch
        self.splits: dict[str, tuple[Dataset, Dataset]] = {}
        self._extra_data: list[Dataset] = []
        self._rows: list[pd.DataFrame] = []

    def train(self, specs: Sequence[RunSpec], seeds: Sequence[int], data_root: str | os.PathLike | None = None,
              force: bool = False) -> Runs:
        """Train or reuse every spec for every seed (:func:`reslab.runs.execute.run_specs`), through the
        call's executor; ``data_root`` (default :attr:`paths`' data root) is where the data sets are."""
        runs = run_specs(self.prepare(specs), self.profile, seeds, paths=self.data_paths(data_root), force=force,
                         splits=self.splits, executor=self.executor)
        self._rows.append(runs.rows)
        return runs

    def prepare(self, specs: Sequence[RunSpec]) -> list[RunSpec]:
        """``specs`` with this call's speed settings (:attr:`cuda_compile`), which do not change a
        run's key."""
        return [dataclasses.replace(s, recipe=s.recipe.replace(cuda_compile=self.cuda_compile))
                if s.cfg.cuda_compile != self.cuda_compile else s for s in specs]

    def data_paths(self, data_root: str | os.PathLike | None = None) -> Paths:
        """:attr:`paths` with the data root a table function was given (none given: unchanged)."""
        return self.paths if data_root is None or str(data_root) == "" else self.paths.replace(data=data_root)

    def describe(self, *datasets: Dataset) -> None:
        """Record splits the table loaded itself (not through :meth:`train`) for the manifest."""
        self._extra_data += datasets

    def standard_notes(self) -> list[str]:
        """Synthetic data, smoke profile, budget overrides and reused runs, from the rows trained."""
        data = [d for pair in self.splits.values() for d in pair] + self._extra_data
        rows = pd.concat(self._rows, ignore_index=True) if self._rows else pd.DataFrame()
        notes = []
        synthetic = sorted({f"{d.name} {d.split}" for d in data if d.data_source == "synthetic"})
        if synthetic:
            notes.append(f"No real data found for {', '.join(synthetic)}: SYNTHETIC data used; these numbers test "
                         "the code and say nothing about the paper.")
        if self.profile.evidence == SMOKE:
            notes.append(f"profile {self.profile.name}: {self.profile.description}. A check that the code runs, "
                         "not a result: no verdicts.")
        if len(rows):
            budget = rows.loc[rows["evidence"] == BUDGET, "evidence_note"]
            if len(budget):
                notes.append("budget only, no verdicts: " + "; ".join(dict.fromkeys(budget)) + ".")
            reused = int(rows["reused"].sum())
            if reused:
                notes.append(f"{reused} of {len(rows)} runs reused from the run store or the record of finished runs "
                             "(force=True retrains).")
            missing = rows[rows["status"].astype(str).str.startswith(NOT_RUN)] if "status" in rows else rows.iloc[:0]
            if len(missing):
                notes.append(f"{len(missing)} of {len(rows)} runs NOT RUN (no numbers of their own: each row is the mean "
                             "of its runs that finished, n says how many, and a row with none is empty; run the "
                             "notebook again to make them, finished runs are reused): " + "; ".join(
                                 f"{r.label} on {r.dataset} seed {r.seed}: {r.status}" for r in missing.itertuples()) + ".")
        return notes

    def finish(self, parameters: dict[str, Any], **extra: Any) -> TableOutput:
        """Add the standard notes after the table's own and write everything into ``out.out_dir``
        (a run outside ``reslab reproduce`` first says that it wrote into the scratch folder)."""
        self.out.notes += self.standard_notes()
        if self.scratch:
            self.out.notes.insert(0, scratch_note(self.out.out_dir, self.table, self.profile.name))
        data = [d.describe() for pair in self.splits.values() for d in pair]
        data += [d.describe() for d in self._extra_data]
        self.out.save(self.table, self.profile.name, data, time.perf_counter() - self.t0,
                      parameters=parameters, executor=describe_executor(self.executor), **extra)
        return self.out
