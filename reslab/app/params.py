"""``reslab params``: the parameter table of every paper model (:func:`reslab.params.param_table`)
printed beside the values the papers print, and written as CSV."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ..params import DEFAULT_OUT, NO_COUNT, param_table
from ..paths import Paths
from ..results import write_csv


def write_param_table(path: str | None = None) -> pd.DataFrame:
    """Compute the table and write it as CSV (atomically) to ``path``.

    Args:
        path: Where to write; default ``results/params.csv`` under the results root.

    Returns:
        The table.
    """
    df = param_table()
    write_csv(df, path or Paths.from_env().results / "params.csv")
    return df


def _fmt(df: pd.DataFrame) -> str:
    show = df[["paper", "table", "label", "model", "input_size", "params", "trainable", "paper_value", "unit",
               "diff", "match", "gflops"]].copy()
    show["paper_value"] = [
        "" if pd.isna(v) else (f"{int(v):,}" if u == "count" else f"{v:g}") for v, u in zip(df["paper_value"], df["unit"])
    ]
    show["diff"] = [
        "" if d is None or pd.isna(d) else (f"{int(d):+,}" if u == "count" else f"{d:+.3f}") for d, u in zip(df["diff"], df["unit"])
    ]
    show["params"] = df["params"].map(lambda v: f"{v:,}")
    show["trainable"] = df["trainable"].map(lambda v: f"{v:,}")
    show["match"] = show["match"].map(lambda v: "" if v is None or pd.isna(v) else ("yes" if v else "NO"))
    text = show.astype(object).where(show.notna(), "").to_string(index=False)
    notes = [f"  [{r.paper} {r.table} {r.label}] {r.note}" for r in df.itertuples() if r.note and r.note != NO_COUNT]
    return text + "\n\nNotes:\n" + "\n".join(notes)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``reslab params`` (complete sentences, no markup: a terminal shows them)."""
    parser = argparse.ArgumentParser(
        prog="reslab params", description="Print the parameter table of every paper model beside the values the "
        "papers print, and write it as CSV. Each row gives our parameter count, the printed count, their "
        "difference and forward GFLOPs at the paper's input size.")
    parser.add_argument("--out", default=None, help=f"The CSV file to write (default: {DEFAULT_OUT} under the "
                        "results root).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the parameter table and write it as CSV (``--out``, default ``results/params.csv``)."""
    args = build_parser().parse_args(argv)
    df = write_param_table(args.out)
    with pd.option_context("display.width", 250, "display.max_colwidth", 40):
        print(_fmt(df))
    print(f"\nwrote {len(df)} rows to {args.out or DEFAULT_OUT}", file=sys.stderr)
    return 0
