"""What is committed in notebooks/ and results/ is safe to check and to share: no machine paths,
no warnings in the cells nbval checks, and progress bars that render as widgets in a notebook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for folder in ("notebooks", "results") for p in (REPO / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))
# An absolute path of some machine: a home, temp or system folder, a Windows drive, a user folder.
MACHINE_PATH = re.compile(r"(?<![\w<.~-])(?:/(?:home|root|tmp|work|Users|usr|opt|var|private|mnt|scratch)/"
                          r"|[A-Za-z]:\\\\)")


def _outputs(nb: dict):
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            texts = out.get("text", []) if "text" in out else [
                v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            flat = "".join(t if isinstance(t, str) else "".join(t) for t in texts)
            yield i, out, flat


def test_there_are_committed_notebooks():
    assert len([p for p in NOTEBOOKS if p.parent.name == "notebooks"]) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_committed_output_holds_a_machine_path(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = [(i, m.group(0), text[max(0, m.start() - 40): m.end() + 40])
             for i, _, text in _outputs(nb) for m in MACHINE_PATH.finditer(text)]
    assert not found, f"{path.relative_to(REPO)}: machine paths in outputs (cell, path, context): {found[:3]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_committed_output_holds_a_progress_bar_warning(path):
    """A TqdmWarning in a checked cell makes nbval fail on an unchanged notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    bad = [i for i, out, text in _outputs(nb) if out.get("name") == "stderr" and "TqdmWarning" in text]
    assert not bad, f"{path.relative_to(REPO)}: TqdmWarning in the stderr of cells {bad}"


def test_the_machine_path_pattern_can_fail():
    assert MACHINE_PATH.search("see /home/alice/reslab/results") and MACHINE_PATH.search("C:\\\\Users\\\\x")
    assert not MACHINE_PATH.search("<checkout>/.venv/lib/site-packages and results/smoke/x.csv")


def test_progress_bars_are_widgets_in_a_notebook():
    """tqdm.auto needs ipywidgets in a kernel; without it tqdm warns on stderr at import."""
    import tqdm.notebook

    assert tqdm.notebook.IProgress is not None, "install ipywidgets (a dependency in pyproject.toml)"
    import importlib

    import tqdm.auto

    assert importlib.import_module("reslab.train").tqdm is tqdm.auto.tqdm
