"""``reslab export`` and ``reslab import``: one archive of finished results, checked before it is unpacked.

``reslab export`` packs the finished results folders, the result rows and histories of their runs,
and the checkpoints a later notebook reads (while they fit under ``--max-mb``); ``reslab import``
checks every member first, then puts the results folders in place and merges the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..._version import __version__
from ...catalog import NOTEBOOKS, Needs, read_later
from ...paths import Paths
from ...profiles import PROFILES, resolve_profile
from ...results import MANIFEST, code_fingerprints, git_commit, now
from ...checkpoint import CHECKPOINT_NAME
from .. import DESCRIPTIONS
from .gather import MIB, RUN_FILES, _mib, archive_stem

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
    paths = Paths.from_env(results=args.results)
    try:
        export_results(paths.results, args.profile, args.only, Path(args.out), tag=args.tag, max_mb=args.max_mb,
                       skip_runs=Path(args.skip_runs) if args.skip_runs else None, runs=paths.runs)
    except ValueError as exc:
        print(f"reslab export: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_store(results: Path, runs: Path | None) -> Path:
    """``runs``, else the run store ``reslab reproduce`` uses with this results root."""
    return runs or Paths.from_env(results=results).runs


def _finished_runs(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_dir() and (p / "result.json").is_file())


def _run_model(run: Path) -> str:
    try:
        return str(json.loads((run / "result.json").read_text())["row"].get("model", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def export_results(results: Path, profile: str, notebooks: list[str] | None, out: Path, tag: str | None = None,
                   max_mb: float = DEFAULT_MAX_MB, skip_runs: Path | None = None, runs: Path | None = None) -> Path:
    """Write ``reslab-results-<profile>-<notebooks>[-<tag>].tar.gz`` into ``out`` and return it.

    Packs ``results/<profile>/<notebook>/`` of each notebook that finished (it has a manifest),
    ``result.json`` and ``history.csv`` of their runs and of the runs they read from other
    notebooks (:data:`NOTEBOOKS`), and the checkpoints of runs a notebook reads
    (:func:`read_later`), most-read first, while the archive stays under ``max_mb``. Runs also in
    ``skip_runs`` are left out. ``archive.json`` says what is in it and what was left out. ``runs``
    is the run store (default: the one ``reslab reproduce`` uses with ``results``).

    Raises:
        ValueError: for an unknown profile, or when the results alone exceed ``max_mb``.
    """
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
    runs = _run_store(results, runs)
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
    paths = Paths.from_env(results=args.results)
    try:
        import_archive(Path(args.archive), paths.results, force=args.force, runs=paths.runs)
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


def import_archive(archive: Path, results: Path, force: bool = False, runs: Path | None = None) -> dict:
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
        runs = _run_store(results, runs)
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
    _import_report(archive, info, report, results, runs)
    return report


def _place(stage: Path, results: Path, runs: Path, force: bool) -> dict:
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


def _import_report(archive: Path, info: dict, report: dict, results: Path, runs: Path) -> None:
    print(f"[reslab] {archive.name}: made at commit {info.get('git_commit', '?')} ({info.get('profile', '?')}); "
          f"this checkout is at {git_commit()}")
    for name in info.get("not_finished", []):
        error = info.get("errors", {}).get(name)
        print(f"[reslab] {name} did not finish there" + (f": {error}" if error else ""))
    if not report["results"] and not report["runs_added"]:
        print("[reslab] nothing placed: the archive holds no finished notebook")
    for rel in report["results"]:
        print(f"[reslab] placed {results / rel}" + (" (replaced the one that was there)" if rel in report["replaced"] else ""))
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
    where = f" --results {results}" if results != Paths.from_env().results else ""
    print(f"[reslab] next: reslab reproduce --check{where}   (up to date when the code and data match)\n"
          f"[reslab]       reslab reproduce --only summary{where}   (the claims summary with these results)")
