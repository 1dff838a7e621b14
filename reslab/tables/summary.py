"""The claims summary: which printed numbers of the four papers do our results reproduce?

:func:`run_summary` reads every claims file (the four papers; the original-paper numbers of
``survey_originals.csv`` are reference values for the survey's consistency table, not claims of
these papers) and every ``results/<profile>/<table>/`` CSV, and writes one table with one row per
claim and results folder: paper, table, claim, paper value, our value (mean +- std, n), data
source, profile and a verdict. A claim no results folder measures gets one ``not run`` row.

How a printed number is matched to a measurement lives in :data:`EXTRACTORS`, one function per
table notebook, reading that notebook's CSVs (the files are the contract, not the code that wrote
them). Our value is in the claim's terms: accuracies and error rates in percent, losses as printed,
parameter counts in the printed unit.

Verdicts (:func:`verdict`; the rule applied is written in each row's ``rule`` column):

The evidence of every measurement is decided once, where the runs are made
(:func:`reslab.evidence.evidence_of`: the ``evidence`` and ``evidence_note`` columns of the
tables' CSVs); the summary reads it and never re-derives it:

- ``smoke only``: evidence ``smoke`` (the ``smoke`` profile or synthetic data). It checks the code,
  never a claim.
- ``budget only``: evidence ``budget`` (a reduced-budget profile, data subsets,
  or any override of the recipe: epochs, steps, batch size, input size, weights, ``budget=N``...);
  the ``rule`` column names what made it so. Shown, never judged.
- ``not run``: no results folder measures the claim, or the claim is a difference (a gain) whose
  other side has not run.
- ``reproduced`` / ``not reproduced``, for evidence ``protocol`` (``paper`` / ``strong`` run as
  specified on real, complete data):
  - accuracy or error rate: ``|ours - paper| <= 1.0`` percentage point (:data:`RATE_TOLERANCE_PP`),
    ours being the mean over seeds; with n >= 2 the 95 % t-interval of our mean is shown beside it;
  - relative gain printed without an interval (DRSTN's "15.5 % higher"): the same 1.0 point rule;
  - gain of a paired ablation (SELU): reproduced when our paired 95 % t-interval of the gain lies
    above zero (the gain exists at our n), not reproduced otherwise;
  - loss: ``|ours - paper| <= 10 %`` of the printed value (:data:`LOSS_TOLERANCE`);
  - parameter count: equal within the printed rounding (half a unit of the last printed digit) or
    exactly for printed integers. A count needs no training and no data, so it gets a verdict in
    every profile (profile ``-``, data source ``none``).

Outputs go to ``results/summary/`` (not per profile: the summary reads every profile):
``summary.csv`` (every row), ``headline.csv`` (one row per claim, from the strongest evidence:
``paper``, then ``strong``, ``smoke``), ``verdicts.csv`` (counts per paper and
table), ``controls.csv`` (our controls, which no printed number claims: :func:`controls`),
``paper_vs_ours.png`` and ``manifest.json``. :func:`reslab.app.readme.readme_section` renders
the README's Results section from ``headline.csv`` and ``verdicts.csv``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from ..claims import as_fraction, load_claims
from ..evidence import PROTOCOL_RUNS
from ..paths import Paths
from ..profiles import BUDGET, PROFILES, SMOKE
from ..results import scratch_note
from ..stats import t_quantile_975
from ._common import TableOutput

TABLE = "summary"
PAPERS = ("drstn", "selu", "cbam", "survey")
PAPER_TITLES = {
    "drstn": "DRSTN soft thresholding (seed 000)",
    "selu": "SELU / Inception ResNet ablation (seed 003)",
    "cbam": "CBAM with ResNet-50 (seed 004)",
    "survey": "Residual-network survey (seed 002)",
}
RATE_TOLERANCE_PP = 1.0
LOSS_TOLERANCE = 0.10
EVIDENCE_ORDER = tuple(sorted(PROFILES, key=lambda name: PROFILES[name].rank))  # strongest first
#: The verdict of a rate measured on the JPEG copy of CIFAR-10 that misses the claim by more than
#: :data:`RATE_TOLERANCE_PP` but by no more than that plus :data:`JPEG_ALLOWANCE_PP`, in the
#: direction JPEG moves it (lower accuracy, higher error): the original CIFAR-10 may reproduce it.
JPEG_VERDICT = "not reproduced on JPEG data; within the JPEG allowance"
#: How far JPEG (quality 75) moves accuracies on CIFAR-10: "roughly 1-2 points below the original"
#: (the data's README); the upper end.
JPEG_ALLOWANCE_PP = 2.0

VERDICTS = ("reproduced", "not reproduced", JPEG_VERDICT, "budget only", "smoke only", "not run")
#: The verdicts that judge a claim (protocol evidence); the others only say why none was given.
JUDGED = ("reproduced", "not reproduced", JPEG_VERDICT)
COLUMNS = ["paper", "table", "claim", "claim_id", "paper_value", "unit", "ours", "ours_std", "n", "ours_text",
           "difference", "ci95_low", "ci95_high", "data_source", "profile", "verdict", "rule", "basis", "note", "results"]

# --------------------------------------------------------------------------------------------
# Measurements: one extractor per table notebook; each returns rows keyed by claim_id


def _measure(claim_id: str, ours: float, *, std: float = math.nan, n: float = math.nan, kind: str,
             data_source: str, profile: str, evidence: str, evidence_note: str = "", basis: str,
             ci: tuple[float, float] | None = None, match: bool | None = None, note: str = "",
             protocol_runs: float = math.nan) -> dict:
    return {"claim_id": claim_id, "ours": ours, "ours_std": std, "n": n, "protocol_runs": protocol_runs, "kind": kind,
            "data_source": data_source, "profile": profile, "evidence": evidence,
            "evidence_note": "" if pd.isna(evidence_note) else str(evidence_note), "basis": basis,
            "ci95_low": ci[0] if ci else math.nan, "ci95_high": ci[1] if ci else math.nan, "match": match,
            "note": "" if pd.isna(note) else str(note)}


def _evidence(row) -> dict:
    """What a table row (a named tuple of its CSV) says a measurement may be used for: ``evidence``,
    ``evidence_note`` and, where the table has it, the protocol's run count (``n of N``)."""
    return {"evidence": row.evidence, "evidence_note": row.evidence_note,
            "protocol_runs": getattr(row, PROTOCOL_RUNS, math.nan)}


