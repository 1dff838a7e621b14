"""reslab.paths: every folder resolved once, from arguments, then RESLAB_* variables, then defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reslab.paths import RECORD, RUNS, SCRATCH, VARIABLES, Paths


def test_defaults_follow_the_checkout_and_write_to_scratch(tmp_path, monkeypatch):
    (tmp_path / "reslab").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # a kernel runs in notebooks/: still the checkout's results
    paths = Paths.from_env({})
    results = tmp_path.resolve() / "results"
    assert paths.results == results and paths.source == results
    assert paths.output == results / SCRATCH and paths.scratch
    assert (paths.runs, paths.record, paths.data) == (results / RUNS, results / RECORD, None)
    assert paths.cache == Path.home() / ".cache" / "reslab"


def test_an_argument_beats_its_variable_which_beats_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"RESLAB_RESULTS": "res", "RESLAB_RUNS": "~/store", "RESLAB_DATA": "", "RESLAB_CACHE": "c"}
    paths = Paths.from_env(env, data=tmp_path / "d", runs=None)
    assert paths.results == tmp_path / "res" and paths.output == paths.results and not paths.scratch
    assert paths.runs == Path.home() / "store"  # None means not given: the variable counts
    assert paths.record == tmp_path / "res" / RECORD  # follows the results root it is not given apart from
    assert paths.data == tmp_path / "d" and paths.cache == tmp_path / "c"
    assert all(p.is_absolute() for p in (paths.results, paths.runs, paths.cache))
    with pytest.raises(TypeError, match="unknown folder.*'run'.*the folders are"):
        Paths.from_env(env, run="x")


def test_a_child_process_resolves_the_same_folders(tmp_path):
    """What a kernel or a job gets (Paths.env) resolves there, from another working directory, to the
    same folders; a staging root (reslab reproduce) keeps the run store, the record and the source."""
    home = Paths.from_env({}, results=tmp_path / "results", data=tmp_path / "data", cache=tmp_path / "cache")
    staged = home.writing_to(tmp_path / "stage")
    assert staged.output == staged.results == tmp_path / "stage" and not staged.scratch
    assert (staged.runs, staged.record, staged.source) == (home.runs, home.record, home.results)
    code = ("import json; from reslab.paths import Paths; p = Paths.from_env(); "
            "print(json.dumps({k: str(v) for k, v in vars(p).items()}))")
    for paths in (home, staged, Paths.from_env({}, data=tmp_path)):
        env = {"PATH": "", "HOME": str(Path.home()), **paths.env()}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == __import__("json").dumps({k: str(v) for k, v in vars(paths).items()}), paths
    assert set(home.env()) <= set(VARIABLES.values())


def test_replace_moves_one_folder(tmp_path):
    paths = Paths.from_env({}, results=tmp_path, data=tmp_path / "d")
    assert paths.replace(data=None).data is None and paths.replace(data="x").data == Path("x").resolve()
    assert paths.replace(runs=tmp_path / "r").runs == tmp_path / "r"
    assert paths.replace(results=tmp_path / "o").runs == paths.runs  # moving results moves nothing else
