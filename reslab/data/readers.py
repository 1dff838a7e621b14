"""Readers of the on-disk formats: IDX files, CIFAR pickles (folder or archive), ImageFolder trees
and tarballs.

Every reader returns ``(images, labels, path)``: ``(N, C, H, W)`` uint8 and ``(N,)`` int64 NumPy
arrays, and the file or folder read. A truncated, corrupt or inconsistent file raises
:class:`ValueError` naming the file and what to do about it, never a bare decoder error.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .specs import SPLITS, DatasetSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(
            f"{path} is truncated or corrupt ({exc}). Delete it and download it again, or "
            f"replace it with an intact copy."
        ) from exc


def read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes.

    Args:
        path: The file.
        expect_dims: 3 for images, 1 for labels.

    Raises:
        ValueError: on a wrong magic number, a wrong number of dimensions, or a file shorter or
            longer than its header says.
    """
    raw = _read_maybe_gz(path)
    if len(raw) < 4:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, not even an IDX header.")
    zero, dtype_code, ndim = int.from_bytes(raw[0:2], "big"), raw[2], raw[3]
    magic = int.from_bytes(raw[0:4], "big")
    expected_magic = 0x0800 + expect_dims
    if zero != 0 or dtype_code != 0x08 or ndim != expect_dims:
        raise ValueError(
            f"{path} has IDX magic number {magic:#010x}, expected {expected_magic:#010x} "
            f"(unsigned bytes, {expect_dims} dimension(s)). Is it the right file "
            f"({'images' if expect_dims == 3 else 'labels'}), and intact?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated inside its IDX header.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise ValueError(
            f"{path} is {len(raw)} bytes but its header announces {dims} "
            f"({expected} bytes): the file is truncated or corrupt. Download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path | None:
    """Return the IDX file ``stem`` in ``folder``, raw or ``.gz``, dashed or dotted name; ``None`` if absent."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # The official Fashion-MNIST and some mirrors name the files with a dot: train-images.idx3-ubyte
    dotted = stem.replace("-idx", ".idx")
    for candidate in (folder / dotted, folder / f"{dotted}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_mnist_like(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read one split of an IDX data set (MNIST, Fashion-MNIST) from its image and label files.

    Args:
        folder: The folder holding the IDX files.
        spec: The data set.
        split: ``train`` or ``test``.

    Returns:
        ``(N, 1, H, W)`` uint8 images, ``(N,)`` int64 labels, and the image file.

    Raises:
        FileNotFoundError: if the split's image or label file is missing.
        ValueError: on a corrupt file, or image and label counts that differ.
    """
    img_stem, lbl_stem = spec.files[split]
    img_path, lbl_path = find_idx(folder, img_stem), find_idx(folder, lbl_stem)
    if img_path is None or lbl_path is None:
        missing = img_stem if img_path is None else lbl_stem
        raise FileNotFoundError(
            f"{folder} holds part of {spec.name} but not {missing}(.gz). Put all four IDX "
            f"files there: {', '.join(s for pair in spec.files.values() for s in pair)}."
        )
    images = read_idx(img_path, 3)
    labels = read_idx(lbl_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{img_path.name} holds {images.shape[0]} images but {lbl_path.name} holds "
            f"{labels.shape[0]} labels in {folder}: the files do not belong together. "
            f"Replace both with an intact pair."
        )
    return images[:, None], labels.astype(np.int64), img_path


# --------------------------------------------------------------------------------------------
# CIFAR pickles: the official folder or archive


def cifar_batches(spec: DatasetSpec, split: str) -> list[str]:
    """Return the names of the CIFAR pickles that make up ``split``, in order."""
    return list(spec.batches[split])


def _unpickle_cifar(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        entry = pickle.loads(blob, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except Exception as exc:  # pickle raises many types on corrupt input
        raise ValueError(
            f"{where} is not a readable CIFAR batch ({type(exc).__name__}: {exc}): the file is "
            f"truncated or corrupt. Download it again."
        ) from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where} holds data of shape {data.shape}, expected (N, 3072).")
    if data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where} holds {data.shape[0]} images but {labels.shape[0]} labels: the batch is corrupt."
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_folder(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read one split from an extracted official CIFAR folder (``cifar-10-batches-py/`` ...).

    Returns:
        ``(N, 3, 32, 32)`` uint8 images, ``(N,)`` int64 labels, and ``folder``.

    Raises:
        FileNotFoundError: if one of the split's pickles is missing.
        ValueError: if a pickle is corrupt.
    """
    images, labels = [], []
    for batch in cifar_batches(spec, split):
        path = folder / batch
        if not path.is_file():
            every = [b for s in SPLITS for b in spec.batches[s]]
            raise FileNotFoundError(
                f"{folder} lacks {batch}. A complete {spec.files['folder'][0]}/ holds {', '.join(every)}; "
                f"download it again or extract {spec.files['archive'][0]} there."
            )
        x, y = _unpickle_cifar(path.read_bytes(), str(path))
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels), folder


def read_cifar_archive(archive: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read one split from the official CIFAR tarball without extracting it.

    Returns:
        ``(N, 3, 32, 32)`` uint8 images, ``(N,)`` int64 labels, and ``archive``.

    Raises:
        ValueError: if the archive is corrupt or lacks one of the split's pickles.
    """
    wanted = {f"{spec.files['folder'][0]}/{b}": None for b in cifar_batches(spec, split)}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.name in wanted:
                    wanted[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(
            f"{archive} is truncated or corrupt ({exc}). Delete it and download it again."
        ) from exc
    missing = [k for k, v in wanted.items() if v is None]
    if missing:
        raise ValueError(
            f"{archive} lacks {', '.join(missing)}: it is incomplete or not the {spec.name} python "
            f"archive. Download {spec.files['archive'][0]} again."
        )
    parts = [_unpickle_cifar(blob, f"{archive}:{name}") for name, blob in wanted.items()]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), archive


# --------------------------------------------------------------------------------------------
# ImageFolder trees and tarballs


def _decode_image(blob: bytes, where: str, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"{where} is not a readable image ({exc}): the file is truncated or corrupt. "
            f"Replace or delete it."
        ) from exc
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _stack_imagefolder(
    items: dict[str, list[tuple[str, bytes]]], spec: DatasetSpec, split: str, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``{class folder: [(file name, bytes), ...]}`` into arrays in class-label order."""
    expected = _expected_class_folders(spec)
    found = sorted(items)
    missing = [c for c in expected if c not in items]
    if missing:
        raise ValueError(
            f"ImageFolder {where} ({split}/) lacks class folder(s) {missing}; found {found}. "
            f"Expected one folder per class: {expected}."
        )
    extra = [c for c in found if c not in expected]
    if extra:
        raise ValueError(
            f"ImageFolder {where} ({split}/) has unexpected class folder(s) {extra}; expected "
            f"exactly {expected}. Remove or rename them."
        )
    empty = [c for c in expected if not items[c]]
    if empty:
        raise ValueError(
            f"ImageFolder {where} ({split}/) has empty class folder(s) {empty}: every class "
            f"needs at least one image ({', '.join(IMAGE_EXTENSIONS)})."
        )
    images, labels = [], []
    for label, cls in enumerate(expected):
        for fname, blob in sorted(items[cls]):
            arr = _decode_image(blob, f"{where}:{split}/{cls}/{fname}", spec.channels)
            if arr.shape != (spec.channels, spec.size, spec.size):
                raise ValueError(
                    f"{where}:{split}/{cls}/{fname} is {arr.shape[2]}x{arr.shape[1]}, expected "
                    f"{spec.size}x{spec.size} for {spec.name}."
                )
            images.append(arr)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _expected_class_folders(spec: DatasetSpec) -> list[str]:
    # ImageFolder class folders must sort into the official label order (true for CIFAR-10's names).
    return [c.replace("/", "_") for c in spec.classes]


def read_imagefolder_tree(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read ``folder/<split>/<class>/<image>`` into arrays, labels in ``spec``'s class order.

    Returns:
        ``(N, C, H, W)`` uint8 images, ``(N,)`` int64 labels, and ``folder``.

    Raises:
        ValueError: on missing, unexpected or empty class folders, an unreadable image, or an
            image of the wrong size.
    """
    split_dir = folder / split
    items: dict[str, list[tuple[str, bytes]]] = {}
    for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        items[cls_dir.name] = [
            (f.name, f.read_bytes())
            for f in cls_dir.iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        ]
    x, y = _stack_imagefolder(items, spec, split, folder)
    return x, y, folder


def read_imagefolder_tar(archive: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """Read ``[top/]<split>/<class>/<image>`` entries of a tarball, as :func:`read_imagefolder_tree`.

    Returns:
        ``(N, C, H, W)`` uint8 images, ``(N,)`` int64 labels, and ``archive``.

    Raises:
        ValueError: if the archive is corrupt or holds no entries of ``split``, and as
            :func:`read_imagefolder_tree`.
    """
    items: dict[str, list[tuple[str, bytes]]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                # Accept an optional leading folder: [top/]split/class[/file]
                if split not in parts:
                    continue
                i = parts.index(split)
                rest = parts[i + 1:]
                if member.isdir() and len(rest) == 1:
                    items.setdefault(rest[0], [])
                elif member.isfile() and len(rest) == 2 and Path(rest[1]).suffix.lower() in IMAGE_EXTENSIONS:
                    items.setdefault(rest[0], []).append((rest[1], tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(
            f"{archive} is truncated or corrupt ({exc}). Replace it with an intact copy."
        ) from exc
    if not items:
        raise ValueError(
            f"{archive} holds no {split}/<class>/<image> entries: it is not an ImageFolder "
            f"tarball of {spec.name} (expected train/<class>/*.jpg and test/<class>/*.jpg)."
        )
    x, y = _stack_imagefolder(items, spec, split, archive)
    return x, y, archive


# --------------------------------------------------------------------------------------------
# Checks shared by every format


def check_labels(labels: np.ndarray, num_classes: int, where: Path) -> None:
    """Check that every label lies in ``[0, num_classes)``.

    Raises:
        ValueError: naming ``where`` and the range found.
    """
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels in {where} range over [{labels.min()}, {labels.max()}], expected "
            f"[0, {num_classes - 1}]: the file is corrupt or belongs to another data set."
        )
