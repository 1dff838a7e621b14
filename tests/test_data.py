"""The data layer: sources, errors, cache, subsets, synthetic data, on-device augmentation."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reslab import data as D
from reslab.data import Augment, BatchLoader, load_dataset

# ------------------------------------------------------------------ helpers writing real formats

def write_idx_pair(folder: Path, split: str, n: int = 20, n_labels: int | None = None, gz: bool = True):
    spec = D.DATASETS["mnist"]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n_labels if n_labels is not None else n) % 10).astype(np.uint8)
    img_stem, lbl_stem = spec.files[split]
    for stem, arr in ((img_stem, images), (lbl_stem, labels)):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        blob = header + arr.tobytes()
        if gz:
            with gzip.open(folder / f"{stem}.gz", "wb") as fh:
                fh.write(blob)
        else:
            (folder / stem).write_bytes(blob)
    return images, labels


def write_mnist(folder: Path, n: int = 20, **kw):
    for split in ("train", "test"):
        write_idx_pair(folder, split, n=n, **kw)


def jpeg_bytes(seed: int, size: int = 32) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # lossless, so pixels can be compared
    return buf.getvalue()


def write_imagefolder(root: Path, classes=D.DATASETS["cifar10"].classes, per_class: int = 2, skip=(), empty=()):
    for split in ("train", "test"):
        for ci, cls in enumerate(classes):
            if cls in skip:
                continue
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            if cls in empty:
                continue
            for j in range(per_class):
                (folder / f"{j:04d}.png").write_bytes(jpeg_bytes(ci * 100 + j))


# ------------------------------------------------------------------ names and missing data

def test_unknown_dataset_name_suggests_close_match():
    with pytest.raises(ValueError, match=r"unknown data set 'cifar1'.*'cifar10'"):
        load_dataset("cifar1", "train")


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_dataset("mnist", "val")


def test_nothing_found_lists_where_it_looked_and_expected_files(no_data_root):
    root = no_data_root / "empty"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", "train", root=root, download=False)
    msg = str(err.value)
    assert str(root / "mnist") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "RESLAB_DATA" in msg and "download" in msg
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", "test", root=root, download=False)


def test_missing_root_folder_is_named(no_data_root):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("mnist", "train", root=no_data_root / "nope", download=False)


def test_failed_download_is_reported(no_data_root, monkeypatch):
    import torchvision.datasets.mnist as tvm

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(tvm, "download_and_extract_archive", offline)
    monkeypatch.setenv("RESLAB_CACHE", str(no_data_root / "c"))
    with pytest.raises(FileNotFoundError, match="torchvision download failed"):
        load_dataset("mnist", "train", download=True)


def test_failed_download_leaves_nothing_behind(no_data_root, monkeypatch):
    """A failed download removes the folders and files it made itself, never the user's own."""
    import torchvision.datasets.mnist as tvm

    def offline(url, download_root, filename=None, md5=None, **kwargs):
        (Path(download_root) / filename).write_bytes(b"half an archive")  # a partial download
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(tvm, "download_and_extract_archive", offline)
    fresh = no_data_root / "new" / "data"
    with pytest.raises(FileNotFoundError, match="torchvision download failed"):
        load_dataset("mnist", "train", root=fresh, download=True)
    assert not (no_data_root / "new").exists()

    user = no_data_root / "user"
    (user / "MNIST").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    (user / "MNIST" / "README").write_text("mine too")
    with pytest.raises(FileNotFoundError, match="torchvision download failed"):
        load_dataset("mnist", "train", root=user, download=True)
    assert sorted(p.relative_to(user).as_posix() for p in user.rglob("*")) == ["MNIST", "MNIST/README", "notes.txt"]


def test_torchvision_download_path_is_used_and_read_back(no_data_root, monkeypatch):
    """The real torchvision download code runs; only the network fetch is replaced by a local copy."""
    import torchvision.datasets.mnist as tvm

    def fake_fetch(url, download_root, filename=None, md5=None, **kwargs):
        # What download_and_extract_archive leaves behind: the .gz and its extracted file.
        split = "train" if filename.startswith("train") else "test"
        write_idx_pair(Path(download_root), split, n=30, gz=True)
        write_idx_pair(Path(download_root), split, n=30, gz=False)

    monkeypatch.setattr(tvm, "download_and_extract_archive", fake_fetch)
    d = load_dataset("mnist", "train", root=no_data_root / "dl", download=True)
    assert d.source == "official" and len(d) == 30
    assert (no_data_root / "dl" / "MNIST" / "raw").is_dir()


