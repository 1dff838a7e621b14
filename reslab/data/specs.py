"""What each data set is: its classes, image shape, official files, folder names and statistics.

Also :class:`Dataset`, one loaded split as tensors, which every other part of ``reslab.data``
produces or consumes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch

SPLITS = ("train", "test")

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
