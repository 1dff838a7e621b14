"""The papers' printed numbers, transcribed as CSV files in this folder.

Every file has the same columns (``CLAIM_COLUMNS``); one row is one printed number:

- ``paper``: short key of the paper (``drstn``, ``selu``, ``cbam``, ``survey``).
- ``table``: where it is printed, e.g. ``Table 4`` or ``abstract``.
- ``model``: the row label as printed, normalised to a registered model name where one exists.
- ``dataset``: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` or empty.
- ``metric``: ``test_acc``, ``train_acc``, ``error_rate``, ``params``, ``train_loss``, ...
- ``value``: the number as printed, in ``unit``.
- ``unit``: ``fraction``, ``percent``, ``count``, ``million``, ...
- ``source``: the original paper a survey row cites, or the seed file name.
- ``note``: anything a reader needs (a page note, a printed typo, a reading we chose).

Claims are never typed into a notebook or a test as an expected result of a run: code reads
them from here.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

CLAIM_COLUMNS = ["paper", "table", "model", "dataset", "metric", "value", "unit", "source", "note"]


def claim_files() -> list[str]:
    """Return the names of the claims CSV files shipped with the package."""
    root = resources.files(__name__)
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".csv"))


def load_claims(paper: str | None = None) -> pd.DataFrame:
    """Load every claims file (or one paper's rows) as one DataFrame.

    Args:
        paper: Keep only rows whose ``paper`` column equals this key.

    Raises:
        ValueError: if a file lacks a required column, or ``paper`` matches no row.
    """
    frames = []
    root = resources.files(__name__)
    for name in claim_files():
        with resources.as_file(root / name) as path:
            df = pd.read_csv(path, dtype={"value": float}, keep_default_na=False)
        missing = [c for c in CLAIM_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"claims file {name} lacks columns {missing}; expected {CLAIM_COLUMNS}")
        df["file"] = name
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=CLAIM_COLUMNS + ["file"])
    out = pd.concat(frames, ignore_index=True)
    if paper is not None:
        known = sorted(out["paper"].unique())
        out = out[out["paper"] == paper].reset_index(drop=True)
        if out.empty:
            raise ValueError(f"no claims for paper {paper!r}; known papers: {known}")
    return out


def as_fraction(value: float, unit: str) -> float:
    """A printed accuracy or error rate as a fraction (``percent`` / 100, ``fraction`` as is).

    Raises:
        ValueError: for a unit that is not a rate.
    """
    if unit == "percent":
        return value / 100.0
    if unit == "fraction":
        return value
    raise ValueError(f"unit {unit!r} is not a rate; expected 'percent' or 'fraction'.")
