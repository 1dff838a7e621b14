"""What a run is: a table row (:class:`RunSpec`: label, registered model, data set) trained by a
profile's :class:`Recipe`, and the splits it reads (:func:`load_splits`).

Every paper table is a list of :class:`RunSpec` run over some seeds; :mod:`reslab.runs.store`
files each run under a key that hashes everything that changes its numbers, and
:mod:`reslab.runs.execute` trains what is missing and reuses what is finished.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import Augment, Dataset, load_dataset
from ..models import create_model
from ..paths import Paths
from ..profiles import Profile, resolve_profile
from ..train import SPEED_FIELDS, TrainConfig

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
        runs: How many runs of each row a call makes when fewer than :attr:`seeds` (the
            protocol's number); ``None``: as many. Not an override: every run is the protocol and
            its evidence note says ``n = runs of len(seeds)`` (:func:`reslab.evidence.evidence_of`).
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
    runs: int | None = None

    @property
    def runs_of_protocol(self) -> tuple[int, int] | None:
        """``(runs made, protocol's runs)`` when a call makes fewer runs than the protocol, else ``None``."""
        return (self.runs, len(self.seeds)) if self.runs is not None and self.runs < len(self.seeds) else None

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


def build_model(spec: RunSpec, num_classes: int, channels: int, pretrained: bool = True) -> torch.nn.Module:
    """The network of ``spec`` for a data set of ``num_classes`` classes and ``channels`` stored
    channels (three when the recipe repeats grey images to RGB).

    Args:
        pretrained: ``False`` builds it without reading pretrained weights: the same shapes and
            the same speed, for the cost plan (:mod:`reslab.runs.cost`); a frozen backbone stays frozen.
    """
    kwargs = dict(spec.model_kwargs)
    if not pretrained:
        kwargs.pop("pretrained", None)
    train_aug, _ = spec.augments()
    return create_model(spec.model, num_classes=num_classes, in_chans=3 if train_aug.to_rgb else channels, **kwargs)


def load_splits(dataset: str, profile: str | Profile, paths: Paths | None = None,
                test_subset: int | None = None, download: bool | None = None) -> tuple[Dataset, Dataset]:
    """The train and test splits a profile uses (its subsets; the subset seed is fixed at 0 so
    every model and seed of a table sees the same images).

    Args:
        paths: The data root and the cache (default: resolved from the environment).
        test_subset: A smaller stratified test subset than the profile's (a table whose smoke
            run evaluates large networks); ``None`` = the profile's.
        download: ``False`` never downloads (the data set must be on disk); ``None`` = the profile's.
    """
    prof = resolve_profile(profile)
    paths = paths or Paths.from_env()
    subsets = {"train": None, "test": test_subset}
    splits = []
    for split in ("train", "test"):
        kwargs = prof.data_kwargs(split, subsets[split])
        if download is not None:
            kwargs["download"] = download
        splits.append(load_dataset(dataset, split, root=paths.data, cache=paths.cache, seed=0, **kwargs))
    return tuple(splits)
