"""What each notebook needs on the target: data sets, extra requirements, runs of other notebooks.

One table, :data:`NOTEBOOKS`; ``reslab bundle`` and ``reslab export`` read nothing else about a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...catalog import ACROSS_PROFILES
from ...profiles import Profile
from ...tables import drstn

# --------------------------------------------------------------------------------------------
# What each notebook needs


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
    """

    table: str
    models: tuple[str, ...]
    seeds: Callable[[Profile], tuple[int, ...]]
    why: str
    if_absent: str
    train_data: tuple[str, ...] = ()


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


def _seed0(profile: Profile) -> tuple[int, ...]:
    return (0,) if profile.name in drstn.TABLE4_RECIPES else ()


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
        reads=(Reads(drstn.TABLE4, _TABLE1_FROM_TABLE4, _seed0,
                     "Table 1 shows Grad-CAM of these Table 4 networks' CIFAR-10 weights (seed 0) where it "
                     "has no ImageNet weights",
                     "the notebook uses the network's ImageNet weights there, else stops (random weights in smoke)"),),
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
                         "needs an entry in reslab.app.bundle.NOTEBOOKS.")
    return NOTEBOOKS[name]


def read_later() -> dict[tuple[str, str], list[str]]:
    """``{(table, model): [notebooks that read its runs]}``: the checkpoints worth exporting."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, need in NOTEBOOKS.items():
        for read in need.reads:
            for model in read.models:
                out.setdefault((read.table, model), []).append(name)
    return out
