"""The one comparability rule: what a run, or a table row made of runs, may be used for.

A run is judged against a paper only when it ran a protocol profile (``paper``, ``strong``), on
real and complete data, with the profile's recipe unchanged in anything that changes numbers.
Every result row carries the decision in ``evidence`` (``smoke`` / ``budget`` / ``protocol``) and
the reason in ``evidence_note``; tables combine rows with :func:`weakest_evidence` and the claims
summary reads the decision as it is.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from .profiles import BUDGET, EVIDENCE, PROTOCOL, SMOKE, Profile

#: How a result row's ``batch_norm`` starts when a distributed run kept batch-norm statistics per
#: process (DDP with ``sync_bn`` off; :func:`reslab.train.train` writes it), and what that adds to
#: the evidence note: the numbers then depend on the process count.
BN_PER_PROCESS = "per process"
BN_PER_PROCESS_NOTE = "batch-norm statistics per process, not over the global batch (sync_bn off)"


def fewer_runs_note(made: int, protocol: int) -> str:
    """The note of a row that is the mean of ``made`` protocol runs where the paper averaged
    ``protocol``: each run is the protocol, so the row is judged, with its own (wider) interval."""
    return f"n = {made} of {protocol}: the mean of {made} protocol run(s) where the paper averaged {protocol}"


def evidence_of(profile: Profile, overrides: Sequence[str] = (), data_sources: Iterable[str] = (),
                complete: bool = True, runs: tuple[int, int] | None = None) -> tuple[str, str]:
    """What a run (or a table row made of runs) may be used for: ``(evidence, note)``.

    ``smoke`` for the smoke profile or synthetic data; ``budget`` for a reduced-budget profile,
    incomplete data (subsets) or any override of the recipe; ``protocol`` (judged against the
    paper) otherwise. The note says what made it so.

    Args:
        runs: ``(made, protocol)``: the runs of each row this call makes, and the protocol's (the
            paper's mean of n). Fewer than the protocol's is not a shortcut: the evidence is
            unchanged and the note says ``n = made of protocol`` (:func:`fewer_runs_note`).
    """
    sources = sorted({str(s) for s in data_sources})
    if profile.evidence == SMOKE:
        return SMOKE, f"profile {profile.name}: checks the code"
    if any("synthetic" in s for s in sources):
        return SMOKE, "synthetic data"
    reasons = []
    if profile.evidence == BUDGET:
        reasons.append(f"profile {profile.name} (reduced budget)")
    if not complete:
        reasons.append("data subsets")
    reasons += list(overrides)
    if runs is not None and runs[0] < runs[1]:
        return (BUDGET, "; ".join([*reasons, fewer_runs_note(*runs)])) if reasons else (PROTOCOL, fewer_runs_note(*runs))
    return (BUDGET, "; ".join(reasons)) if reasons else (PROTOCOL, "")


def weakest_evidence(evidence: Iterable[str], notes: Iterable[str] = ()) -> tuple[str, str]:
    """The evidence of a row made of several (a mean over seeds, a gain of one row over another):
    the weakest of them, with every distinct note.

    Raises:
        ValueError: when ``evidence`` is empty or holds an unknown kind.
    """
    kinds = [str(e) for e in evidence]
    if not kinds or any(k not in EVIDENCE for k in kinds):
        raise ValueError(f"evidence must be a non-empty list of {EVIDENCE}, got {kinds}.")
    weakest = min(kinds, key=EVIDENCE.index)
    # A note is a "; "-separated list of reasons: each distinct reason once.
    seen = dict.fromkeys(part for n in notes if isinstance(n, str) and n for part in n.split("; ") if part)
    return weakest, "; ".join(seen)


#: The column of a run row, and of a table row made of runs, that gives the protocol's number of
#: runs per row (the paper's mean of N; ``len(recipe.seeds)``), so that a reader of the table can say
#: "n of N" without reading it back from the evidence note.
PROTOCOL_RUNS = "protocol_runs"


def evidence_fields(frame: pd.DataFrame) -> list[str]:
    """The evidence columns a row made of ``frame``'s rows carries: ``evidence``, ``evidence_note``,
    and :data:`PROTOCOL_RUNS` where ``frame`` has it."""
    return ["evidence", "evidence_note", *([PROTOCOL_RUNS] if PROTOCOL_RUNS in frame.columns else [])]


def group_evidence(rows: pd.DataFrame) -> dict:
    """The evidence of a row made of ``rows`` (a mean over seeds, a gain of one row over another):
    the weakest evidence with every distinct note (:func:`weakest_evidence`), and the largest
    :data:`PROTOCOL_RUNS` where ``rows`` have it."""
    kind, note = weakest_evidence(rows["evidence"], rows["evidence_note"])
    return {"evidence": kind, "evidence_note": note} | (
        {PROTOCOL_RUNS: rows[PROTOCOL_RUNS].max()} if PROTOCOL_RUNS in rows.columns else {})


def evidence_columns(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """:func:`group_evidence` per group of ``frame``."""
    rows = [dict(zip(by, key if isinstance(key, tuple) else (key,))) | group_evidence(grp)
            for key, grp in frame.groupby(list(by), sort=False)]
    return pd.DataFrame(rows, columns=[*by, *evidence_fields(frame)])


def row_deviations(row: dict) -> list[str]:
    """What a finished run's result row says it did differently from its recipe (evidence notes)."""
    return [BN_PER_PROCESS_NOTE] if str(row.get("batch_norm", "")).startswith(BN_PER_PROCESS) else []
