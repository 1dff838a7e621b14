"""The two dependency lists agree, and the two README commands exist."""

from __future__ import annotations

import re

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def _pyproject_deps() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    return {_norm(d) for d in deps}


def _environment_pip_deps() -> tuple[str | None, set[str]]:
    python, pip, in_pip = None, set(), False
    for line in (REPO / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip():
            continue
        item = stripped.strip()
        if item.startswith("- python="):
            python = item.split("=", 1)[1]
        if item == "- pip:":
            in_pip = True
            continue
        if in_pip and item.startswith("- "):
            indent = len(stripped) - len(stripped.lstrip())
            if indent >= 6:
                pip.add(_norm(item[2:]))
                continue
            in_pip = False
    return python, pip


def test_environment_yml_matches_pyproject():
    python, pip = _environment_pip_deps()
    assert python == "3.11"
    ours = _pyproject_deps()
    assert pip == ours, f"only in environment.yml: {sorted(pip - ours)}; only in pyproject: {sorted(ours - pip)}"


def test_required_runtime_dependencies_declared():
    names = {re.split(r"[<>=!~\[]", d)[0] for d in _pyproject_deps()}
    for need in ("torch", "torchvision", "timm", "grad-cam", "papermill", "nbval", "jupyterlab",
                 "ipykernel", "pandas", "seaborn", "matplotlib", "tqdm", "pytest"):
        assert need in names, f"{need} missing from pyproject.toml"


def test_torch_not_pinned_to_a_release_that_forces_a_download():
    for dep in _pyproject_deps():
        if dep.startswith(("torch>", "torch=", "torchvision")):
            assert "==" not in dep, dep


def test_makefile_and_ci_wire_the_two_commands():
    makefile = (REPO / "Makefile").read_text()
    for target in ("setup:", "reproduce: setup", "test: setup"):
        assert target in makefile
    assert "--nbval-lax" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


def _fresh_python(code: str) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_import_is_light_and_has_no_cycle() -> None:
    # pyplot picks a backend and costs most of a second: only a figure-making call imports it.
    _fresh_python("import sys, reslab; assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    # Every module imports on its own, first (no module needs the package root half-initialised).
    for module in ("reslab.results", "reslab.tables.summary"):
        _fresh_python(f"import {module}")


def test_code_cites_only_this_repository() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "reslab").rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert not offenders, f"these files cite a DESIGN.md that is not in this repository: {offenders}"


def test_tests_and_make_test_clean_up_their_temporary_folders():
    """pytest keeps temporary folders only of failed tests; `make test` removes its results root."""
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["tmp_path_retention_policy"] == "failed" and int(options["tmp_path_retention_count"]) <= 1
    recipe = (REPO / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert 'rm -rf "$$tmp"' in recipe and "exit $$status" in recipe


def test_jupyterlab_of_the_venv_does_not_autosave() -> None:
    """Run All in JupyterLab must not rewrite a committed notebook behind the user's back."""
    import json
    import sys

    if not (Path(sys.prefix) / ".reslab-setup").is_file():
        pytest.skip("not the venv that `make setup` builds")
    overrides = json.loads((Path(sys.prefix) / "share/jupyter/lab/settings/overrides.json").read_text())
    assert overrides["@jupyterlab/docmanager-extension:plugin"]["autosave"] is False
    assert "overrides.json" in (REPO / "Makefile").read_text()


def test_an_older_torch_is_refused_with_what_to_install():
    from reslab._env import MIN_TORCH, require_torch

    require_torch("2.4.0+cu121", "0.19.0")  # the oldest supported pair passes
    require_torch("2.11.0", "0.26.0")
    with pytest.raises(ImportError, match=r"needs torch>=2\.4 and torchvision>=0\.19; this Python has torch 2\.3\.1"):
        require_torch("2.3.1", "0.18.1")
    with pytest.raises(ImportError, match="torchvision 0.18.0"):
        require_torch("2.5.0", "0.18.0")
    deps = dict(d.split(">=") for d in _pyproject_deps() if ">=" in d)
    assert deps["torch"] == ".".join(map(str, MIN_TORCH))
