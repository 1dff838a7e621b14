"""``reslab bundle``: gather the wheels, data, source and runs of other notebooks into one folder.

The data are the files the data loader reads, the source is the package and the notebooks as
committed at HEAD, the runs are the finished runs of other notebooks a chosen notebook reads;
``bundle.json`` describes it all and ``run.sh`` (this package's ``run.sh``) runs it on the target.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from ... import catalog
from ..._version import __version__
from ...catalog import NOTEBOOKS, list_notebooks, needs, notebook_params
from ...data import DATASETS, SPLITS, download_dir, get_spec, locate
from ...models import tv_weights, weights_filename
from ...paths import Paths
from ...profiles import PROFILES, Profile, resolve_profile
from ...results import file_sha256, now
from ...tables import drstn
from ...checkpoint import CHECKPOINT_NAME
from ...runs.store import HISTORY_NAME, RESULT_NAME, RunStore
from .. import DESCRIPTIONS
from .wheels import (
    DEFAULT_PYTHON,
    NOT_NEEDED_HEADLESS,
    PLATFORMS,
    STOCK_PREINSTALLED,
    TARGET_MUST_HAVE,
    TARGET_TORCH_MIN,
    Closure,
    download_wheels,
    import_names,
    installed_distributions,
    read_have,
    resolve,
    runtime_requirements,
    stock_have,
    target_environment,
)

# --------------------------------------------------------------------------------------------
# Data, source, runs


def dataset_files(dataset: str, root: Path | None, cache: Path | None = None) -> tuple[Path, list[Path]] | None:
    """The files the data loader reads for both splits of ``dataset``: ``(base, files)``, where
    ``base`` is the folder they were found under (``root``; without one, the torchvision download
    folder, as :func:`reslab.data.load_dataset` does), or ``None`` when the data set is not there.

    The loader's own :func:`reslab.data.sources.locate` decides, so the bundle holds exactly the
    files it would read, in the layout it found them in.
    """
    spec = get_spec(dataset)
    base = root if root is not None else download_dir(cache)
    found = locate(spec, base)
    if found is None:
        return None
    files = sorted({f for split in SPLITS for f in found.files(spec, split) if f.is_file()})
    return (base, files) if files else None


def _checkout() -> Path:
    return Path(__file__).resolve().parents[3]  # reslab/app/bundle/gather.py -> the checkout


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


@dataclass
class RunCopy:
    """One finished run of another notebook that the bundle carries (paths relative to the run store)."""

    path: str
    table: str
    model: str
    seed: int
    read_by: list[str]
    why: str


def runs_read(notebooks: list[str], profile: Profile, paths: Paths) -> tuple[list[RunCopy], list[str]]:
    """The finished runs of other notebooks that ``notebooks`` read, where they are in the run store
    ``paths.runs`` (their keys made from the data under ``paths.data``).

    A run counts only with its ``result.json`` and checkpoint: without the checkpoint the
    reading notebook could not start from it. Runs of a notebook that is itself in the bundle
    are left out (it trains them there).

    Returns:
        ``(found, absent)``: the runs to copy, and one line per run that is not here.
    """
    found: dict[str, RunCopy] = {}
    absent = []
    store = RunStore.of(paths)
    for name in notebooks:
        for read in needs(name).reads:
            if read.table in notebooks:
                continue
            seeds = read.seeds(profile)
            if not seeds:
                absent.append(f"{name} reads {read.table} runs, which have no {profile.name} recipe")
                continue
            for model in read.models:
                missing = []
                for seed in seeds:
                    try:
                        _, checkpoint = drstn.table4_checkpoint(profile, seed, paths, model=model)
                    except (FileNotFoundError, ValueError) as exc:
                        missing.append(f"{read.table} {model} seed {seed} ({profile.name}): run key unknown here "
                                       f"({str(exc).splitlines()[0][:160]})")
                        continue
                    folder = checkpoint.parent
                    rel = folder.relative_to(paths.runs).as_posix()
                    if not store.has_checkpoint(folder):
                        missing.append(f"{read.table} {model} seed {seed} ({profile.name}, read by {name}): not in "
                                       f"the run store here ({rel}); {read.if_absent}")
                        continue
                    copy = found.setdefault(rel, RunCopy(rel, read.table, model, seed, [], read.why))
                    if name not in copy.read_by:
                        copy.read_by.append(name)
                    if read.first_only:  # the one run the notebook reads of this model: nothing is missing
                        missing = []
                        break
                absent += missing
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


RUN_FILES = (RESULT_NAME, HISTORY_NAME)


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
    params = notebook_params(args.param, notebooks, catalog.notebooks_dir()) if args.param else {}
    if "datasets" in params or "profile" in params:
        raise ValueError("set data sets with --datasets and the profile with --profile, not with --param.")
    datasets, narrowed = plan_datasets(notebooks, args.datasets)
    params |= narrowed
    paths = Paths.from_env(data=args.data_root, runs=args.runs)
    data_root, runs = paths.data, paths.runs
    if data_root is not None and not data_root.is_dir():
        raise ValueError(f"--data-root {data_root} is not a folder.")

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
        copies, absent = runs_read(notebooks, profile, paths) if not args.no_runs else ([], [])
        to_train = datasets_to_train(notebooks, profile, copies)
        for dataset, readers in to_train.items():
            datasets.setdefault(dataset, []).extend(r for r in readers if r not in datasets.get(dataset, []))
        data_report, missing_data = _copy_data(datasets, data_root, partial / "data", paths.cache)
        for dataset, reason in missing_data.items():
            warnings.append(reason)
        run_report = _copy_runs(copies, runs, partial / "runs")
        recorded = _copy_record(notebooks, profile, paths.record, partial / "record")
        shutil.copyfile(Path(__file__).with_name("run.sh"), partial / "run.sh")
        os.chmod(partial / "run.sh", 0o755)
        hub = _hub_weights(notebooks)
        sizes = {part: _folder_bytes(partial / part) for part in ("wheels", "data", "src", "runs", "record")}
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
            "runs": run_report, "runs_absent": absent, "record": recorded,
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
               dest: Path, cache: Path) -> tuple[dict[str, dict], dict[str, str]]:
    dest.mkdir(parents=True, exist_ok=True)
    report, missing = {}, {}
    for dataset, users in sorted(datasets.items()):
        located = dataset_files(dataset, root, cache)
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


def _copy_record(notebooks: list[str], profile: Profile, record: Path, dest: Path) -> dict[str, int]:
    """Copy the record of the notebooks' finished runs under ``profile`` (result rows and histories,
    no checkpoints) to ``dest``, so that a run made before, here or in an earlier slice, is not
    trained again there; ``{notebook: runs copied}``."""
    copied = {}
    for name in notebooks:
        source = record / profile.name / name
        if source.is_dir():
            shutil.copytree(source, dest / profile.name / name)
            copied[name] = sum(1 for p in source.iterdir() if p.is_dir())
    return copied


def _hub_weights(notebooks: list[str]) -> list[dict]:
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
