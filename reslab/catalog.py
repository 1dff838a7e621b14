"""The notebooks: one record of what they are, for every command that needs to know.

- their run order (:data:`NOTEBOOK_ORDER`; a notebook that reads another's results runs after
  it, the summary last) and where they are (:func:`notebooks_dir`);
- their parameters (the ``parameters`` cell: :func:`notebook_parameters`, :func:`notebook_defaults`,
  and ``--param NAME=VALUE`` checked against them: :func:`notebook_params`);
- the runs each trains (:func:`planners`: the function its ``run_<table>()`` builds its runs
  with, so ``reslab plan``, ``reslab train`` and the notebook cannot differ; :func:`table_runs`,
  :func:`run_spec`);
- what each needs on another machine (:data:`NOTEBOOKS`: data sets, requirements beyond the
  notebook runtime, runs of other notebooks it reads; ``reslab bundle`` and ``reslab export`` read
  nothing else about a notebook).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .paths import Paths
from .profiles import Profile, resolve_profile
from .runs.spec import RunSpec
from .runs.store import RunStore
from .tables import cbam, drstn, selu, survey
from .tables._common import FROM_FIRST_RUN, starting_from

# Dependency order: a notebook that reads another's results runs after it; the summary runs last.
NOTEBOOK_ORDER = [
    "datasets",
    "drstn_table4_cifar10",
    "drstn_table5_transfer",
    "drstn_table1_gradcam",
    "selu_ablation_fashion_mnist",
    "cbam_resnet50_cifar10",
    "survey_error_rates",
    "summary",
]

REQUIRED_PARAMETERS = ("profile",)


# Notebooks that read every profile's results and write results/<name>/ (no profile parameter).
ACROSS_PROFILES = ("summary",)


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the reslab checkout (else of the working directory)."""
    repo = Path(__file__).resolve().parent.parent / "notebooks"
    return repo if repo.is_dir() else Path.cwd() / "notebooks"


def list_notebooks(folder: Path | None = None) -> list[str]:
    """Notebook names in run order: the known order first, any others alphabetically, summary last."""
    folder = folder or notebooks_dir()
    found = {p.stem for p in folder.glob("*.ipynb")}
    known = [n for n in NOTEBOOK_ORDER if n in found and n != "summary"]
    others = sorted(found - set(NOTEBOOK_ORDER))
    return known + others + (["summary"] if "summary" in found else [])


def notebook_parameters(path: Path) -> dict:
    """The parameters a notebook declares in its ``parameters`` cell."""
    import papermill

    return papermill.inspect_notebook(str(path))


def parse_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> ``(NAME, VALUE)``; VALUE is JSON when it parses (``[0, 1]``, ``true``,
    ``["mnist"]``), else the text itself (``weights=random``).

    Raises:
        ValueError: when ``text`` is not ``NAME=VALUE`` with a Python identifier as NAME.
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise ValueError(f"a notebook parameter is NAME=VALUE with the parameter's name, got {text!r}.")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def notebook_params(pairs: list[str], names: list[str], folder: Path) -> dict:
    """``--param NAME=VALUE`` of ``reslab reproduce`` as a dict (VALUE parsed as JSON when it can be).

    Raises:
        ValueError: for a malformed pair, or a name that none of ``names`` declares.
    """
    params = dict(parse_param(p) for p in pairs)
    declared = set().union(*(notebook_parameters(folder / f"{n}.ipynb") for n in names)) if names else set()
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ValueError(f"--param {', '.join(unknown)}: no notebook among {', '.join(names)} declares it; the "
                         "parameters cell of each notebook lists the names it takes.")
    return params


def notebook_defaults(name: str) -> dict[str, Any]:
    """The default parameters of ``notebooks/<name>.ipynb`` (its ``parameters`` cell); empty when
    the notebook is not there (an installed package): the functions' own defaults then apply.

    Raises:
        ValueError: for a default that is not a Python literal.
    """
    path = notebooks_dir() / f"{name}.ipynb"
    if not path.is_file():
        return {}
    values = {}
    for key, param in notebook_parameters(path).items():
        try:
            values[key] = ast.literal_eval(param["default"])
        except (ValueError, SyntaxError):
            raise ValueError(f"{path.name}: the default of parameter {key!r} ({param['default']!r}) is not a Python "
                             "literal; reslab plan reads the parameters cell as literals.") from None
    return values


def planners() -> dict[str, Callable[..., Any]]:
    """Notebook -> the function its ``run_<table>()`` builds its runs with (a
    :class:`~reslab.tables._common.TableRuns`). Notebooks not listed train nothing."""
    return {drstn.TABLE4: drstn.table4_runs, drstn.TABLE5: drstn.table5_runs, drstn.TABLE1: drstn.table1_runs,
            selu.TABLE: selu.selu_runs, cbam.TABLE: cbam.cbam_runs, survey.TABLE: survey.survey_runs}


