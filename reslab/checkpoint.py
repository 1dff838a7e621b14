"""A training run's checkpoint: ``last.pt`` in the run's folder.

Written atomically after every epoch by :func:`reslab.train.train` with everything the run needs to
go on (weights, optimiser, scheduler, every RNG state, the per-epoch rows, the devices the epochs
were trained on, the recipe), read back by :func:`reslab.train.resume`, and stripped to the final
weights, rows and recipe once the run is finished (:func:`finish_checkpoint`). Loaded with
``weights_only=True``: a checkpoint holds tensors and plain values only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import atomic_torch_save

CHECKPOINT_NAME = "last.pt"
#: Checkpoint entries that only serve to go on training (dropped by :func:`finish_checkpoint`).
RESUME_ONLY = ("optimizer", "scheduler", "rng")


def rng_state(device: torch.device) -> dict[str, Any]:
    """All RNG states as tensors and plain numbers, so ``weights_only=True`` can load them."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back the RNG states :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_epoch(path: str | os.PathLike) -> int:
    """Epochs completed in the checkpoint at ``path``, read without loading its tensors (memory-mapped);
    0 when there is none or it cannot be read (training then starts afresh or says why)."""
    if not Path(path).is_file():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # unreadable or not a checkpoint: what to do about it is training's to say
        return 0


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`reslab.train.train` (``weights_only=True``).

    Raises:
        ValueError: if the file cannot be read as a checkpoint.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a readable reslab checkpoint ({type(exc).__name__}: {exc}). Delete "
            f"it to train from scratch."
        ) from exc


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    rows: list[dict[str, Any]],
    devices: list[list[Any]],
    epoch: int,
    step: int,
    config: dict[str, Any],
    device: torch.device,
) -> Path:
    """Write everything a run needs to go on after ``epoch`` to ``path``, atomically.

    The write goes to a temporary file first, so an interrupted write leaves the previous
    checkpoint as it was.

    Args:
        path: The checkpoint file (``<checkpoint_dir>/last.pt``).
        model: The model itself, not its ``torch.compile`` wrapper (whose state-dict keys differ).
        optimizer: The optimiser.
        scheduler: The learning-rate scheduler.
        rows: The run's per-epoch rows so far.
        devices: Where those epochs were trained (:attr:`reslab.train.History.devices`).
        epoch: Epochs completed.
        step: Optimiser steps taken in total.
        config: The recipe's result-relevant fields, for :func:`reslab.train.resume` to compare.
        device: The training device, whose CUDA RNG state is stored too.

    Returns:
        ``path``.
    """
    return atomic_torch_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(device),
        "history": rows,
        "devices": devices,
        "epoch": epoch,
        "step": step,
        "config": config,
    }, path)


def finish_checkpoint(path: Path) -> Path | None:
    """Drop what only resuming needs (optimiser, scheduler and RNG states) from the checkpoint of
    a finished run, keeping its weights, history, epoch and recipe; return ``path`` (``None`` if
    there is no checkpoint). :func:`reslab.train.resume` still accepts it: a finished run trains no
    further.
    """
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    if "optimizer" not in ckpt:
        return path
    return atomic_torch_save({k: v for k, v in ckpt.items() if k not in RESUME_ONLY}, path)


def match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every optimiser state tensor shaped like its parameter the parameter's strides.

    ``Optimizer.load_state_dict`` moves the state to the parameter's device and dtype but keeps the
    strides it was saved with: a checkpoint written by a run in NCHW, resumed with channels-last
    weights (a CPU run resumed on a GPU), would keep NCHW momentum beside channels-last weights,
    and the fused and foreach optimiser paths would be lost or slowed.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
