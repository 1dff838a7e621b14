"""Where a data set comes from: the data root, the torchvision download, or synthetic data.

:func:`locate` finds a data set's files under a root and says which reader they need
(:class:`Found`); :func:`read_found` reads them. Synthetic data is written in the official
on-disk format, so it goes through the same readers as real data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_path, file_lock, remove_stale_temps
from ..paths import Paths
from .readers import (
    cifar_batches,
    find_idx,
    read_cifar_archive,
    read_cifar_folder,
    read_imagefolder_tar,
    read_imagefolder_tree,
    read_mnist_like,
)
from .specs import SPLITS, DatasetSpec


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """Return the data root: ``root`` if given, else ``$RESLAB_DATA``, else ``None``
    (:attr:`reslab.paths.Paths.data`)."""
    return Paths.from_env(data=root).data


# --------------------------------------------------------------------------------------------
# Locating a data set under a root


@dataclass
class Found:
    """A data set found on disk: what kind of files, where, and how result rows label it.

    Attributes:
        kind: Which reader :func:`read_found` uses.
        path: The folder or archive found.
        source: Where the data comes from.
        data_source: The label result rows carry (see :class:`~reslab.data.specs.Dataset`).
    """

    kind: str  # idx | cifar_folder | cifar_archive | imagefolder_tree | imagefolder_tar
    path: Path
    source: str  # official | imagefolder | synthetic
    data_source: str

    def files(self, spec: DatasetSpec, split: str) -> list[Path]:
        """The files whose size and mtime key the cache."""
        if self.kind == "idx":
            return [p for s in spec.files[split] if (p := find_idx(self.path, s)) is not None]
        if self.kind == "cifar_folder":
            return [self.path / b for b in cifar_batches(spec, split) if (self.path / b).exists()]
        if self.kind == "imagefolder_tree":
            return sorted((self.path / split).rglob("*"))
        return [self.path]


def looked_for(spec: DatasetSpec) -> list[str]:
    """Return the file and folder forms ``spec`` may take under a root, for error messages."""
    if spec.batches:  # CIFAR
        names = list(spec.files["archive"]) + [f + "/" for f in spec.files["folder"]]
        names += [f"{n}.tar.gz" for n in spec.imagefolder_names] + [
            f"{n}/train/<class>/*, {n}/test/<class>/*" for n in spec.imagefolder_names[:1]
        ]
        return names
    return [f"{s}[.gz]" for pair in spec.files.values() for s in pair]


def candidate_folders(root: Path, spec: DatasetSpec) -> list[Path]:
    """Return the folders under ``root`` that may hold ``spec``'s files, ``root`` itself last."""
    return [root / f if f else root for f in spec.folders]


def locate(spec: DatasetSpec, root: Path) -> Found | None:
    """Find ``spec``'s files under ``root``.

    Official files are looked for in :func:`candidate_folders` first, then ImageFolder tarballs
    and trees named by ``spec.imagefolder_names`` directly under ``root``.

    Returns:
        What was found, or ``None`` when nothing is there (or ``root`` is not a folder).
    """
    if not root.is_dir():
        return None
    for folder in candidate_folders(root, spec):
        if not folder.is_dir():
            continue
        if spec.torchvision_class in ("MNIST", "FashionMNIST"):
            if any(find_idx(folder, s) is not None for pair in spec.files.values() for s in pair):
                return Found("idx", folder, "official", "official")
            continue
        for name in spec.files["folder"]:
            if (folder / name).is_dir():
                return Found("cifar_folder", folder / name, "official", "official")
        for name in spec.files["archive"]:
            if (folder / name).is_file():
                return Found("cifar_archive", folder / name, "official", "official")
    if spec.imagefolder_names:
        for name in spec.imagefolder_names:
            for ext in (".tar.gz", ".tgz", ".tar"):
                if (root / f"{name}{ext}").is_file():
                    return Found("imagefolder_tar", root / f"{name}{ext}", "imagefolder", name)
            tree = root / name
            if (tree / "train").is_dir() or (tree / "test").is_dir():
                return Found("imagefolder_tree", tree, "imagefolder", name)
    return None


