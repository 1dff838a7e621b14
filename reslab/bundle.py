"""Offline bundles: rerun notebooks on a GPU machine without internet, and bring the results back.

Three commands and one script:

- ``reslab bundle --only <notebooks> OUT_DIR`` gathers into one folder what the notebooks need on
  a machine that has Python and PyTorch but no internet: ``wheels/`` (every runtime dependency the
  target lacks, for its Python version and manylinux x86_64), ``data/`` (only the files the data
  loader reads for the notebooks' data sets), ``src/`` (the package and the notebooks as committed
  at HEAD), ``runs/`` (finished runs of other notebooks that a chosen notebook reads),
  ``bundle.json`` and ``run.sh``.
- ``bash run.sh [OUT]`` on the target checks the machine, installs the wheels into a private
  folder, registers the ``reslab`` Jupyter kernel there, runs ``reslab reproduce`` and, whatever
  happened, ``reslab export``.
- ``reslab export`` packs the finished results folders, the result rows and histories of their
  runs, and the checkpoints a later notebook reads (while they fit under ``--max-mb``) into one
  archive; ``reslab import ARCHIVE`` checks the archive before it touches anything, then puts the
  results folders in place and merges the runs into the run store.

What each notebook needs (data sets, requirements beyond the notebook runtime, runs of other
notebooks) is one table, :data:`NOTEBOOKS`.

The wheels are the dependency closure of reslab's own requirements that the chosen notebooks
need, computed offline from the metadata of the distributions installed here (``Requires-Dist``,
markers evaluated for the target's Python on Linux x86_64) and pinned to the versions installed
here, minus what the target already has: :data:`STOCK_PREINSTALLED` and its closure (what this
project's GPU image holds), or exactly the packages of a ``--have`` file (the target's
``pip list --format=freeze``). One ``pip download --no-deps --only-binary=:all:`` call fetches them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ._env import MIN_TORCH
from ._version import __version__
from .cli import ACROSS_PROFILES, DESCRIPTIONS, _notebook_params, list_notebooks, notebooks_dir
from .profiles import PROFILES, Profile, resolve_profile
from .results import MANIFEST, code_fingerprints, file_sha256, git_commit, now, results_root
from .tables import drstn

# --------------------------------------------------------------------------------------------
# What each notebook needs


@dataclass(frozen=True)
class Reads:
    """Finished runs of another notebook that a notebook starts from.

    Attributes:
        table: The notebook (run-store table) whose runs are read.
        models: The registered models of those runs.
        seeds: The seeds read, given the profile (``()`` when the notebook has no recipe for it).
        why: Why the notebook reads them, for the bundle's report.
        if_absent: What the notebook does on the target when a run is not bundled.
        train_data: Data sets the notebook needs on the target only to train these runs when they
            are not bundled (with them bundled, it finds them from their recorded fingerprints).
    """

    table: str
    models: tuple[str, ...]
    seeds: Callable[[Profile], tuple[int, ...]]
    why: str
    if_absent: str
    train_data: tuple[str, ...] = ()


@dataclass(frozen=True)
class Needs:
    """What one notebook needs on the target.

    Attributes:
        datasets: The data sets it trains or evaluates on (its default ``datasets`` parameter
            where it has one).
        narrow_param: The notebook parameter that runs it on fewer data sets (``--datasets``
            sets it); ``None`` when it always needs every one of ``datasets``.
        requires: reslab requirements it needs beyond the notebook runtime (e.g. ``grad-cam``).
        reads: Runs of other notebooks it reads.
        hub_models: Registered torchvision models whose ImageNet weights it reads from
            ``$TORCH_HOME/hub/checkpoints`` (too large to bundle).
    """

    datasets: tuple[str, ...]
    narrow_param: str | None = None
    requires: tuple[str, ...] = ()
    reads: tuple[Reads, ...] = ()
    hub_models: tuple[str, ...] = ()


def _table5_seeds(profile: Profile) -> tuple[int, ...]:
    recipe = drstn.TABLE5_RECIPES.get(profile.name)
    return tuple(recipe.seeds) if recipe else ()


def _seed0(profile: Profile) -> tuple[int, ...]:
    return (0,) if profile.name in drstn.TABLE4_RECIPES else ()


#: Table 1 shows Grad-CAM of these Table 4 networks' CIFAR-10 weights when it has no ImageNet weights.
_TABLE1_FROM_TABLE4 = tuple(m for _, m in drstn.TABLE4_ROWS if m in {m for _, m, _ in drstn.CAM_MODELS})

#: Every notebook but the summary: what it needs on the target (``reslab bundle`` reads nothing else).
NOTEBOOKS: dict[str, Needs] = {
    "datasets": Needs(datasets=("mnist", "fashion_mnist", "cifar10"), narrow_param="datasets"),
    "drstn_table4_cifar10": Needs(datasets=("cifar10",)),
    "drstn_table5_transfer": Needs(
        datasets=drstn.TRANSFER_DATASETS, narrow_param="datasets",
        reads=(Reads(drstn.TABLE4, (drstn.TRANSFER_MODEL,), _table5_seeds,
                     "Table 5 starts from DRSTN V5's Table 4 checkpoint of the same profile and seed",
                     "the notebook trains it there first, with Table 4's recipe, so CIFAR-10 is bundled",
                     train_data=("cifar10",)),)),
    "drstn_table1_gradcam": Needs(
        datasets=("cifar10",), requires=("grad-cam",),
        reads=(Reads(drstn.TABLE4, _TABLE1_FROM_TABLE4, _seed0,
                     "Table 1 shows Grad-CAM of these Table 4 networks' CIFAR-10 weights (seed 0) where it "
                     "has no ImageNet weights",
                     "the notebook uses the network's ImageNet weights there, else stops (random weights in smoke)"),),
        hub_models=tuple(m for _, m, _ in drstn.CAM_MODELS if m != drstn.TRANSFER_MODEL)),
    "selu_ablation_fashion_mnist": Needs(datasets=("fashion_mnist",)),
    "cbam_resnet50_cifar10": Needs(datasets=("cifar10",), hub_models=("resnet50",)),
    "survey_error_rates": Needs(datasets=("cifar10", "cifar100"), narrow_param="datasets",
                                hub_models=("efficientnet_b7",)),
}


def needs(name: str) -> Needs:
    """The :class:`Needs` of notebook ``name``.

    Raises:
        ValueError: for a notebook that cannot be bundled (the summary, or an unknown name).
    """
    if name in ACROSS_PROFILES:
        raise ValueError(f"{name} reads every table's results and is not bundled; run it at home after "
                         f"`reslab import`: reslab reproduce --only {name}.")
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; the bundle knows {', '.join(NOTEBOOKS)}. A new notebook "
                         "needs an entry in reslab.bundle.NOTEBOOKS.")
    return NOTEBOOKS[name]


def read_later() -> dict[tuple[str, str], list[str]]:
    """``{(table, model): [notebooks that read its runs]}``: the checkpoints worth exporting."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, need in NOTEBOOKS.items():
        for read in need.reads:
            for model in read.models:
                out.setdefault((read.table, model), []).append(name)
    return out


# --------------------------------------------------------------------------------------------
# The dependency closure

#: What this project's GPU image holds (of what reslab needs), each with its own dependency closure:
#: not bundled unless ``--have`` names the target's packages instead. OpenCV, SciPy and scikit-learn
#: (Table 1's Grad-CAM imports them; 100 MiB of wheels) are there too; ``run.sh`` checks every one.
STOCK_PREINSTALLED = ("torch", "torchvision", "timm", "pandas", "seaborn", "matplotlib", "tqdm",
                      "opencv-python-headless", "scipy", "scikit-learn")
#: reslab requirements never bundled: not needed on a compute node.
NOT_ON_TARGET = ("jupyterlab",)
#: Declared dependencies that a headless run never imports, left out of the wheels (``--full``
#: bundles them): each costs megabytes, and the round-trip test runs a notebook without them.
NOT_NEEDED_HEADLESS = {
    "debugpy": "ipykernel's debugger; ipykernel imports it inside a try and runs without it",
    "jedi": "IPython's tab completion; IPython imports it only to complete",
    "widgetsnbextension": "the browser side of ipywidgets; a headless run renders no widget",
    "jupyterlab-widgets": "the JupyterLab side of ipywidgets; a headless run renders no widget",
    "aiohttp": "papermill declares it for Python 3.12 only and imports it nowhere",
}
#: The target must have these itself (too large to bundle); ``run.sh`` checks them first.
TARGET_TORCH_MIN = ".".join(map(str, MIN_TORCH))
TARGET_MUST_HAVE = ("torch", "torchvision")
#: Distributions that all provide the ``cv2`` module: any of them satisfies a requirement on another.
CV2_PROVIDERS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                 "opencv-contrib-python")
#: The ``cv2`` provider a bundle carries (no GUI libraries needed on a compute node).
CV2_BUNDLED = "opencv-python-headless"
#: Platform tags passed to ``pip download``, best first (pure-Python wheels always qualify).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64")
DEFAULT_PYTHON = "3.12"


