"""Data sets as cached uint8 tensors, and an on-device batch loader that augments whole batches.

Data flow (DESIGN.md): a data set name and a root folder -> :func:`load_dataset` -> one uint8
tensor ``(N, C, H, W)`` with int64 labels, decoded once and cached on disk -> :class:`BatchLoader`,
which keeps a whole split on the training device and augments whole batches there. There is no
per-sample PIL and no DataLoader worker on this path: on a 2-core machine feeding a fast GPU,
per-sample Python is the bottleneck.

Sources are tried in a fixed order:

1. ``root`` (argument, else the ``RESLAB_DATA`` environment variable): the official distribution
   files (MNIST / Fashion-MNIST: the four IDX files, ``.gz`` or not; CIFAR-10:
   ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``; CIFAR-100: ``cifar-100-python.tar.gz``
   or ``cifar-100-python/`` with the ``train`` and ``test`` pickles, labels ``fine_labels``), or
   an ImageFolder tree or tarball
   (``train/<class>/*``, ``test/<class>/*``).
2. The torchvision download, when allowed (``download=None`` reads ``RESLAB_DOWNLOAD``, default on).
3. Only when the caller asks for it (``allow_synthetic=True``, the smoke profile): synthetic data,
   written in the real on-disk format and read back through the same readers.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import math
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._env import download_allowed
from ._io import atomic_torch_save

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1

# Per-channel statistics used for normalisation (computed on each training split).
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set is: its classes, image shape, official files and folder names."""

    name: str
    classes: tuple[str, ...]
    channels: int
    size: int
    split_sizes: dict[str, int]
    # Folder names under the root that may hold this data set, the root itself last.
    folders: tuple[str, ...]
    # Official distribution file stems (IDX) or archive names (CIFAR).
    files: dict[str, tuple[str, ...]]
    torchvision_class: str
    # ImageFolder tarball / folder names accepted under the root.
    imagefolder_names: tuple[str, ...] = ()
    # CIFAR pickles per split inside the official folder, and the key of their labels.
    batches: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label_key: str = "labels"


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# CIFAR-100's 100 fine classes in label order (``fine_label_names`` of the official ``meta`` file).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        classes=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
        channels=3,
        size=32,
        split_sizes={"train": 50000, "test": 10000},
        folders=("cifar10", "cifar-10", "CIFAR10", ""),
        files={"archive": ("cifar-10-python.tar.gz",), "folder": ("cifar-10-batches-py",)},
        torchvision_class="CIFAR10",
        imagefolder_names=("cifar10-jpeg", "cifar10-imagefolder", "cifar10"),
        batches={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        classes=CIFAR100_CLASSES,
        channels=3,
        size=32,
        split_sizes={"train": 50000, "test": 10000},
        folders=("cifar100", "cifar-100", "CIFAR100", ""),
        files={"archive": ("cifar-100-python.tar.gz",), "folder": ("cifar-100-python",)},
        torchvision_class="CIFAR100",
        batches={"train": ("train",), "test": ("test",)},
        label_key="fine_labels",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(i) for i in range(10)),
        channels=1,
        size=28,
        split_sizes={"train": 60000, "test": 10000},
        folders=("mnist", "MNIST/raw", "MNIST", ""),
        files=_MNIST_FILES,
        torchvision_class="MNIST",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        channels=1,
        size=28,
        split_sizes={"train": 60000, "test": 10000},
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST", ""),
        files=_MNIST_FILES,
        torchvision_class="FashionMNIST",
    ),
}


