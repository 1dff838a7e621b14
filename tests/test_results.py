"""Result rows carry provenance; files are written atomically."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reslab import results as R


def test_row_has_every_provenance_field_in_order():
    fields = {c: 1 for c in R.PROVENANCE_COLUMNS if c not in ("torch_version", "reslab_version", "git_commit")}
    row = R.make_row(**fields, extra="x")
    assert list(row)[: len(R.PROVENANCE_COLUMNS)] == R.PROVENANCE_COLUMNS
    assert row["extra"] == "x" and row["git_commit"] and row["torch_version"]


def test_row_missing_provenance_is_refused():
    with pytest.raises(ValueError, match=r"lacks provenance field\(s\) \['data_source'"):
        R.make_row(table="t", model="m", dataset="d")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "table.csv"
    R.write_csv(pd.DataFrame({"a": [1]}), path)
    with pytest.raises(RuntimeError):
        with R.atomic_path(path) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("interrupted")
    assert pd.read_csv(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temp file left behind


def test_manifest_records_code_data_and_environment(tmp_path):
    R.write_manifest(tmp_path, "datasets", "smoke", [{"dataset": "mnist", "fingerprint": "abc"}], 1.23456,
                     files=["a.csv"])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["table"] == "datasets" and m["profile"] == "smoke" and m["wall_s"] == 1.235
    assert m["data"][0]["fingerprint"] == "abc"
    for key in ("git_commit", "torch_version", "reslab_version", "python_version", "finished"):
        assert m[key], key


def test_results_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    assert R.output_dir("t", "smoke") == tmp_path / "smoke" / "t"
    assert (tmp_path / "smoke" / "t").is_dir()
