"""Tests of the parameter table: every printed parameter count is reproduced or explained by a note."""

from __future__ import annotations

import pandas as pd
import pytest

from reslab import params
from reslab.claims import load_claims
from reslab.models import is_model, list_models

PARAM_METRICS = ("params", "trainable_params")


def _param_claims() -> list[dict]:
    claims = load_claims()
    # survey_original rows are the original papers' numbers, which reslab.tables.survey.consistency
    # compares with the survey's; the parameter table reproduces the survey's printed counts.
    rows = claims[claims["metric"].isin(PARAM_METRICS) & (claims["paper"] != "survey_original")]
    return rows.to_dict("records")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return params.param_table()


def _row(table: pd.DataFrame, claim: dict) -> pd.Series:
    sel = table[(table["paper"] == claim["paper"]) & (table["table"] == claim["table"])
                & (table["model"] == claim["model"]) & (table["metric"] == claim["metric"])]
    assert len(sel) == 1, f"{len(sel)} table rows for claim {claim['paper']} {claim['table']} {claim['model']} {claim['metric']}"
    return sel.iloc[0]


def _half_unit(value_text: str) -> float:
    return 0.5 * 10.0 ** -(len(value_text.split(".")[1]) if "." in value_text else 0)


@pytest.mark.parametrize(
    "claim", _param_claims(), ids=lambda c: f"{c['paper']}-{c['table']}-{c['model']}-{c['metric']}".replace(" ", "_")
)
def test_printed_parameter_count_reproduced_or_explained(table: pd.DataFrame, claim: dict) -> None:
    row = _row(table, claim)
    ours = row["trainable"] if claim["metric"] == "trainable_params" else row["params"]
    printed = claim["value"]
    if claim["unit"] == "count":
        reproduced = ours == int(printed)
        diff = int(ours - int(printed))
    else:
        assert claim["unit"] == "million"
        raw = params._raw_claim_values()[(claim["paper"], claim["table"], claim["model"], claim["metric"])]
        reproduced = abs(ours / 1e6 - printed) <= _half_unit(raw) + 1e-12
        diff = round(ours / 1e6 - printed, 3)
    assert bool(row["match"]) == reproduced
    if reproduced:
        assert pd.isna(row["noted_diff"]), "a reproduced count must not carry a noted difference"
        return
    # not reproduced: the row must explain the difference, and the difference must be the one the note explains
    assert isinstance(row["note"], str) and len(row["note"]) > 40
    assert row["noted_diff"] == pytest.approx(diff, abs=1e-9), f"note explains {row['noted_diff']}, table has {diff}"
    assert row["diff"] == pytest.approx(diff, abs=1e-9)


def test_every_registered_model_is_in_the_table(table: pd.DataFrame) -> None:
    assert set(list_models()) <= set(table["model"])
    assert all(is_model(m) for m in table["model"])


def test_table_columns_and_sanity(table: pd.DataFrame) -> None:
    assert list(table.columns) == params.COLUMNS
    assert (table["params"] > 0).all() and (table["trainable"] <= table["params"]).all()
    assert (table["params_no_norm"] <= table["params"]).all()
    assert (table["gflops"] > 0).all()
    frozen = table[table["mode"] == params.FROZEN]
    assert len(frozen) and (frozen["trainable"] < frozen["params"]).all()
    # rows without a printed count say so
    assert (table.loc[table["metric"].isna(), "note"].str.len() > 0).all()


def test_survey_claims_cover_tables_5_to_8() -> None:
    survey = load_claims("survey")
    assert set(survey["table"]) == {"Table 5", "Table 6", "Table 7", "Table 8"}
    for (tab, model), grp in survey.groupby(["table", "model"]):
        assert is_model(model), model
        metrics = sorted(zip(grp["metric"], grp["dataset"]))
        assert metrics == [("error_rate", "cifar10"), ("error_rate", "cifar100"), ("params", "")], (tab, model)
        assert (grp["source"].str.len() > 0).all()


def test_cbam_claims_are_the_five_row_table() -> None:
    claims = load_claims("cbam")
    assert set(claims["table"]) == {"results table", "training log"}  # the log: tests/test_cbam.py
    cbam = claims[claims["table"] == "results table"]
    assert len(cbam) == 15
    assert set(cbam["metric"]) == {"train_acc", "test_acc", "params", "trainable_params"}
    assert all(is_model(m) for m in cbam["model"])
    assert cbam["note"].str.contains("without a table number").all()


def test_main_prints_and_writes_csv(table: pd.DataFrame, tmp_path, monkeypatch, capsys) -> None:
    from reslab.app import params as command

    monkeypatch.setattr(command, "param_table", lambda specs=None: table)
    out = tmp_path / "sub" / "params.csv"
    assert command.main(["--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == params.COLUMNS and len(written) == len(table)
    printed = capsys.readouterr().out
    assert all(m in printed for m in list_models())
    assert "Notes:" in printed
