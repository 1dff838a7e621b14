"""The papers' printed numbers, transcribed as CSV files in this folder.

Every file has the same columns (``CLAIM_COLUMNS``); one row is one printed number:

- ``paper``: short key of the paper (``drstn``, ``selu``, ``cbam``, ``survey``).
- ``table``: where it is printed, e.g. ``Table 4`` or ``abstract``.
- ``row``: the row label as printed (empty where the table has none, e.g. the abstract).
- ``model``: the row label as printed, normalised to a registered model name where one exists.
- ``dataset``: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` or empty.
- ``metric``: ``test_acc``, ``train_acc``, ``error_rate``, ``params``, ``train_loss``, ...
- ``value``: the number as printed, in ``unit``.
- ``unit``: ``fraction``, ``percent``, ``count``, ``million``, ...
- ``source``: the original paper a survey row cites, or the seed file name.
- ``note``: anything a reader needs (a page note, a printed typo, a reading we chose).

The four papers' files transcribe the seed documents themselves. ``survey_originals.csv`` holds the
original papers' numbers that the survey cites; each of its rows names a retrievable public
``source`` (a repository and path, or a paper's abstract or table as quoted in one) and adds:

- ``verified``: ``yes`` where that source was read and shows this value, ``no`` where no source
  could be found (the value is then shown, but no finding or verdict rests on it).

:data:`ANNOTATION_COLUMNS` such as ``verified`` describe a row and are not part of its id.

A file may add columns that tell apart rows with the same key (``selu.csv``: ``epochs`` and
``lr_decay``). :func:`load_claims` adds ``claim_id``, a stable name of each printed number:
``paper/table/model/dataset/metric``, then ``[column=value,...]`` for those extra columns, and,
where that is still not unique, the printed row label (``row=...``).

Claims are never typed into a notebook or a test as an expected result of a run: code reads
them from here.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

CLAIM_COLUMNS = ["paper", "table", "row", "model", "dataset", "metric", "value", "unit", "source", "note"]
#: Columns that describe a row without telling it apart from others (not part of ``claim_id``).
ANNOTATION_COLUMNS = ["verified"]
VERIFIED = ("yes", "no")


def claim_files(root: str | os.PathLike | None = None) -> list[str]:
    """Return the names of the claims CSV files shipped with the package (or found in ``root``)."""
    folder = Path(root) if root is not None else resources.files(__name__)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".csv"))


def _read_file(folder, name: str) -> pd.DataFrame:
    """One claims file, its columns and its ``verified`` values checked."""
    with resources.as_file(folder / name) as path:
        df = pd.read_csv(path, dtype={"value": float}, keep_default_na=False)
    missing = [c for c in CLAIM_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"claims file {name} lacks columns {missing}; expected {CLAIM_COLUMNS}")
    originals = df["paper"].astype(str).str.endswith("_original")
    if originals.any() and "verified" not in df.columns:
        raise ValueError(f"claims file {name} cites original papers but has no 'verified' column; add one "
                         f"({'/'.join(VERIFIED)}) saying whether each row's source was read and shows the value.")
    if "verified" in df.columns:
        bad = df.loc[~df["verified"].isin(VERIFIED), "verified"].unique().tolist()
        if bad:
            raise ValueError(f"claims file {name}: 'verified' must be one of {VERIFIED}, found {bad}; write "
                             "'yes' only where the row's source was read and shows the value.")
    df["file"] = name
    return df


def load_claims(paper: str | None = None, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load every claims file (or one paper's rows) as one DataFrame.

    Args:
        paper: Keep only rows whose ``paper`` column equals this key.
        root: Folder of claims CSV files to read instead of the package's own (a transcription
            being checked before it is added).

    Raises:
        ValueError: if a file lacks a required column, a file of original-paper values lacks
            ``verified`` or has a value other than ``yes`` / ``no`` there, or ``paper`` matches no row.
    """
    folder = Path(root) if root is not None else resources.files(__name__)
    frames = [_read_file(folder, name) for name in claim_files(root)]
    if not frames:
        return pd.DataFrame(columns=CLAIM_COLUMNS + ["file"])
    out = pd.concat(frames, ignore_index=True)
    if "verified" in out.columns:
        out["verified"] = out["verified"].fillna("")
    out["claim_id"] = claim_ids(out)
    if paper is not None:
        known = sorted(out["paper"].unique())
        out = out[out["paper"] == paper].reset_index(drop=True)
        if out.empty:
            raise ValueError(f"no claims for paper {paper!r}; known papers: {known}")
    return out


def _text(value) -> str:
    """A cell as text: integral floats without '.0', missing values empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def claim_id(paper: str, table: str, model: str, dataset: str, metric: str, qualifier: str = "") -> str:
    """The id of one printed number (see the module docstring); ``qualifier`` without brackets."""
    base = "/".join([paper, table, model, dataset or "-", metric])
    return f"{base}[{qualifier}]" if qualifier else base


def claim_ids(claims: pd.DataFrame) -> list[str]:
    """The ``claim_id`` of every row of ``claims``.

    Raises:
        ValueError: if two rows still share an id (the files need a column or a row label to
            tell them apart).
    """
    extra = [c for c in claims.columns if c not in CLAIM_COLUMNS + ANNOTATION_COLUMNS + ["file", "claim_id"]]
    quals = [",".join(f"{c}={_text(r[c])}" for c in extra if _text(r[c])) for _, r in claims.iterrows()]
    keys = [claim_id(r.paper, r.table, r.model, r.dataset, r.metric, q) for r, q in zip(claims.itertuples(), quals)]
    counts = pd.Series(keys).value_counts()
    ids = []
    for key, q, row in zip(keys, quals, claims["row"]):
        if counts[key] > 1:
            if not _text(row):
                raise ValueError(f"claims {key} are printed more than once and have no 'row' label; fill the "
                                 "row column, or add a column that tells them apart.")
            key = key[: -len(f"[{q}]")] if q else key
            key = claim_id(*key.split("/", 4), qualifier=",".join(filter(None, [q, f"row={_text(row)}"])))
        ids.append(key)
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()
    if dup:
        raise ValueError(f"claim ids {dup} are not unique; tell the rows apart in reslab/claims/*.csv.")
    return ids


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