def _one(claims: pd.DataFrame, **where) -> str | None:
    """The claim_id of the one claim matching every ``column == value`` (None if none)."""
    sel = claims
    for column, value in where.items():
        sel = sel[sel[column] == value]
    if len(sel) > 1:
        raise ValueError(f"more than one claim matches {where}: {sel['claim_id'].tolist()}")
    return sel["claim_id"].iloc[0] if len(sel) else None


def _pct(x: float) -> float:
    return round(100 * float(x), 4) if pd.notna(x) else math.nan


def _drstn_table4(folder: Path, claims: pd.DataFrame) -> list[dict]:
    out = []
    table = pd.read_csv(folder / "table4.csv")
    for r in table.itertuples():
        cid = _one(claims, paper="drstn", table="Table 4", model=r.model, dataset=r.dataset, metric="test_acc")
        if cid:
            out.append(_measure(cid, _pct(r.best_acc_mean), std=_pct(r.best_acc_std), n=r.n, kind="rate",
                                data_source=r.data_source, profile=r.profile, **_evidence(r),
                                basis="best-epoch test accuracy, mean over seeds"))
    gains = pd.read_csv(folder / "table4_gains.csv")
    for r in gains.itertuples():
        cid = _one(claims, paper="drstn", table="abstract", model=r.model, metric=f"test_acc_gain_vs_{r.baseline}")
        if cid:
            out.append(_measure(cid, float(r.measured_pct), n=getattr(r, "n", math.nan), kind="rate",
                                data_source=r.data_source, profile=r.profile, **_evidence(r),
                                basis="relative gain of mean best-epoch accuracy, in %"))
    return out


_TABLE5_METRICS = {"best_train_loss": "train_loss", "best_test_loss": "test_loss", "best_train_acc": "train_acc",
                   "best_test_acc": "test_acc"}