def test_download_env_switch(no_data_root, monkeypatch):
    calls = []
    monkeypatch.setattr(D.cache, "torchvision_download", lambda spec, target: calls.append(target))
    monkeypatch.setenv("RESLAB_DOWNLOAD", "0")
    with pytest.raises(FileNotFoundError, match="not allowed"):
        load_dataset("mnist", "train")
    assert calls == []
    monkeypatch.setenv("RESLAB_DOWNLOAD", "1")
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist", "train")
    assert calls == [D.download_dir()]


# ------------------------------------------------------------------ corrupt and inconsistent files

def test_idx_raw_and_gz_read_the_same(no_data_root):
    a = no_data_root / "a" / "mnist"
    b = no_data_root / "b" / "mnist"
    write_mnist(a, gz=True)
    write_mnist(b, gz=False)
    da = load_dataset("mnist", "train", root=a.parent, download=False)
    db = load_dataset("mnist", "train", root=b.parent, download=False)
    assert torch.equal(da.images, db.images) and da.fingerprint == db.fingerprint
    assert da.images.shape == (20, 1, 28, 28) and da.images.dtype == torch.uint8
    assert da.labels.dtype == torch.int64


def test_truncated_gz_file(no_data_root):
    folder = no_data_root / "mnist"
    write_mnist(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is truncated or corrupt"):
        load_dataset("mnist", "train", root=no_data_root, download=False)


def test_truncated_raw_idx_file(no_data_root):
    folder = no_data_root / "mnist"
    write_mnist(folder, gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_dataset("mnist", "train", root=no_data_root, download=False)


def test_wrong_idx_magic_number(no_data_root):
    folder = no_data_root / "mnist"
    write_mnist(folder)
    # A labels file where the images file should be: magic 0x801 instead of 0x803.
    (folder / "train-images-idx3-ubyte.gz").write_bytes((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match=r"magic number 0x00000801, expected 0x00000803"):
        load_dataset("mnist", "train", root=no_data_root, download=False)


def test_image_and_label_counts_disagree(no_data_root):
    folder = no_data_root / "mnist"
    write_idx_pair(folder, "train", n=20, n_labels=19)
    write_idx_pair(folder, "test", n=5)
    with pytest.raises(ValueError, match="holds 20 images but train-labels-idx1-ubyte.gz holds 19 labels"):
        load_dataset("mnist", "train", root=no_data_root, download=False)


def test_corrupt_cifar_archive(no_data_root):
    (no_data_root / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz is truncated or corrupt"):
        load_dataset("cifar10", "train", root=no_data_root, download=False)


def test_cifar_batches_folder_missing_batch(no_data_root):
    D.write_synthetic(D.DATASETS["cifar10"], no_data_root / "data")
    (no_data_root / "data" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        load_dataset("cifar10", "train", root=no_data_root / "data", download=False)


def test_cifar_archive_read(no_data_root):
    src = no_data_root / "syn"
    D.write_synthetic(D.DATASETS["cifar10"], src)
    with tarfile.open(no_data_root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_tar = load_dataset("cifar10", "test", root=no_data_root, download=False)
    from_dir = load_dataset("cifar10", "test", root=src, download=False)
    assert from_tar.source == "official" and from_tar.images.shape[1:] == (3, 32, 32)
    assert torch.equal(from_tar.images, from_dir.images) and torch.equal(from_tar.labels, from_dir.labels)


# ------------------------------------------------------------------ ImageFolder

def test_imagefolder_tree_and_tarball(no_data_root):
    tree = no_data_root / "cifar10-jpeg"
    write_imagefolder(tree)
    d = load_dataset("cifar10", "train", root=no_data_root, download=False)
    assert d.source == "imagefolder" and d.data_source == "cifar10-jpeg"
    assert d.images.shape == (20, 3, 32, 32) and d.class_counts() == [2] * 10
    # Labels follow CIFAR-10's class order; pixels survive (PNG is lossless).
    from PIL import Image
    first_truck = np.asarray(Image.open(tree / "train" / "truck" / "0000.png").convert("RGB")).transpose(2, 0, 1)
    i = int(torch.nonzero(d.labels == 9)[0])
    assert torch.equal(d.images[i], torch.from_numpy(first_truck.copy()))

    tar_root = no_data_root / "t"
    tar_root.mkdir()
    with tarfile.open(tar_root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
        tar.add(tree / "test", arcname="test")
    t = load_dataset("cifar10", "train", root=tar_root, download=False)
    assert t.fingerprint == d.fingerprint


def test_imagefolder_missing_class_folder(no_data_root):
    write_imagefolder(no_data_root / "cifar10-jpeg", skip=("frog",))
    with pytest.raises(ValueError, match=r"lacks class folder\(s\) \['frog'\]"):
        load_dataset("cifar10", "train", root=no_data_root, download=False)


def test_imagefolder_empty_class_folder(no_data_root):
    write_imagefolder(no_data_root / "cifar10-jpeg", empty=("ship",))
    with pytest.raises(ValueError, match=r"empty class folder\(s\) \['ship'\]"):
        load_dataset("cifar10", "test", root=no_data_root, download=False)


def test_imagefolder_corrupt_image(no_data_root):
    write_imagefolder(no_data_root / "cifar10-jpeg")
    bad = no_data_root / "cifar10-jpeg" / "train" / "cat" / "0001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"cat/0001.png is not a readable image"):
        load_dataset("cifar10", "train", root=no_data_root, download=False)


# ------------------------------------------------------------------ synthetic, cache, subsets

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_synthetic_goes_through_the_official_format(no_data_root, name):
    with pytest.raises(FileNotFoundError):
        load_dataset(name, "train", download=False)
    d = load_dataset(name, "train", download=False, allow_synthetic=True)
    spec = D.DATASETS[name]
    assert d.source == "synthetic" and d.data_source == "synthetic"
    assert d.images.shape[1:] == (spec.channels, spec.size, spec.size)
    assert d.class_counts() == [D.SYNTHETIC_PER_CLASS["train"]] * 10
    # Written to disk in the official layout, then read back by the same reader.
    assert D.locate(spec, D.cache_dir() / "synthetic" / name) is not None
    x, y = D.synthetic_images(spec, "train")
    assert sorted(d.labels.tolist()) == sorted(y.tolist())
    assert d.images.float().std() > 10  # not blank


def test_second_load_comes_from_the_cache(no_data_root, monkeypatch):
    write_mnist(no_data_root / "mnist")
    first = load_dataset("mnist", "train", root=no_data_root, download=False)

    def boom(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(D.cache, "read_found", boom)
    second = load_dataset("mnist", "train", root=no_data_root, download=False)
    assert second.fingerprint == first.fingerprint and torch.equal(second.images, first.images)


def test_cache_invalidated_when_the_file_changes(no_data_root):
    write_mnist(no_data_root / "mnist", n=20)
    a = load_dataset("mnist", "train", root=no_data_root, download=False)
    write_idx_pair(no_data_root / "mnist", "train", n=30)
    b = load_dataset("mnist", "train", root=no_data_root, download=False)
    assert len(a) == 20 and len(b) == 30 and a.fingerprint != b.fingerprint


def test_stratified_seeded_subset(no_data_root):
    full = load_dataset("cifar10", "train", download=False, allow_synthetic=True)
    a = load_dataset("cifar10", "train", download=False, allow_synthetic=True, subset=105, seed=1)
    b = load_dataset("cifar10", "train", download=False, allow_synthetic=True, subset=105, seed=1)
    c = load_dataset("cifar10", "train", download=False, allow_synthetic=True, subset=105, seed=2)
    assert len(a) == 105 and sorted(a.class_counts()) == [10] * 5 + [11] * 5
    assert torch.equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert not torch.equal(a.labels, c.labels) and a.fingerprint != c.fingerprint
    assert a.fingerprint != full.fingerprint
    whole = load_dataset("cifar10", "train", download=False, allow_synthetic=True, subset=len(full) + 1)
    assert whole.fingerprint == full.fingerprint  # a budget larger than the split keeps it whole
    with pytest.raises(ValueError, match="subset must be in"):
        D.stratified_indices(full.labels, len(full) + 1, 10)
    with pytest.raises(ValueError, match="subset must be in"):
        load_dataset("cifar10", "train", download=False, allow_synthetic=True, subset=0)


# ------------------------------------------------------------------ the real data (../shared/data)

def test_real_mnist(shared_data):
    d = load_dataset("mnist", "train", root=shared_data, download=False)
    assert tuple(d.images.shape) == (60000, 1, 28, 28) and d.source == "official"
    assert d.images.float().div(255).mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert d.labels[:6].tolist() == [5, 0, 4, 1, 9, 2]
    t = load_dataset("mnist", "test", root=shared_data, download=False)
    assert len(t) == 10000 and t.labels[:6].tolist() == [7, 2, 1, 0, 4, 1]


def test_real_fashion_mnist(shared_data):
    d = load_dataset("fashion_mnist", "train", root=shared_data, download=False)
    assert tuple(d.images.shape) == (60000, 1, 28, 28)
    assert d.class_counts() == [6000] * 10
    assert load_dataset("fashion_mnist", "test", root=shared_data, download=False).class_counts() == [1000] * 10


def test_real_cifar10_jpeg(shared_data):
    d = load_dataset("cifar10", "train", root=shared_data, download=False)
    t = load_dataset("cifar10", "test", root=shared_data, download=False)
    assert tuple(d.images.shape) == (50000, 3, 32, 32) and len(t) == 10000
    assert d.data_source == "cifar10-jpeg" and d.source == "imagefolder"
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"
    assert d.class_counts() == [5000] * 10


# ------------------------------------------------------------------ on-device augmentation

def test_random_crop_is_a_shifted_window():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = D.random_crop(x, 2, g)
    g = torch.Generator().manual_seed(0)
    offs = (torch.rand((2, 2), generator=g) * 5).long()
    padded = F.pad(x, (2, 2, 2, 2))
    for b in range(2):
        dy, dx = offs[0, b], offs[1, b]
        assert torch.equal(out[b], padded[b, :, dy:dy + 8, dx:dx + 8])


def test_random_flip_flips_about_half():
    x = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    out = D.random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48


def test_random_resized_crop_full_box_is_a_resize():
    x = torch.rand(3, 3, 32, 32)
    out = D.random_resized_crop(x, 64, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    assert out.shape == (3, 3, 64, 64)
    assert torch.allclose(out, ref, atol=1e-5)


def test_random_resized_crop_respects_scale():
    # A constant image with a bright border: crops covering >= 80% area rarely see the border.
    x = torch.zeros(256, 1, 100, 100)
    out = D.random_resized_crop(x + 1, 20, scale=(0.2, 0.3), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.ones_like(out))
    img = torch.zeros(1, 1, 100, 100)
    img[..., :, 50:] = 1  # right half bright
    outs = D.random_resized_crop(img.expand(512, -1, -1, -1), 10, scale=(0.25, 0.25), ratio=(1.0, 1.0),
                                 generator=torch.Generator().manual_seed(1))
    # A 50x50 box: its bright fraction is uniform-ish across positions, so the mean is about 1/2.
    assert 0.4 < outs.mean().item() < 0.6


def test_augment_normalise_and_grey_to_rgb():
    x = torch.full((4, 1, 28, 28), 255, dtype=torch.uint8)
    aug = Augment.standard("mnist", train=False, to_rgb=True)
    out = aug(x)
    assert out.shape == (4, 3, 28, 28) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, (1 - 0.1307) / 0.3081))
    with pytest.raises(ValueError, match="normalisation has 1 channel"):
        Augment(mean=(0.5,), std=(0.5,))(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_batch_loader_epochs_are_seeded_and_cover_the_split(no_data_root):
    d = load_dataset("cifar10", "test", download=False, allow_synthetic=True)
    aug = Augment.standard("cifar10", train=True)
    loader = BatchLoader(d, batch_size=48, augment=aug, shuffle=True, drop_last=False, seed=3)
    loader.set_epoch(0)
    a = list(loader)
    loader.set_epoch(0)
    b = list(loader)
    loader.set_epoch(1)
    c = list(loader)
    assert len(a) == len(loader) == -(-len(d) // 48)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    labels = torch.cat([y for _, y in a])
    assert sorted(labels.tolist()) == sorted(d.labels.tolist())
    x, _ = a[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
    assert abs(x.mean().item()) < 1.0  # normalised
    dropping = BatchLoader(d, batch_size=48, drop_last=True)
    assert len(dropping) == len(d) // 48 and all(len(y) == 48 for _, y in dropping)
