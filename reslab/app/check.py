"""``reslab reproduce --check``: which committed results were made by code or data that has
changed since, or were changed after they were made (from each folder's ``manifest.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .._errors import error_words
from ..data import load_dataset
from ..paths import Paths
from ..results import MANIFEST, code_fingerprints, file_sha256

# ``reslab reproduce --check`` statuses. ``not checked``: code and files match, but a data split the
# manifest names cannot be found here (no data root, or the data set is not in it), so whether the
# data changed is unknown; rerunning would not help (it would use other data), so it is not stale.
UP_TO_DATE, STALE, NOT_CHECKED, NO_MANIFEST = "up to date", "stale", "not checked", "no manifest"
CHECK_COLUMNS = ["folder", "profile", "table", "finished", "git_commit", "status", "code_changed",
                 "files_changed", "data_changed", "data_not_found", "detail"]


def check_results(root: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
                  check_data: bool = True) -> pd.DataFrame:
    """Which results were made by code or data that has changed since, or were changed after they
    were made (``reslab reproduce --check``).

    For every ``<root>/<profile>/<table>/`` and ``<root>/summary/`` folder: compares each code
    file's hash in ``manifest.json`` with the file now (a changed or deleted file makes the result
    stale; new files do not); compares the sha256 of every file the manifest lists with the file
    on disk (a changed or missing file, or a file the manifest does not list, makes it stale);
    and, with ``check_data``, loads every data split the manifest names (same data set, split,
    subset and subset seed, without downloading) and compares fingerprints and data sources. A
    split that cannot be found is not a change: the folder is ``not checked`` unless something
    else made it stale.

    Returns:
        One row per results folder: ``folder``, ``profile``, ``table``, ``finished``, ``git_commit``,
        ``status`` (``up to date``, ``stale``, ``not checked`` or ``no manifest``), ``code_changed``,
        ``files_changed``, ``data_changed`` and ``data_not_found`` (``;``-separated), and ``detail``
        (one line saying why, for the report).
    """
    root = Path(root) if root else Paths.from_env().results
    folders = [root / "summary"] if (root / "summary").is_dir() else []
    for profile_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not profile_dir.name.startswith((".", "_")) and profile_dir.name != "summary":
            folders += sorted(p for p in profile_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    rows = []
    for folder in folders:
        path = folder / MANIFEST
        row = {c: "" for c in CHECK_COLUMNS} | {"folder": folder.relative_to(root).as_posix(), "table": folder.name,
                                                "status": NO_MANIFEST}
        if not path.is_file():
            row["detail"] = "no manifest.json: rerun the notebook with reslab reproduce"
            rows.append(row)
            continue
        manifest = json.loads(path.read_text())
        row.update(profile=manifest.get("profile", ""), finished=manifest.get("finished", ""),
                   git_commit=manifest.get("git_commit", ""))
        if manifest.get("code") is None:
            row.update(status=STALE, detail="the manifest records no code hashes (made before they were recorded)")
            rows.append(row)
            continue
        current = code_fingerprints(manifest.get("table"))
        code = [name for name, digest in manifest["code"].items() if current.get(name) != digest]
        files = _changed_files(folder, manifest)
        changed, missing = _changed_data(manifest.get("data", []), data_root) if check_data else ([], [])
        status = STALE if code or files or changed else NOT_CHECKED if missing else UP_TO_DATE
        detail = []
        if code:
            more = f" (+{len(code) - 3} more)" if len(code) > 3 else ""
            detail.append(f"code changed: {', '.join(code[:3])}{more}")
        if files == [NO_FILE_HASHES]:
            detail.append(NO_FILE_HASHES)
        elif files:
            detail.append("files changed since the manifest: " + ", ".join(files))
        if changed:
            detail.append("data changed: " + ", ".join(changed))
        if missing:
            detail.append("data not found, so not checked: " + ", ".join(missing)
                          + " (set RESLAB_DATA or --data-root to the data folder)")
        row.update(status=status, code_changed=";".join(code), files_changed=";".join(files),
                   data_changed=";".join(changed), data_not_found=";".join(missing), detail="; ".join(detail))
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


NO_FILE_HASHES = "the manifest records no file hashes (made before they were recorded)"


def _changed_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The files of ``folder`` that no longer match the manifest's hashes: ``name (changed)``,
    ``name (missing)``, ``name (not in the manifest)``; hidden files and subfolders do not count."""
    recorded = manifest.get("file_sha256")
    if recorded is None:
        return [NO_FILE_HASHES]
    out = []
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            out.append(f"{name} (missing)")
        elif file_sha256(path) != digest:
            out.append(f"{name} (changed)")
    present = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    out += [f"{name} (not in the manifest)" for name in sorted(present - set(recorded) - {MANIFEST})]
    return out


def _changed_data(splits: list[dict[str, Any]], data_root: str | os.PathLike | None) -> tuple[list[str], list[str]]:
    """The splits of a manifest whose data now differ (fingerprint or data source) and those that
    cannot be found, as text (``dataset/split: ...`` and ``dataset/split``)."""
    changed, missing, cache = [], [], {}
    for d in splits:
        key = (d["dataset"], d["split"], d.get("subset"), d.get("seed", 0), d["data_source"] == "synthetic")
        if key not in cache:
            try:
                now_ = load_dataset(d["dataset"], d["split"], root=data_root, download=False, subset=d.get("subset"),
                                    seed=d.get("seed", 0), allow_synthetic=d["data_source"] == "synthetic")
                cache[key] = (now_.fingerprint, now_.data_source)
            except FileNotFoundError:
                cache[key] = (None, None)
            except (ValueError, RuntimeError) as exc:
                cache[key] = (None, f"unreadable ({error_words(exc)})")
        fingerprint, source = cache[key]
        name = f"{d['dataset']}/{d['split']}"
        if source is None:
            missing.append(name)
        elif fingerprint != d["fingerprint"] or source != d["data_source"]:
            changed.append(f"{name}: {d['data_source']} {d['fingerprint']} -> {source} {fingerprint or ''}".rstrip())
    return changed, list(dict.fromkeys(missing))


def main(results: str | None = None, data_root: str | None = None) -> int:
    """``reslab reproduce --check``: one line per results folder; 1 if any is stale or has no
    manifest (a folder whose data cannot be found is ``not checked``, which does not count).

    Args:
        results: The results root (default: the checkout's).
        data_root: The data folder the manifests' splits are looked up in (``None``: not looked up).
    """
    paths = Paths.from_env(results=results, data=data_root)
    root, data = paths.results, paths.data
    report = check_results(root, data_root=data)
    if report.empty:
        print(f"[reslab] no results under {root}")
        return 0
    for r in report.itertuples():
        print(f"{r.status:11s} {r.folder}  (made {r.finished or '?'} at commit {r.git_commit or '?'})"
              + (f": {r.detail}" if r.detail else ""))
    stale = report[~report["status"].isin([UP_TO_DATE, NOT_CHECKED])]
    unchecked = int((report["status"] == NOT_CHECKED).sum())
    print(f"\n[reslab] {int((report['status'] == UP_TO_DATE).sum())} of {len(report)} results folders up to date"
          + (f"; {unchecked} not checked (code and files match, data not found: set RESLAB_DATA or --data-root)"
             if unchecked else "")
          + (f"; rerun the stale ones: reslab reproduce --only {' '.join(dict.fromkeys(stale['table']))}"
             if len(stale) else "."))
    return 1 if len(stale) else 0
