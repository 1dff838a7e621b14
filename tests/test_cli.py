"""`reslab reproduce`: runs notebooks, goes on past failures, never overwrites good results."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import nbformat as nbf
import pytest

from reslab import catalog, cli
from reslab.tables import selu
from reslab.app import DESCRIPTIONS, reproduce


def _notebook(path, body: str):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbf.v4.new_code_cell('profile = "smoke"  # smoke | paper | strong\nout_dir = None  # where to write')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbf.v4.new_code_cell(body)]
    nbf.write(nb, path)


WRITE = """
import os, pathlib
from reslab.results import output_dir
d = output_dir("{name}", profile, out_dir)
(d / "value.txt").write_text("{value}")
"""


@pytest.fixture
def books(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(catalog, "notebooks_dir", lambda: folder)
    return folder


def test_runs_in_order_goes_on_past_a_failure_and_keeps_old_results(books, tmp_path, capsys):
    results = tmp_path / "results"
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="new"))
    _notebook(books / "alpha.ipynb", WRITE.format(name="alpha", value="new") + "\nraise RuntimeError('boom')")
    old = results / "smoke" / "alpha"
    old.mkdir(parents=True)
    (old / "value.txt").write_text("old")

    assert catalog.list_notebooks(books) == ["datasets", "alpha"]
    code = cli.main(["reproduce", "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 2 notebook(s) failed" in err and "alpha" in err and "boom" in err
    assert (results / "smoke" / "datasets" / "value.txt").read_text() == "new"
    assert (results / "smoke" / "datasets" / "datasets.ipynb").is_file()
    assert (old / "value.txt").read_text() == "old"  # the failed run did not touch it
    assert (results / "smoke" / "_failed" / "alpha.ipynb").is_file()
    assert not list(results.glob(".staging-*"))


def test_only_and_bad_arguments(books, tmp_path, capsys):
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="x"))
    results = tmp_path / "r"
    assert cli.main(["reproduce", "--only", "datasets", "--results", str(results)]) == 0
    assert (results / "smoke" / "datasets" / "value.txt").read_text() == "x"
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--only", "nope"])
    assert "unknown notebook(s) ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--profile", "papr"])
    assert "unknown profile 'papr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--data-root", str(tmp_path / "missing")])
    assert "is not a folder" in capsys.readouterr().err


def test_options_reach_only_notebooks_that_declare_them(books, tmp_path):
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="x") + "\nassert 'device' not in dir()")
    assert cli.main(["reproduce", "--device", "cpu", "--results", str(tmp_path / "r")]) == 0


def test_notebook_without_a_profile_parameter_is_an_error(books, tmp_path, capsys):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbf.v4.new_code_cell("x = 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbf.write(nb, books / "datasets.ipynb")
    assert cli.main(["reproduce", "--results", str(tmp_path / "r")]) == 1
    assert "declares no parameter(s) ['profile']" in capsys.readouterr().err


def test_unknown_command():
    assert cli.main(["frobnicate"]) == 2


def test_relative_environment_paths_are_made_absolute_for_the_kernel(books, tmp_path, monkeypatch):
    """The kernel runs in notebooks/, so RESLAB_DATA=../data must mean relative to the caller."""
    (tmp_path / "data").mkdir()
    body = WRITE.format(name="datasets", value="x") + (
        "\nfor k in ('RESLAB_DATA', 'RESLAB_RUNS', 'RESLAB_CACHE'):"
        "\n    assert os.path.isabs(os.environ[k]), (k, os.environ[k])"
        f"\nassert pathlib.Path(os.environ['RESLAB_DATA']) == pathlib.Path({str(tmp_path / 'data')!r})"
    )
    _notebook(books / "datasets.ipynb", body)
    monkeypatch.chdir(tmp_path)
    for key, value in {"RESLAB_DATA": "data", "RESLAB_RUNS": "runs", "RESLAB_CACHE": "cache"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["reproduce", "--results", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "smoke" / "datasets" / "value.txt").read_text() == "x"


SUMMARY = """
import os, pathlib
out = pathlib.Path(os.environ["RESLAB_RESULTS"]) / "summary"
out.mkdir(parents=True, exist_ok=True)
seen = sorted(p.parent.name for p in pathlib.Path(os.environ["RESLAB_SOURCE_RESULTS"]).glob("*/*/value.txt"))
(out / "seen.txt").write_text(",".join(seen))
"""


def test_summary_runs_last_even_with_only_and_reads_the_real_results(books, tmp_path):
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="x"))
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbf.v4.new_code_cell("out_dir = None  # no profile: the summary reads every profile")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbf.v4.new_code_cell(SUMMARY)]
    nbf.write(nb, books / "summary.ipynb")
    results = tmp_path / "r"
    assert cli.main(["reproduce", "--only", "datasets", "--results", str(results)]) == 0
    assert (results / "summary" / "seen.txt").read_text() == "datasets"
    assert (results / "summary" / "summary.ipynb").is_file() and not (results / "smoke" / "summary").exists()


def test_check_command(tmp_path, capsys):
    (tmp_path / "smoke" / "x").mkdir(parents=True)
    assert cli.main(["reproduce", "--check", "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no manifest" in out and "reslab reproduce --only x" in out


def test_machine_paths_leave_stream_outputs(tmp_path) -> None:
    import sys

    nb = nbf.v4.new_notebook()
    cell = nbf.v4.new_code_cell("import tqdm.auto")
    cell.outputs = [nbf.v4.new_output("stream", name="stderr", text=f"{sys.prefix}/lib/tqdm/auto.py:21: TqdmWarning\n")]
    nb.cells = [cell]
    path = tmp_path / "x.ipynb"
    nbf.write(nb, path)
    reproduce._strip_machine_paths(path, "x")
    text = nbf.read(path, as_version=4).cells[0].outputs[0]["text"]
    assert sys.prefix not in text and text.startswith(("<python>/lib", "<checkout>/"))


# ------------------------------------------------------------------ the command line itself

def test_help_lists_every_command_with_its_description(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, description in DESCRIPTIONS.items():
        assert name in cli.COMMANDS
        # The description is beside the name (argparse may wrap it onto further lines).
        assert " ".join(f"{name} {description}".split()) in " ".join(out.split()), out


def test_unknown_command_is_named(capsys):
    assert cli.main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert f"unknown command 'bogus'; choose from {', '.join(cli.COMMANDS)}" in err
    assert "reproduce, notebooks, params, readme" in err


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_help_texts_are_complete_sentences(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    parser = cli.command(name, 2)()
    texts = [parser.description] + [a.help for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    for text in texts:
        assert text and text[0].isupper() and text.rstrip().endswith("."), f"reslab {name}: {text!r}"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_runs_are_cleaned_up(books, tmp_path, capsys):
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="new"))
    results = tmp_path / "results"
    dead, alive = _dead_pid(), os.getppid()
    (results / f".staging-alpha-{dead}" / "smoke" / "alpha").mkdir(parents=True)
    (results / f".staging-beta-{alive}").mkdir()  # a run still going: left alone
    (results / "smoke" / "gamma").mkdir(parents=True)
    (results / "smoke" / f".old-gamma-{dead}").mkdir()  # gamma was replaced: the old copy goes
    (results / "smoke" / f".old-delta-{dead}").mkdir()  # killed between the renames: put back
    (results / "smoke" / f".old-delta-{dead}" / "value.txt").write_text("old")
    assert cli.main(["reproduce", "--results", str(results)]) == 0
    assert sorted(p.name for p in results.glob(".staging-*")) == [f".staging-beta-{alive}"]
    assert sorted(p.name for p in (results / "smoke").iterdir()) == ["datasets", "delta", "gamma"]
    assert (results / "smoke" / "delta" / "value.txt").read_text() == "old"


def test_reproduce_prints_the_run_store_size(books, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RESLAB_RUNS", raising=False)
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="x"))
    run = tmp_path / "r" / "_runs" / "smoke" / "t" / "a-s0-123"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}")
    (run / "last.pt").write_bytes(b"\0" * 2500)
    assert cli.main(["reproduce", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"run store {tmp_path / 'r' / '_runs'}: 2.5 KB in 1 finished run(s), of which checkpoints 2.5 KB" in out


TABLE = """
import pandas as pd
from reslab.tables._common import TableRun
run = TableRun("{name}", profile, out_dir)
run.out.tables["table4"] = pd.DataFrame({{"a": [1, 2]}})
print("\\n".join(run.finish(parameters={{}}).notes))
"""


def test_direct_papermill_run_leaves_committed_results_alone_and_check_sees_changed_files(
        books, tmp_path, monkeypatch, capsys):
    """Issue 14's case: `papermill notebooks/x.ipynb out.ipynb -y ...` (and nbval, JupyterLab: no
    RESLAB_RESULTS) replaced the committed table next to the old executed notebook and manifest,
    and `reslab reproduce --check` still said "up to date"."""
    import papermill

    (tmp_path / "reslab").mkdir()
    (tmp_path / "pyproject.toml").write_text("")  # tmp_path is the checkout, books its notebooks/
    _notebook(books / "datasets.ipynb", TABLE.format(name="datasets"))
    results = tmp_path / "results"
    assert cli.main(["reproduce", "--results", str(results)]) == 0
    folder = results / "smoke" / "datasets"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["file_sha256"]) == {"table4.csv", "datasets.ipynb"}  # the notebook after path stripping
    committed = {p.name: p.read_bytes() for p in folder.iterdir()}

    monkeypatch.delenv("RESLAB_RESULTS", raising=False)
    monkeypatch.delenv("RESLAB_SOURCE_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    papermill.execute_notebook("notebooks/datasets.ipynb", str(tmp_path / "out.ipynb"), kernel_name=reproduce._kernel_name(),
                               cwd="notebooks", progress_bar=False, parameters={"profile": "smoke"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == committed
    scratch = (results / "_scratch" / "smoke" / "datasets").resolve()
    assert (scratch / "table4.csv").read_text() == "a\n1\n2\n"
    printed = "".join(o.get("text", "") for c in nbf.read(tmp_path / "out.ipynb", as_version=4).cells
                      for o in c.get("outputs", []))
    assert f"Written to {scratch}" in printed and "reslab reproduce --only datasets --profile smoke" in printed
    capsys.readouterr()
    assert cli.main(["reproduce", "--check", "--results", str(results)]) == 0  # the scratch folder is not checked
    assert "1 of 1 results folders up to date" in capsys.readouterr().out

    (folder / "table4.csv").write_text("a\n1\n")  # replaced by hand, or by a run given out_dir=results/...
    assert cli.main(["reproduce", "--check", "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "stale       smoke/datasets" in out and "files changed since the manifest: table4.csv (changed)" in out


def test_check_without_the_data_prints_one_line_per_folder(tmp_path, no_data_root, capsys):
    from reslab.tables._common import TableOutput

    split = {"dataset": "mnist", "split": "train", "data_source": "official", "fingerprint": "71d3be42f93ad20d",
             "subset": None, "seed": 0}
    for name in ("datasets", "drstn_table5_transfer"):
        out = TableOutput(out_dir=tmp_path / "smoke" / name)
        out.out_dir.mkdir(parents=True)
        out.save(name, "smoke", [split, split | {"split": "test"}], 1.0)
    assert cli.main(["reproduce", "--check", "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("  ")[0] for line in lines[:2]] == ["not checked smoke/datasets",
                                                          "not checked smoke/drstn_table5_transfer"]
    assert all("data not found, so not checked: mnist/train, mnist/test" in line for line in lines[:2])
    assert lines[2] == "" and "0 of 2 results folders up to date; 2 not checked" in lines[3] and len(lines) == 4


def test_reproduce_shows_what_the_notebook_prints_and_keeps_a_log(books, tmp_path, capfd):
    """A run of hours must say where it stands: the kernel's prints reach the terminal and a log,
    and nothing else of the kernel's (its warning about unencrypted TCP) stands in front of them."""
    _notebook(books / "datasets.ipynb", WRITE.format(name="datasets", value="x")
              + "\nprint('[reslab] epoch 3/50: 2 h 05 min left')")
    assert cli.main(["reproduce", "--results", str(tmp_path / "r")]) == 0
    out, err = capfd.readouterr()
    assert "epoch 3/50: 2 h 05 min left" in out
    assert "without encryption" not in out + err
    log = tmp_path / "r" / reproduce.LOGS / "smoke-datasets.log"
    assert "epoch 3/50: 2 h 05 min left" in log.read_text()


