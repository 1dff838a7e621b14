"""Result rows with provenance, written atomically.

Every measured row says how it was made (DESIGN.md, honesty rules): table, model, dataset,
data source, profile, seed, epochs, parameters, final- and best-epoch accuracy, wall time,
images/s, device, torch version, reslab version and git commit. Files are written to a temporary
name and renamed, so a failed or interrupted run never leaves half a file nor replaces a good one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch

from . import __version__

# The columns every measured row carries, in this order; extra columns follow.
PROVENANCE_COLUMNS = [
    "table", "model", "dataset", "data_source", "profile", "seed", "epochs", "params",
    "final_acc", "best_acc", "best_epoch", "wall_s", "images_per_s", "device",
    "torch_version", "reslab_version", "git_commit",
]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the reslab checkout (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=here.parent, capture_output=True, text=True, timeout=10).stdout.strip()
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes files private; results are meant to be read
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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


def output_dir(name: str, profile: str, out_dir: str | os.PathLike | None = None) -> Path:
    """The folder a notebook writes into: ``out_dir`` if given, else ``results/<profile>/<name>``."""
    path = Path(out_dir) if out_dir else results_root() / profile / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def now() -> str:
    """The current UTC time in ISO format (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_manifest(
    out_dir: str | os.PathLike,
    table: str,
    profile: str,
    data: list[dict[str, Any]],
    wall_s: float,
    files: list[str] | None = None,
    **extra: Any,
) -> Path:
    """Write ``manifest.json`` into ``out_dir``: what was run, on which data, with which code.

    Args:
        out_dir: The results folder of one table.
        table: The table (notebook) name.
        profile: The profile it ran under.
        data: One :meth:`reslab.data.Dataset.describe` dict per split used.
        wall_s: Wall time of the run in seconds.
        files: The files the run wrote (names relative to ``out_dir``).
        **extra: Anything else worth recording (parameters, notes).
    """
    manifest = {
        "table": table,
        "profile": profile,
        "finished": now(),
        "wall_s": round(wall_s, 3),
        "data": data,
        "files": sorted(files or []),
        **environment(),
        **extra,
    }
    return write_json(manifest, Path(out_dir) / "manifest.json")
