"""The wheels of a bundle: the dependency closure of the chosen notebooks' requirements, and its download.

The closure is computed offline from the metadata of the distributions installed here, pinned to
their versions, minus what the target already has; one ``pip download`` call fetches the wheels,
and a pure-Python package the index has no wheel of is packed from its installed files.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections import deque
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..._env import MIN_TORCH
from ..._version import __version__
from ...catalog import NOTEBOOKS, needs

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

        pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
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
        raise ValueError(f"reslab.catalog.NOTEBOOKS names requirement(s) {undeclared} that reslab does not declare; "
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