def read_found(found: Found, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read one split of what :func:`locate` found, with the reader its kind needs.

    Returns:
        ``(images, labels, path)`` as the readers of :mod:`reslab.data.readers` return them.

    Raises:
        FileNotFoundError: if the files of ``split`` are missing.
        ValueError: if they are corrupt or inconsistent.
    """
    if found.kind == "idx":
        return read_mnist_like(found.path, spec, split)
    if found.kind == "cifar_folder":
        return read_cifar_folder(found.path, spec, split)
    if found.kind == "cifar_archive":
        return read_cifar_archive(found.path, spec, split)
    if found.kind == "imagefolder_tree":
        if not (found.path / split).is_dir():
            raise FileNotFoundError(
                f"ImageFolder {found.path} has no {split}/ folder; expected {split}/<class>/<image>."
            )
        return read_imagefolder_tree(found.path, spec, split)
    return read_imagefolder_tar(found.path, spec, split)


# --------------------------------------------------------------------------------------------
# Download and synthetic data


#: Prefix of the folder a download is made in, inside its target, before its files move into place.
DOWNLOAD_TMP_PREFIX = ".reslab-download-"


def torchvision_download(spec: DatasetSpec, target: Path) -> None:
    """Download both splits of ``spec`` into ``target`` with torchvision, in its own layout.

    torchvision fetches and extracts into a temporary folder inside ``target``; only when both
    splits are there do its files move into place, each by one rename, so a reader never finds a
    half-downloaded or half-extracted file. A failed download leaves nothing behind: the temporary
    folder, and ``target`` itself and its parents if they were new, are removed; what was there
    before, the user's files included, is never touched. The remains of a download that was
    killed (its temporary folder) are removed by the next one. Callers serialise downloads into
    one ``target`` (``reslab.data.cache`` holds a lock).

    Raises:
        Exception: whatever torchvision raises (no network, a refused mirror, a full disk...).
    """
    import tempfile

    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision_class)
    new_folders = [p for p in (target, *target.parents) if not p.exists()]  # deepest first
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(f"{DOWNLOAD_TMP_PREFIX}*"):  # a killed download's
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=DOWNLOAD_TMP_PREFIX, dir=target))
    try:
        for train in (True, False):
            cls(str(tmp), train=train, download=True)
        _move_into(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in new_folders:
            try:
                folder.rmdir()  # only while empty: never a folder something else has written into since
            except OSError:
                break
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _move_into(source: Path, target: Path) -> None:
    """Move the tree ``source`` into ``target``: a folder ``target`` lacks moves whole (one rename),
    a file replaces its namesake (one rename); folders that exist on both sides are merged."""
    for entry in sorted(source.iterdir()):
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            _move_into(entry, dest)
        else:
            os.replace(entry, dest)


SYNTHETIC_PER_CLASS = {"train": 64, "test": 16}
# Images per split for ten classes; data sets with more classes get fewer per class (at least
# SYNTHETIC_MIN_PER_CLASS), so 100-class synthetic data stays as small as 10-class data.
SYNTHETIC_MIN_PER_CLASS = 2


def synthetic_images(spec: DatasetSpec, split: str, per_class: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make images with class structure a small net can learn.

    Each class has a smooth random template; an image is its template shifted by up to two
    pixels, scaled in contrast and overlaid with noise, so classes are separable but not
    trivially (a linear model does not reach 100% at once).

    Returns:
        ``(N, C, H, W)`` uint8 images and ``(N,)`` int64 labels, classes interleaved.
    """
    k = len(spec.classes)
    per_class = per_class or max(SYNTHETIC_PER_CLASS[split] * 10 // k, SYNTHETIC_MIN_PER_CLASS)
    rng_t = np.random.default_rng(1234)  # templates are shared by both splits
    c, s, k = spec.channels, spec.size, len(spec.classes)
    coarse = rng_t.uniform(0, 1, size=(k, c, 4, 4)).astype(np.float32)
    templates = F.interpolate(torch.from_numpy(coarse), size=(s, s), mode="bicubic", align_corners=False).numpy()
    rng = np.random.default_rng(seed + (0 if split == "train" else 10_000))
    n = per_class * k
    labels = np.tile(np.arange(k), per_class).astype(np.int64)
    shifts = rng.integers(-2, 3, size=(n, 2))
    contrast = rng.uniform(0.6, 1.2, size=(n, 1, 1, 1))
    noise = rng.normal(0, 0.25, size=(n, c, s, s))
    base = np.stack([np.roll(templates[y], tuple(sh), axis=(1, 2)) for y, sh in zip(labels, shifts)])
    images = np.clip((base - 0.5) * contrast + 0.5 + noise, 0, 1)
    return (images * 255).round().astype(np.uint8), labels


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    # mtime=0: the same content gives the same bytes, so a rewrite is recognisably the same file.
    return gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0)


#: The record :func:`write_synthetic` writes last: which files it wrote, with their digests.
SYNTHETIC_RECORD = "reslab-synthetic.json"


def _synthetic_files(spec: DatasetSpec, seed: int) -> tuple[str, dict[str, bytes]]:
    """The kind of files and their contents (path relative to the folder -> bytes)."""
    files: dict[str, bytes] = {}
    if spec.torchvision_class in ("MNIST", "FashionMNIST"):
        for split in SPLITS:
            x, y = synthetic_images(spec, split, seed=seed)
            img_stem, lbl_stem = spec.files[split]
            files[f"{img_stem}.gz"] = _idx_bytes(x[:, 0])
            files[f"{lbl_stem}.gz"] = _idx_bytes(y.astype(np.uint8))
        return "idx", files
    batches = spec.files["folder"][0]
    for split in SPLITS:
        x, y = synthetic_images(spec, split, seed=seed)
        names = cifar_batches(spec, split)
        for i, name in enumerate(names):
            sl = slice(i, None, len(names))
            entry = {"data": x[sl].reshape(len(y[sl]), -1), spec.label_key: y[sl].tolist(), "batch_label": name}
            files[f"{batches}/{name}"] = pickle.dumps(entry, protocol=4)
    return "cifar_folder", files


def _synthetic_complete(folder: Path, digests: dict[str, str]) -> bool:
    """Whether ``folder`` holds exactly these files, as its record says and its files confirm."""
    try:
        record = json.loads((folder / SYNTHETIC_RECORD).read_text())
    except (OSError, ValueError):
        return False
    if record.get("files") != digests:
        return False
    return all((folder / rel).is_file() and _sha256(folder / rel) == digest for rel, digest in digests.items())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_synthetic(spec: DatasetSpec, folder: Path, seed: int = 0) -> Found:
    """Write synthetic data in ``spec``'s official on-disk format under ``folder``.

    Safe when several processes ask at once (jobs sharing a cache): the writers take the folder's
    lock, each file is written whole under a temporary name and renamed into place, and a record
    of the files is written last. A folder whose record and files already agree is left as it is
    (its files keep their times, so the decoded-tensor cache keeps its key); anything else, such as
    the remains of a writer that was killed, is written again.

    Args:
        spec: The data set whose format and shape to imitate.
        folder: Where to write both splits (created if missing).
        seed: Seed of :func:`synthetic_images`.

    Returns:
        The written data, as :func:`locate` would find it, with source ``synthetic``.
    """
    kind, files = _synthetic_files(spec, seed)
    digests = {rel: hashlib.sha256(blob).hexdigest() for rel, blob in files.items()}
    path = folder if kind == "idx" else folder / spec.files["folder"][0]
    found = Found(kind, path, "synthetic", "synthetic")
    if _synthetic_complete(folder, digests):
        return found
    with file_lock(folder / ".reslab-synthetic.lock", what=f"synthetic {spec.name} files"):
        if _synthetic_complete(folder, digests):
            return found
        for rel, blob in files.items():
            remove_stale_temps(folder / rel)
            with atomic_path(folder / rel) as tmp:
                tmp.write_bytes(blob)
        with atomic_path(folder / SYNTHETIC_RECORD) as tmp:
            tmp.write_text(json.dumps({"dataset": spec.name, "seed": seed, "files": digests}, indent=1, sort_keys=True))
    return found