@dataclass
class Dataset:
    """One split of a data set, held as tensors.

    Attributes:
        name: Data set key (``cifar10``, ``mnist``, ``fashion_mnist``).
        split: ``train`` or ``test``.
        images: ``(N, C, H, W)`` uint8.
        labels: ``(N,)`` int64.
        classes: Class names in label order.
        source: ``official``, ``imagefolder`` or ``synthetic``.
        data_source: The label result rows carry: ``official``, the ImageFolder's name (for
            example ``cifar10-jpeg``) or ``synthetic``.
        fingerprint: SHA-256 (hex, 16 characters) of the returned images and labels.
        path: The file or folder the split was read from.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str
    data_source: str
    fingerprint: str
    path: str
    subset: int | None = None
    seed: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Return the number of images of each class, in label order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def describe(self) -> dict:
        """Return a flat dict of this split's provenance, for result rows and manifests."""
        return {
            "dataset": self.name,
            "split": self.split,
            "data_source": self.data_source,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n": len(self),
            "subset": self.subset,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------------------------
# Paths and environment


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """Return the data root: ``root`` if given, else ``$RESLAB_DATA``, else ``None``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("RESLAB_DATA")
    return Path(env).expanduser() if env else None


def cache_dir() -> Path:
    """Return the cache folder (``$RESLAB_CACHE``, else ``~/.cache/reslab``)."""
    env = os.environ.get("RESLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reslab"


def download_dir() -> Path:
    """Return where torchvision downloads go when no data root is given."""
    return cache_dir() / "downloads"


def get_spec(name: str) -> DatasetSpec:
    """Return the :class:`DatasetSpec` of ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=3, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown data set {name!r}.{hint} Known data sets: {', '.join(DATASETS)}."
        )
    return DATASETS[name]


