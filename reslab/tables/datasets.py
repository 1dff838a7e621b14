"""The datasets notebook: every data set as ``reslab`` loads it (source, fingerprint, sizes)."""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from .. import plots
from ..data import DATASETS, SPLITS, get_spec, load_dataset
from ..evidence import evidence_of
from ..profiles import Profile
from ._common import TableOutput, TableRun, list_parameters


def dataset_specs(datasets: Sequence[str] = tuple(DATASETS)) -> pd.DataFrame:
    """The data sets as defined (not as loaded): classes, shape and official split sizes."""
    rows = []
    for name in datasets:
        spec = get_spec(name)
        rows.append({
            "dataset": name,
            "classes": len(spec.classes),
            "shape": f"{spec.channels}x{spec.size}x{spec.size}",
            "train_images": spec.split_sizes["train"],
            "test_images": spec.split_sizes["test"],
            "class_names": ", ".join(spec.classes),
        })
    return pd.DataFrame(rows)


@list_parameters
def run_datasets(
    profile: str | Profile = "smoke",
    data_root: str | os.PathLike | None = None,
    datasets: Sequence[str] = tuple(DATASETS),
    samples_per_class: int = 8,
    out_dir: str | os.PathLike | None = None,
) -> TableOutput:
    """Load every split of every data set and describe it.

    Writes ``datasets.csv`` (one row per data set and split: source, fingerprint, size, pixel
    mean and std, smallest and largest class, ``evidence``: ``smoke`` for synthetic data or the
    smoke profile), ``class_counts.csv`` (one row per class) and a
    ``samples_<dataset>.png`` grid per data set (training split).

    Args:
        profile: ``smoke`` (real data if found, else synthetic), ``paper`` or ``strong`` (real
            data, downloaded when allowed; a missing data set is an error).
        data_root: Folder with the data; default ``$RESLAB_DATA``.
        datasets: Which data sets.
        samples_per_class: Images per class in the sample grids.
        out_dir: Where to write; default ``results/<profile>/datasets``.
    """
    for name in datasets:
        get_spec(name)
    if samples_per_class <= 0:
        raise ValueError(f"samples_per_class must be positive, got {samples_per_class}.")
    run = TableRun("datasets", profile, out_dir)
    paths = run.data_paths(data_root)
    rows, counts = [], []
    for name in datasets:
        for split in SPLITS:
            # The whole split: this notebook reports the data as it is, whatever the profile.
            d = load_dataset(name, split, root=paths.data, cache=paths.cache, download=run.profile.download,
                             allow_synthetic=run.profile.allow_synthetic)
            run.describe(d)
            evidence, note = evidence_of(run.profile, data_sources=[d.data_source])
            per_class = d.class_counts()
            pixels = d.images.float().div_(255)
            rows.append({
                "dataset": name,
                "split": split,
                "source": d.source,
                "data_source": d.data_source,
                "profile": run.profile.name,
                "fingerprint": d.fingerprint,
                "images": len(d),
                "shape": "x".join(str(s) for s in d.images.shape[1:]),
                "pixel_mean": round(pixels.mean().item(), 4),
                "pixel_std": round(pixels.std().item(), 4),
                "min_class_count": min(per_class),
                "max_class_count": max(per_class),
                "evidence": evidence,
                "evidence_note": note,
            })
            counts += [{"dataset": name, "split": split, "data_source": d.data_source, "label": i,
                        "class": c, "count": n} for i, (c, n) in enumerate(zip(d.classes, per_class))]
            if split == "train":
                run.out.figures[f"samples_{name}"] = plots.sample_grid(d, per_class=samples_per_class)
    run.out.tables["datasets"] = pd.DataFrame(rows)
    run.out.tables["class_counts"] = pd.DataFrame(counts)
    return run.finish(parameters={"data_root": str(data_root) if data_root else None, "datasets": list(datasets)})
