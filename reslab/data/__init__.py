"""Data sets as cached uint8 tensors, and an on-device batch loader that augments whole batches.

Data flow: a data set name and a root folder -> :func:`load_dataset` -> one uint8 tensor
``(N, C, H, W)`` with int64 labels, decoded once and cached on disk -> :class:`BatchLoader`,
which keeps a whole split on the training device and augments whole batches there. There is no
per-sample PIL and no DataLoader worker on this path: on a 2-core machine feeding a fast GPU,
per-sample Python is the bottleneck.

Sources are tried in a fixed order:

1. ``root`` (argument, else the ``RESLAB_DATA`` environment variable): the official distribution
   files (MNIST / Fashion-MNIST: the four IDX files, ``.gz`` or not; CIFAR-10:
   ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``; CIFAR-100: ``cifar-100-python.tar.gz``
   or ``cifar-100-python/`` with the ``train`` and ``test`` pickles, labels ``fine_labels``), or
   an ImageFolder tree or tarball (``train/<class>/*``, ``test/<class>/*``).
2. The torchvision download, when allowed (``download=None`` reads ``RESLAB_DOWNLOAD``, default on).
3. Only when the caller asks for it (``allow_synthetic=True``, the smoke profile): synthetic data,
   written in the real on-disk format and read back through the same readers.

Submodules, in the order data flows through them:

- :mod:`~reslab.data.specs`: what each data set is (:class:`DatasetSpec`, :data:`DATASETS`,
  normalisation statistics) and :class:`Dataset`, one loaded split.
- :mod:`~reslab.data.sources`: finding a data set under the root (:func:`locate`), the
  torchvision download, and synthetic data written in the official format.
- :mod:`~reslab.data.readers`: one reader per on-disk format (IDX, CIFAR pickles, ImageFolder).
- :mod:`~reslab.data.cache`: the decoded-tensor cache, content fingerprints, stratified subsets,
  and :func:`load_dataset`, which runs the steps above.
- :mod:`~reslab.data.augment`: :class:`Augment` and the batch transforms it applies on the device.
- :mod:`~reslab.data.loader`: :class:`BatchLoader`, which feeds training and evaluation.

Everything public is re-exported here, so ``from reslab.data import X`` is the import to use.
To monkeypatch a name, patch the submodule that looks it up (for example
``reslab.data.cache.read_found``), not this package.
"""

from __future__ import annotations

from .._env import require_torch

require_torch()  # a clear message on an older torch, before a loader fails obscurely

from .augment import Augment, random_crop, random_flip, random_resized_crop
from .cache import CACHE_VERSION, cache_dir, download_dir, load_dataset, stratified_indices
from .loader import BatchLoader
from .readers import IMAGE_EXTENSIONS, read_idx
from .sources import (
    SYNTHETIC_MIN_PER_CLASS,
    SYNTHETIC_PER_CLASS,
    data_root,
    locate,
    synthetic_images,
    write_synthetic,
)
from .specs import (
    CIFAR100_CLASSES,
    DATASETS,
    IMAGENET_MEAN_STD,
    MEAN_STD,
    SPLITS,
    Dataset,
    DatasetSpec,
    get_spec,
)

__all__ = [
    "Augment", "BatchLoader", "CACHE_VERSION", "CIFAR100_CLASSES", "DATASETS", "Dataset", "DatasetSpec",
    "IMAGENET_MEAN_STD", "IMAGE_EXTENSIONS", "MEAN_STD", "SPLITS", "SYNTHETIC_MIN_PER_CLASS",
    "SYNTHETIC_PER_CLASS", "cache_dir", "data_root", "download_dir", "get_spec", "load_dataset", "locate",
    "random_crop", "random_flip", "random_resized_crop", "read_idx", "stratified_indices",
    "synthetic_images", "write_synthetic",
]