def _drstn_table5(folder: Path, claims: pd.DataFrame) -> list[dict]:
    out = []
    table = pd.read_csv(folder / "table5.csv")
    for r in table[table["init"] == "transfer"].itertuples():
        metric = _TABLE5_METRICS[r.metric]
        loss = metric.endswith("loss")
        for where in ("Table 5", "abstract"):
            cid = _one(claims, paper="drstn", table=where, model="drstn_v5", dataset=r.dataset, metric=metric)
            if cid:
                out.append(_measure(cid, float(r.mean) if loss else _pct(r.mean),
                                    std=float(r.std) if loss else _pct(r.std), n=r.n, kind="loss" if loss else "rate",
                                    data_source=r.data_source, profile=r.profile, **_evidence(r),
                                    basis=f"{r.metric.replace('_', ' ')} over epochs after transfer from CIFAR-10, "
                                          "mean over seeds"))
    return out


def _selu(folder: Path, claims: pd.DataFrame) -> list[dict]:
    out = []
    table = pd.read_csv(folder / "selu_ablation.csv")
    sel = claims[claims["paper"] == "selu"]
    for r in table.itertuples():
        decay = "yes" if r.lr_decay else "no"
        for c in sel[(sel["model"] == r.model) & (sel["metric"] == "test_acc") & (sel["lr_decay"] == decay)
                     & (sel["epochs"].astype(float) == float(r.paper_epochs))].itertuples():
            out.append(_measure(c.claim_id, _pct(r.final_acc_mean), std=_pct(r.final_acc_std), n=r.n, kind="rate",
                                data_source=r.data_source, profile=r.profile, **_evidence(r),
                                basis=f"final-epoch test accuracy after {r.epochs} epochs (the paper: mean accuracy "
                                      f"after {r.paper_epochs}), mean over seeds"))
    paired = pd.read_csv(folder / "paired.csv")
    variants = table.set_index("label")
    for r in paired[paired["metric"] == "final_acc"].itertuples():
        v = variants.loc[r.label]
        cid = _one(sel.assign(epochs=sel["epochs"].astype(float)), model=v.model, metric="test_acc_gain",
                   lr_decay="yes" if v.lr_decay else "no", epochs=float(v.paper_epochs))
        if cid:
            out.append(_measure(cid, _pct(r.mean_diff), std=_pct(r.std_diff), n=r.n, kind="paired_gain",
                                data_source=v.data_source, profile=v.profile, **_evidence(r),
                                ci=(_pct(r.ci95_low), _pct(r.ci95_high)),
                                basis=f"paired gain over '{r.baseline}' (same seeds), final-epoch accuracy, "
                                      "percentage points"))
    return out


def _cbam(folder: Path, claims: pd.DataFrame) -> list[dict]:
    out = []
    sel = claims[claims["paper"] == "cbam"]
    table = pd.read_csv(folder / "cbam_table.csv")
    for r in table.itertuples():
        for metric, value, basis in (("train_acc", r.train_acc_mean, "final-epoch training accuracy, mean over seeds"),
                                     ("test_acc", r.best_acc_paper_evals_mean,
                                      "best test accuracy over the epochs the paper evaluates, mean over seeds")):
            cid = _one(sel, table="results table", row=r.paper_row, metric=metric)
            if cid:
                out.append(_measure(cid, _pct(value), n=r.n, kind="rate", data_source=r.data_source,
                                    profile=r.profile, **_evidence(r), basis=basis))
        cid = _one(sel, table="results table", row=r.paper_row, metric=r.paper_params_metric)
        if cid:
            count = r.params if r.paper_params_metric == "params" else r.trainable_params
            out.append(_measure(cid, float(count), n=1, kind="params", data_source="none", profile="-",
                                evidence="protocol", match=bool(r.params_match), note=r.params_note,
                                basis=f"{r.paper_params_metric.replace('_', ' ')} of our implementation"))
    audit_path = folder / "cbam_audit.csv"
    if audit_path.is_file():
        audit = pd.read_csv(audit_path)
        for r in audit.itertuples():
            for what in ("train_acc", "test_acc", "train_loss"):
                cid = _one(sel, table="training log", metric=f"{what}_epoch_{int(r.epoch)}")
                value = getattr(r, what)
                if cid and pd.notna(value):
                    loss = what.endswith("loss")
                    out.append(_measure(cid, float(value) if loss else _pct(value), n=1,
                                        kind="loss" if loss else "rate", data_source=r.data_source,
                                        profile=r.profile, **_evidence(r),
                                        basis=f"{what.replace('_', ' ')} at epoch {int(r.epoch)} of the audited run"))
    return out


