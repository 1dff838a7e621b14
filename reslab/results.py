"""Result rows with provenance, written atomically.

Every measured row says how it was made: table, model, dataset,
data source, profile, seed, epochs, parameters, final- and best-epoch accuracy, wall time,
images/s, device, torch version, reslab version and git commit. Files are written to a temporary
name and renamed, so a failed or interrupted run never leaves half a file nor replaces a good one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ._io import atomic_path
from ._version import __version__

# The columns every measured row carries, in this order; extra columns follow.
PROVENANCE_COLUMNS = [
    "table", "model", "dataset", "data_source", "profile", "seed", "epochs", "params",
    "final_acc", "best_acc", "best_epoch", "wall_s", "images_per_s", "device",
    "torch_version", "reslab_version", "git_commit",
]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the reslab checkout (``+dirty`` when its code has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        # Dirty means the code differs from the commit; results/ and executed notebooks do not count.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "reslab",
                                "pyproject.toml"], cwd=here.parent, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def environment() -> dict[str, Any]:
    """Versions and machine facts for manifests."""
    info = {
        "reslab_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision

        info["torchvision_version"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        info["torchvision_version"] = None
    return info


def make_row(**fields: Any) -> dict[str, Any]:
    """Build a result row: the given fields plus versions and commit, in canonical column order.

    Raises:
        ValueError: if a provenance column (other than the versions filled here) is missing.
    """
    row = {"torch_version": torch.__version__, "reslab_version": __version__, "git_commit": git_commit()}
    row.update(fields)
    missing = [c for c in PROVENANCE_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"result row lacks provenance field(s) {missing}; every row must carry {PROVENANCE_COLUMNS}.")
    ordered = {c: row[c] for c in PROVENANCE_COLUMNS}
    ordered.update({k: v for k, v in row.items() if k not in ordered})
    return ordered


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as CSV atomically and return the path."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 80) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def results_root() -> Path:
    """Where results go: ``$RESLAB_RESULTS``, else ``results/`` of the enclosing reslab checkout
    (found by walking up from the working directory), else ``./results``."""
    env = os.environ.get("RESLAB_RESULTS")
    if env:
        return Path(env).expanduser()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "reslab").is_dir():
            return folder / "results"
    return cwd / "results"


def output_dir(name: str, profile: str, out_dir: str | os.PathLike | None = None, create: bool = True) -> Path:
    """The folder a notebook writes into: ``out_dir`` if given, else ``results/<profile>/<name>``.

    Args:
        create: Make the folder now. A table passes ``False``: its files create it when they are
            written, so a call that stops on bad input leaves no empty results folder behind.
    """
    path = Path(out_dir) if out_dir else results_root() / profile / name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def now() -> str:
    """The current UTC time in ISO format (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def notebook_code_hash(path: str | os.PathLike) -> str:
    """A hash of a notebook's code cells (sources only: outputs and metadata do not count)."""
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    code = "\n# ---\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return _sha(code.encode())


# The command line starts notebooks and moves folders; it computes no number of a result.
NOT_RESULT_CODE = ("reslab/cli.py",)


def code_fingerprints(table: str | None = None) -> dict[str, str]:
    """Hashes of the code a result depends on: every ``reslab/**/*.py`` and claims file (except
    :data:`NOT_RESULT_CODE`), and the code cells of ``notebooks/<table>.ipynb`` when that notebook
    exists in the checkout.

    Keys are paths relative to the checkout (``reslab/train.py``, ``notebooks/<table>.ipynb``).
    """
    package = Path(__file__).resolve().parent
    out = {}
    for path in sorted(package.rglob("*")):
        name = f"reslab/{path.relative_to(package).as_posix()}"
        if path.suffix in (".py", ".csv") and "__pycache__" not in path.parts and name not in NOT_RESULT_CODE:
            out[name] = _sha(path.read_bytes())
    notebook = package.parent / "notebooks" / f"{table}.ipynb"
    if table and notebook.is_file():
        out[f"notebooks/{table}.ipynb"] = notebook_code_hash(notebook)
    return out


def write_manifest(
    out_dir: str | os.PathLike,
    table: str,
    profile: str,
    data: list[dict[str, Any]],
    wall_s: float,
    files: list[str] | None = None,
    devices: list[str] | None = None,
    **extra: Any,
) -> Path:
    """Write ``manifest.json`` into ``out_dir``: what was run, on which data, with which code.

    The manifest names the table, profile, finish time and wall time, every data split (data
    source, fingerprint, size, subset), the files written, the devices that trained, versions,
    the git commit, and the hash of every code file (``code``), so that ``reslab reproduce
    --check`` can tell which results were made by code or data that has changed since.

    Args:
        out_dir: The results folder of one table.
        table: The table (notebook) name.
        profile: The profile it ran under.
        data: One :meth:`reslab.data.Dataset.describe` dict per split used.
        wall_s: Wall time of the run in seconds.
        files: The files the run wrote (names relative to ``out_dir``).
        devices: The devices the runs trained on (``cpu``, ``cuda``...); empty when nothing trained.
        **extra: Anything else worth recording (parameters, notes).
    """
    manifest = {
        "table": table,
        "profile": profile,
        "finished": now(),
        "wall_s": round(wall_s, 3),
        "data": data,
        "files": sorted(files or []),
        "devices": sorted(devices or []),
        **environment(),
        "code": code_fingerprints(table),
        **extra,
    }
    return write_json(manifest, Path(out_dir) / "manifest.json")


def check_results(root: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
                  check_data: bool = True) -> pd.DataFrame:
    """Which results were made by code or data that has changed since (``reslab reproduce --check``).

    For every ``<root>/<profile>/<table>/`` and ``<root>/summary/`` folder: compares each code
    file's hash in ``manifest.json`` with the file now (a changed or deleted file makes the result
    stale; new files do not), and, with ``check_data``, loads every data split the manifest names
    (same data set, split, subset and subset seed, without downloading) and compares fingerprints
    and data sources.

    Returns:
        One row per results folder: ``folder``, ``profile``, ``table``, ``finished``, ``git_commit``,
        ``status`` (``up to date``, ``stale`` or ``no manifest``), ``code_changed`` and
        ``data_changed`` (``;``-separated), and ``detail``.
    """
    root = Path(root) if root else results_root()
    folders = [root / "summary"] if (root / "summary").is_dir() else []
    for profile_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not profile_dir.name.startswith((".", "_")) and profile_dir.name != "summary":
            folders += sorted(p for p in profile_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    rows = []
    for folder in folders:
        path = folder / "manifest.json"
        row = {"folder": folder.relative_to(root).as_posix(), "profile": "", "table": folder.name, "finished": "",
               "git_commit": "", "status": "no manifest", "code_changed": "", "data_changed": "", "detail": ""}
        if not path.is_file():
            row["detail"] = "no manifest.json: rerun the notebook with reslab reproduce"
            rows.append(row)
            continue
        manifest = json.loads(path.read_text())
        row.update(profile=manifest.get("profile", ""), finished=manifest.get("finished", ""),
                   git_commit=manifest.get("git_commit", ""))
        current = code_fingerprints(manifest.get("table"))
        recorded = manifest.get("code")
        if recorded is None:
            row.update(status="stale", detail="the manifest records no code hashes (made before they were recorded)")
            rows.append(row)
            continue
        code = [name for name, digest in recorded.items() if current.get(name) != digest]
        data = _changed_data(manifest.get("data", []), data_root) if check_data else []
        row.update(code_changed=";".join(code), data_changed=";".join(data),
                   status="stale" if code or data else "up to date")
        rows.append(row)
    return pd.DataFrame(rows, columns=["folder", "profile", "table", "finished", "git_commit", "status",
                                       "code_changed", "data_changed", "detail"])


def _changed_data(splits: list[dict[str, Any]], data_root: str | os.PathLike | None) -> list[str]:
    """The splits of a manifest whose data now differ (fingerprint or data source), as text."""
    from .data import load_dataset  # lazily: importing reslab.results must not load the data layer

    changed, cache = [], {}
    for d in splits:
        key = (d["dataset"], d["split"], d.get("subset"), d.get("seed", 0), d["data_source"] == "synthetic")
        if key not in cache:
            try:
                now_ = load_dataset(d["dataset"], d["split"], root=data_root, download=False, subset=d.get("subset"),
                                    seed=d.get("seed", 0), allow_synthetic=d["data_source"] == "synthetic")
                cache[key] = (now_.fingerprint, now_.data_source)
            except (FileNotFoundError, ValueError, RuntimeError) as exc:
                cache[key] = (None, f"unreadable: {exc}")
        fingerprint, source = cache[key]
        if fingerprint != d["fingerprint"] or source != d["data_source"]:
            changed.append(f"{d['dataset']}/{d['split']}: {d['data_source']} {d['fingerprint']} -> {source} {fingerprint}")
    return changed