def test_reslab_train_says_where_a_quiet_recipe_stands(shared_data, tmp_path, monkeypatch, capsys):
    """The SELU recipes keep notebooks quiet (``progress=False``); ``reslab train`` of one still prints
    its line per epoch, and the run keeps its key (progress is how, not what)."""
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("RESLAB_DATA", str(shared_data))
    assert selu.RECIPES["smoke"].cfg.progress is False
    args = ["train", "selu_ablation_fashion_mnist", "--label", selu.VARIANTS[0].label, "--device", "cpu"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "reused: False" in out and f"[reslab] selu_ablation_fashion_mnist {selu.VARIANTS[0].label}" in out
    assert "epoch 1/1: train loss" in out
    assert cli.main(args) == 0 and "reused: True" in capsys.readouterr().out


def test_reslab_train_speed_settings_change_how_not_what(shared_data, tmp_path, monkeypatch, capsys):
    """``--compile`` and ``--channels-last`` reach the run on the CPU and its row says so; the run
    keeps its key, so the same run without them is reused, not trained again."""
    import torch

    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("RESLAB_DATA", str(shared_data))
    real_compile = torch.compile  # dynamo with its eager backend: no code generation in a unit test
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real_compile(model, backend="eager"))
    args = ["train", "drstn_table4_cifar10", "--label", "drstn_v5", "--device", "cpu", "--param", "max_steps=2"]
    assert cli.main([*args, "--compile", "default", "--channels-last", "on"]) == 0
    assert "reused: False" in capsys.readouterr().out
    (stored,) = [json.loads(p.read_text())["row"] for p in (tmp_path / "_runs").rglob("result.json")]
    assert stored["compile"].startswith("default (1 graph(s), 0 graph break(s)") and stored["channels_last"] is True
    assert cli.main(args) == 0
    assert "reused: True" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([*args, "--compile", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