def _survey(folder: Path, claims: pd.DataFrame) -> list[dict]:
    out = []
    sel = claims[claims["paper"] == "survey"]
    params = pd.read_csv(folder / "params.csv")
    for r in params[params["paper_value"].notna()].itertuples():
        cid = _one(sel, table=r.table, model=r.model, dataset="", metric="params")
        if cid:
            out.append(_measure(cid, r.params / 1e6, n=1, kind="params", data_source="none", profile="-",
                                evidence="protocol", match=bool(r.match), note=r.note,
                                basis="parameter count of our implementation, millions (reslab params)"))
    errors = pd.read_csv(folder / "error_rates.csv")
    for r in errors[errors["trained"]].itertuples():
        cid = _one(sel, table=r.table, model=r.model, dataset=r.dataset, metric="error_rate")
        if cid:
            out.append(_measure(cid, float(r.best_error), std=float(r.best_error_std), n=r.n, kind="rate",
                                data_source=r.data_source, profile=r.profile, **_evidence(r),
                                basis="best-epoch test error, mean over seeds"))
    return out


# Table notebook -> extractor. Tables with no numeric claims (DRSTN Table 1: Grad-CAM figures;
# the datasets notebook) have none.
EXTRACTORS: dict[str, Callable[[Path, pd.DataFrame], list[dict]]] = {
    "drstn_table4_cifar10": _drstn_table4,
    "drstn_table5_transfer": _drstn_table5,
    "selu_ablation_fashion_mnist": _selu,
    "cbam_resnet50_cifar10": _cbam,
    "survey_error_rates": _survey,
}


#: Table notebook -> its table of controls (ours, no printed claim: what a component adds, paired
#: over seeds, in percentage points), which the summary lists beside the claims.
CONTROLS: dict[str, str] = {"drstn_table4_cifar10": "table4_effects.csv"}
CONTROL_COLUMNS = ["table", "effect", "with", "without", "ours_text", "interval", "paper_implied_pp", "profile",
                   "data_source", "evidence", "evidence_note"]