def table_runs(name: str, profile: str | Profile, params: dict[str, Any] | None = None, device: str = "auto",
               notes: list[str] | None = None) -> Any:
    """The runs notebook ``name`` trains under ``profile``: its :class:`~reslab.tables._common.TableRuns`,
    built from the notebook's default parameters updated with ``params``.

    Whether the CBAM table has ImageNet weights is assumed, not downloaded (:func:`_imagenet_assumed`,
    which appends to ``notes`` what it assumed) unless ``params`` says.

    Raises:
        ValueError: for a notebook that trains nothing, a parameter it does not take, or a table
            without a recipe for the profile.
    """
    build = planners().get(name)
    if build is None:
        raise ValueError(f"{name} trains nothing; the notebooks that train runs are {', '.join(planners())}.")
    prof = resolve_profile(profile)
    accepted = inspect.signature(build).parameters
    unknown = sorted(k for k in params or {} if k not in accepted or k in ("profile", "device"))
    if unknown:
        raise ValueError(f"{name} takes no run parameter {', '.join(unknown)}; it takes "
                         f"{', '.join(k for k in accepted if k not in ('profile', 'device'))}.")
    values = {k: v for k, v in notebook_defaults(name).items() if k in accepted and k not in ("profile", "device")}
    if "imagenet" in accepted and "imagenet" not in (params or {}):  # never download weights to plan
        values["imagenet"] = _imagenet_assumed(prof, notes if notes is not None else [])
    values.update(params or {})
    return build(prof, device=device, **values) if "device" in accepted else build(prof, **values)


def run_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The entries of ``params`` (parameters given to every notebook, ``reslab reproduce --param``)
    that shape the runs of notebook ``name``: its planner's arguments but ``profile`` and ``device``."""
    build = planners().get(name)
    if build is None or not params:
        return {}
    accepted = inspect.signature(build).parameters
    return {k: v for k, v in params.items() if k in accepted and k not in ("profile", "device")}


def run_spec(table: str, profile: str | Profile, label: str, dataset: str | None = None, seed: int | None = None,
             params: dict[str, Any] | None = None, device: str | None = None,
             paths: Paths | None = None) -> tuple[RunSpec, int]:
    """The run of ``table`` named ``label`` (its row label, or its model name) and ``dataset``, as the
    table's notebook would train it under ``profile`` with ``params`` (:func:`table_runs`), and its
    seed (default: the table's first). A run that starts from another run's checkpoint (Table 5's
    from Table 4's) is given that checkpoint, which must be in the run store.

    Raises:
        ValueError: when no run or several match (the message lists the table's runs), or the
            checkpoint a run starts from has not been trained.
    """
    prof = resolve_profile(profile)
    runs = table_runs(table, prof, params, device=device or "auto")
    specs = list(runs.specs) + [s for s in runs.first if s not in runs.specs]
    named = [s for s in specs if label in (s.label, s.model) and dataset in (None, s.dataset)]
    if len({(s.label, s.model, s.dataset) for s in named}) != 1:
        listing = "; ".join(f"{s.label!r} on {s.dataset}" for s in specs)
        which = f"{label!r}" + (f" on {dataset}" if dataset else "")
        problem = "no run" if not named else "several runs (give --dataset)"
        raise ValueError(f"{table} under {prof.name} has {problem} named {which}; its runs: {listing}.")
    spec = named[0]
    if device is not None:
        spec = dataclasses.replace(spec, recipe=spec.recipe.replace(device=device))
    seed = runs.seeds[0] if seed is None else int(seed)
    if spec.init_from == FROM_FIRST_RUN:
        ckpt = RunStore.of(paths or Paths.from_env()).checkpoint_of(runs.first[0], prof, seed)
        if ckpt is None or not ckpt.is_file():
            first = runs.first[0]
            raise ValueError(f"{spec.label!r} starts from the checkpoint of {first.table}'s {first.label!r} run, seed "
                             f"{seed}, which is not in the run store: train that first (reslab train {first.table} "
                             f"--label {first.label} --seed {seed} --profile {prof.name}).")
        spec = starting_from(spec, ckpt)
    return spec, seed


def _imagenet_assumed(profile: Profile, notes: list[str]) -> bool:
    """Whether the CBAM table's runs will have ImageNet weights: yes when the file is on disk; else
    a profile that allows random weights runs without them, and one that does not downloads them
    or stops (planned as if they were there, and noted)."""
    if cbam.imagenet_weights_on_disk():
        return True
    if profile.allow_random_weights:
        return False
    notes.append("ResNet-50's ImageNet weights are not on disk: the notebook downloads them where it may, else "
                 "stops; planned as if they were there.")
    return True


# --------------------------------------------------------------------------------------------
# What each notebook needs on another machine