def target_environment(python: str) -> dict[str, str]:
    """The marker environment of CPython ``python`` (``"3.12"``) on Linux x86_64.

    Raises:
        ValueError: when ``python`` is not a ``3.N`` version.
    """
    if not re.fullmatch(r"3\.\d{1,2}", str(python)):
        raise ValueError(f"--python must name a CPython 3 version such as 3.12, got {python!r}.")
    return {"implementation_name": "cpython", "implementation_version": f"{python}.0", "os_name": "posix",
            "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": "Linux", "platform_version": "", "python_full_version": f"{python}.0",
            "python_version": str(python), "sys_platform": "linux", "extra": ""}


def installed_distributions() -> dict[str, metadata.Distribution]:
    """The distributions importable here, by canonical name (the first on ``sys.path`` wins, as
    for imports)."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and canonicalize_name(name) not in found:
            found[canonicalize_name(name)] = dist
    return found


def _applies(req: Requirement, env: dict[str, str], extras: Iterable[str]) -> bool:
    """Whether ``req`` applies on the target when its parent was asked for ``extras``."""
    return req.marker is None or any(req.marker.evaluate(env | {"extra": e}) for e in extras)


@dataclass
class Have:
    """What the target already has: canonical name -> version (``None``: not known).

    Attributes:
        versions: The packages.
        source: ``stock`` (:data:`STOCK_PREINSTALLED` and its closure) or the ``--have`` file's name.
    """

    versions: dict[str, str | None]
    source: str

    def provider(self, name: str) -> str | None:
        """The package of the target that satisfies ``name`` (itself, or another ``cv2`` provider)."""
        name = canonicalize_name(name)
        if name in self.versions:
            return name
        if name in CV2_PROVIDERS:
            return next((p for p in CV2_PROVIDERS if p in self.versions), None)
        return None


@dataclass
class Closure:
    """The wheels a bundle carries and what it relies on the target for.

    Attributes:
        pins: Canonical name -> version to bundle (the version installed here).
        names: Canonical name -> the project name as its metadata spells it.
        needed_by: Canonical name -> who asked for it first (``reslab`` for reslab's own requirements).
        relied_on: Packages of the target the bundle needs -> who needs them.
        left_out: Declared dependencies left out (:data:`NOT_NEEDED_HEADLESS`) -> who declares them.
        notes: Things worth saying (a ``cv2`` alias used, a target version too old...).
    """

    pins: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    needed_by: dict[str, str] = field(default_factory=dict)
    relied_on: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def requirements(self) -> list[str]:
        """``name==version`` for ``pip download``, sorted."""
        return [f"{self.names[n]}=={v}" for n, v in sorted(self.pins.items())]


def resolve(roots: Iterable[Requirement], have: Have, python: str,
            dists: dict[str, metadata.Distribution] | None = None, strict: bool = True,
            skip: Iterable[str] = ()) -> Closure:
    """The dependency closure of ``roots`` on CPython ``python`` / Linux, minus what ``have`` holds.

    Walks ``Requires-Dist`` of the distributions installed here (``dists``; default
    :func:`installed_distributions`), evaluating markers for the target and following extras;
    a package of the target ends the walk there (its own dependencies are the target's). A
    requirement on one ``cv2`` provider is satisfied by any other; when one must be bundled, it
    is :data:`CV2_BUNDLED` at the version of the provider installed here.

    Args:
        roots: Requirements to start from.
        have: What the target has.
        python: The target's ``3.N``.
        dists: The installed distributions to read (tests pass fakes).
        strict: Raise on a package that is not installed here (its dependencies would be
            unknown) or does not support the target's Python; ``False`` keeps such a package by
            name without following it (for the stock set, which only names what the target has).
        skip: Packages not to bundle although declared (:data:`NOT_NEEDED_HEADLESS`); the
            closure lists who declares them in ``left_out``.

    Returns:
        The :class:`Closure`.

    Raises:
        ValueError: with ``strict``: a needed package not installed here, one whose
            ``Requires-Python`` excludes the target, or torch / torchvision missing from the
            target (too large to bundle).
    """
    env = target_environment(python)
    dists = installed_distributions() if dists is None else dists
    skip = {canonicalize_name(n) for n in skip}
    out = Closure()
    extras_seen: dict[str, set[str]] = {}
    queue = deque(("reslab", r) for r in roots)
    missing, too_new = [], []
    while queue:
        parent, req = queue.popleft()
        name = canonicalize_name(req.name)
        provider = have.provider(name)
        if provider is not None:
            version = have.versions.get(provider)
            if version is None or provider != name or not req.specifier or _contains(req.specifier, version):
                out.relied_on.setdefault(provider, [])
                if parent not in out.relied_on[provider]:
                    out.relied_on[provider].append(parent)
                if provider != name:
                    _note(out, f"{parent} asks for {req.name}; the target's {provider} provides the same cv2 module")
                continue
            if name in TARGET_MUST_HAVE and strict:
                raise ValueError(f"the target has {provider}=={version} but {parent} needs {req}: install a newer "
                                 f"{provider} there (reslab needs torch >= {TARGET_TORCH_MIN}); it is too large to "
                                 "bundle.")
            _note(out, f"the target has {provider}=={version} but {parent} needs {req}: the bundle carries the "
                       "version installed here, which comes first on the target's path")
        if name in skip:
            out.left_out.setdefault(name, [])
            if parent not in out.left_out[name]:
                out.left_out[name].append(parent)
            continue
        if name in TARGET_MUST_HAVE and strict:
            raise ValueError(f"the target must have {name} itself (reslab needs torch >= {TARGET_TORCH_MIN} with "
                             f"torchvision; they are too large to bundle), but the --have list ({have.source}) has "
                             f"no {name}. Install it there, or list it if the file is incomplete.")
        wanted = name
        if name in CV2_PROVIDERS:  # bundle the headless one, from the metadata of whichever is here
            local = next((p for p in CV2_PROVIDERS if p in dists), None)
            if name != CV2_BUNDLED:
                _note(out, f"{parent} asks for {req.name}: the bundle carries {CV2_BUNDLED} (same cv2 module, no GUI "
                           "libraries)")
            wanted, name = CV2_BUNDLED, local or name
        dist = dists.get(name)
        if dist is None:
            if strict and wanted not in {m[0] for m in missing}:
                missing.append((wanted, f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
                                        f"{req.specifier}", parent))
            else:
                out.pins.setdefault(wanted, "")
                out.names.setdefault(wanted, req.name)
                out.needed_by.setdefault(wanted, parent)
            continue
        asked = {""} | set(req.extras)
        new = asked - extras_seen.get(wanted, set())
        if not new:
            continue
        if wanted not in extras_seen:
            out.pins[wanted] = dist.version
            out.names[wanted] = dist.metadata["Name"] if wanted == name else CV2_BUNDLED
            out.needed_by[wanted] = parent
            requires_python = dist.metadata.get("Requires-Python")
            if strict and requires_python and not _contains(SpecifierSet(requires_python), python):
                too_new.append(f"{dist.metadata['Name']}=={dist.version} (Requires-Python {requires_python})")
        extras_seen.setdefault(wanted, set()).update(new)
        for line in dist.requires or []:
            dep = Requirement(line)
            if _applies(dep, env, new):
                queue.append((out.names[wanted], dep))
    if missing:
        listed = "; ".join(f"{spec} (needed by {parent})" for _, spec, parent in missing)
        one = len(missing) == 1
        raise ValueError(
            f"cannot compute the dependencies for Python {python}: {listed} {'is' if one else 'are'} not installed "
            f"here, so {'its' if one else 'their'} own requirements are unknown. Install "
            f"{'it' if one else 'them'} here (python -m pip install {' '.join(repr(s) for _, s, _ in missing)}), or list "
            f"{'it' if one else 'them'} in a --have file if the target has {'it' if one else 'them'}.")
    if too_new:
        raise ValueError(f"not installable on Python {python}: {'; '.join(too_new)}. Install versions here that "
                         f"support Python {python}, or bundle for a Python they support (--python).")
    return out


def _contains(spec: SpecifierSet, version: str) -> bool:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True  # a version pip itself would not compare: do not second-guess the target


def _note(out: Closure, text: str) -> None:
    if text not in out.notes:
        out.notes.append(text)


def stock_have(python: str, dists: dict[str, metadata.Distribution] | None = None) -> Have:
    """:data:`STOCK_PREINSTALLED` and its closure on CPython ``python`` (versions unknown)."""
    closure = resolve([Requirement(n) for n in STOCK_PREINSTALLED], Have({}, "none"), python, dists, strict=False)
    return Have({n: None for n in closure.pins}, "stock")


def read_have(path: str | os.PathLike) -> Have:
    """The packages of a ``pip list --format=freeze`` (or ``pip freeze``) file.

    Raises:
        ValueError: for a line that names no package, or an empty file.
    """
    versions: dict[str, str | None] = {}
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable ")):
            egg = re.search(r"[#&]egg=([A-Za-z0-9._-]+)", line)
            if not egg:
                raise ValueError(f"{path}, line {number}: an editable install without #egg=<name> ({raw.strip()!r}); "
                                 "write it as <name>==<version> instead.")
            versions[canonicalize_name(egg.group(1))] = None
            continue
        if line.startswith("-"):
            continue  # pip options (--index-url ...): not packages
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{path}, line {number}: {raw.strip()!r} is not a package line of "
                             f"`pip list --format=freeze` ({exc}).") from None
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        versions[canonicalize_name(req.name)] = pinned[0] if pinned and req.url is None else None
    if not versions:
        raise ValueError(f"{path} names no package; write it with `python3 -m pip list --format=freeze > {Path(path).name}` "
                         "on the target.")
    return Have(versions, Path(path).name)


def reslab_requirements(python: str) -> list[Requirement]:
    """reslab's own requirements that apply on CPython ``python`` / Linux (extras such as ``dev``
    left out), from its installed metadata, else from ``pyproject.toml`` of the checkout."""
    try:
        lines = metadata.requires("reslab") or []
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        lines = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    env = target_environment(python)
    return [r for r in map(Requirement, lines) if _applies(r, env, [""])]


def runtime_requirements(notebooks: Iterable[str], python: str) -> list[Requirement]:
    """reslab's requirements that ``notebooks`` need on the target: the notebook runtime
    (papermill, ipykernel, ipywidgets, nbval...) and the stack every table imports, never
    :data:`NOT_ON_TARGET`, and a notebook's own extras (:attr:`Needs.requires`) only for it.

    Raises:
        ValueError: when a notebook's extra requirement is not one of reslab's requirements.
    """
    reqs = reslab_requirements(python)
    own = {canonicalize_name(r.name) for r in reqs}
    optional = {canonicalize_name(r) for need in NOTEBOOKS.values() for r in need.requires}
    undeclared = sorted(optional - own)
    if undeclared:
        raise ValueError(f"reslab.bundle.NOTEBOOKS names requirement(s) {undeclared} that reslab does not declare; "
                         "add them to pyproject.toml's dependencies.")
    chosen = {canonicalize_name(r) for n in notebooks for r in needs(n).requires}
    skip = {canonicalize_name(n) for n in NOT_ON_TARGET} | (optional - chosen)
    return [r for r in reqs if canonicalize_name(r.name) not in skip]


def import_names(dist: metadata.Distribution) -> list[str]:
    """The top-level modules a distribution installs (``grad-cam`` -> ``pytorch_grad_cam``)."""
    top = dist.read_text("top_level.txt")
    names = set(top.split()) if top else set()
    if not names:
        for entry in dist.files or []:
            parts = PurePosixPath(str(entry)).parts
            if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".data")):
                continue
            if len(parts) == 1 and parts[0].endswith(".py"):
                names.add(parts[0][:-3])
            elif len(parts) == 2 and parts[1] == "__init__.py":
                names.add(parts[0])
    plain = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    return sorted((n for n in names if n.isidentifier() and not n.startswith("_")), key=lambda n: (n != plain, n))


# --------------------------------------------------------------------------------------------
# Wheels


def download_wheels(closure: Closure, python: str, dest: Path) -> dict[str, str]:
    """Fetch the wheels of ``closure`` for CPython ``python`` / manylinux x86_64 with one
    ``pip download --no-deps --only-binary=:all:`` call, then check that every wheel's own
    requirements are in the bundle or on the target.

    A pure-Python package the index publishes no wheel of (``grad-cam`` ships only a source
    archive) is packed into a wheel from its files installed here (:func:`repack_wheel`), and pip
    is asked again for the rest.

    Returns:
        ``{wheel file name: "index" | "repacked"}``.

    Raises:
        ValueError: naming the package pip found no wheel of (and that cannot be repacked), or
            the requirements the wheels declare that neither the bundle nor the target holds.
    """
    dest.mkdir(parents=True, exist_ok=True)
    pending = closure.requirements()
    if not pending:
        return {}
    repacked: list[str] = []
    dists = installed_distributions()
    while pending:
        print(f"[reslab] pip download of {len(pending)} wheel(s) for CPython {python} / manylinux x86_64 ...", flush=True)
        proc = subprocess.run(_pip_download_command(pending, python, dest), capture_output=True, text=True)
        if proc.returncode == 0:
            break
        output = proc.stdout + proc.stderr
        failed = _pip_failed_name(output)
        dist = dists.get(failed) if failed in closure.pins else None
        if dist is None or dist.version != closure.pins[failed] or not _is_pure(dist):
            raise ValueError(_pip_failure(output, python, closure))
        wheel = repack_wheel(dist, dest)
        repacked.append(wheel.name)
        print(f"[reslab] the index has no wheel of {closure.names[failed]}=={dist.version}: packed {wheel.name} from "
              "its files installed here (pure Python)", flush=True)
        pending = [r for r in pending if canonicalize_name(r.split("==")[0]) != failed]
    wheels = sorted(dest.glob("*.whl"))
    got = {canonicalize_name(str(parse_wheel_filename(w.name)[0])) for w in wheels}
    absent = [r for r in closure.requirements() if canonicalize_name(r.split("==")[0]) not in got]
    if absent:
        raise ValueError(f"pip download finished but left out {absent}; run it again, or report the pip version "
                         f"({_pip_version()}).")
    _check_wheel_requirements(wheels, closure, python)
    return {w.name: "repacked" if w.name in repacked else "index" for w in wheels}


def _pip_download_command(requirements: list[str], python: str, dest: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", "--disable-pip-version-check", "--progress-bar", "off"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return cmd + ["-d", str(dest), *requirements]


def _pip_failed_name(output: str) -> str | None:
    failed = re.search(r"(?:No matching distribution found for|satisfies the requirement) ([^\s(]+)", output)
    return canonicalize_name(re.split(r"[=<>!~ ;\[]", failed.group(1))[0]) if failed else None


def _is_pure(dist: metadata.Distribution) -> bool:
    """Whether an installed distribution is pure Python (one wheel fits every platform)."""
    wheel = dist.read_text("WHEEL") or ""
    compiled = any(str(f).endswith((".so", ".pyd", ".dylib")) for f in dist.files or [])
    return "Root-Is-Purelib: true" in wheel and not compiled


def repack_wheel(dist: metadata.Distribution, dest: Path) -> Path:
    """Pack an installed pure-Python distribution into a ``py3-none-any`` wheel in ``dest``.

    The wheel holds the files its ``RECORD`` lists inside the installation (no scripts, no
    bytecode), its ``METADATA``, licence files and entry points, a new ``WHEEL`` and ``RECORD``.

    Raises:
        ValueError: for a distribution that is not pure Python or lists no files.
    """
    import base64

    if not _is_pure(dist) or not dist.files:
        raise ValueError(f"{dist.metadata['Name']} {dist.version} is not a pure-Python installation with a RECORD; "
                         "it cannot be packed into a wheel here.")
    stem = f"{re.sub(r'[-_.]+', '_', dist.metadata['Name']).lower()}-{dist.version}"
    info = f"{stem}.dist-info"
    entries: dict[str, bytes] = {}
    for entry in dist.files:
        parts = PurePosixPath(str(entry)).parts
        if not parts or parts[0] == ".." or "__pycache__" in parts or str(entry).endswith(".pyc"):
            continue
        if parts[0].endswith(".dist-info"):
            if parts[1:2] in (("METADATA",), ("entry_points.txt",), ("top_level.txt",)) or parts[1:2] == ("licenses",):
                entries["/".join((info, *parts[1:]))] = Path(dist.locate_file(entry)).read_bytes()
            continue
        entries["/".join(parts)] = Path(dist.locate_file(entry)).read_bytes()
    entries[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: reslab bundle {__version__}\nRoot-Is-Purelib: true\n"
                                "Tag: py3-none-any\n").encode()

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in sorted(entries.items()))
    entries[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = dest / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries.items()):
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def _pip_version() -> str:
    try:
        return metadata.version("pip")
    except metadata.PackageNotFoundError:
        return "not installed"


def _pip_failure(output: str, python: str, closure: Closure) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if not line.startswith("WARNING: Location")]
    tail = " | ".join(lines[-2:])
    name = _pip_failed_name(output)
    if name:
        spec = f"{closure.names.get(name, name)}=={closure.pins.get(name, '?')}"
        who = closure.needed_by.get(name, "?")
        return (f"pip found no wheel of {spec} (needed by {who}) for CPython {python} on manylinux x86_64, and it is "
                f"not a pure-Python package installed here that could be packed into one (pip: {tail}). If the target "
                f"has it, list it in a --have file; otherwise install here a version that publishes such a wheel "
                f"(python -m pip install '{name}==<version>') and bundle again.")
    return (f"pip download failed (pip {_pip_version()}: {tail}). It needs the package index (or a local mirror "
            "through PIP_INDEX_URL / PIP_FIND_LINKS) on this machine; the target itself needs none.")


def _check_wheel_requirements(wheels: list[Path], closure: Closure, python: str) -> None:
    """Every requirement the downloaded wheels declare for the target is bundled or on it."""
    env = target_environment(python)
    bundled = set(closure.pins)
    gaps = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            meta_name = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if meta_name is None:
                raise ValueError(f"{wheel.name} has no .dist-info/METADATA: not a valid wheel; delete it and bundle again.")
            meta = zf.read(meta_name).decode("utf-8", errors="replace")
        name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        for line in re.findall(r"^Requires-Dist:\s*(.+)$", meta, flags=re.M):
            dep = Requirement(line)
            dep_name = canonicalize_name(dep.name)
            if not _applies(dep, env, [""]):
                continue
            if dep_name in bundled or dep_name in closure.relied_on or dep_name in closure.left_out or (
                    dep_name in CV2_PROVIDERS and (bundled | set(closure.relied_on)) & set(CV2_PROVIDERS)):
                continue
            gaps.append(f"{dep} (required by {closure.names.get(name, name)})")
    if gaps:
        raise ValueError(f"the downloaded wheels require what the bundle lacks: {'; '.join(sorted(set(gaps)))}. Their "
                         "metadata differ from the installed distributions'; install the same versions here and bundle "
                         "again.")


# --------------------------------------------------------------------------------------------
# Data, source, runs


def dataset_files(dataset: str, root: Path | None) -> tuple[Path, list[Path]] | None:
    """The files the data loader reads for both splits of ``dataset``: ``(base, files)``, where
    ``base`` is the folder they were found under (``root``; without one, the torchvision download
    folder, as :func:`reslab.data.load_dataset` does), or ``None`` when the data set is not there.

    The loader's own :func:`reslab.data.sources.locate` decides, so the bundle holds exactly the
    files it would read, in the layout it found them in.
    """
    from .data import SPLITS, download_dir, get_spec, locate

    spec = get_spec(dataset)
    base = root if root is not None else download_dir()
    found = locate(spec, base)
    if found is None:
        return None
    files = sorted({f for split in SPLITS for f in found.files(spec, split) if f.is_file()})
    return (base, files) if files else None


def _checkout() -> Path:
    return Path(__file__).resolve().parent.parent


def _git(*args: str, cwd: Path | None = None, binary: bool = False) -> bytes | str:
    proc = subprocess.run(["git", *args], cwd=cwd or _checkout(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return proc.stdout if binary else proc.stdout.decode().strip()


def write_source(notebooks: list[str], dest: Path) -> tuple[str, list[str]]:
    """Write the reslab package, ``pyproject.toml`` and ``notebooks/<name>.ipynb`` of each notebook
    into ``dest`` as committed at HEAD (``git archive``), so uncommitted edits never travel.

    Returns:
        ``(commit, uncommitted)``: the 12-character commit, and the paths under ``reslab/``,
        ``notebooks/`` and ``pyproject.toml`` that differ from it (a warning, not an error: the
        bundle holds the commit, never these changes).

    Raises:
        ValueError: when the checkout is not a git repository, or a notebook is not committed.
    """
    repo = _checkout()
    paths = ["reslab", "pyproject.toml", *(f"notebooks/{n}.ipynb" for n in notebooks)]
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        tracked = set(_git("ls-tree", "-r", "--name-only", "HEAD", "--", *paths).splitlines())  # as given
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise ValueError(f"the bundle takes its code from git (HEAD of the reslab checkout), but {repo} is not a git "
                         f"checkout ({exc}). Bundle from a clone of the repository.") from None
    absent = [p for p in paths[2:] if p not in tracked]
    if absent:
        raise ValueError(f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not committed; the bundle takes "
                         "the notebooks as committed at HEAD: commit them first.")
    blob = _git("archive", "--format=tar", "HEAD", "--", *paths, binary=True)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            target = dest / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    status = _git("status", "--porcelain", "--", "reslab", "pyproject.toml", "notebooks")
    dirty = [line.split(maxsplit=1)[-1] for line in status.splitlines() if line.strip()]
    return commit, dirty


@contextmanager
def _runs_env(runs: Path) -> Iterator[None]:
    old = os.environ.get("RESLAB_RUNS")
    os.environ["RESLAB_RUNS"] = str(runs)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RESLAB_RUNS", None)
        else:
            os.environ["RESLAB_RUNS"] = old


@dataclass
class RunCopy:
    """One finished run of another notebook that the bundle carries (paths relative to the run store)."""

    path: str
    table: str
    model: str
    seed: int
    read_by: list[str]
    why: str


def runs_read(notebooks: list[str], profile: Profile, data_root: Path | None,
              runs: Path) -> tuple[list[RunCopy], list[str]]:
    """The finished runs of other notebooks that ``notebooks`` read, where they are in ``runs``.

    A run counts only with its ``result.json`` and checkpoint: without the checkpoint the
    reading notebook could not start from it. Runs of a notebook that is itself in the bundle
    are left out (it trains them there).

    Returns:
        ``(found, absent)``: the runs to copy, and one line per run that is not here.
    """
    from .train import CHECKPOINT_NAME

    found: dict[str, RunCopy] = {}
    absent = []
    for name in notebooks:
        for read in needs(name).reads:
            if read.table in notebooks:
                continue
            seeds = read.seeds(profile)
            if not seeds:
                absent.append(f"{name} reads {read.table} runs, which have no {profile.name} recipe")
                continue
            for model in read.models:
                for seed in seeds:
                    try:
                        with _runs_env(runs):
                            _, checkpoint = drstn.table4_checkpoint(profile, seed, data_root, model=model)
                    except (FileNotFoundError, ValueError) as exc:
                        absent.append(f"{read.table} {model} seed {seed} ({profile.name}): run key unknown here "
                                      f"({str(exc).splitlines()[0][:160]})")
                        continue
                    folder = checkpoint.parent
                    rel = folder.relative_to(runs).as_posix()
                    if not (folder / "result.json").is_file() or not (folder / CHECKPOINT_NAME).is_file():
                        absent.append(f"{read.table} {model} seed {seed} ({profile.name}, read by {name}): not in the "
                                      f"run store here ({rel}); {read.if_absent}")
                        continue
                    copy = found.setdefault(rel, RunCopy(rel, read.table, model, seed, [], read.why))
                    if name not in copy.read_by:
                        copy.read_by.append(name)
    return list(found.values()), absent


def datasets_to_train(notebooks: list[str], profile: Profile, copies: list[RunCopy]) -> dict[str, list[str]]:
    """``{dataset: [notebooks]}``: the data sets a notebook needs on the target only because runs it
    reads (:attr:`Reads.train_data`) are not among ``copies`` and will be trained there."""
    out: dict[str, list[str]] = {}
    for name in notebooks:
        for read in needs(name).reads:
            if read.table in notebooks or not read.train_data:
                continue
            wanted = {(m, s) for m in read.models for s in read.seeds(profile)}
            got = {(c.model, c.seed) for c in copies if name in c.read_by}
            if wanted - got:
                for dataset in read.train_data:
                    out.setdefault(dataset, []).append(name)
    return out


RUN_FILES = ("result.json", "history.csv")


# --------------------------------------------------------------------------------------------
# reslab bundle

#: Above this size ``reslab bundle`` warns (a Table 4 bundle is meant to stay under 40 MiB).
WARN_MIB = 60
MIB = 1 << 20


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB // 10 else f"{n / 1024:.1f} KiB"


def plan_datasets(notebooks: list[str], narrow: list[str] | None) -> tuple[dict[str, list[str]], dict[str, object]]:
    """Which data sets the bundle carries, and the notebook parameters ``--datasets`` sets.

    Returns:
        ``({dataset: [notebooks that need it]}, {parameter: value})``.

    Raises:
        ValueError: when ``narrow`` leaves a notebook without a data set it cannot do without, or
            narrows two notebooks' ``datasets`` parameter differently.
    """
    from .data import DATASETS

    wanted: dict[str, list[str]] = {}
    params: dict[str, object] = {}
    if narrow is not None:
        unknown = sorted(set(narrow) - set(DATASETS))
        if unknown:
            raise ValueError(f"--datasets names unknown data set(s) {unknown}; known: {', '.join(DATASETS)}.")
        used = {d for n in notebooks for d in needs(n).datasets}
        unused = sorted(set(narrow) - used)
        if unused:
            raise ValueError(f"--datasets names {unused}, which none of {notebooks} uses.")
    for name in notebooks:
        need = needs(name)
        kept = list(need.datasets)
        if narrow is not None:
            kept = [d for d in need.datasets if d in narrow]
            if need.narrow_param is None and kept != list(need.datasets):
                raise ValueError(f"{name} needs {', '.join(need.datasets)} and has no parameter to leave one out; add "
                                 "them to --datasets, or bundle that notebook separately.")
            if not kept:
                raise ValueError(f"--datasets {' '.join(narrow)} leaves {name} none of its data sets "
                                 f"({', '.join(need.datasets)}).")
            if kept != list(need.datasets):
                if params.get(need.narrow_param, kept) != kept:
                    raise ValueError(f"--datasets narrows the {need.narrow_param!r} parameter of two notebooks "
                                     f"differently ({params[need.narrow_param]} and {kept} for {name}); make one "
                                     "bundle per notebook.")
                params[need.narrow_param] = kept
        for d in kept:
            wanted.setdefault(d, []).append(name)
    return wanted, params


def archive_stem(profile: str, notebooks: list[str], tag: str | None = None) -> str:
    """``reslab-results-<profile>-<notebooks, or n<count>-<hash> when long>[-<tag>]``."""
    names = "+".join(notebooks)
    if len(names) > 80:
        names = f"n{len(notebooks)}-{hashlib.sha256(names.encode()).hexdigest()[:8]}"
    return f"reslab-results-{profile}-{names}" + (f"-{tag}" if tag else "")


def bundle_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab bundle", description=DESCRIPTIONS["bundle"] + " On that machine, bash run.sh installs the "
        "wheels into a private folder, runs the notebooks and writes one results archive to bring back for "
        "reslab import. The code is taken as committed at HEAD.")
    parser.add_argument("out_dir", metavar="OUT_DIR", nargs="?",
                        help="The folder to create (it must not exist, or be empty).")
    parser.add_argument("--only", nargs="+", required=True, metavar="NAME",
                        help=f"The notebooks to run there: any of {', '.join(NOTEBOOKS)}.")
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        help="Run on these data sets only, for notebooks with a datasets parameter (Table 5: one "
                        "bundle for mnist, one for fashion_mnist); the others must keep all of theirs.")
    parser.add_argument("--profile", default="paper",
                        help=f"The profile run.sh runs (default: paper; PROFILE=... overrides it there): one of "
                        f"{', '.join(PROFILES)}.")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=f"The target's Python version, for the wheels (default: {DEFAULT_PYTHON}, the Python of "
                        "this project's GPU image).")
    parser.add_argument("--have", metavar="FILE",
                        help="The target's python3 -m pip list --format=freeze output: bundle exactly what it lacks "
                        f"(default: assume the stock set {', '.join(STOCK_PREINSTALLED)} and their dependencies).")
    parser.add_argument("--data-root", help="Where the data sets are here (default: $RESLAB_DATA).")
    parser.add_argument("--runs", help="The run store to take finished runs from (default: $RESLAB_RUNS, else "
                        "_runs under the results root).")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="A notebook parameter for the run there, as for reslab reproduce --param (repeatable).")
    parser.add_argument("--no-runs", action="store_true",
                        help="Carry no runs of other notebooks: Table 5 then trains DRSTN V5 there first, and Table 1 "
                        "relies on ImageNet weights in the target's torch hub cache.")
    parser.add_argument("--full", action="store_true",
                        help="Bundle also the declared dependencies a headless run never imports (debugger, tab "
                        f"completion, widget front-ends: {', '.join(NOT_NEEDED_HEADLESS)}).")
    return parser


def main_bundle(argv: list[str] | None = None) -> int:
    """``reslab bundle``: build the offline bundle; return the exit code."""
    parser = bundle_parser()
    args = parser.parse_args(argv)
    if args.out_dir is None:  # ``--only a b OUT_DIR``: argparse gives OUT_DIR to the list before it
        from .data import DATASETS

        for values, known in ((args.only, NOTEBOOKS), (args.datasets, DATASETS)):
            if values and len(values) > 1 and values[-1] not in known:
                args.out_dir = values.pop()
                break
        else:
            parser.error("the following arguments are required: OUT_DIR")
    try:
        return _bundle(args)
    except ValueError as exc:
        print(f"reslab bundle: error: {exc}", file=sys.stderr)
        return 2


def _bundle(args: argparse.Namespace) -> int:
    profile = resolve_profile(args.profile)
    target_environment(args.python)
    known = list_notebooks()
    notebooks = [n for n in known if n in args.only]
    unknown = [n for n in args.only if n not in known]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; known: {', '.join(known)}.")
    for name in notebooks:
        needs(name)
    params = _notebook_params(args.param, notebooks, notebooks_dir()) if args.param else {}
    if "datasets" in params or "profile" in params:
        raise ValueError("set data sets with --datasets and the profile with --profile, not with --param.")
    datasets, narrowed = plan_datasets(notebooks, args.datasets)
    params |= narrowed
    data_root = Path(args.data_root).expanduser().resolve() if args.data_root else (
        Path(os.environ["RESLAB_DATA"]).expanduser().resolve() if os.environ.get("RESLAB_DATA") else None)
    if data_root is not None and not data_root.is_dir():
        raise ValueError(f"--data-root {data_root} is not a folder.")
    runs = Path(args.runs).expanduser().resolve() if args.runs else (
        Path(os.environ["RESLAB_RUNS"]).expanduser().resolve() if os.environ.get("RESLAB_RUNS")
        else results_root().resolve() / "_runs")

    out = Path(args.out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new OUT_DIR.")
    have = read_have(args.have) if args.have else stock_have(args.python)
    closure = resolve(runtime_requirements(notebooks, args.python), have, args.python,
                      skip=() if args.full else NOT_NEEDED_HEADLESS)

    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    warnings: list[str] = []
    try:
        commit, dirty = write_source(notebooks, partial / "src")
        if dirty:
            warnings.append(f"uncommitted changes in {', '.join(dirty[:6])}{' ...' if len(dirty) > 6 else ''} are NOT "
                            f"in the bundle: it holds the code of commit {commit}")
        sources = download_wheels(closure, args.python, partial / "wheels")
        wheels = sorted((partial / "wheels").glob("*.whl"))
        copies, absent = runs_read(notebooks, profile, data_root, runs) if not args.no_runs else ([], [])
        to_train = datasets_to_train(notebooks, profile, copies)
        for dataset, readers in to_train.items():
            datasets.setdefault(dataset, []).extend(r for r in readers if r not in datasets.get(dataset, []))
        data_report, missing_data = _copy_data(datasets, data_root, partial / "data")
        for dataset, reason in missing_data.items():
            warnings.append(reason)
        run_report = _copy_runs(copies, runs, partial / "runs")
        shutil.copyfile(Path(__file__).with_name("bundle_run.sh"), partial / "run.sh")
        os.chmod(partial / "run.sh", 0o755)
        hub = _hub_weights(notebooks)
        sizes = {part: _folder_bytes(partial / part) for part in ("wheels", "data", "src", "runs")}
        manifest = {
            "format": "reslab-bundle", "version": 1, "created": now(), "reslab_version": __version__,
            "git_commit": commit, "uncommitted_at_bundle_time": dirty, "python": args.python,
            "platforms": list(PLATFORMS), "profile": profile.name, "notebooks": notebooks,
            "parameters": [f"{k}={json.dumps(v)}" for k, v in params.items()],
            "archive_tag": "-".join(params["datasets"]) if "datasets" in narrowed else "",
            "datasets": data_report, "datasets_missing": missing_data,
            "datasets_to_train_reads": {d: f"{', '.join(r)} will train there the {d} runs it reads" for d, r in to_train.items()},
            "preinstalled": {
                "source": have.source,
                "stock": list(STOCK_PREINSTALLED) if have.source == "stock" else [],
                "assumed": sorted(have.versions),
                "relied_on": {k: sorted(v) for k, v in sorted(closure.relied_on.items())},
                "checks": _preinstalled_checks(closure),
                "torch_min": TARGET_TORCH_MIN,
            },
            "wheels": [_wheel_entry(w, closure, sources) for w in wheels],
            "wheel_notes": closure.notes,
            "left_out": {n: {"declared_by": who, "why": NOT_NEEDED_HEADLESS[n]} for n, who in closure.left_out.items()},
            "runs": run_report, "runs_absent": absent,
            "hub_weights": hub,
            "sizes": sizes | {"total": sum(sizes.values())},
            "warnings": warnings,
        }
        (partial / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _report(out, manifest, closure, absent)
    return 0


def _wheel_entry(wheel: Path, closure: Closure, sources: dict[str, str]) -> dict:
    name, version, *_ = parse_wheel_filename(wheel.name)
    key = canonicalize_name(str(name))
    return {"file": wheel.name, "name": closure.names[key], "version": str(version), "bytes": wheel.stat().st_size,
            "sha256": file_sha256(wheel), "source": sources.get(wheel.name, "index"), "needed_by": closure.needed_by[key]}


def _copy_data(datasets: dict[str, list[str]], root: Path | None,
               dest: Path) -> tuple[dict[str, dict], dict[str, str]]:
    from .data import get_spec, locate

    dest.mkdir(parents=True, exist_ok=True)
    report, missing = {}, {}
    for dataset, users in sorted(datasets.items()):
        located = dataset_files(dataset, root)
        if located is None:
            where = "the data root given" if root else "any data root (none given: set --data-root or RESLAB_DATA)"
            missing[dataset] = (f"{dataset} (needed by {', '.join(users)}) is not in {where} here, so the bundle "
                                "leaves it out: on the target that notebook will not find it (it downloads nothing "
                                f"there). Put {dataset} into the data root and bundle again.")
            continue
        base, files = located
        rels = []
        for path in files:
            rel = path.relative_to(base)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            rels.append(rel.as_posix())
        # The bundle's copy must be found the way the files were found here.
        spec = get_spec(dataset)
        here, there = locate(spec, base), locate(spec, dest)
        if there is None or here.kind != there.kind or here.path.relative_to(base) != there.path.relative_to(dest):
            raise ValueError(f"the copy of {dataset} in the bundle is not found the way it is found here ({here.kind} "
                             f"{here.path.relative_to(base)}); report this layout of the data root.")
        report[dataset] = {"files": rels, "bytes": sum((dest / r).stat().st_size for r in rels), "needed_by": users,
                           "kind": here.kind}
    return report, missing


def _copy_runs(copies: list[RunCopy], runs: Path, dest: Path) -> list[dict]:
    from .train import CHECKPOINT_NAME

    report = []
    for copy in copies:
        folder = dest / copy.path
        folder.mkdir(parents=True, exist_ok=True)
        size = 0
        for name in (*RUN_FILES, CHECKPOINT_NAME):
            if (runs / copy.path / name).is_file():
                shutil.copy2(runs / copy.path / name, folder / name)
                size += (folder / name).stat().st_size
        report.append(dataclasses.asdict(copy) | {"bytes": size})
    return report


def _hub_weights(notebooks: list[str]) -> list[dict]:
    from .models import tv_weights, weights_filename

    return [{"file": weights_filename(tv_weights(m)), "model": m, "notebook": n}
            for n in notebooks for m in needs(n).hub_models]


def _preinstalled_checks(closure: Closure) -> list[dict]:
    """What run.sh checks on the target before anything else: each preinstalled package the
    bundle relies on, by its metadata and, where it is installed here too, by importing its
    top-level module (torch and torchvision have a check of their own)."""
    dists = installed_distributions()
    checks = []
    for name in sorted(closure.relied_on):
        if name in TARGET_MUST_HAVE:
            continue
        modules = import_names(dists[name]) if name in dists else []
        checks.append({"dist": name, "module": modules[0] if modules else None})
    return checks


def _report(out: Path, manifest: dict, closure: Closure, absent: list[str]) -> None:
    sizes = manifest["sizes"]
    print(f"[reslab] bundle {out}: {_mib(sizes['total'])} (wheels {_mib(sizes['wheels'])} in "
          f"{len(manifest['wheels'])} file(s), data {_mib(sizes['data'])}, src {_mib(sizes['src'])}, runs "
          f"{_mib(sizes['runs'])})")
    print(f"[reslab] notebooks {', '.join(manifest['notebooks'])} ({manifest['profile']}), code of commit "
          f"{manifest['git_commit']}, wheels for CPython {manifest['python']}; preinstalled on the target: "
          + ("the stock set " + ", ".join(STOCK_PREINSTALLED) + " and their dependencies"
             if manifest["preinstalled"]["source"] == "stock" else f"the packages of {manifest['preinstalled']['source']}"))
    biggest = sorted(manifest["wheels"], key=lambda w: -w["bytes"])[:3]
    if biggest:
        print("[reslab] largest wheels: " + ", ".join(f"{w['name']} {_mib(w['bytes'])}" for w in biggest))
    for dataset, why in manifest["datasets_to_train_reads"].items():
        print(f"[reslab] {dataset} is bundled to train runs that were not found here: {why}")
    for note in closure.notes:
        print(f"[reslab] note: {note}")
    if closure.left_out:
        print(f"[reslab] left out as never imported headless (--full bundles them): {', '.join(closure.left_out)}")
    for run in manifest["runs"]:
        print(f"[reslab] run {run['path']} ({_mib(run['bytes'])}): {run['why']}")
    for line in absent:
        print(f"[reslab] run not bundled: {line}")
    for weight in manifest["hub_weights"]:
        print(f"[reslab] {weight['notebook']} reads ImageNet weights {weight['file']} ({weight['model']}): put the file "
              "into $TORCH_HOME/hub/checkpoints on the target (too large to bundle)")
    for warning in manifest["warnings"]:
        print(f"[reslab] WARNING: {warning}", file=sys.stderr)
    if sizes["total"] > WARN_MIB * MIB:
        parts = sorted(((k, v) for k, v in sizes.items() if k != "total"), key=lambda kv: -kv[1])
        print(f"[reslab] WARNING: the bundle is {_mib(sizes['total'])}, over {WARN_MIB} MiB (largest: "
              f"{', '.join(f'{k} {_mib(v)}' for k, v in parts[:2])}). A --have list of the target's packages, or fewer "
              "notebooks or data sets per bundle, makes it smaller.", file=sys.stderr)
    print(f"[reslab] next: copy {out.name}/ to the GPU machine and run `bash {out.name}/run.sh`; bring back the "
          "reslab-results-*.tar.gz it writes and run `reslab import <archive>` here.")


# --------------------------------------------------------------------------------------------
# reslab export

ARCHIVE_FORMAT = "reslab-results"
ARCHIVE_JSON = "archive.json"
DEFAULT_MAX_MB = 16.0


@dataclass
class _Member:
    arcname: str
    path: Path


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab export", description=DESCRIPTIONS["export"] + " It holds results/<profile>/<notebook>/ of "
        "each notebook that finished, the result rows and histories of their runs, and only the checkpoints a "
        "later notebook reads, while they fit; archive.json lists what was left out.")
    parser.add_argument("--profile", required=True, help=f"The profile whose results to pack: one of {', '.join(PROFILES)}.")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="The notebooks to pack (default: every notebook with results of the profile).")
    parser.add_argument("--results", help="The results root (default: $RESLAB_RESULTS, else results/ of the checkout).")
    parser.add_argument("--out", default=".", help="The folder to write the archive into (default: the current one).")
    parser.add_argument("--tag", help="A word added to the archive's name, such as the data set of a narrowed run.")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                        help=f"The largest archive to write, in MiB (default: {DEFAULT_MAX_MB:g}).")
    parser.add_argument("--skip-runs", metavar="DIR",
                        help="A run store (a bundle's runs/ folder) whose runs are not packed: they came from home.")
    return parser


def main_export(argv: list[str] | None = None) -> int:
    """``reslab export``: pack results into one archive; return the exit code."""
    args = export_parser().parse_args(argv)
    results = Path(args.results).expanduser().resolve() if args.results else results_root().resolve()
    try:
        export_results(results, args.profile, args.only, Path(args.out), tag=args.tag, max_mb=args.max_mb,
                       skip_runs=Path(args.skip_runs) if args.skip_runs else None)
    except ValueError as exc:
        print(f"reslab export: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_store(results: Path) -> Path:
    """The run store ``reslab reproduce`` uses with this results root."""
    env = os.environ.get("RESLAB_RUNS")
    return Path(env).expanduser().resolve() if env else results / "_runs"


def _finished_runs(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_dir() and (p / "result.json").is_file())


def _run_model(run: Path) -> str:
    try:
        return str(json.loads((run / "result.json").read_text())["row"].get("model", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def export_results(results: Path, profile: str, notebooks: list[str] | None, out: Path, tag: str | None = None,
                   max_mb: float = DEFAULT_MAX_MB, skip_runs: Path | None = None) -> Path:
    """Write ``reslab-results-<profile>-<notebooks>[-<tag>].tar.gz`` into ``out`` and return it.

    Packs ``results/<profile>/<notebook>/`` of each notebook that finished (it has a manifest),
    ``result.json`` and ``history.csv`` of their runs and of the runs they read from other
    notebooks (:data:`NOTEBOOKS`), and the checkpoints of runs a notebook reads
    (:func:`read_later`), most-read first, while the archive stays under ``max_mb``. Runs also in
    ``skip_runs`` are left out. ``archive.json`` says what is in it and what was left out.

    Raises:
        ValueError: for an unknown profile, or when the results alone exceed ``max_mb``.
    """
    from .train import CHECKPOINT_NAME

    resolve_profile(profile)
    if max_mb <= 0:
        raise ValueError(f"--max-mb must be positive, got {max_mb:g}.")
    folder = results / profile
    present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if folder.is_dir() else []
    names = list(notebooks) if notebooks else present
    if not names:
        raise ValueError(f"no results of profile {profile} under {results}; nothing to export (run reslab reproduce "
                         "first, or pass --results).")
    finished = [n for n in names if (folder / n / MANIFEST).is_file()]
    not_finished = [n for n in names if n not in finished]
    runs = _run_store(results)
    skip = {p.relative_to(skip_runs).as_posix() for p in skip_runs.glob("*/*/*") if p.is_dir()} \
        if skip_runs is not None and skip_runs.is_dir() else set()

    base: list[_Member] = []
    for name in finished:
        for path in sorted((folder / name).rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                base.append(_Member(f"results/{profile}/{name}/{path.relative_to(folder / name).as_posix()}", path))
    wanted_runs: dict[str, Path] = {}
    for name in finished:
        for run in _finished_runs(runs / profile / name):
            wanted_runs[run.relative_to(runs).as_posix()] = run
        for read in NOTEBOOKS.get(name, Needs(())).reads:
            for run in _finished_runs(runs / profile / read.table):
                if _run_model(run) in read.models:
                    wanted_runs[run.relative_to(runs).as_posix()] = run
    later = read_later()
    candidates = []
    for rel, run in sorted(wanted_runs.items()):
        if rel in skip:
            continue
        for file in RUN_FILES:
            if (run / file).is_file():
                base.append(_Member(f"_runs/{rel}/{file}", run / file))
        readers = later.get((run.parent.name, _run_model(run)), [])
        if readers and (run / CHECKPOINT_NAME).is_file():
            candidates.append((readers, _Member(f"_runs/{rel}/{CHECKPOINT_NAME}", run / CHECKPOINT_NAME)))
    # The checkpoints more notebooks read first (DRSTN V5: Tables 5 and 1), then the smaller.
    candidates.sort(key=lambda c: (-len(c[0]), c[1].path.stat().st_size, c[1].arcname))

    cap = int(max_mb * MIB)
    stem = archive_stem(profile, names, tag)
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{stem}.tar.gz"
    errors = {n: err for n in not_finished if (err := _notebook_error(folder / "_failed" / f"{n}.ipynb"))}
    info = {"format": ARCHIVE_FORMAT, "version": 1, "created": now(), "profile": profile, "notebooks": finished,
            "not_finished": not_finished, "errors": errors, "git_commit": git_commit(), "reslab_version": __version__,
            "max_mb": max_mb, "tag": tag or ""}
    tmp = out / f".{stem}.tar.gz.partial-{os.getpid()}"
    try:
        size = _write_archive(tmp, base, info | {"checkpoints": [], "checkpoints_left_out": []})
        if size > cap:
            raise ValueError(f"the results of {', '.join(finished)} alone take {_mib(size)} compressed, over --max-mb "
                             f"{max_mb:g}; export fewer notebooks at a time (--only) or raise --max-mb.")
        chosen, left_out, room = [], [], cap - size
        for readers, member in candidates:
            estimate = _gz_size(member.path) + 64 * 1024
            if estimate <= room:
                chosen.append((readers, member))
                room -= estimate
            else:
                left_out.append((readers, member, "does not fit under --max-mb"))
        while True:
            payload = info | {
                "checkpoints": [m.arcname for _, m in chosen],
                "checkpoints_left_out": [{"path": m.arcname, "bytes": m.path.stat().st_size, "read_by": r, "why": why}
                                         for r, m, why in left_out]}
            size = _write_archive(tmp, base + [m for _, m in chosen], payload)
            if size <= cap or not chosen:
                break
            readers, member = chosen.pop()  # the estimate was short: leave out the last one taken
            left_out.append((readers, member, "does not fit under --max-mb"))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    n_runs = len({m.arcname.rsplit("/", 1)[0] for m in base if m.arcname.startswith("_runs/")})
    print(f"[reslab] wrote {final} ({_mib(final.stat().st_size)}): results of {', '.join(finished) or 'no notebook'}"
          f" ({profile}), {n_runs} run(s), {len(chosen)} checkpoint(s)")
    for name in not_finished:
        print(f"[reslab] not finished, so not in the archive: {name}"
              + (f" ({errors[name]})" if name in errors else ""))
    for readers, member, why in left_out:
        print(f"[reslab] checkpoint left out ({why}; read by {', '.join(readers)}): {member.arcname} "
              f"({_mib(member.path.stat().st_size)})")
    return final


def _notebook_error(path: Path) -> str:
    """The error a failed notebook (``results/<profile>/_failed/<name>.ipynb``) stopped with, or ``""``."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return ""
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = (str(output.get("evalue") or "").splitlines() or [""])[0][:300]
                return f"{output.get('ename', 'Error')}: {first}"
    return ""


def _gz_size(path: Path) -> int:
    """The size of ``path`` gzip-compressed (level 6, as the archive is written)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            total += len(comp.compress(block))
    return total + len(comp.flush())


def _normalised(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    member.mode = 0o644
    return member


def _write_archive(path: Path, members: list[_Member], info: dict) -> int:
    blob = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    with tarfile.open(path, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        head = _normalised(tarfile.TarInfo(ARCHIVE_JSON))
        head.size, head.mtime = len(blob), int(time.time())
        tar.addfile(head, io.BytesIO(blob))
        for member in members:
            tar.add(member.path, arcname=member.arcname, recursive=False, filter=_normalised)
    return path.stat().st_size


# --------------------------------------------------------------------------------------------
# reslab import

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: The most an archive may unpack to: a results archive is small, a larger one is not ours.
MAX_UNPACKED = 4 << 30


def import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab import", description=DESCRIPTIONS["import"] + " The archive is checked before anything is "
        "written: only regular files and folders under results/<profile>/<notebook>/ and "
        "_runs/<profile>/<table>/<run>/, no links, no absolute paths, no '..'.")
    parser.add_argument("archive", metavar="ARCHIVE", help="The reslab-results-*.tar.gz that run.sh or reslab export wrote.")
    parser.add_argument("--results", help="The results root (default: $RESLAB_RESULTS, else results/ of the checkout).")
    parser.add_argument("--force", action="store_true",
                        help="Replace finished runs already in the run store (default: keep them).")
    return parser


def main_import(argv: list[str] | None = None) -> int:
    """``reslab import``: check an archive, then put it in place; return the exit code."""
    args = import_parser().parse_args(argv)
    results = Path(args.results).expanduser().resolve() if args.results else results_root().resolve()
    try:
        import_archive(Path(args.archive), results, force=args.force)
    except ValueError as exc:
        print(f"reslab import: error: {exc}", file=sys.stderr)
        return 2
    return 0


def check_archive(tar: tarfile.TarFile) -> tuple[dict, list[tarfile.TarInfo]]:
    """Check every member of a results archive; return ``(archive.json, file members)``.

    Raises:
        ValueError: naming the first member that is not a regular file or folder, has an
            absolute path or ``..``, lies outside ``results/<profile>/<notebook>/`` and
            ``_runs/<profile>/<table>/<run>/``, or repeats; a results folder without
            ``manifest.json``; a missing or unreadable ``archive.json``.
    """
    files, seen, size = [], set(), 0
    info = None
    for member in tar.getmembers():
        name = member.name
        what = f"archive member {name!r}"
        if not (member.isfile() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "not a regular file or folder"
            raise ValueError(f"{what} is {kind}; a results archive holds only regular files and folders.")
        if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
            raise ValueError(f"{what} has an absolute path; a results archive holds only relative paths.")
        parts = name.rstrip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{what} has an empty, '.' or '..' path part; a results archive never climbs out of "
                             "its folder.")
        if name.rstrip("/") in seen:
            raise ValueError(f"{what} appears twice; a results archive names each path once.")
        seen.add(name.rstrip("/"))
        _check_layout(parts, member.isdir(), what)
        if member.isfile():
            size += member.size
            if size > MAX_UNPACKED:
                raise ValueError(f"the archive unpacks to more than {MAX_UNPACKED >> 30} GiB; it is not a results archive.")
            if parts == [ARCHIVE_JSON]:
                try:
                    info = json.loads(tar.extractfile(member).read())
                except ValueError as exc:
                    raise ValueError(f"{ARCHIVE_JSON} of the archive is not JSON ({exc}).") from None
            else:
                files.append(member)
    if info is None:
        raise ValueError(f"the archive has no {ARCHIVE_JSON}: it was not written by reslab export.")
    if not isinstance(info, dict) or info.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"{ARCHIVE_JSON} says format {info.get('format') if isinstance(info, dict) else info!r}, "
                         f"not {ARCHIVE_FORMAT!r}: it was not written by reslab export.")
    folders = {tuple(m.name.split("/")[:3]) for m in files if m.name.startswith("results/")}
    without = sorted("/".join(f) for f in folders if "/".join(f) + f"/{MANIFEST}" not in seen)
    if without:
        raise ValueError(f"results folder(s) {without} of the archive have no {MANIFEST}; reslab reproduce --check "
                         "could not check them.")
    return info, files


def _check_layout(parts: list[str], is_dir: bool, what: str) -> None:
    if parts == [ARCHIVE_JSON] and not is_dir:
        return
    top = parts[0]
    if top not in ("results", "_runs"):
        raise ValueError(f"{what} is outside results/<profile>/<notebook>/ and _runs/<profile>/<table>/<run>/.")
    depth = 3 if top == "results" else 4  # folders: results/p/n, _runs/p/t/r
    if len(parts) > 1 and parts[1] not in PROFILES:
        raise ValueError(f"{what}: {parts[1]!r} is not a profile ({', '.join(PROFILES)}).")
    for part in parts[2:depth]:
        if not _NAME.fullmatch(part):
            raise ValueError(f"{what}: {part!r} is not a notebook, table or run name (letters, digits, '_', '.', '-', "
                             "not starting with '.' or '_').")
    if not is_dir and len(parts) <= depth:
        raise ValueError(f"{what} is a file outside a {'results' if top == 'results' else 'run'} folder.")


def import_archive(archive: Path, results: Path, force: bool = False) -> dict:
    """Check ``archive`` (:func:`check_archive`), then put its results folders in place (each
    replaces the existing one in one rename, as ``reslab reproduce`` does) and merge its runs into
    the run store (an existing finished run is kept unless ``force``).

    Returns:
        ``{"results": [...], "runs_added": [...], "runs_kept": [...], "runs_completed": [...]}``.

    Raises:
        ValueError: for an archive that is not a valid results archive; nothing is written then.
    """
    if not archive.is_file():
        raise ValueError(f"{archive} is not a file.")
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"{archive} is not a readable tar archive ({exc}).") from None
    with tar:
        info, files = check_archive(tar)
        runs = _run_store(results)
        stage = results / f".import-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        try:
            for member in files:
                target = stage.joinpath(*member.name.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            report = _place(stage, results, runs, force)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    _import_report(archive, info, report, results)
    return report


def _place(stage: Path, results: Path, runs: Path, force: bool) -> dict:
    from .train import CHECKPOINT_NAME

    report: dict[str, list[str]] = {"results": [], "replaced": [], "runs_added": [], "runs_kept": [],
                                    "runs_completed": []}
    for profile_dir in sorted((stage / "results").glob("*")):
        for folder in sorted(p for p in profile_dir.iterdir() if p.is_dir()):
            final = results / profile_dir.name / folder.name
            rel = f"{profile_dir.name}/{folder.name}"
            final.parent.mkdir(parents=True, exist_ok=True)
            old = final.parent / f".old-{folder.name}-{os.getpid()}"
            if final.exists():
                os.replace(final, old)
                report["replaced"].append(rel)
            os.replace(folder, final)
            shutil.rmtree(old, ignore_errors=True)
            report["results"].append(rel)
    for run in sorted((stage / "_runs").glob("*/*/*")):
        rel = run.relative_to(stage / "_runs").as_posix()
        final = runs / rel
        if (final / "result.json").is_file() and not force:
            same = (final / "result.json").read_bytes() == (run / "result.json").read_bytes() \
                if (run / "result.json").is_file() else False
            added = [p.name for p in run.iterdir() if same and not (final / p.name).exists()]
            for name in added:  # the same run, and the archive has its checkpoint: keep both
                shutil.copy2(run / name, final / f".{name}.import")
                os.replace(final / f".{name}.import", final / name)
            report["runs_completed" if CHECKPOINT_NAME in added else "runs_kept"].append(rel)
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.parent / f".import-{run.name}-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(run, staged)  # beside its final place, so that the swap below is two renames
        old = final.parent / f".old-{run.name}-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
        report["runs_added"].append(rel)
    return report


def _import_report(archive: Path, info: dict, report: dict, results: Path) -> None:
    print(f"[reslab] {archive.name}: made at commit {info.get('git_commit', '?')} ({info.get('profile', '?')}); "
          f"this checkout is at {git_commit()}")
    for name in info.get("not_finished", []):
        error = info.get("errors", {}).get(name)
        print(f"[reslab] {name} did not finish there" + (f": {error}" if error else ""))
    if not report["results"] and not report["runs_added"]:
        print("[reslab] nothing placed: the archive holds no finished notebook")
    for rel in report["results"]:
        print(f"[reslab] placed {results / rel}" + (" (replaced the one that was there)" if rel in report["replaced"] else ""))
    runs = _run_store(results)
    if report["runs_added"]:
        print(f"[reslab] added {len(report['runs_added'])} run(s) to {runs}")
    if report["runs_completed"]:
        print(f"[reslab] added the checkpoint of {len(report['runs_completed'])} run(s) already in {runs}")
    if report["runs_kept"]:
        print(f"[reslab] kept {len(report['runs_kept'])} finished run(s) already in {runs} "
              f"(--force replaces them): {', '.join(report['runs_kept'][:4])}{' ...' if len(report['runs_kept']) > 4 else ''}")
    for item in info.get("checkpoints_left_out", []):
        print(f"[reslab] checkpoint not in the archive (read by {', '.join(item.get('read_by', []))}): {item.get('path')}")
    for rel in report["results"]:
        manifest = json.loads((results / rel / MANIFEST).read_text())
        current = code_fingerprints(manifest.get("table"))
        changed = [k for k, v in (manifest.get("code") or {}).items() if current.get(k) != v]
        if changed:
            print(f"[reslab] WARNING: {rel} was made by code that differs from this checkout in "
                  f"{', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''} (commit {manifest.get('git_commit')}): "
                  "reslab reproduce --check will call it stale.", file=sys.stderr)
    where = f" --results {results}" if results != results_root().resolve() else ""
    print(f"[reslab] next: reslab reproduce --check{where}   (up to date when the code and data match)\n"
          f"[reslab]       reslab reproduce --only summary{where}   (the claims summary with these results)")