def controls(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The controls of every table in :data:`CONTROLS`, from the strongest profile that has them
    (``paper``, ``strong``, then ``smoke``): our paired difference as text (mean ± std (n), empty
    where no pair has finished), its 95 % interval, and the difference the paper's printed numbers
    imply (not a claim, so no verdict)."""
    root = Path(root) if root else Paths.from_env().source
    frames = []
    for name, file in CONTROLS.items():
        found = [root / p / name / file for p in EVIDENCE_ORDER if (root / p / name / file).is_file()]
        if not found:
            continue
        try:
            table = pd.read_csv(found[0])
            as_measured = table.rename(columns={"mean_diff_pp": "ours", "std_diff_pp": "ours_std"})
            as_measured["kind"] = "paired_gain"  # printed like a paired gain of the claims: mean ± std (n)
            text = as_measured.apply(_ours_text, axis=1) if len(table) else []
            interval = [fmt_interval(low, high) for low, high in zip(table["ci95_low_pp"], table["ci95_high_pp"])]
            frames.append(table.assign(table=name, ours_text=text, interval=interval)[CONTROL_COLUMNS])
        except (KeyError, pd.errors.ParserError) as exc:
            raise ValueError(f"cannot read the controls in {found[0]} ({type(exc).__name__}: {exc}); rerun "
                             f"`reslab reproduce --only {name}` or delete the folder.") from exc
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CONTROL_COLUMNS)


def measurements(root: str | os.PathLike | None = None, claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every measurement of a claim found under ``root`` (default: the results folder).

    Reads ``<root>/<profile>/<table>/`` for every known profile and every table with an extractor;
    a folder whose CSVs cannot be read is an error naming it.
    """
    root = Path(root) if root else Paths.from_env().source
    claims = load_claims() if claims is None else claims
    rows = []
    for profile in PROFILES:
        for name, extract in EXTRACTORS.items():
            folder = root / profile / name
            if not folder.is_dir() or not any(folder.iterdir()):  # an empty folder holds no result
                continue
            try:
                found = extract(folder, claims)
            except (OSError, KeyError, AttributeError, pd.errors.ParserError) as exc:
                raise ValueError(f"cannot read the results in {folder} ({type(exc).__name__}: {exc}); rerun "
                                 f"`reslab reproduce --only {name} --profile {profile}` or delete the folder.") from exc
            rows += [row | {"results": f"{profile}/{name}"} for row in found]
    frame = pd.DataFrame(rows, columns=list(_measure("", 0, kind="", data_source="", profile="", evidence="",
                                                     basis="")) + ["results"])
    # A parameter count is the same in every profile: keep one.
    params = frame["kind"] == "params"
    return pd.concat([frame[~params], frame[params].drop_duplicates("claim_id")], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Verdicts


def paper_value_in_our_terms(value: float, unit: str, metric: str) -> float:
    """A claim's printed value in the terms of our measurement: rates in percent, the rest as printed."""
    if unit in ("fraction", "percent") and "gain" not in metric:
        return round(100 * as_fraction(value, unit), 6)
    return float(value)


def verdict(m: pd.Series, paper_value: float, metric: str = "") -> tuple[str, str]:
    """``(verdict, rule)`` of one measurement ``m`` (a row of :func:`measurements`) against a claim
    of ``metric`` (``test_acc``, ``test_error``...: which way JPEG data moves it, :func:`jpeg_flag`)."""
    if m["kind"] == "params":
        return ("reproduced" if m["match"] else "not reproduced",
                "parameter count equal within the printed rounding (exact for printed integers)")
    if pd.isna(m["ours"]):
        return "not run", f"no finished run: the row, or one side of a difference, has not run ({m['evidence_note'] or 'missing'})"
    if m["evidence"] == SMOKE:
        return "smoke only", f"smoke evidence ({m['evidence_note'] or 'smoke'}): checks the code, no verdict"
    if m["evidence"] == BUDGET:
        return "budget only", f"budget run ({m['evidence_note']}): not the paper's protocol, no verdict"
    v, rule = jpeg_flag(*_protocol_verdict(m, paper_value), m, paper_value, metric)
    # A protocol row's note says what the verdict rests on, e.g. "n = 3 of 10" (fewer runs than the paper's mean).
    return v, f"{rule}; {m['evidence_note']}" if m["evidence_note"] else rule


def jpeg_flag(v: str, rule: str, m: pd.Series, paper_value: float, metric: str) -> tuple[str, str]:
    """A rate measured on the JPEG copy of CIFAR-10 (``data_source`` ``cifar10-jpeg``): the rule
    says so, and a miss that JPEG alone may explain (by at most :data:`JPEG_ALLOWANCE_PP` more than
    the tolerance, in the direction JPEG moves it) becomes :data:`JPEG_VERDICT`: test accuracies
    and error rates only. Gains compare networks on the same data and are left as they are; so is
    every other data source."""
    if m["kind"] != "rate" or "jpeg" not in str(m["data_source"]) or "gain" in metric:
        return v, rule
    rule += (f"; on the JPEG copy of CIFAR-10 (quality 75), on which accuracies run about 1-{JPEG_ALLOWANCE_PP:g} "
             "points below the original")
    worse = (m["ours"] - paper_value) if "error" in metric else (paper_value - m["ours"])  # JPEG's direction
    tested = "error" in metric or metric.startswith("test_acc")
    if tested and v == "not reproduced" and RATE_TOLERANCE_PP < worse <= RATE_TOLERANCE_PP + JPEG_ALLOWANCE_PP:
        return JPEG_VERDICT, rule + f": the original data may close the gap of {worse:.2f} points"
    return v, rule


def _protocol_verdict(m: pd.Series, paper_value: float) -> tuple[str, str]:
    if m["kind"] == "paired_gain":
        rule = "paired 95 % t-interval of our gain lies above 0"
        if not (m["n"] >= 2 and pd.notna(m["ci95_low"])):
            return "not reproduced", rule + " (needs n >= 2 paired seeds)"
        return ("reproduced" if m["ci95_low"] > 0 else "not reproduced"), rule
    if m["kind"] == "loss":
        ok = abs(m["ours"] - paper_value) <= LOSS_TOLERANCE * abs(paper_value)
        return ("reproduced" if ok else "not reproduced"), f"|ours - paper| <= {LOSS_TOLERANCE:.0%} of the paper value"
    ok = abs(m["ours"] - paper_value) <= RATE_TOLERANCE_PP
    return ("reproduced" if ok else "not reproduced"), f"|ours - paper| <= {RATE_TOLERANCE_PP} percentage point"


def rules() -> pd.DataFrame:
    """The verdict rules as a table (what :func:`verdict` applies, in words)."""
    return pd.DataFrame([
        ("any measured number", "smoke profile or synthetic data", "smoke only (never judged)"),
        ("any measured number", "real data, reduced budget (subsets, any override of the recipe)",
         "budget only (never judged; the rule names the override)"),
        ("a difference or gain", "one side has not run", "not run"),
        ("accuracy / error rate (%)", "paper or strong profile, real data",
         f"reproduced if |ours - paper| <= {RATE_TOLERANCE_PP} percentage point (ours: mean over seeds)"),
        ("test accuracy / error rate (%)", "as above, on the JPEG copy of CIFAR-10",
         f"the same rule, said to be on JPEG data; a miss of at most {RATE_TOLERANCE_PP + JPEG_ALLOWANCE_PP:g} "
         f"points in JPEG's direction: {JPEG_VERDICT}"),
        ("any judged number", "fewer protocol runs than the paper averaged",
         "judged as above, with its own interval; the rule says n = made of the paper's"),
        ("relative gain (%) printed without an interval", "paper or strong profile, real data",
         f"reproduced if |ours - paper| <= {RATE_TOLERANCE_PP} point"),
        ("paired ablation gain (pp)", "paper or strong profile, real data",
         "reproduced if our paired 95 % t-interval of the gain lies above 0 (n >= 2 seeds)"),
        ("loss", "paper or strong profile, real data", f"reproduced if |ours - paper| <= {LOSS_TOLERANCE:.0%} of paper"),
        ("parameter count", "any profile (no training, no data)",
         "reproduced if equal within the printed rounding (exact for printed integers)"),
        ("any", "no results folder measures it", "not run"),
    ], columns=["number", "evidence", "verdict rule"])


def _claim_text(c) -> str:
    who = c.row or c.model
    extra = []
    if getattr(c, "epochs", "") not in ("", None) and pd.notna(getattr(c, "epochs", math.nan)):
        extra.append(f"{int(float(c.epochs))} epochs")
    if getattr(c, "lr_decay", "") == "yes":
        extra.append("LR decay")
    metric = c.metric.replace("_", " ")
    return f"{who}{' (' + ', '.join(extra) + ')' if extra else ''}: {metric}{' on ' + c.dataset if c.dataset else ''}"


def fmt_value(x: float) -> str:
    """A claimed or measured value as the summary prints it (thousands separated, 4 significant digits)."""
    if pd.isna(x):
        return ""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def fmt_interval(low: float, high: float) -> str:
    """A 95 % interval as the summary prints it, ``[low, high]``; empty where there is none."""
    return f"[{fmt_value(low)}, {fmt_value(high)}]" if pd.notna(low) and pd.notna(high) else ""


def _ours_text(m: pd.Series) -> str:
    """Our number as the README and the summary print it: mean ± std (n), and "n of N" where the
    paper averaged more runs than ours (each run the protocol; the interval is ours, wider); empty
    where nothing was measured."""
    if pd.isna(m["ours"]):
        return ""
    text = fmt_value(m["ours"])
    if m["kind"] == "params":
        return text
    if pd.notna(m["ours_std"]):
        text += f" ± {fmt_value(m['ours_std'])}"
    if pd.notna(m["n"]):
        protocol = m.get("protocol_runs", math.nan)
        text += f" (n={int(m['n'])} of {int(protocol)})" if protocol > m["n"] else f" (n={int(m['n'])})"
    return text


def summary_table(root: str | os.PathLike | None = None, claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim and results folder (see the module docstring), ``not run`` where none."""
    claims = load_claims() if claims is None else claims
    claims = claims[claims["paper"].isin(PAPERS)]
    claims = claims.sort_values("paper", key=lambda p: p.map({k: i for i, k in enumerate(PAPERS)}), kind="stable")
    found = measurements(root, claims)
    rows = []
    for c in claims.itertuples():
        paper_value = paper_value_in_our_terms(c.value, c.unit, c.metric)
        unit = "percent" if c.unit in ("fraction", "percent") and "gain" not in c.metric else c.unit
        base = {"paper": c.paper, "table": c.table, "claim": _claim_text(c), "claim_id": c.claim_id,
                "paper_value": paper_value, "unit": unit}
        ms = found[found["claim_id"] == c.claim_id]
        if ms.empty:
            rows.append(base | {"verdict": "not run", "rule": "no results folder measures this claim", "profile": "",
                                "data_source": "", "ours_text": ""})
            continue
        for _, m in ms.iterrows():
            v, rule = verdict(m, paper_value, c.metric)
            ci = (m["ci95_low"], m["ci95_high"])
            if pd.isna(ci[0]) and m["kind"] == "rate" and pd.notna(m["ours_std"]) and m["n"] >= 2:
                half = t_quantile_975(int(m["n"]) - 1) * m["ours_std"] / math.sqrt(m["n"])
                ci = (m["ours"] - half, m["ours"] + half)
            text = _ours_text(m)
            rows.append(base | {"ours": m["ours"], "ours_std": m["ours_std"], "n": m["n"], "ours_text": text,
                                "difference": round(m["ours"] - paper_value, 6), "ci95_low": ci[0], "ci95_high": ci[1],
                                "data_source": m["data_source"], "profile": m["profile"], "verdict": v, "rule": rule,
                                "basis": m["basis"], "note": m["note"], "results": m["results"]})
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return out.astype({"n": "Int64"})


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: the row from the strongest evidence (``paper``, ``strong``,
    ``smoke``; a parameter count has one row)."""
    rank = {p: i for i, p in enumerate(("-",) + EVIDENCE_ORDER)}
    order = summary.assign(_rank=summary["profile"].map(rank).fillna(len(rank)), _pos=range(len(summary)))
    best = order.sort_values(["_rank", "_pos"]).drop_duplicates("claim_id")
    return best.sort_values("_pos").drop(columns=["_rank", "_pos"]).reset_index(drop=True)


def verdict_counts(head: pd.DataFrame) -> pd.DataFrame:
    """Claims per paper and table, by verdict (from :func:`headline`)."""
    counts = head.groupby(["paper", "table", "verdict"], sort=False).size().unstack(fill_value=0)
    order = list(dict.fromkeys(zip(head["paper"], head["table"])))  # unstack sorts; keep the claims' order
    counts = counts.reindex(index=pd.MultiIndex.from_tuples(order, names=["paper", "table"]),
                            columns=list(VERDICTS), fill_value=0)
    counts.insert(0, "claims", counts.sum(axis=1))
    return counts.reset_index()


def _limits(values: list[pd.Series], log: bool) -> tuple[float, float]:
    """Axis limits that hold every value with a margin (multiplicative on a log axis)."""
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if log:
        return lo / 1.5, hi * 1.5
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1.0)
    return lo - pad, hi + pad


def paper_vs_ours_figure(summary: pd.DataFrame):
    """Paper value against ours for every measured claim, one panel per kind of number, coloured by
    verdict, with the line ours = paper.

    A panel's axes are set by its judged claims (protocol evidence: :data:`JUDGED`) where it has any:
    smoke and budget numbers check the code, not the claim, so they are drawn faintly, without
    intervals, and never stretch the axes (the legend counts those that fall outside them).
    """
    import matplotlib.pyplot as plt  # here, not at import: ``import reslab`` stays free of pyplot

    measured = summary[summary["ours"].notna()].copy()
    millions = measured["unit"] == "million"  # parameter counts: plot every one as a count
    measured.loc[millions, ["paper_value", "ours"]] *= 1e6
    gain = measured["claim_id"].str.contains("gain")
    error = measured["claim_id"].str.contains("error")
    percent = (measured["unit"] == "percent") & ~gain
    kinds = [("accuracy (%)", percent & ~error),
             ("error rate (%)", percent & error),
             ("gains (%, pp; bars: our 95 % interval)", gain),
             ("losses", measured["unit"] == "cross_entropy"),
             ("parameters", measured["claim_id"].str.contains("params"))]
    kinds = [(name, mask) for name, mask in kinds if mask.any()]
    colours = {"reproduced": "tab:green", "not reproduced": "tab:red", JPEG_VERDICT: "tab:olive",
               "budget only": "tab:orange", "smoke only": "tab:gray"}
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(4.2 * max(len(kinds), 1), 4.0), dpi=80, squeeze=False)
    for ax, (name, mask) in zip(axes[0], kinds):
        sub = measured[mask]
        log = name == "parameters"
        judged = sub[sub["verdict"].isin(JUDGED)]
        frame = judged if len(judged) else sub
        bounds = [frame["paper_value"], frame["ours"]]
        if name.startswith("gains"):
            bounds += [judged["ci95_low"].dropna(), judged["ci95_high"].dropna()]
        lo, hi = _limits([b for b in bounds if len(b)], log)  # one scale on both axes: ours = paper is the diagonal
        for v, grp in sub.groupby("verdict"):
            label = f"{'on JPEG, within allowance' if v == JPEG_VERDICT else v} ({len(grp)}"
            outside = ~(grp["paper_value"].between(lo, hi) & grp["ours"].between(lo, hi))
            if v not in JUDGED and outside.any():
                label += f"; {int(outside.sum())} outside the axes"
            ax.scatter(grp["paper_value"], grp["ours"], color=colours.get(v, "k"), label=label + ")",
                       **({"s": 14, "alpha": 0.75} if v in JUDGED else {"s": 10, "alpha": 0.3}))
            bars = grp[grp["ci95_low"].notna() & grp["ci95_high"].notna()] if v in JUDGED and name.startswith("gains") \
                else grp.iloc[:0]
            if len(bars):  # a gain is shown with its interval, not as a bare point
                ax.errorbar(bars["paper_value"], bars["ours"], fmt="none", ecolor=colours.get(v, "k"), alpha=0.6,
                            yerr=[bars["ours"] - bars["ci95_low"], bars["ci95_high"] - bars["ours"]], lw=1)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.7, ls="--")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("paper")
        ax.set_ylabel("ours")
        ax.legend(fontsize=7)
    if not kinds:
        axes[0][0].text(0.5, 0.5, "no claim measured yet", ha="center")
    fig.tight_layout()
    return fig


