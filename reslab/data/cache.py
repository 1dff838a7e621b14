"""The decoded-tensor cache and :func:`load_dataset`, which ties sources, readers and cache together.

A split is decoded once and saved as uint8 tensors under :func:`cache_dir`, keyed by the data
set, the split, the source's kind and path, and the name, size and mtime of its files: a changed
file gives a new key, and a damaged entry is rebuilt. Each split carries a content fingerprint
(SHA-256 of its pixels and labels).

Several processes may load the same split into an empty cache at once (jobs of a table, ranks of
a run, two notebooks): entries are renamed into place whole, and the writers of one entry (the
decoded tensors, the synthetic files, a download) take its lock, so one process does the work and
the others wait for it and read its result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from .._env import download_allowed
from .._io import atomic_torch_save, file_lock, remove_stale_temps
from ..paths import Paths
from .readers import check_labels
from .sources import (
    Found,
    candidate_folders,
    locate,
    looked_for,
    read_found,
    torchvision_download,
    write_synthetic,
)
from .specs import SPLITS, Dataset, DatasetSpec, get_spec

# Part of every cache key: bump it only when the cached content changes meaning, since a new
# value orphans every existing cache entry.
CACHE_VERSION = 1


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Return the cache folder: ``cache`` if given, else ``$RESLAB_CACHE``, else ``~/.cache/reslab``
    (:attr:`reslab.paths.Paths.cache`)."""
    return Paths.from_env(cache=cache).cache


def download_dir(cache: str | os.PathLike | None = None) -> Path:
    """Return where torchvision downloads go when no data root is given (``<cache>/downloads``)."""
    return cache_dir(cache) / "downloads"


def _download_lock(target: Path, cache: Path) -> Path:
    """The lock file of downloads into ``target``: in the cache, so that a failed download leaves
    nothing in the user's folder (share ``RESLAB_CACHE`` between machines that share ``target``)."""
    digest = hashlib.sha256(str(target.expanduser().resolve()).encode()).hexdigest()[:16]
    return cache / "locks" / f"download-{digest}.lock"


