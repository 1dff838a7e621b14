"""Result rows carry provenance; files are written atomically."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from reslab import results as R
from reslab.app.check import check_results
from reslab.paths import Paths


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
    (tmp_path / "a.csv").write_text("a\n1\n")
    R.write_manifest(tmp_path, "datasets", "smoke", [{"dataset": "mnist", "fingerprint": "abc"}], 1.23456,
                     files=["a.csv"])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["table"] == "datasets" and m["profile"] == "smoke" and m["wall_s"] == 1.235
    assert m["data"][0]["fingerprint"] == "abc"
    for key in ("git_commit", "torch_version", "reslab_version", "python_version", "finished"):
        assert m[key], key
    assert m["file_sha256"] == {"a.csv": hashlib.sha256(b"a\n1\n").hexdigest()}
    with pytest.raises(ValueError, match=r"\['b.csv'\] that are not there"):
        R.write_manifest(tmp_path, "datasets", "smoke", [], 1.0, files=["b.csv"])


def test_results_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    assert R.output_dir("t", "smoke") == tmp_path / "smoke" / "t"
    assert (tmp_path / "smoke" / "t").is_dir()


def _fake_checkout(root, monkeypatch):
    """A folder that looks like a reslab checkout, as the working directory, with no RESLAB_RESULTS."""
    (root / "reslab").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.chdir(root)
    monkeypatch.delenv("RESLAB_RESULTS", raising=False)
    return root


def test_a_table_run_outside_reproduce_writes_to_scratch_and_says_so(tmp_path, monkeypatch):
    """papermill, nbval or JupyterLab set no RESLAB_RESULTS: the committed results stay untouched."""
    from reslab.tables._common import TableRun

    checkout = _fake_checkout(tmp_path / "checkout", monkeypatch)
    committed = checkout / "results" / "smoke" / "demo"
    committed.mkdir(parents=True)
    (committed / "t.csv").write_text("a\nold\n")
    run = TableRun("demo", "smoke")
    run.out.tables["t"] = pd.DataFrame({"a": ["new"]})
    out = run.finish(parameters={})
    scratch = checkout / "results" / "_scratch" / "smoke" / "demo"
    assert out.out_dir.resolve() == scratch.resolve() and pd.read_csv(scratch / "t.csv")["a"].tolist() == ["new"]
    assert (committed / "t.csv").read_text() == "a\nold\n" and [p.name for p in committed.iterdir()] == ["t.csv"]
    assert str(scratch.resolve()) in out.notes[0] and "reslab reproduce --only demo --profile smoke" in out.notes[0]
    # An explicit out_dir or RESLAB_RESULTS (reslab reproduce's staging folder) is obeyed, without the note.
    run = TableRun("demo", "smoke", out_dir=tmp_path / "mine")
    run.out.tables["t"] = pd.DataFrame({"a": ["x"]})
    assert not any("scratch" in n for n in run.finish(parameters={}).notes)
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path / "staging"))
    assert R.output_dir("demo", "smoke", create=False) == tmp_path / "staging" / "smoke" / "demo"
    assert Paths.from_env().results == tmp_path / "staging"


def test_check_notices_files_changed_since_the_manifest(tmp_path, no_data_root):
    from reslab.tables._common import TableOutput

    root = tmp_path / "results"
    out = TableOutput(out_dir=root / "smoke" / "demo", tables={"table4": pd.DataFrame({"a": [1, 2]})})
    out.out_dir.mkdir(parents=True)
    out.save("demo", "smoke", [], 1.0)
    assert check_results(root).set_index("folder").loc["smoke/demo", "status"] == "up to date"

    R.write_csv(pd.DataFrame({"a": [1]}), out.out_dir / "table4.csv")  # a direct run replaced the table
    (out.out_dir / "extra.png").write_bytes(b"png")
    row = check_results(root).set_index("folder").loc["smoke/demo"]
    assert row["status"] == "stale"
    assert row["files_changed"] == "table4.csv (changed);extra.png (not in the manifest)"
    assert "files changed since the manifest: table4.csv (changed), extra.png" in row["detail"]
    (out.out_dir / "table4.csv").unlink()
    assert "table4.csv (missing)" in check_results(root).set_index("folder").loc["smoke/demo", "files_changed"]

    # A manifest from before file hashes were recorded cannot vouch for its files.
    path = out.out_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["file_sha256"]
    path.write_text(json.dumps(manifest))
    row = check_results(root).set_index("folder").loc["smoke/demo"]
    assert row["status"] == "stale" and "records no file hashes" in row["detail"]


def test_check_without_the_data_is_not_checked_not_changed(tmp_path, no_data_root):
    from reslab.tables._common import TableOutput

    root = tmp_path / "results"
    split = {"dataset": "cifar10", "split": "train", "data_source": "official", "fingerprint": "71d3be42f93ad20d",
             "subset": None, "seed": 0}
    out = TableOutput(out_dir=root / "smoke" / "demo")
    out.out_dir.mkdir(parents=True)
    out.save("demo", "smoke", [split, split | {"split": "test"}], 1.0)
    row = check_results(root).set_index("folder").loc["smoke/demo"]
    assert row["status"] == "not checked" and row["data_changed"] == ""
    assert row["data_not_found"] == "cifar10/train;cifar10/test"
    assert row["detail"].startswith("data not found, so not checked: cifar10/train, cifar10/test")


def test_code_that_cannot_change_a_number_is_not_in_the_code_fingerprints():
    """A refactor of the command line, the commands, the catalog, the cost model or the executors
    leaves committed results up to date; the training, data, model and table code marks them stale."""
    keys = set(R.code_fingerprints())
    assert not [k for k in keys if k.startswith("reslab/app/")]
    assert not keys & {"reslab/cli.py", "reslab/catalog.py", "reslab/runs/cost.py", "reslab/runs/jobs.py"}
    assert {"reslab/train.py", "reslab/runs/execute.py", "reslab/runs/store.py", "reslab/runs/spec.py",
            "reslab/data/loader.py", "reslab/models/drstn.py", "reslab/tables/drstn.py", "reslab/evidence.py"} <= keys
    assert R.is_result_code("reslab/train.py") and not R.is_result_code("reslab/app/bundle/gather.py")