def run_summary(results: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None) -> TableOutput:
    """Build and write the summary (see the module docstring).

    Args:
        results: The results root to read; default ``$RESLAB_SOURCE_RESULTS`` (set by ``reslab
            reproduce``, which stages the summary's own output elsewhere), else ``results/``
            (``$RESLAB_RESULTS``).
        out_dir: Where to write; default ``<output root>/summary``
            (:attr:`reslab.paths.Paths.output`: under ``reslab reproduce`` its staging folder,
            else the git-ignored scratch folder, so a direct run reads the committed results but
            never replaces ``results/summary``).
    """
    t0 = time.perf_counter()
    paths = Paths.from_env(source=results)
    root = paths.source
    out = TableOutput(out_dir=Path(out_dir) if out_dir else paths.output / TABLE)
    out.out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_table(root)
    head = headline(summary)
    out.tables = {"summary": summary, "headline": head, "verdicts": verdict_counts(head), "controls": controls(root)}
    out.figures["paper_vs_ours"] = paper_vs_ours_figure(summary)
    counts = head["verdict"].value_counts()
    out.notes.append(f"{len(head)} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".")
    out.notes.append(f"{len(summary)} rows (claim x results folder) read from {sorted(set(summary['results'].dropna()))}.")
    if not out_dir and paths.scratch:
        out.notes.insert(0, scratch_note(out.out_dir, TABLE))
    out.save(TABLE, "all", [], time.perf_counter() - t0, parameters={"results": str(results) if results else None})
    return out