# --------------------------------------------------------------------------------------------
# Cache


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_key(spec: DatasetSpec, split: str, found: Found) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{spec.name}|{split}|{found.kind}|{found.path.resolve()}".encode())
    for f in found.files(spec, split):
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _read_entry(path: Path) -> dict | None:
    """A cache entry, or ``None`` when there is none (an entry is renamed into place whole, so a
    file that does not load is damaged, not half-written: it is rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return None


def _load_split(spec: DatasetSpec, split: str, found: Found, cache: Path) -> dict:
    key = _cache_key(spec, split, found)
    path = cache / "tensors" / f"{spec.name}-{split}-{key}.pt"
    entry = _read_entry(path)
    if entry is not None:
        return entry
    # Processes that miss the same entry at once: one decodes, the others wait and read its file.
    with file_lock(path.with_name(path.name + ".lock"), what=f"the decoded {spec.name} {split} split"):
        entry = _read_entry(path)
        if entry is not None:
            return entry
        path.unlink(missing_ok=True)
        remove_stale_temps(path)
        x, y, where = read_found(found, spec, split)
        check_labels(y, len(spec.classes), where)
        images = torch.from_numpy(np.array(x, dtype=np.uint8))  # a writable, contiguous copy
        labels = torch.from_numpy(np.array(y, dtype=np.int64))
        entry = {
            "images": images,
            "labels": labels,
            "fingerprint": _fingerprint(images, labels),
            "path": str(where),
        }
        atomic_torch_save(entry, path)
    return entry


# --------------------------------------------------------------------------------------------
# Subsets and loading


def stratified_indices(labels: torch.Tensor, n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Pick ``n`` indices with classes as balanced as possible, seeded, in a shuffled order.

    Raises:
        ValueError: if ``n`` is not positive or exceeds the number of labels.
    """
    if n <= 0 or n > labels.numel():
        raise ValueError(f"subset must be in [1, {labels.numel()}], got {n}.")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(labels.numel(), generator=g)
    per_class = [perm[labels[perm] == c] for c in range(num_classes)]
    base, extra = divmod(n, num_classes)
    want = [base + (1 if c < extra else 0) for c in range(num_classes)]
    # Classes with too few images give their share to the others.
    take = [min(w, len(p)) for w, p in zip(want, per_class)]
    short = n - sum(take)
    for c in range(num_classes):
        if short == 0:
            break
        more = min(short, len(per_class[c]) - take[c])
        take[c] += more
        short -= more
    chosen = torch.cat([p[:t] for p, t in zip(per_class, take)])
    return chosen[torch.randperm(chosen.numel(), generator=g)]


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    subset: int | None = None,
    seed: int = 0,
    allow_synthetic: bool = False,
    cache: str | os.PathLike | None = None,
) -> Dataset:
    """Load one split of a data set as uint8 tensors.

    Args:
        name: ``cifar10``, ``cifar100``, ``mnist`` or ``fashion_mnist``.
        split: ``train`` or ``test``.
        root: Folder holding the data (official files or an ImageFolder tree / tarball); default
            ``$RESLAB_DATA``.
        download: Allow the torchvision download when nothing is found under ``root``; ``None``
            reads ``$RESLAB_DOWNLOAD`` (default allowed).
        subset: Keep a stratified, seeded subset of at most this many images (a split that is
            smaller, such as synthetic data under a smoke budget, is kept whole).
        seed: Seed of the subset.
        allow_synthetic: When nothing is found and no download succeeds, write synthetic data in
            the official format and read it back (the smoke profile).
        cache: The cache of decoded splits, downloads and synthetic files; default
            ``$RESLAB_CACHE``, else ``~/.cache/reslab``.

    Returns:
        A :class:`Dataset`.

    Raises:
        ValueError: unknown name or split, corrupt files, inconsistent counts, bad ImageFolder.
        FileNotFoundError: nothing found, download not allowed or failed, synthetic not allowed.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; use one of {SPLITS}.")

    looked: list[str] = []
    found: Found | None = None
    paths = Paths.from_env(data=root, cache=cache)
    root_path, cache_root = paths.data, paths.cache
    if root_path is not None:
        if not root_path.is_dir() and not download_allowed(download):
            raise FileNotFoundError(
                f"data root {root_path} does not exist and downloading is not allowed. Pass an "
                f"existing folder as root= (or RESLAB_DATA), or allow the download into it."
            )
        found = locate(spec, root_path)
        looked += [str(p) for p in candidate_folders(root_path, spec)]

    download_error = None
    if found is None and download_allowed(download):
        target = root_path if root_path is not None else cache_root / "downloads"
        # One process downloads into a folder; the others wait, then find its files.
        with file_lock(_download_lock(target, cache_root), what=f"the {name} download into {target}"):
            found = locate(spec, target)
            if found is None:
                try:
                    torchvision_download(spec, target)
                    found = locate(spec, target)
                except Exception as exc:  # no network, a refused mirror, a full disk...
                    download_error = exc
        looked.append(f"{target} (torchvision download)")

    if found is None and allow_synthetic:
        found = write_synthetic(spec, cache_root / "synthetic" / spec.name)

    if found is None:
        why = (
            f"the torchvision download failed: {download_error}"
            if download_error is not None
            else "downloading was not allowed (download=False or RESLAB_DOWNLOAD=0)"
        )
        raise FileNotFoundError(
            f"no {name} data found. Looked in: {', '.join(looked) or 'no data root given'}; "
            f"{why}. Expected one of: {'; '.join(looked_for(spec))}. Set RESLAB_DATA (or "
            f"root=) to a folder holding these files, or allow the download."
        )

    entry = _load_split(spec, split, found, cache_root)
    images, labels, fingerprint = entry["images"], entry["labels"], entry["fingerprint"]
    if subset is not None and int(subset) < labels.numel():
        idx = stratified_indices(labels, int(subset), len(spec.classes), seed)
        images, labels = images[idx], labels[idx]
        fingerprint = hashlib.sha256(f"{fingerprint}|{idx.numpy().tobytes().hex()}".encode()).hexdigest()[:16]
    return Dataset(
        name=spec.name,
        split=split,
        images=images,
        labels=labels,
        classes=list(spec.classes),
        source=found.source,
        data_source=found.data_source,
        fingerprint=fingerprint,
        path=entry["path"],
        subset=subset,
        seed=seed,
    )
