"""Entry points of the processes tests/test_concurrency.py spawns (spawn imports them by name)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path


def _environ(env: dict[str, str]) -> None:
    # A spawned test process is an entry point: it takes its settings as the parent gives them.
    os.environ.update(env)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def load(env: dict[str, str], barrier, name: str, split: str, root: str | None, synthetic: bool, out: str) -> None:
    """Load one split after every sibling is ready, and write what it saw to ``out``."""
    _environ(env)
    from reslab.data import load_dataset

    barrier.wait(timeout=900)  # siblings may still be importing torch on a loaded machine
    d = load_dataset(name, split, root=root, download=False, allow_synthetic=synthetic)
    Path(out).write_text(json.dumps({"fingerprint": d.fingerprint, "n": len(d), "source": d.source}))


def stall_synthetic_writer(env: dict[str, str], name: str, folder: str, ready: str) -> None:
    """Write synthetic files with the real code, but stop for good before the second file is
    renamed into place (the lock held, a complete temporary file beside it): a writer to be killed."""
    _environ(env)
    import reslab.data.sources as S
    from reslab.data import get_spec

    real = S.atomic_path
    written = []

    @contextlib.contextmanager
    def stalling(path):
        with real(path) as tmp:
            yield tmp
            written.append(path)
            if len(written) == 2:
                Path(ready).write_text(str(os.getpid()))
                time.sleep(3600)

    S.atomic_path = stalling
    S.write_synthetic(get_spec(name), Path(folder))


def stall_cache_writer(env: dict[str, str], name: str, split: str, root: str, ready: str) -> None:
    """Decode a split with the real code, but stop for good halfway through writing the cache entry
    (the lock held, half a temporary file written): a writer to be killed."""
    _environ(env)
    import reslab.data.cache as C

    def half_save(obj, path):
        import io

        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        with open(Path(path).with_name(f".{Path(path).name}.killed.tmp"), "wb") as fh:  # as atomic_path names it
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            fh.flush()
        Path(ready).write_text(str(os.getpid()))
        time.sleep(3600)

    C.atomic_torch_save = half_save
    C.load_dataset(name, split, root=root, download=False)


def train(env: dict[str, str], barrier, out: str) -> None:
    """Train (or reuse) the tiny run of tests/test_concurrency.py once every sibling is ready."""
    _environ(env)
    sys.path.insert(0, str(Path(__file__).parent))
    from test_concurrency import tiny_spec

    from reslab.paths import Paths
    from reslab.runs.execute import run_alone

    barrier.wait(timeout=900)  # siblings may still be importing torch on a loaded machine
    row, history = run_alone(tiny_spec(), "smoke", 0, Paths.from_env(data=env["NODATA"]))
    Path(out).write_text(json.dumps({"reused": bool(row["reused"]), "best_acc": row["best_acc"],
                                     "run_dir": row["run_dir"], "epochs": len(history)}))
