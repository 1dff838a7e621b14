"""Result rows with provenance, written atomically.

Every measured row says how it was made: table, model, dataset, data source, profile, seed,
epochs, parameters, final- and best-epoch accuracy, wall time, images/s, device, precision (fp32
or bf16 autocast), torch version, reslab version and git commit. Files are written to a temporary
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
from .paths import Paths

# The columns every measured row carries, in this order; extra columns follow.
PROVENANCE_COLUMNS = [
    "table", "model", "dataset", "data_source", "profile", "seed", "epochs", "params",
    "final_acc", "best_acc", "best_epoch", "wall_s", "images_per_s", "device", "precision",
    "torch_version", "reslab_version", "git_commit",
]


#: Where the package runs from no git checkout (an offline bundle's ``src/``), the commit its code
#: was taken from; the bundle's ``run.sh`` sets it from ``bundle.json``.
COMMIT_ENV = "RESLAB_GIT_COMMIT"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the reslab checkout (``+dirty`` when its code has uncommitted changes).

    Where the package is not in a git checkout (no git, no repository, or a repository that does
    not track this package: an offline bundle unpacked anywhere), ``$RESLAB_GIT_COMMIT``, else
    ``unknown``.
    """
    here = Path(__file__).resolve().parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "results.py"], cwd=here, capture_output=True,
                                 text=True, timeout=10)
        if tracked.returncode == 0:
            sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            # Dirty means the code differs from the commit; results/ and executed notebooks do not count.
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "reslab",
                                    "pyproject.toml"], cwd=here.parent, capture_output=True, text=True,
                                   timeout=10).stdout.strip()
            return f"{sha}+dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get(COMMIT_ENV, "").strip() or "unknown"


def environment() -> dict[str, Any]:
    """Versions and machine facts for manifests."""
    info = {
        "reslab_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        # Every visible GPU (a table's rows say which one each run used: their ``device``).
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
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


def scratch_note(path: str | os.PathLike, table: str, profile: str | None = None) -> str:
    """The note a table prints when it wrote into the scratch folder: where the files are, and the
    command that updates the committed results."""
    committed = f"results/{profile}/{table}" if profile else f"results/{table}"
    command = f"reslab reproduce --only {table}" + (f" --profile {profile}" if profile else "")
    return (f"Written to {Path(path).resolve()} (a git-ignored scratch folder): this run did not go through "
            f"`reslab reproduce`, so the committed {committed} is untouched. To update it, run `{command}`.")


def output_dir(name: str, profile: str, out_dir: str | os.PathLike | None = None, create: bool = True,
               paths: Paths | None = None) -> Path:
    """The folder a notebook writes into: ``out_dir`` if given, else ``<output root>/<profile>/<name>``
    (:attr:`reslab.paths.Paths.output` of ``paths``, default resolved from the environment: the
    staging folder under ``reslab reproduce``, else the scratch folder).

    Args:
        create: Make the folder now. A table passes ``False``: its files create it when they are
            written, so a call that stops on bad input leaves no empty results folder behind.
    """
    path = Path(out_dir) if out_dir else (paths or Paths.from_env()).output / profile / name
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


#: Code that cannot change a number of a result, so that a change to it leaves results up to date:
#: the command line and the commands (they start notebooks, move folders, pack and unpack bundles,
#: render the README), the notebook catalog (order and parameters cells), the cost model (an
#: estimate printed before training), the executors (where a run is made, not what it computes) and
#: the progress line a run prints.
#: A path ending in ``/`` stands for everything under it.
NOT_RESULT_CODE = ("reslab/cli.py", "reslab/app/", "reslab/catalog.py", "reslab/runs/cost.py", "reslab/runs/jobs.py",
                   "reslab/progress.py")


def is_result_code(name: str) -> bool:
    """Whether package file ``name`` (``reslab/...``) can change a result (:data:`NOT_RESULT_CODE`)."""
    return not any(name == p or (p.endswith("/") and name.startswith(p)) for p in NOT_RESULT_CODE)


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
        if path.suffix in (".py", ".csv") and "__pycache__" not in path.parts and is_result_code(name):
            out[name] = _sha(path.read_bytes())
    notebook = package.parent / "notebooks" / f"{table}.ipynb"
    if table and notebook.is_file():
        out[f"notebooks/{table}.ipynb"] = notebook_code_hash(notebook)
    return out


MANIFEST = "manifest.json"


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), as ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_hashes(folder: Path, names: list[str]) -> dict[str, str]:
    missing = [n for n in names if n != MANIFEST and not (folder / n).is_file()]
    if missing:
        raise ValueError(f"the manifest of {folder} would list file(s) {missing} that are not there; write them first.")
    return {n: file_sha256(folder / n) for n in sorted(names) if n != MANIFEST}


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
    source, fingerprint, size, subset), the files written and the sha256 of each (``file_sha256``;
    ``reslab reproduce`` adds the executed notebook with :func:`add_to_manifest` once it has
    finished), the devices that trained, versions, the git commit, and the hash of every code file
    (``code``), so that ``reslab reproduce --check`` can tell which results were made by code or
    data that has changed since, or were changed after they were made.

    Args:
        out_dir: The results folder of one table.
        table: The table (notebook) name.
        profile: The profile it ran under.
        data: One :meth:`reslab.data.Dataset.describe` dict per split used.
        wall_s: Wall time of the run in seconds.
        files: The files the run wrote (names relative to ``out_dir``), each already written.
        devices: The devices the runs trained on (``cpu``, ``cuda``...); empty when nothing trained.
        **extra: Anything else worth recording (parameters, notes).

    Raises:
        ValueError: if a file in ``files`` (other than the manifest) does not exist.
    """
    out_dir = Path(out_dir)
    manifest = {
        "table": table,
        "profile": profile,
        "finished": now(),
        "wall_s": round(wall_s, 3),
        "data": data,
        "files": sorted(files or []),
        "file_sha256": _file_hashes(out_dir, list(files or [])),
        "devices": sorted(devices or []),
        **environment(),
        "code": code_fingerprints(table),
        **extra,
    }
    return write_json(manifest, out_dir / MANIFEST)


def add_to_manifest(out_dir: str | os.PathLike, name: str) -> Path:
    """Record file ``name`` of ``out_dir`` (and its sha256) in the folder's manifest: for a file
    written after the table finished, such as the executed notebook ``reslab reproduce`` saves
    once the kernel has stopped and machine paths are stripped."""
    path = Path(out_dir) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"] = sorted(set(manifest.get("files", [])) | {name})
    manifest["file_sha256"] = {**manifest.get("file_sha256", {}), **_file_hashes(Path(out_dir), [name])}
    return write_json(manifest, path)