@dataclass(frozen=True)
class Reads:
    """Finished runs of another notebook that a notebook starts from.

    Attributes:
        table: The notebook (run-store table) whose runs are read.
        models: The registered models of those runs.
        seeds: The seeds read, given the profile (``()`` when the notebook has no recipe for it).
        why: Why the notebook reads them, for the bundle's report.
        if_absent: What the notebook does on the target when a run is not bundled.
        train_data: Data sets the notebook needs on the target only to train these runs when they
            are not bundled (with them bundled, it finds them from their recorded fingerprints).
        first_only: The notebook reads one run per model, the first of ``seeds`` it finds (Table 1:
            one checkpoint per network), so that one is what travels; a model is absent only when
            none of its seeds is here.
    """

    table: str
    models: tuple[str, ...]
    seeds: Callable[[Profile], tuple[int, ...]]
    why: str
    if_absent: str
    train_data: tuple[str, ...] = ()
    first_only: bool = False


@dataclass(frozen=True)
class Needs:
    """What one notebook needs on the target.

    Attributes:
        datasets: The data sets it trains or evaluates on (its default ``datasets`` parameter
            where it has one).
        narrow_param: The notebook parameter that runs it on fewer data sets (``--datasets``
            sets it); ``None`` when it always needs every one of ``datasets``.
        requires: reslab requirements it needs beyond the notebook runtime (e.g. ``grad-cam``).
        reads: Runs of other notebooks it reads.
        hub_models: Registered torchvision models whose ImageNet weights it reads from
            ``$TORCH_HOME/hub/checkpoints`` (too large to bundle).
    """

    datasets: tuple[str, ...]
    narrow_param: str | None = None
    requires: tuple[str, ...] = ()
    reads: tuple[Reads, ...] = ()
    hub_models: tuple[str, ...] = ()


def _table5_seeds(profile: Profile) -> tuple[int, ...]:
    recipe = drstn.TABLE5_RECIPES.get(profile.name)
    return tuple(recipe.seeds) if recipe else ()


def _table1_seeds(profile: Profile) -> tuple[int, ...]:
    return drstn.CAM_SEEDS if profile.name in drstn.TABLE4_RECIPES else ()


#: Table 1 shows Grad-CAM of these Table 4 networks' CIFAR-10 weights when it has no ImageNet weights.
_TABLE1_FROM_TABLE4 = tuple(m for _, m in drstn.TABLE4_ROWS if m in {m for _, m, _ in drstn.CAM_MODELS})

#: Every notebook but the summary: what it needs on the target (``reslab bundle`` reads nothing else).
NOTEBOOKS: dict[str, Needs] = {
    "datasets": Needs(datasets=("mnist", "fashion_mnist", "cifar10"), narrow_param="datasets"),
    "drstn_table4_cifar10": Needs(datasets=("cifar10",)),
    "drstn_table5_transfer": Needs(
        datasets=drstn.TRANSFER_DATASETS, narrow_param="datasets",
        reads=(Reads(drstn.TABLE4, (drstn.TRANSFER_MODEL,), _table5_seeds,
                     "Table 5 starts from DRSTN V5's Table 4 checkpoint of the same profile and seed",
                     "the notebook trains it there first, with Table 4's recipe, so CIFAR-10 is bundled",
                     train_data=("cifar10",)),)),
    "drstn_table1_gradcam": Needs(
        datasets=("cifar10",), requires=("grad-cam",),
        reads=(Reads(drstn.TABLE4, _TABLE1_FROM_TABLE4, _table1_seeds,
                     "Table 1 shows Grad-CAM of these Table 4 networks' CIFAR-10 weights (seed 0's, else the "
                     "next seed's found) where it has no ImageNet weights",
                     "the notebook uses the network's ImageNet weights there, else leaves it out (random weights "
                     "in smoke)", first_only=True),),
        hub_models=tuple(m for _, m, _ in drstn.CAM_MODELS if m != drstn.TRANSFER_MODEL)),
    "selu_ablation_fashion_mnist": Needs(datasets=("fashion_mnist",)),
    "cbam_resnet50_cifar10": Needs(datasets=("cifar10",), hub_models=("resnet50",)),
    "survey_error_rates": Needs(datasets=("cifar10", "cifar100"), narrow_param="datasets",
                                hub_models=("efficientnet_b7",)),
}


def needs(name: str) -> Needs:
    """The :class:`Needs` of notebook ``name``.

    Raises:
        ValueError: for a notebook that cannot be bundled (the summary, or an unknown name).
    """
    if name in ACROSS_PROFILES:
        raise ValueError(f"{name} reads every table's results and is not bundled; run it at home after "
                         f"`reslab import`: reslab reproduce --only {name}.")
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; the bundle knows {', '.join(NOTEBOOKS)}. A new notebook "
                         "needs an entry in reslab.catalog.NOTEBOOKS.")
    return NOTEBOOKS[name]


def read_later() -> dict[tuple[str, str], list[str]]:
    """``{(table, model): [notebooks that read its runs]}``: the checkpoints worth exporting."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, need in NOTEBOOKS.items():
        for read in need.reads:
            for model in read.models:
                out.setdefault((read.table, model), []).append(name)
    return out