# --------------------------------------------------------------------------------------------
# Readers of the official formats


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


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # The official Fashion-MNIST and some mirrors name the files with a dot: train-images.idx3-ubyte
    dotted = stem.replace("-idx", ".idx")
    for candidate in (folder / dotted, folder / f"{dotted}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_like(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    img_stem, lbl_stem = spec.files[split]
    img_path, lbl_path = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
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


def _check_labels(labels: np.ndarray, num_classes: int, where: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels in {where} range over [{labels.min()}, {labels.max()}], expected "
            f"[0, {num_classes - 1}]: the file is corrupt or belongs to another data set."
        )


def _cifar_batches(spec: DatasetSpec, split: str) -> list[str]:
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


def _read_cifar_folder(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    images, labels = [], []
    for batch in _cifar_batches(spec, split):
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


def _read_cifar_archive(archive: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    wanted = {f"{spec.files['folder'][0]}/{b}": None for b in _cifar_batches(spec, split)}
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


def _read_imagefolder_tree(folder: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
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


def _read_imagefolder_tar(archive: Path, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
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
# Locating a data set under a root


@dataclass
class _Found:
    kind: str  # idx | cifar_folder | cifar_archive | imagefolder_tree | imagefolder_tar
    path: Path
    source: str  # official | imagefolder | synthetic
    data_source: str

    def files(self, spec: DatasetSpec, split: str) -> list[Path]:
        """The files whose size and mtime key the cache."""
        if self.kind == "idx":
            return [p for s in spec.files[split] if (p := _find_idx(self.path, s)) is not None]
        if self.kind == "cifar_folder":
            return [self.path / b for b in _cifar_batches(spec, split) if (self.path / b).exists()]
        if self.kind == "imagefolder_tree":
            return sorted((self.path / split).rglob("*"))
        return [self.path]


def _looked_for(spec: DatasetSpec) -> list[str]:
    if spec.batches:  # CIFAR
        names = list(spec.files["archive"]) + [f + "/" for f in spec.files["folder"]]
        names += [f"{n}.tar.gz" for n in spec.imagefolder_names] + [
            f"{n}/train/<class>/*, {n}/test/<class>/*" for n in spec.imagefolder_names[:1]
        ]
        return names
    return [f"{s}[.gz]" for pair in spec.files.values() for s in pair]


def _candidate_folders(root: Path, spec: DatasetSpec) -> list[Path]:
    return [root / f if f else root for f in spec.folders]


def locate(spec: DatasetSpec, root: Path) -> _Found | None:
    """Find ``spec``'s files under ``root``; ``None`` when nothing is there."""
    if not root.is_dir():
        return None
    for folder in _candidate_folders(root, spec):
        if not folder.is_dir():
            continue
        if spec.torchvision_class in ("MNIST", "FashionMNIST"):
            if any(_find_idx(folder, s) is not None for pair in spec.files.values() for s in pair):
                return _Found("idx", folder, "official", "official")
            continue
        for name in spec.files["folder"]:
            if (folder / name).is_dir():
                return _Found("cifar_folder", folder / name, "official", "official")
        for name in spec.files["archive"]:
            if (folder / name).is_file():
                return _Found("cifar_archive", folder / name, "official", "official")
    if spec.imagefolder_names:
        for name in spec.imagefolder_names:
            for ext in (".tar.gz", ".tgz", ".tar"):
                if (root / f"{name}{ext}").is_file():
                    return _Found("imagefolder_tar", root / f"{name}{ext}", "imagefolder", name)
            tree = root / name
            if (tree / "train").is_dir() or (tree / "test").is_dir():
                return _Found("imagefolder_tree", tree, "imagefolder", name)
    return None


def _read_found(found: _Found, spec: DatasetSpec, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    if found.kind == "idx":
        return _read_mnist_like(found.path, spec, split)
    if found.kind == "cifar_folder":
        return _read_cifar_folder(found.path, spec, split)
    if found.kind == "cifar_archive":
        return _read_cifar_archive(found.path, spec, split)
    if found.kind == "imagefolder_tree":
        if not (found.path / split).is_dir():
            raise FileNotFoundError(
                f"ImageFolder {found.path} has no {split}/ folder; expected {split}/<class>/<image>."
            )
        return _read_imagefolder_tree(found.path, spec, split)
    return _read_imagefolder_tar(found.path, spec, split)


# --------------------------------------------------------------------------------------------
# Download and synthetic data


def _torchvision_download(spec: DatasetSpec, target: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision_class)
    target.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(target), train=train, download=True)


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


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_synthetic(spec: DatasetSpec, folder: Path, seed: int = 0) -> _Found:
    """Write synthetic data in ``spec``'s official on-disk format under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.torchvision_class in ("MNIST", "FashionMNIST"):
        for split in SPLITS:
            x, y = synthetic_images(spec, split, seed=seed)
            img_stem, lbl_stem = spec.files[split]
            _write_idx(folder / f"{img_stem}.gz", x[:, 0])
            _write_idx(folder / f"{lbl_stem}.gz", y.astype(np.uint8))
        return _Found("idx", folder, "synthetic", "synthetic")
    batches = folder / spec.files["folder"][0]
    batches.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        x, y = synthetic_images(spec, split, seed=seed)
        names = _cifar_batches(spec, split)
        for i, name in enumerate(names):
            sl = slice(i, None, len(names))
            entry = {"data": x[sl].reshape(len(y[sl]), -1), spec.label_key: y[sl].tolist(), "batch_label": name}
            (batches / name).write_bytes(pickle.dumps(entry))
    return _Found("cifar_folder", batches, "synthetic", "synthetic")


# --------------------------------------------------------------------------------------------
# Cache


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_key(spec: DatasetSpec, split: str, found: _Found) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{spec.name}|{split}|{found.kind}|{found.path.resolve()}".encode())
    for f in found.files(spec, split):
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _load_split(spec: DatasetSpec, split: str, found: _Found) -> dict:
    key = _cache_key(spec, split, found)
    path = cache_dir() / "tensors" / f"{spec.name}-{split}-{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    x, y, where = _read_found(found, spec, split)
    _check_labels(y, len(spec.classes), where)
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
# Public loading API


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
    found: _Found | None = None
    root_path = data_root(root)
    if root_path is not None:
        if not root_path.is_dir() and not download_allowed(download):
            raise FileNotFoundError(
                f"data root {root_path} does not exist and downloading is not allowed. Pass an "
                f"existing folder as root= (or RESLAB_DATA), or allow the download into it."
            )
        found = locate(spec, root_path)
        looked += [str(p) for p in _candidate_folders(root_path, spec)]

    download_error = None
    if found is None and download_allowed(download):
        target = root_path if root_path is not None else download_dir()
        try:
            _torchvision_download(spec, target)
            found = locate(spec, target)
        except Exception as exc:  # no network, a refused mirror, a full disk...
            download_error = exc
        looked.append(f"{target} (torchvision download)")

    if found is None and allow_synthetic:
        found = write_synthetic(spec, cache_dir() / "synthetic" / spec.name)

    if found is None:
        why = (
            f"the torchvision download failed: {download_error}"
            if download_error is not None
            else "downloading was not allowed (download=False or RESLAB_DOWNLOAD=0)"
        )
        raise FileNotFoundError(
            f"no {name} data found. Looked in: {', '.join(looked) or 'no data root given'}; "
            f"{why}. Expected one of: {'; '.join(_looked_for(spec))}. Set RESLAB_DATA (or "
            f"root=) to a folder holding these files, or allow the download."
        )

    entry = _load_split(spec, split, found)
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


# --------------------------------------------------------------------------------------------
# On-device augmentation and batch loading


@dataclass(frozen=True)
class Augment:
    """A batch transform, applied on the device to whole uint8 batches.

    Order: grey -> 3 channels, pad-and-crop, flip, resize, random-resized-crop, normalise.

    Attributes:
        pad_crop: Zero-pad this many pixels on each side, then crop back at a random offset.
        flip: Horizontal flip with probability 0.5.
        resize: Output side length (bilinear); ``None`` keeps the input size.
        rrc_scale: Random-resized-crop area range, e.g. ``(0.8, 1.0)``; ``None`` turns it off.
        rrc_ratio: Aspect ratio range of the crop (``(1.0, 1.0)`` for square crops).
        mean: Per-channel mean after scaling to [0, 1]; ``None`` skips normalisation.
        std: Per-channel standard deviation.
        to_rgb: Repeat a single grey channel three times.
    """

    pad_crop: int = 0
    flip: bool = False
    resize: int | None = None
    rrc_scale: tuple[float, float] | None = None
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    to_rgb: bool = False

    @property
    def random(self) -> bool:
        return bool(self.pad_crop or self.flip or self.rrc_scale)

    def eval(self) -> "Augment":
        """The deterministic counterpart: same resize and normalisation, no randomness."""
        return Augment(resize=self.resize, mean=self.mean, std=self.std, to_rgb=self.to_rgb)

    @staticmethod
    def standard(dataset: str, train: bool, resize: int | None = None, to_rgb: bool = False) -> "Augment":
        """The usual recipe: pad-4 crop + flip for CIFAR training, none for (Fashion-)MNIST."""
        mean, std = MEAN_STD[get_spec(dataset).name]
        if to_rgb and len(mean) == 1:
            mean, std = mean * 3, std * 3
        crop = train and bool(get_spec(dataset).batches)  # CIFAR-10 / CIFAR-100
        return Augment(pad_crop=4 if crop else 0, flip=crop, resize=resize, mean=mean, std=std, to_rgb=to_rgb)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a uint8 batch ``(B, C, H, W)`` into a float32 batch."""
        if self.to_rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.pad_crop:
            x = random_crop(x, self.pad_crop, generator)
        if self.flip:
            x = random_flip(x, generator)
        x = x.to(torch.float32, copy=True)  # never write into the caller's tensor
        if self.rrc_scale is not None or (self.resize is not None and self.resize != x.shape[-1]) or self.mean is None:
            x = x.div_(255)
            scale = 1.0
        else:
            scale = 255.0  # fold the division by 255 into the normalisation below
        if self.rrc_scale is not None:
            x = random_resized_crop(x, self.resize or x.shape[-1], self.rrc_scale, self.rrc_ratio, generator)
        elif self.resize is not None and self.resize != x.shape[-1]:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        if self.mean is not None:
            if len(self.mean) != x.shape[1]:
                raise ValueError(
                    f"normalisation has {len(self.mean)} channel(s) but the batch has {x.shape[1]}; "
                    f"set to_rgb or give per-channel mean/std of the right length."
                )
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * scale
            inv_std = 1 / (torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * scale)
            x = x.sub_(mean).mul_(inv_std)
        return x


def _rand(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back to the input size at a random offset per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W), a view
    offs = (_rand((2, b), x.device, generator) * (2 * pad + 1)).long()  # (2, B) in [0, 2p]
    # One gather copies each image's window: (B, C, H, W).
    return windows[torch.arange(b, device=x.device), :, offs[0], offs[1]]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 0.5."""
    mask = _rand((x.shape[0],), x.device, generator) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    tries: int = 10,
) -> torch.Tensor:
    """Batched ``RandomResizedCrop``: crop a random box per image and resize it to ``size``.

    Boxes are drawn as in torchvision (area fraction uniform in ``scale``, log aspect ratio uniform
    in ``ratio``, ``tries`` attempts, then a centre crop clamped to the ratio range), and the crop
    and resize are one bilinear ``grid_sample``, so a prior resize to ``size`` is folded in.

    Args:
        x: Float batch ``(B, C, H, W)``.
    """
    b, _, h, w = x.shape
    dev = x.device
    area = _rand((b, tries), dev, generator) * (scale[1] - scale[0]) + scale[0]
    log_r = _rand((b, tries), dev, generator) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r * (h / w))  # crop width as a fraction of W
    ch = torch.sqrt(area / r * (w / h))  # crop height as a fraction of H
    ok = (cw <= 1) & (ch <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1, device=dev))
    # Fallback: the largest centred box whose ratio lies in range.
    in_ratio = w / h
    fw = min(1.0, ratio[1] / in_ratio) if in_ratio > ratio[1] else 1.0
    fh = min(1.0, in_ratio / ratio[0]) if in_ratio < ratio[0] else 1.0
    idx = first.clamp(min=0)[:, None]
    cw = torch.where(first >= 0, cw.gather(1, idx)[:, 0], torch.full((b,), fw, device=dev))
    ch = torch.where(first >= 0, ch.gather(1, idx)[:, 0], torch.full((b,), fh, device=dev))
    # Top-left corner uniform over the valid range; centre in normalised [-1, 1] coordinates.
    u = _rand((2, b), dev, generator)
    x0 = u[0] * (1 - cw)
    y0 = u[1] * (1 - ch)
    cx = (x0 + cw / 2) * 2 - 1
    cy = (y0 + ch / 2) * 2 - 1
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (b, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class BatchLoader:
    """Holds a whole split on a device and yields augmented batches.

    Shuffling and augmentation draw from a generator seeded with ``(seed, epoch)``, so an epoch's
    batches depend only on the seed and the epoch number: a resumed run sees the same batches.

    Args:
        data: A :class:`Dataset`.
        batch_size: Images per batch.
        augment: The batch transform (for evaluation use ``augment.eval()``).
        shuffle: Reshuffle every epoch.
        drop_last: Drop the last incomplete batch (training).
        device: Where the split lives and batches are made.
        seed: Base seed of shuffling and augmentation.
        channels_last: Return batches in channels-last memory format.
    """

    data: Dataset
    batch_size: int
    augment: Augment = field(default_factory=Augment)
    shuffle: bool = False
    drop_last: bool = False
    device: str | torch.device = "cpu"
    seed: int = 0
    channels_last: bool = False
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}.")
        self.device = torch.device(self.device)
        self.images = self.data.images.to(self.device)
        self.labels = self.data.labels.to(self.device)

    @classmethod
    def for_split(cls, data: Dataset, batch_size: int, augment: Augment, train: bool,
                  device: str | torch.device = "cpu", seed: int = 0, channels_last: bool = False) -> "BatchLoader":
        """The loader of a training (``train=True``: shuffled, last incomplete batch dropped unless
        the split is smaller than one batch) or an evaluation split (in order, every image)."""
        return cls(data, batch_size, augment=augment, shuffle=train, drop_last=train and len(data) > batch_size,
                   device=device, seed=seed, channels_last=channels_last)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and augmentation the next iteration uses."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        return g

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        n = len(self.data)
        order = torch.randperm(n, device=self.device, generator=g) if self.shuffle else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.augment(self.images[idx], g if self.augment.random else None)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
