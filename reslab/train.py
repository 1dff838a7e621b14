"""Training engine: ``TrainConfig``, ``train()``, ``evaluate()``, checkpoint and resume.

One loop serves every model and table; it never branches on model names. Batches come from
:class:`reslab.data.BatchLoader`, which augments on the device. A checkpoint is written after
every epoch (model, optimiser, scheduler, RNG states, history) and an interrupted run resumes
from it; on the CPU the resumed run's weights and history equal an uninterrupted run's bit for
bit, because each epoch's shuffling and augmentation depend only on ``(seed, epoch)``.

:func:`train` is a short driver over the parts, as in torchvision's reference script:
:func:`resume` (restore the last checkpoint, or seed a fresh run), :func:`train_one_epoch` (a loop
over :func:`train_step`), :func:`evaluate` and :func:`save_checkpoint`.

On CUDA the loop is built not to wait for the GPU: batches are made on the device, the step never
copies between host and device, the NaN check reads its flag asynchronously, channels-last is on
by default, bf16 autocast is a recipe field (``amp``) and ``torch.compile`` an option (``compile``),
with CUDA graphs (``reduce-overhead``) for the launch-bound small CIFAR networks. What a run used
is recorded in its result row (``precision``, ``compile``, ``channels_last``).

Under ``torchrun`` or ``srun`` with several processes (:mod:`reslab.distributed`) the same loop
trains one run on all of them with DistributedDataParallel: ``batch_size`` stays the global batch,
each rank trains on its slice of it, batch-norm statistics are taken over the global batch
(``sync_bn``), metrics are summed over ranks and rank 0 alone writes the checkpoint; a checkpoint
resumes with any number of processes. The result row states ``world_size`` and ``batch_norm``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm  # a widget in a notebook (nothing on stderr), text in a terminal

from . import distributed
from ._env import COMPILE_MODES
from .checkpoint import (CHECKPOINT_NAME, load_checkpoint, match_parameter_layout, rng_state, save_checkpoint,
                         set_rng_state)
from .data import Augment, BatchLoader, Dataset
from .evidence import BN_PER_PROCESS
from .models.layers import DepthDraws, share_depth_draws
from .progress import EpochClock

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "multistep", "cosine", "exponential")
#: TrainConfig fields that change how fast a run goes, not its numbers beyond floating-point noise:
#: never a recipe override, not part of a run's key, and free to differ when a run resumes.
#: ``sync_bn`` is one of them because it matters only in a run of several processes, where turning it
#: off makes the run a budget one (:func:`reslab.runs.execute.run_one` says so).
SPEED_FIELDS = ("device", "progress", "eval_batch_size", "channels_last", "compile", "sync_bn", "flush_denormals",
                "cuda_compile")


@dataclass
class TrainConfig:
    """A flat, typed training recipe. The same names appear in notebooks and result rows.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Training batch size (evaluation uses ``eval_batch_size``).
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: Peak learning rate.
        momentum: SGD momentum (Adam's beta1 is left at its default).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 (sgd, adam) or decoupled (adamw) weight decay.
        schedule: ``none``, ``step`` (x ``gamma`` every ``step_size`` epochs), ``multistep``
            (x ``gamma`` at each epoch of ``milestones``), ``cosine`` (to 0 over the run) or
            ``exponential`` (x ``gamma`` per epoch). Applied per step, in fractional epochs.
        step_size: Epochs between decays for ``step``.
        milestones: Epochs at which ``multistep`` decays.
        gamma: Decay factor.
        warmup_epochs: Linear warm-up from 0 over this many (fractional) epochs.
        label_smoothing: Cross-entropy label smoothing.
        amp: bfloat16 autocast on CUDA (ignored on the CPU; the result row's ``precision`` says
            which was used).
        channels_last: Channels-last memory format for model and batches; ``None`` (default) =
            on for CUDA, off on the CPU. Faster convolutions on GPUs; on CPUs it depends on the
            model: a CIFAR ResNet-18 step was 1.2x faster here, a DRSTN step (per-channel
            thresholding) 8x slower.
        compile: ``torch.compile`` the model for training (evaluation stays eager): one of
            :data:`COMPILE_MODES` (``True`` = ``default``, ``False`` = ``off``). If compiling
            fails, the run goes on eagerly and its row says why.
        seed: Seed of initialisation-independent randomness: shuffling, augmentation, dropout.
        device: ``cpu``, ``cuda``, ``cuda:1``... or ``auto`` (CUDA when available).
        max_steps: Stop after this many optimiser steps in total (smoke budgets); 0 = no cap.
        eval_batch_size: Batch size of evaluation.
        progress: Show tqdm progress bars (a widget in a notebook, text in a terminal).
        sync_bn: In a run of several processes, take batch-norm statistics over the global batch
            (``torch.nn.SyncBatchNorm`` on CUDA), as one process would; ``False`` keeps them per
            process, over its slice of the batch only (faster, but the numbers depend on the
            process count). No effect in one process.
        flush_denormals: On the CPU, flush denormal floats to zero while training
            (``torch.set_flush_denormal``): SELU's exponential produces many, and they make a CPU
            step several times slower. A speed setting (:data:`SPEED_FIELDS`): the effect on the
            numbers is below float32 resolution of normal values.
        cuda_compile: The mode ``compile='auto'`` uses on CUDA (on the CPU it is ``off``): the
            ``RESLAB_COMPILE`` setting that a command or notebook read where it started
            (:func:`reslab._env.compile_setting`); default ``off``.
    """

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "none"
    step_size: int = 30
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    amp: bool = False
    channels_last: bool | None = None
    compile: str = "auto"
    seed: int = 0
    device: str = "auto"
    max_steps: int = 0
    eval_batch_size: int = 512
    progress: bool = True
    sync_bn: bool = True
    flush_denormals: bool = False
    cuda_compile: str = "off"

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if isinstance(self.compile, bool):
            self.compile = "default" if self.compile else "off"
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES} (or True / False), got {self.compile!r}.")
        if self.cuda_compile not in COMPILE_MODES or self.cuda_compile == "auto":
            raise ValueError(f"cuda_compile must be one of {[m for m in COMPILE_MODES if m != 'auto']}, "
                             f"got {self.cuda_compile!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}.")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 (0 means no cap), got {self.max_steps}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build a config from a dict; an unknown key is an error.

        Raises:
            ValueError: naming the unknown keys and listing the valid ones.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {names}.")
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """Return a copy with some fields changed; an unknown field is an error."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class History:
    """Per-epoch rows of one training run, with best- and final-epoch test accuracy."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    device: str = ""
    resumed_from_epoch: int = 0
    #: Where the epochs were trained: ``[first_epoch, last_epoch, device]`` (1-based, inclusive), one
    #: entry per device in turn (a run resumed on another device has two).
    devices: list[list[Any]] = field(default_factory=list)
    #: How the run was executed: ``precision``, ``compile`` (the mode, or why it fell back to
    #: eager), ``channels_last``, ``cpu_threads`` (torch's intra-op threads, which fix the order of
    #: floating-point sums on the CPU), ``world_size`` and ``batch_norm``, as the result row states them.
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def final_acc(self) -> float:
        return self.rows[-1]["test_acc"] if self.rows else float("nan")

    @property
    def best_acc(self) -> float:
        return max((r["test_acc"] for r in self.rows), default=float("nan"))

    @property
    def best_epoch(self) -> int:
        if not self.rows:
            return 0
        return max(self.rows, key=lambda r: r["test_acc"])["epoch"]

    @property
    def epochs(self) -> int:
        return len(self.rows)

    @property
    def seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.rows))

    @property
    def seconds_before_resume(self) -> float:
        """The time of the epochs earlier processes trained, before this one resumed (0 if it did not)."""
        return float(sum(r["seconds"] for r in self.rows[:self.resumed_from_epoch]))

    @property
    def images_per_s(self) -> float:
        imgs = sum(r["train_images"] for r in self.rows)
        secs = sum(r["train_seconds"] for r in self.rows)
        return imgs / secs if secs > 0 else float("nan")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def trained_on(self) -> str:
        """Where the epochs were trained, in words (``epochs 1-20 on cpu; epochs 21-50 on cuda:NVIDIA H100``)."""
        return "; ".join(f"epochs {a}-{b} on {name}" if a != b else f"epoch {a} on {name}" for a, b, name in self.devices)

    def record_epoch(self, epoch: int) -> None:
        """Note that epoch ``epoch`` (1-based) was trained on :attr:`device`."""
        if self.devices and self.devices[-1][2] == self.device and self.devices[-1][1] == epoch - 1:
            self.devices[-1][1] = epoch
        else:
            self.devices.append([epoch, epoch, self.device])

    def summary(self) -> dict[str, Any]:
        """The numbers a result row carries."""
        return {
            "epochs": self.epochs,
            "final_acc": self.final_acc,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "wall_s": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 1),
            "device": self.device,
            "trained_on": self.trained_on(),
            **self.setup,
        }


#: Where :attr:`History.devices` says epochs were trained when a checkpoint or row from before they
#: were recorded does not say.
UNRECORDED_DEVICE = "a device not recorded"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``auto`` into ``cuda`` when available, else ``cpu``; check CUDA requests. A CUDA device
    always comes back with its index (``cuda`` is the current device, ``cuda:N``), so that two
    names of one GPU compare equal and rows name the GPU the run used.

    Raises:
        ValueError: for CUDA when no CUDA device is present, or an unparsable name.
    """
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is available; use 'cpu' or 'auto'.")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.type == "cuda" and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but this process sees {torch.cuda.device_count()} GPU(s) "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); check CUDA_VISIBLE_DEVICES.")
    return dev


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a run on ``device`` uses channels-last (``cfg.channels_last``; ``None``: on CUDA only)."""
    return device.type == "cuda" if cfg.channels_last is None else bool(cfg.channels_last)


def compile_mode(cfg: TrainConfig, device: torch.device) -> str:
    """The ``torch.compile`` mode a run on ``device`` uses (``off`` for none).

    ``auto`` is ``cfg.cuda_compile`` (the entry point's ``$RESLAB_COMPILE``) on CUDA and ``off`` on
    the CPU.
    """
    if cfg.compile != "auto":
        return cfg.compile
    return cfg.cuda_compile if device.type == "cuda" else "off"


def cuda_backend(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Set the CUDA backend of a run on purpose, and say how (for its result row).

    cuDNN autotunes its kernels (every batch of a run has one size) and may pick nondeterministic
    ones; TF32 is used for float32 convolutions and matrix products only in a mixed-precision run
    (``amp``), so that a run whose row says ``fp32`` is float32 throughout. On the CPU nothing is set.
    """
    if device.type != "cuda":
        return {"tf32": "n/a (cpu)", "cudnn_benchmark": "n/a (cpu)", "deterministic": "n/a (cpu)", "cudnn": ""}
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(cfg.amp)
    return {"tf32": "on (float32 convolutions and matrix products)" if cfg.amp else "off",
            "cudnn_benchmark": True, "deterministic": False, "cudnn": str(torch.backends.cudnn.version() or "")}


def precision(cfg: TrainConfig, device: torch.device) -> str:
    """What arithmetic the forward pass uses: ``bf16-autocast`` (``amp`` on CUDA) or ``fp32``."""
    return "bf16-autocast" if cfg.amp and device.type == "cuda" else "fp32"


def device_name(device: torch.device) -> str:
    """A human-readable device label for result rows."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimiser over the trainable parameters (frozen ones are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; unfreeze some before training.")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, epoch_float: float, total_epochs: float) -> float:
    """The learning-rate multiplier at a fractional epoch (warm-up times schedule)."""
    warm = min(1.0, epoch_float / cfg.warmup_epochs) if cfg.warmup_epochs > 0 else 1.0
    if cfg.schedule == "none":
        decay = 1.0
    elif cfg.schedule == "step":
        decay = cfg.gamma ** math.floor(epoch_float / cfg.step_size)
    elif cfg.schedule == "multistep":
        decay = cfg.gamma ** sum(epoch_float >= m for m in cfg.milestones)
    elif cfg.schedule == "exponential":
        decay = cfg.gamma ** math.floor(epoch_float)
    else:  # cosine, after warm-up
        span = max(total_epochs - cfg.warmup_epochs, 1e-8)
        t = min(max(epoch_float - cfg.warmup_epochs, 0.0) / span, 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * t))
    return warm * decay


def _make_loader(data: Dataset | BatchLoader, cfg: TrainConfig, device: torch.device, train: bool) -> BatchLoader:
    dist = distributed.current()
    if isinstance(data, BatchLoader):
        if data.device != device:
            raise ValueError(f"the BatchLoader lives on {data.device} but training runs on {device}.")
        if (data.rank, data.world_size) != (dist.rank, dist.world_size):
            raise ValueError(f"the BatchLoader is for rank {data.rank} of {data.world_size} but this process is rank "
                             f"{dist.rank} of {dist.world_size}; build it with rank= and world_size= from "
                             f"reslab.distributed.current().")
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"expected a reslab Dataset or BatchLoader, got {type(data).__name__}.")
    return BatchLoader.for_split(data, cfg.batch_size if train else cfg.eval_batch_size,
                                 Augment.standard(data.name, train=train), train=train, device=device,
                                 seed=cfg.seed, channels_last=use_channels_last(cfg, device),
                                 rank=dist.rank, world_size=dist.world_size)


def autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast when ``cfg.amp`` and ``device`` is CUDA; a no-op context otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, amp: bool = False) -> tuple[float, float]:
    """Return ``(mean loss, accuracy)`` of ``model`` on every batch of ``loader`` (in a run of several
    processes, on every rank's share of the split together)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    n = 0
    with torch.autocast(device_type=loader.device.type, dtype=torch.bfloat16, enabled=amp and loader.device.type == "cuda"):
        for x, y in loader:
            out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += y.numel()
    model.train(was_training)
    count = torch.tensor(n, device=loader.device, dtype=torch.long)
    distributed.all_reduce_sum(loss_sum, correct, count)
    n = int(count)
    return (loss_sum / max(n, 1)).item(), correct.item() / max(n, 1)


def _config_key(cfg: TrainConfig) -> dict[str, Any]:
    # Fields that do not change the numbers may differ between the run and its resumption.
    d = cfg.to_dict()
    for k in SPEED_FIELDS:
        d.pop(k)
    return d


def resume(
    path: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[int, int, History]:
    """Restore the run checkpointed at ``path``, or start a fresh one when there is none.

    Either way the global RNGs are left as the next epoch needs them: restored from the
    checkpoint, so that a resumed run equals an uninterrupted one, or seeded with ``cfg.seed``.

    Args:
        path: The checkpoint file, or ``None`` when the run keeps no checkpoint.
        model: Loaded in place from the checkpoint.
        optimizer: Loaded in place from the checkpoint.
        scheduler: Loaded in place from the checkpoint.
        cfg: The recipe; it must match the checkpoint's.
        device: The training device (its CUDA RNG is restored too).

    Returns:
        ``(start_epoch, step, history)``: the first epoch still to train (0-based), the optimiser
        steps taken so far, and the :class:`History` holding the rows of the epochs done.

    Raises:
        ValueError: if the checkpoint cannot be read or was written by a different recipe.
    """
    history = History(device=device_name(device))
    if path is None or not path.is_file():
        seed_everything(cfg.seed)
        return 0, 0, history
    ckpt = load_checkpoint(path)
    if ckpt.get("config") != _config_key(cfg):
        raise ValueError(
            f"{path} was written by a different recipe; delete it (or choose another "
            f"checkpoint_dir) to start over. Checkpoint: {ckpt.get('config')}; now: {_config_key(cfg)}."
        )
    model.load_state_dict(ckpt["model"])
    if "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
        match_parameter_layout(optimizer)
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"], device)
    elif int(ckpt["epoch"]) < cfg.epochs and not (cfg.max_steps and int(ckpt["step"]) >= cfg.max_steps):
        raise ValueError(f"{path} holds the final weights of a finished run, not the state to go on training; "
                         f"delete it to train anew.")
    history.rows = list(ckpt["history"])
    history.resumed_from_epoch = int(ckpt["epoch"])
    # Checkpoints written before devices were recorded: the epochs done, on a device not recorded.
    history.devices = [list(d) for d in ckpt.get("devices", [[1, history.resumed_from_epoch, UNRECORDED_DEVICE]])]
    return history.resumed_from_epoch, int(ckpt["step"]), history


@dataclass(frozen=True)
class EpochStats:
    """What one call of :func:`train_one_epoch` reports (names as in the :class:`History` rows).

    Attributes:
        steps: Optimiser steps taken in total, this epoch's included.
        train_loss: Mean training loss over the epoch's images.
        train_acc: Training accuracy over the epoch's images.
        train_images: Images trained on.
        train_seconds: Wall time of the epoch's training (evaluation not included).
        compile_error: Why the compiled model failed on one of its first :data:`GUARDED_STEPS`
            steps and the epoch went on with the eager one (``""`` when it did not, or nothing was
            compiled).
    """

    steps: int
    train_loss: float
    train_acc: float
    train_images: int
    train_seconds: float
    compile_error: str = ""

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else float("nan")


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the batch ``(x, y)``: forward (under bf16 autocast with ``cfg.amp`` on
    CUDA) and cross-entropy, backward, optimiser and scheduler step. Nothing in it waits for the
    device or copies between host and device.

    Returns:
        ``(loss, logits)``, on the device (the loss detached from the graph).
    """
    # A new step for compiled CUDA graphs (reduce-overhead): the last step's outputs may be reused.
    torch.compiler.cudagraph_mark_step_begin()
    with autocast(cfg, x.device):
        out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), out.detach()


class _NonFiniteWatch:
    """Remembers the first step with a NaN or infinite loss, on the device, and raises
    :class:`NonFiniteLossError` once the host sees it.

    On the CPU the flag is read every step (free). On CUDA it is copied to the host without
    waiting (every 50 steps) and read when that copy has landed, so the loop never stalls the GPU;
    :meth:`finish` waits for the last value at the end of the epoch. In a run of several processes
    the flag is read at the end of the epoch only, the earliest bad step over all ranks, so that
    every rank stops at the same point (a rank stopping alone would leave the others waiting).
    """

    def __init__(self, device: torch.device, epoch: int, first_step: int):
        self.device, self.epoch, self.first_step = device, epoch, first_step
        self.bad = torch.full((), -1, device=device, dtype=torch.long)  # first bad global step
        self.step = torch.full((), first_step, device=device, dtype=torch.long)  # counts on the device
        self._pending: tuple[torch.Tensor, Any] | None = None
        self.deferred = distributed.current().distributed

    def update(self, loss: torch.Tensor, i: int) -> None:
        self.bad = torch.where((self.bad < 0) & ~torch.isfinite(loss), self.step, self.bad)
        self.step += 1
        if self.deferred:
            return
        if self.device.type != "cuda":
            self._raise_if_bad(int(self.bad))
            return
        if self._pending is not None and self._pending[1].query():
            self._raise_if_bad(int(self._pending[0]))
            self._pending = None
        if self._pending is None and i % 50 == 49:
            event = torch.cuda.Event()
            host = self.bad.to("cpu", non_blocking=True)
            # On the stream of the run's device (the copy's), not the current device's: a run on
            # cuda:1 would otherwise read the flag before the copy has landed.
            event.record(torch.cuda.current_stream(self.device))
            self._pending = (host, event)

    def finish(self) -> None:
        bad = int(self.bad)
        if self.deferred:  # the earliest bad step of any rank (none: -1 everywhere)
            bad = distributed.all_reduce_min(bad if bad >= 0 else 2**62, self.device)
            bad = -1 if bad == 2**62 else bad
        self._raise_if_bad(bad)

    def _raise_if_bad(self, s: int) -> None:
        if s >= 0:
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at epoch {self.epoch + 1}, step {s - self.first_step + 1} "
                f"of that epoch (global step {s + 1}). Lower the learning rate, check the data, or "
                f"turn off amp; the last checkpoint (if any) is from the epoch before."
            )


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainConfig,
    epoch: int,
    step: int,
    eager: nn.Module | None = None,
    depth: DepthDraws | None = None,
) -> EpochStats:
    """Train ``model`` for one epoch of ``loader``, or until ``cfg.max_steps`` steps in all.

    Args:
        model: The model to train (or its ``torch.compile`` wrapper).
        loader: The training batches, on the training device.
        optimizer: The optimiser over the model's trainable parameters.
        scheduler: The learning-rate scheduler, stepped once a batch.
        cfg: The recipe.
        epoch: The epoch (0-based); it selects the loader's shuffling and augmentation.
        step: Optimiser steps taken before this epoch.
        eager: When ``model`` is a compiled wrapper that has not yet taken a step: the plain model.
            If one of its first :data:`GUARDED_STEPS` steps fails, the model's buffers and the RNG
            states are put back as they were before that step, the failure is reported in
            :attr:`EpochStats.compile_error`, and the epoch goes on with ``eager`` (an error that
            the eager model raises too is raised).
        depth: The model's stochastic-depth draws, made before each step when predrawn.

    Returns:
        The epoch's :class:`EpochStats`.

    Raises:
        NonFiniteLossError: on a NaN or infinite loss, naming epoch and step.
    """
    device = loader.device
    loader.set_epoch(epoch)
    model.train()
    t0 = time.perf_counter()
    watch = _NonFiniteWatch(device, epoch, step)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, compile_error = 0, ""
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
    for i, (x, y) in enumerate(bar):
        if eager is not None and i < GUARDED_STEPS:
            (loss, out), model, compile_error = _guarded_step(model, eager, x, y, optimizer, scheduler, cfg, depth, i)
            eager = None if compile_error else eager
        else:
            if depth is not None:
                depth.draw_step()
            loss, out = train_step(model, x, y, optimizer, scheduler, cfg)
        step += 1
        watch.update(loss, i)
        loss_sum += loss * y.numel()
        correct += (out.argmax(1) == y).sum()
        seen += y.numel()
        if cfg.max_steps and step >= cfg.max_steps:
            break
    watch.finish()
    count = torch.tensor(seen, device=device, dtype=torch.long)
    distributed.all_reduce_sum(loss_sum, correct, count)
    seen = int(count)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t0
    return EpochStats(steps=step, train_loss=(loss_sum / seen).item(), train_acc=correct.item() / seen,
                      train_images=seen, train_seconds=train_seconds, compile_error=compile_error)


#: Steps of a freshly compiled model that fall back to the eager model when they fail: the first
#: compiles the graphs; with ``reduce-overhead`` the next two record and first replay CUDA graphs.
GUARDED_STEPS = 3


def _guarded_step(compiled: nn.Module, eager: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                  cfg: TrainConfig, depth: DepthDraws | None, i: int) -> tuple[tuple[torch.Tensor, torch.Tensor], nn.Module, str]:
    """One of the first steps of a compiled model: ``(step outputs, the model to go on with, why
    compiling failed or "")``. On failure the weights, buffers, RNG states and stochastic-depth
    draws are put back as they were before the step, so the eager step that replaces it gives the
    numbers an eager run would (the steps the compiled model took before stay taken)."""
    state = {k: v.clone() for k, v in eager.state_dict().items()}
    rng = rng_state(x.device)
    drawn = depth.generator.get_state() if depth is not None else None
    try:
        if depth is not None:
            depth.draw_step()
        return train_step(compiled, x, y, optimizer, scheduler, cfg), compiled, ""
    except Exception as exc:  # torch.compile raises many kinds: backend, dynamo, inductor, triton
        eager.load_state_dict(state)
        set_rng_state(rng, x.device)
        if depth is not None:
            depth.generator.set_state(drawn)
            depth.predraw(None)  # the eager model draws in its forward pass, as an eager run does
        optimizer.zero_grad(set_to_none=True)
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__} at step {i + 1}: {lines[0] if lines else ''}"[:300]
        warnings.warn(f"torch.compile failed on training step {i + 1} ({reason}); the run goes on without "
                      "it, and its result row says so.", RuntimeWarning, stacklevel=3)
        return train_step(eager, x, y, optimizer, scheduler, cfg), eager, reason


def reset_compile() -> None:
    """Drop every compiled graph, guard and CUDA-graph pool of this process and clear the counters
    :func:`compile_counts` reads, so that a run starts as in a fresh process."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()


def compile_counts() -> dict[str, int]:
    """What ``torch.compile`` has done in this process since the last :func:`torch._dynamo.reset`
    (with its counters cleared): graphs compiled, graph breaks, CUDA graphs skipped."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}


def compile_report(mode: str, first: dict[str, int], last: dict[str, int], depth: DepthDraws | None) -> str:
    """The ``compile`` field of a compiled run's row: the mode, the graphs and graph breaks of its
    first epoch, the graphs compiled again later (recompilations), CUDA graphs skipped, and how
    stochastic depth was applied."""
    text = (f"{mode} ({first['graphs']} graph(s), {first['breaks']} graph break(s) in the first epoch; "
            f"{last['graphs'] - first['graphs']} recompiled later")
    if mode == "reduce-overhead":
        text += f"; {last['cudagraph_skips']} CUDA-graph skip(s)"
    return text + (f"; {depth.describe()})" if depth is not None else ")")


@contextlib.contextmanager
def denormals_flushed(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Flush denormal floats to zero inside the block when ``cfg.flush_denormals`` and ``device`` is the CPU."""
    if not (cfg.flush_denormals and device.type == "cpu"):
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def train(
    model: nn.Module,
    train_data: Dataset | BatchLoader,
    test_data: Dataset | BatchLoader,
    cfg: TrainConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    name: str = "",
) -> History:
    """Train ``model`` and evaluate it after every epoch (denormals flushed where the recipe says).

    Args:
        model: Any classifier ``(B, C, H, W) -> (B, num_classes)``; moved to ``cfg.device``.
        train_data: A :class:`Dataset` (standard augmentation) or a prepared :class:`BatchLoader`.
        test_data: Likewise, evaluated without augmentation.
        cfg: The recipe.
        checkpoint_dir: If given, ``last.pt`` is written there after every epoch, and a run
            finding a checkpoint of the same recipe resumes from it.
        name: What the run is, for the line printed after every epoch (with ``cfg.progress``).

    Returns:
        The :class:`History`; its :attr:`History.setup` says how the run was executed.

    Raises:
        NonFiniteLossError: on a NaN or infinite loss, naming epoch and step; the last good
            checkpoint is left as it was.
        ValueError: if a checkpoint of a different recipe is in ``checkpoint_dir``.
    """
    device = resolve_device(distributed.device_for(cfg.device))
    # On CUDA the run's GPU is the current device throughout (events, streams, CUDA graphs), whichever it is.
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with denormals_flushed(cfg, device), on_device:
        return _train(model, train_data, test_data, cfg, checkpoint_dir, name)


def _train(model: nn.Module, train_data: Dataset | BatchLoader, test_data: Dataset | BatchLoader, cfg: TrainConfig,
           checkpoint_dir: str | os.PathLike | None, name: str) -> History:
    dist = distributed.current()
    device = resolve_device(distributed.device_for(cfg.device))
    model, batch_norm = _batch_norm(model, cfg, device, dist)
    model.to(device)  # once, after any batch norm was replaced
    channels_last = use_channels_last(cfg, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = _make_loader(train_data, cfg, device, train=True)
    test_loader = _make_loader(test_data, cfg, device, train=False)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("the training split holds fewer images than one batch; lower batch_size.")

    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step / steps_per_epoch, cfg.epochs)
    )
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start_epoch, step, history = resume(ckpt_path, model, optimizer, scheduler, cfg, device)

    depth = share_depth_draws(model)  # the blocks stochastic depth drops: drawn alike on every rank
    # Several processes: DDP averages the gradients (it starts from rank 0's weights, equal anyway).
    trained = model
    if dist.distributed:
        # Said of 1x1 convolutions, whose weights' strides are ambiguous: a copy of a small gradient.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # A block that stochastic depth drops is not computed, so its parameters get no gradient
        # in that step (the same blocks on every rank: share_depth_draws); DDP must look for them.
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                            find_unused_parameters=depth is not None)
    mode = compile_mode(cfg, device)
    if mode != "off":
        # Nothing left from an earlier run in this process (graphs, guards, CUDA-graph pools), and
        # counters that count this run's graphs only.
        reset_compile()
        if depth is not None:  # drawn before each step, applied as 0/1 multipliers: no graph break per block
            depth.predraw(device)
    # Evaluation stays eager: it is a small share of the work, and a second graph to compile.
    run_model = trained if mode == "off" else torch.compile(trained, mode=None if mode == "default" else mode)
    untried = run_model is not trained
    first_counts: dict[str, int] | None = None
    history.setup = {"precision": precision(cfg, device), "compile": mode, "channels_last": channels_last,
                     "cpu_threads": torch.get_num_threads(), "world_size": dist.world_size,
                     "batch_norm": batch_norm, **cuda_backend(cfg, device)}
    clock = EpochClock(name, start_epoch, cfg.epochs)
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        if dist.distributed:  # dropout and the like: each rank its own draws, fixed by (seed, epoch, rank)
            seed_everything((cfg.seed * 1_000_003 + epoch) * 4099 + dist.rank)
        if depth is not None:  # dropped blocks: one draw for all ranks, fixed by (seed, epoch), so a resume repeats it
            depth.manual_seed(cfg.seed * 1_000_003 + epoch)
        t0 = time.perf_counter()
        stats = train_one_epoch(run_model, train_loader, optimizer, scheduler, cfg, epoch, step,
                                eager=trained if untried else None, depth=depth)
        if untried and not stats.compile_error:
            first_counts = compile_counts()
        untried = False
        if stats.compile_error:
            run_model, first_counts = trained, None
            history.setup["compile"] = f"off (torch.compile {mode} failed: {stats.compile_error})"
        if first_counts is not None:
            history.setup["compile"] = compile_report(mode, first_counts, compile_counts(), depth)
        step = stats.steps
        if dist.distributed and not cfg.sync_bn:  # evaluate with rank 0's running statistics everywhere
            distributed.broadcast_buffers(model)
        test_loss, test_acc = evaluate(model, test_loader, cfg.amp)
        history.rows.append({
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": stats.train_loss,
            "train_acc": stats.train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "train_images": stats.train_images,
            "train_seconds": stats.train_seconds,
            "seconds": time.perf_counter() - t0,
            "images_per_s": stats.images_per_s,
        })
        history.record_epoch(epoch + 1)
        if ckpt_path is not None and dist.is_main:
            save_checkpoint(ckpt_path, model, optimizer, scheduler, rows=history.rows, devices=history.devices,
                            epoch=epoch + 1, step=step, config=_config_key(cfg), device=device)
        if cfg.progress and dist.is_main:
            print(clock.line(history.rows[-1]), flush=True)
    distributed.barrier()  # the last checkpoint is on disk before any rank goes on
    return history


def _batch_norm(model: nn.Module, cfg: TrainConfig, device: torch.device,
                dist: distributed.Dist) -> tuple[nn.Module, str]:
    """The model to train, with global batch norm where the run needs it, and what a result row
    states about its batch-norm statistics (``batch_norm``)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, "none in the model"
    if not dist.distributed:
        return model, "whole batch (one process)"
    if cfg.sync_bn:
        return distributed.convert_batch_norm(model, device)
    distributed.warn_on_main(f"sync_bn is off: batch-norm statistics are taken over each process's "
                          f"{cfg.batch_size // dist.world_size} images, not the global batch of {cfg.batch_size}; "
                          f"the numbers depend on the process count, and the run is a budget run.")
    return model, f"{BN_PER_PROCESS} ({cfg.batch_size // dist.world_size} of {cfg.batch_size} images)"
