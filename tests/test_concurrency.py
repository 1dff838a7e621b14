"""Processes that share a cache or a run store (jobs of a table, two notebooks, a resubmitted job):
several processes loading one split into a cold cache agree, a writer killed mid-write leaves
nothing a reader accepts, and two processes asked for one run train it once."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import signal
import tarfile
import time
from pathlib import Path

import concurrency_worker as worker
import numpy as np
import pytest

from reslab.data import get_spec, load_dataset
from reslab.runs.spec import Recipe, RunSpec
from reslab.train import TrainConfig

N = 4  # processes at once
SPAWN = mp.get_context("spawn")  # the way submitit, torchrun and a second notebook start: no inherited state


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # RESLAB_DATA empty: a spawned process inherits the environment, and CI points it at real data,
    # where "synthetic" would silently mean the real CIFAR-10.
    return {"RESLAB_CACHE": str(tmp_path / "cache"), "RESLAB_DOWNLOAD": "0", "RESLAB_RUNS": str(tmp_path / "runs"),
            "RESLAB_DATA": "", **extra}


_STARTED: list[mp.Process] = []


@pytest.fixture(autouse=True)
def _kill_leftovers():
    """A failed test must not leave a stalled writer behind (pytest would wait for it at exit)."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.is_alive():
            p.kill()
            p.join(10)


def _start(target, *args) -> mp.Process:
    p = SPAWN.Process(target=target, args=args)
    p.start()
    _STARTED.append(p)
    return p


# Generous limits: a spawned process imports torch first, which on a loaded 2-core machine takes minutes.
LIMIT = 900


def _join_all(procs, timeout: float = LIMIT) -> None:
    for p in procs:
        p.join(timeout)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * len(procs), f"exit codes {codes}"


def _wait_for(path: Path, proc: mp.Process, timeout: float = LIMIT) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.is_alive(), f"the writer exited ({proc.exitcode}) before it stalled"
        assert time.monotonic() < end, "the writer never stalled"
        time.sleep(0.05)


def _jpeg_tarball(root: Path, per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split in ("train", "test"):
            for cls in get_spec("cifar10").classes:
                for j in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=75)
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{cls}/{j:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))


def _official_mnist(root: Path) -> None:
    import gzip

    spec = get_spec("mnist")
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for stem, arr in zip(spec.files[split], (rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
                                                 (np.arange(40) % 10).astype(np.uint8))):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            (folder / f"{stem}.gz").write_bytes(gzip.compress(header + arr.tobytes()))


SOURCES = {
    "synthetic cifar10": ("cifar10", None, True),
    "synthetic mnist": ("mnist", None, True),
    "official mnist files": ("mnist", "official", False),
    "jpeg tarball": ("cifar10", "jpeg", False),
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_processes_on_a_cold_cache_agree(kind, tmp_path, no_data_root):
    name, layout, synthetic = SOURCES[kind]
    root = None
    if layout is not None:
        root = tmp_path / "data"
        root.mkdir()
        (_official_mnist if layout == "official" else _jpeg_tarball)(root)
    barrier = SPAWN.Barrier(N)
    outs = [tmp_path / f"out{i}.json" for i in range(N)]
    procs = [_start(worker.load, _env(tmp_path), barrier, name, "train", str(root) if root else None, synthetic,
                    str(out)) for out in outs]
    _join_all(procs)
    seen = [json.loads(o.read_text()) for o in outs]
    assert len({s["fingerprint"] for s in seen}) == 1 and seen[0]["n"] > 0
    # One decoded entry, no temporary file left; the same data loaded here gives the same fingerprint.
    assert len(list((tmp_path / "cache" / "tensors").glob(f"{name}-train-*.pt"))) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    os.environ["RESLAB_CACHE"], old = str(tmp_path / "cache2"), os.environ.get("RESLAB_CACHE")
    try:
        here = load_dataset(name, "train", root=root, download=False, allow_synthetic=synthetic)
    finally:
        os.environ["RESLAB_CACHE"] = old
    assert here.fingerprint == seen[0]["fingerprint"]


def test_killed_synthetic_writer_is_neither_trusted_nor_fatal(tmp_path, no_data_root, monkeypatch):
    """A writer of synthetic files killed between two files (lock held, a temporary file beside the
    target): a process that was waiting for it then writes the files itself and reads them right."""
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "reference"))
    reference = load_dataset("cifar10", "train", download=False, allow_synthetic=True).fingerprint
    env = _env(tmp_path)
    folder = Path(env["RESLAB_CACHE"]) / "synthetic" / "cifar10"
    ready = tmp_path / "stalled"
    writer = _start(worker.stall_synthetic_writer, env, "cifar10", str(folder), str(ready))
    _wait_for(ready, writer)
    assert list(folder.rglob(".*.tmp")), "the stalled writer should hold a temporary file"
    alone = SPAWN.Barrier(1)  # kept referenced until the reader has it
    reader = _start(worker.load, env, alone, "cifar10", "train", None, True, str(tmp_path / "out.json"))
    time.sleep(3)
    assert reader.is_alive() and not (tmp_path / "out.json").exists(), "the reader must wait for the writer"
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    _join_all([reader])
    assert json.loads((tmp_path / "out.json").read_text())["fingerprint"] == reference
    assert not list(folder.rglob("*.tmp")) and (folder / "reslab-synthetic.json").is_file()


def test_killed_cache_writer_is_neither_trusted_nor_fatal(tmp_path, no_data_root):
    """A writer of a decoded split killed halfway through its file: the next reader ignores the
    half-written file, decodes again, and removes it."""
    root = tmp_path / "data"
    root.mkdir()
    _jpeg_tarball(root)
    env = _env(tmp_path)
    ready = tmp_path / "stalled"
    writer = _start(worker.stall_cache_writer, env, "cifar10", "test", str(root), str(ready))
    _wait_for(ready, writer)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    tensors = Path(env["RESLAB_CACHE"]) / "tensors"
    assert list(tensors.glob(".*.tmp")) and not list(tensors.glob("*.pt"))
    barrier = SPAWN.Barrier(2)
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    _join_all([_start(worker.load, env, barrier, "cifar10", "test", str(root), False, str(o)) for o in outs])
    assert len({json.loads(o.read_text())["fingerprint"] for o in outs}) == 1
    assert len(list(tensors.glob("*.pt"))) == 1 and not list(tensors.glob(".*.tmp"))


def tiny_spec() -> RunSpec:
    """A run of a few seconds (the processes of the run-store test all make this one)."""
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine", device="cpu", progress=False,
                      channels_last=False, max_steps=6)
    return RunSpec(table="concurrency_test", label="tiny", model="resnet18_cifar", dataset="cifar10",
                   recipe=Recipe(cfg=cfg))


def test_two_processes_on_one_run_train_it_once(tmp_path, no_data_root):
    """Asked for the same run at once, one process trains it; the other waits and reuses it."""
    (tmp_path / "nodata").mkdir()
    env = _env(tmp_path, NODATA=str(tmp_path / "nodata"))
    barrier = SPAWN.Barrier(2)
    outs = [tmp_path / f"run{i}.json" for i in range(2)]
    _join_all([_start(worker.train, env, barrier, str(o)) for o in outs])
    got = [json.loads(o.read_text()) for o in outs]
    assert sorted(g["reused"] for g in got) == [False, True]
    assert got[0]["best_acc"] == got[1]["best_acc"] and got[0]["run_dir"] == got[1]["run_dir"]
    assert got[0]["epochs"] == got[1]["epochs"]
