"""What a run costs before it trains: the model behind ``reslab plan`` and the estimate
:func:`reslab.runs.execute.run_specs` prints.

For every run a notebook would train (model x seed, at the notebook's default parameters for a
profile; the specs come from the function its ``run_<table>()`` calls, so the two cannot differ)
the plan lists the images to process, the FLOPs, a training step measured on the current device,
the estimated minutes (training, evaluation, per-run overhead) and whether the run is already
finished in the run store (then nothing is left to do); then the totals per notebook and overall.

How a run is costed:

- **Images**: the training split (from :mod:`reslab.data.specs`, at the profile's subset; the
  split as loaded when the data is found) in full batches (the loader drops the last incomplete
  one), times the epochs, capped by ``max_steps``; the test split once per epoch trained.
- **FLOPs**: forward FLOPs per image from ``torch.utils.flop_counter.FlopCounterMode``, on the
  ``meta`` device (no memory, no arithmetic) or on one real image, whichever is cheaper first
  (:data:`META_FLOPS_PIXELS`); training counts about 3x the forward pass (backward twice the
  forward), an approximation (a frozen backbone costs less).
- **Step time** (:func:`measure`): one training step as :func:`reslab.train.train_one_epoch`
  makes it (the recipe's training augmentation of a uint8 batch of the data set's stored shape,
  forward under the recipe's autocast, cross-entropy with its label smoothing, backward, the
  recipe's optimiser and scheduler step) on random inputs, after a warm-up step; the fastest of
  a few timed steps (other work on a shared machine only slows a step down). On a GPU at the
  recipe's batch (halved on out-of-memory and scaled back linearly). On the CPU a small batch is
  mostly fixed cost per step (a 4-image DRSTN step costs 4x more per image than a 128-image one
  here), so timing 2-4 images and scaling linearly would overstate a run several times; instead
  the first batch is chosen from the FLOP count (:func:`first_cpu_batch`), and when that first
  step, scaled linearly to the recipe's batch, stays under :data:`CPU_RECIPE_STEP_S`, the step is
  timed at the recipe's batch itself (a few seconds). Only a slower network grows its batch until
  a step takes about :data:`CPU_STEP_BUDGET_S`; its time at the recipe's batch is then the straight
  line through the last two batch sizes (fixed cost plus cost per image), or, for a network whose
  one-image step is already slow, that step scaled linearly (its fixed part is then small; the
  estimate errs long). Evaluation batches are
  timed at the same sizes (forward only, no gradients). One measurement per distinct network,
  input shape, batch, optimiser and device, not one per seed or data set (the head's size is
  left out of the key).
- **Memory** (:func:`estimate_memory`): the bytes one training step needs at the batch the run
  trains at, as a fixed part (weights, gradients, optimiser state) plus a part per image. On a GPU
  it is measured: the peak of ``torch.cuda.max_memory_allocated`` over the timed steps, less what
  was allocated before them (the fixed part), per image; a recipe's batch that ran out of memory
  is said so. Elsewhere it is estimated for a GPU without the full batch: the bytes autograd saves
  for backward in one forward pass (each storage once) under the recipe's autocast (bf16 with
  ``amp``, as on CUDA), on fake tensors (shapes only: no memory, no arithmetic) at batches
  :data:`MEMORY_BATCHES` (their difference is the part per image; bf16 copies of the weights do
  not grow with the batch), or, for a network that cannot run on fake tensors, on real images at a
  side of at most :data:`MEMORY_SIDE` scaled by H x W to the input's; plus the batch itself and the
  weights, gradients and optimiser state. It leaves out the transient buffers of the backward pass
  and the allocator's slack, so it errs short. A run whose step needs more than the GPU it would
  train on holds (the device's memory on CUDA; from the CPU, :data:`REFERENCE_GPU`) is flagged
  (:func:`memory_lines`); no recipe is changed.
- **Overhead per run**: building the network, the first step's extra cost (memory first
  touched), and writing the checkpoint after every epoch (its bytes at a write rate measured
  once).

Denormal floats are flushed to zero while timing on the CPU where the recipe flushes them in training
(``TrainConfig.flush_denormals``, the SELU table's recipes). An estimate never stops what it describes: a network
that fails to build or to step is reported as ``not timed``, a memory estimate that fails as ``memory not
estimated``. Checked against one real run by
``benchmarks/bench_plan.py`` (estimate / measured, target 0.7-1.3); timing on a busy machine
overstates every step, and the plan says so (:func:`busy_note`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .._errors import error_words
from ..data import get_spec
from ..profiles import PROTOCOL, Profile
from ..train import (autocast, build_optimizer, denormals_flushed, device_name, lr_factor, resolve_device,
                     train_step, use_channels_last)
from .spec import RunSpec, build_model
from .store import FINISHED, TO_TRAIN

#: On the CPU, the timed batch is grown until one step takes about this long (or is the recipe's).
CPU_STEP_BUDGET_S = 0.3
#: On the CPU, a guess of training GFLOP/s used only to pick the first batch size to time
#: (:func:`first_cpu_batch`); the times themselves are measured. Networks here ran at 30-140.
CPU_GUESS_GFLOPS_PER_S = 50.0
#: On the CPU, the step is timed at the recipe's batch itself whenever the first measurement puts
#: that step (scaled linearly, an upper bound) below this: extrapolating from a small batch
#: overstated a DRSTN step 4x, since most of a small CPU step is fixed cost.
CPU_RECIPE_STEP_S = 4.0
#: On the CPU, stop growing the batch once one network has taken this long to time.
CPU_MODEL_BUDGET_S = 30.0
#: A step slower than this is timed once after its warm-up (else two or three times, the fastest kept).
SLOW_STEP_S = 0.5
#: Inputs of at least this many pixels have their FLOPs counted on the meta device first; smaller
#: ones on one real image through the network built for timing first. Building a deep CIFAR
#: network again on meta and dispatching its many small operators there costs more than one real
#: 32x32 image (5.8 s against 0.8 s for the 452-layer Residual Attention network here); a 600x600
#: EfficientNet-B7 image costs more than its meta pass.
META_FLOPS_PIXELS = 96 * 96
#: Off a GPU, a training step's memory is compared with this GPU's: its name and bytes (the GPU
#: the protocol profiles are sized for).
REFERENCE_GPU = ("H100 80GB", 80 * 2**30)
#: The two batch sizes whose saved tensors are counted for the memory estimate (not 1: a
#: ``BatchNorm1d`` cannot train on one value per channel).
MEMORY_BATCHES = (2, 4)
#: A network that cannot run on fake tensors has its saved tensors counted on real images of at
#: most this side, scaled by H x W to the input's (a convolutional network's activations grow so).
MEMORY_SIDE = 128

#: The plan's CSV columns (``kind``: ``run``, ``notebook`` total or ``overall`` total).
PLAN_COLUMNS = (
    "kind", "notebook", "table", "label", "model", "dataset", "seed", "input", "batch_size", "epochs", "epochs_done",
    "max_steps",
    "steps", "train_images", "eval_images", "gflops_per_image", "train_tflops", "eval_tflops", "step_s",
    "timing", "train_memory_gib", "gpu_memory_gib", "memory", "over_memory", "train_min", "eval_min",
    "overhead_min", "minutes", "status", "minutes_to_go", "device", "runs", "runs_to_go", "not_timed",
)


# --------------------------------------------------------------------------------------------
# Measuring one network


@dataclass(frozen=True)
class StepCost:
    """What training one network costs on one device, at one input shape and batch size.

    A training step of ``b`` images takes ``train_fixed_s + train_per_image_s * b`` seconds, an
    evaluation batch ``eval_fixed_s + eval_per_image_s * b`` (one measured point: no fixed part).

    Attributes:
        device: Where it was measured, as result rows name devices (``cpu``, ``cuda:<name>``).
        gflops: Forward GFLOPs per image (NaN when they could not be counted).
        timing: How the step time was obtained, e.g. ``measured at batch 128`` or ``line through
            batches 34, 112``; ``not timed (...)`` with the error when it failed.
        warmup_s: The first step's extra seconds at the recipe's batch (once per run).
        build_s: Seconds to build the network.
        state_bytes: Bytes of the network's state (weights and buffers).
        optimizer_bytes: Bytes of the optimiser's state once it has stepped.
        memory: How the memory of a training step was obtained, e.g. ``peak measured at batch 64``
            or ``estimated from the tensors saved for backward, bf16 autocast``; ``memory not
            estimated (...)`` with the error when it failed.
        memory_fixed_bytes: Bytes of a training step that do not grow with the batch (weights,
            gradients, optimiser state...); NaN when not estimated.
        memory_per_image_bytes: Bytes of a training step per image of the batch; NaN when not estimated.
        gpu_memory_bytes: The memory of the GPU the step is compared with (the device's own on CUDA,
            :data:`REFERENCE_GPU`'s off a GPU).
        out_of_memory_batch: The batch that ran out of memory on the GPU (0: none did).
    """

    device: str
    gflops: float = float("nan")
    timing: str = ""
    train_fixed_s: float = float("nan")
    train_per_image_s: float = float("nan")
    eval_fixed_s: float = float("nan")
    eval_per_image_s: float = float("nan")
    warmup_s: float = 0.0
    build_s: float = 0.0
    state_bytes: int = 0
    optimizer_bytes: int = 0
    memory: str = ""
    memory_fixed_bytes: float = float("nan")
    memory_per_image_bytes: float = float("nan")
    gpu_memory_bytes: float = float(REFERENCE_GPU[1])
    out_of_memory_batch: int = 0

    @property
    def timed(self) -> bool:
        return math.isfinite(self.train_per_image_s)

    def train_memory_bytes(self, batch: int) -> float:
        """Bytes of one training step of ``batch`` images (NaN when not estimated)."""
        return self.memory_fixed_bytes + self.memory_per_image_bytes * batch

    def over_memory(self, batch: int) -> bool:
        """Whether a training step of ``batch`` images needs more than :attr:`gpu_memory_bytes` (or
        ran out of memory there); ``False`` when not estimated."""
        if self.out_of_memory_batch and batch >= self.out_of_memory_batch:
            return True
        return self.train_memory_bytes(batch) > self.gpu_memory_bytes

    def step_s(self, batch: int) -> float:
        """Seconds of one training step of ``batch`` images."""
        return self.train_fixed_s + self.train_per_image_s * batch

    def eval_s(self, images: int, batch: int) -> float:
        """Seconds to evaluate ``images`` images in batches of ``batch``."""
        return math.ceil(images / batch) * self.eval_fixed_s + images * self.eval_per_image_s


def input_shape(spec: RunSpec) -> tuple[int, int, int]:
    """``(C, H, W)`` of the batches the network of ``spec`` sees (after the recipe's resize / to_rgb)."""
    data = get_spec(spec.dataset)
    train_aug, _ = spec.augments()
    side = train_aug.resize or data.size
    return (3 if train_aug.to_rgb else data.channels), side, side


def _timing_model(spec: RunSpec) -> torch.nn.Module:
    """The network of ``spec`` with fresh weights: its speed does not depend on them, so pretrained
    files are never read (a frozen backbone stays frozen)."""
    data = get_spec(spec.dataset)
    return build_model(spec, len(data.classes), data.channels, pretrained=False)


def forward_gflops(spec: RunSpec, model: torch.nn.Module | None = None) -> float:
    """Forward GFLOPs of one image through the network of ``spec`` (eval mode, no gradients).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no memory, no
    arithmetic) or on one real image through ``model`` (on its device; ``None``: built here on the
    CPU), whichever is cheaper first (:data:`META_FLOPS_PIXELS`), the other if the first fails
    (a network that reads a value cannot run on meta). NaN if both fail.
    """
    c, h, w = input_shape(spec)

    def on_meta() -> float:
        with torch.device("meta"):
            net = _timing_model(spec).eval()
            x = torch.empty(1, c, h, w)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
        return counter.get_total_flops() / 1e9

    def on_one_image() -> float:
        net = _timing_model(spec) if model is None else model
        was_training = net.training
        try:
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                net.eval()(torch.randn(1, c, h, w, device=next(net.parameters()).device))
        finally:
            net.train(was_training)
        return counter.get_total_flops() / 1e9

    for count in ((on_meta, on_one_image) if h * w >= META_FLOPS_PIXELS else (on_one_image, on_meta)):
        try:
            return count()
        except Exception:
            continue
    return float("nan")


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, amp: bool,
                state: dict[str, torch.Tensor] | None = None) -> int:
    """Bytes autograd saves for backward in one training forward pass of ``x`` through ``model``
    and the cross-entropy, under bf16 autocast (on ``x``'s device type) with ``amp``: what a
    training step holds at its peak besides the weights, gradients, optimiser state and batch.

    Each storage counts once (views of one tensor share it); the model's weights and buffers and
    ``x`` itself are left out (counted apart). Works on real and on fake tensors.

    Args:
        state: Weights and buffers to run ``model`` with instead of its own
            (``torch.func.functional_call``), e.g. fake copies of them.
    """
    weights = list(state.values()) if state is not None else [*model.parameters(), *model.buffers()]
    own = {t.untyped_storage()._cdata for t in [*weights, x]}
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # The storage itself rather than its data pointer: a fake tensor's has none. Each one saved
        # stays alive with the graph below, so no other storage can take its place meanwhile.
        storage = t.untyped_storage()
        if storage._cdata not in own:
            sizes.setdefault(storage._cdata, storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x) if state is None else torch.func.functional_call(model, state, (x,))
            loss = F.cross_entropy(out.float(), labels)
        del loss, out
    return sum(sizes.values())


def _training_state_bytes(model: torch.nn.Module, cfg) -> int:
    """Bytes of the weights and buffers, the gradients of the trainable weights and the optimiser's
    state (SGD with momentum: one tensor per weight, without none; Adam and AdamW: two)."""
    weights = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    per_weight = (1 if cfg.momentum > 0 else 0) if cfg.optimizer == "sgd" else 2
    return weights + trainable * (1 + per_weight)


def estimate_memory(spec: RunSpec, model: torch.nn.Module | None = None) -> tuple[float, float, str]:
    """Estimate the memory of one training step of the network of ``spec`` without its batch.

    What autograd saves for backward (:func:`saved_bytes`) through ``model`` (on its device;
    ``None``: built here on the CPU) is counted at the two batches :data:`MEMORY_BATCHES`: on fake
    copies of its weights and fake images of the input's shape (shapes only: no memory, no
    arithmetic), or, for a network that cannot run on them (one that reads a value), on real
    images at a side of at most :data:`MEMORY_SIDE`, the part per image then scaled by H x W to
    the input's. Under bf16 autocast
    when the recipe has ``amp``, so that the estimate holds for the GPU the recipe is meant for,
    also from the CPU. The difference of the two counts is the part per image, to which the batch
    itself is added (its stored uint8 images and the float images the augmentation makes); what
    does not grow with the batch (bf16 copies of the weights under autocast) joins the fixed part:
    the weights and buffers, the gradients and the optimiser's state.

    Returns:
        ``(fixed bytes, bytes per image, how)``, ``how`` e.g. ``estimated from the tensors saved
        for backward, bf16 autocast``.

    Raises:
        Exception: whatever building or running the network raised (on real images).
    """
    cfg = spec.cfg
    data = get_spec(spec.dataset)
    c, h, w = input_shape(spec)
    precision = "bf16 autocast" if cfg.amp else "fp32"
    b1, b2 = MEMORY_BATCHES

    net = (_timing_model(spec) if model is None else model).train()
    device = next(net.parameters()).device

    def count(side_h: int, side_w: int, state: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
        counts = []
        for b in MEMORY_BATCHES:
            torch.manual_seed(0)  # the same random choices (stochastic depth) at both batches
            x = torch.randn(b, c, side_h, side_w, device=device)
            if use_channels_last(cfg, device):
                x = x.contiguous(memory_format=torch.channels_last)
            labels = torch.randint(0, len(data.classes), (b,), device=device)
            counts.append(saved_bytes(net, x, labels, cfg.amp, state))
        per_image = max(0.0, (counts[1] - counts[0]) / (b2 - b1))
        return max(0.0, counts[0] - per_image * b1), per_image

    try:
        # A private module of torch, but the one torch.compile traces with.
        from torch._subclasses.fake_tensor import FakeTensorMode

        fake = FakeTensorMode()
        state = {k: fake.from_tensor(t) for k, t in itertools.chain(net.named_parameters(), net.named_buffers())}
        with fake:
            fixed, per_image = count(h, w, state)
        how = f"estimated from the tensors saved for backward, {precision}"
    except Exception:
        side_h, side_w = min(h, MEMORY_SIDE), min(w, MEMORY_SIDE)
        fixed, per_image = count(side_h, side_w)
        per_image *= (h * w) / (side_h * side_w)
        scaled = f" scaled to {h} px" if (side_h, side_w) != (h, w) else ""
        how = f"estimated from {b1} and {b2} images at {side_h} px{scaled}, {precision}"
    batch_bytes = data.channels * data.size**2 + c * h * w * 4  # uint8 as stored, then float
    return fixed + _training_state_bytes(net, cfg), per_image + batch_bytes, how


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, images: torch.Tensor,
               labels: torch.Tensor, spec: RunSpec, device: torch.device, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps on one batch, as ``train_one_epoch`` makes them:
    the batch's augmentation, then :func:`reslab.train.train_step` itself."""
    cfg = spec.cfg
    augment = spec.augments()[0]
    channels_last = use_channels_last(cfg, device)
    generator = torch.Generator(device=device).manual_seed(0)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        x = augment(images, generator if augment.random else None)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss, out = train_step(model, x, labels, optimizer, scheduler, cfg)
        loss_sum += loss * labels.numel()
        correct += (out.argmax(1) == labels).sum()
        if device.type == "cpu":
            bool(torch.isfinite(loss))  # train_one_epoch reads its non-finite flag every CPU step
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def _time_eval(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: RunSpec,
               device: torch.device, repeats: int) -> float:
    """Seconds of one evaluation batch (the test augmentation, forward, loss, accuracy): the
    fastest of ``repeats``."""
    augment = spec.augments()[1]
    was_training = model.training
    model.eval()
    times = []
    try:
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            x = augment(images)
            if use_channels_last(spec.cfg, device):
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(spec.cfg, device):
                out = model(x)
                F.cross_entropy(out.float(), labels, reduction="sum").item()
                (out.argmax(1) == labels).sum().item()
            _sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return min(times)


def _batch(spec: RunSpec, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images of the data set's stored shape and random labels: ``(b, C, H, W)``, ``(b,)``."""
    data = get_spec(spec.dataset)
    images = torch.randint(0, 256, (b, data.channels, data.size, data.size), dtype=torch.uint8, device=device)
    return images, torch.randint(0, len(data.classes), (b,), device=device)


def _line(points: list[tuple[int, float]], batch: int) -> tuple[float, float, str]:
    """``(fixed, per image, how)`` of a step time at ``batch`` from measured ``(batch, seconds)`` points."""
    b2, t2 = points[-1]
    if b2 == batch:
        if len(points) > 1:  # keep the fixed part for the last incomplete batches of evaluation
            b1, t1 = points[-2]
            slope = (t2 - t1) / (b2 - b1)
            if slope > 0:
                return t2 - slope * b2, slope, f"measured at batch {batch}"
        return 0.0, t2 / b2, f"measured at batch {batch}"
    if len(points) > 1:
        b1, t1 = points[-2]
        slope = (t2 - t1) / (b2 - b1)
        if slope > 0:
            return t2 - slope * b2, slope, f"line through batches {b1}, {b2}"
    return 0.0, t2 / b2, f"scaled linearly from batch {b2}"


def measure(spec: RunSpec, device: str | torch.device = "cpu") -> StepCost:
    """Time a training step and an evaluation batch of the network of ``spec`` on ``device``, and
    find the memory of its training step.

    See the module docstring for how: on CUDA the memory is measured while timing; elsewhere (or
    when timing failed) it is estimated (:func:`estimate_memory`). Never raises for the network's
    sake: a failure gives a :class:`StepCost` whose ``timing`` says ``not timed`` and why, and
    whose ``memory`` says ``memory not estimated`` and why.

    Raises:
        ValueError: only for a device that cannot be had (:func:`reslab.train.resolve_device`).
    """
    dev = resolve_device(device)
    name = device_name(dev)
    gpu = torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else REFERENCE_GPU[1]
    model = None
    try:
        try:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            model = _timing_model(spec).to(dev).train()
            if use_channels_last(spec.cfg, dev):
                model.to(memory_format=torch.channels_last)
            build_s = time.perf_counter() - t0
            gflops = forward_gflops(spec, model)
            with denormals_flushed(spec.cfg, dev):
                cost = _measure_steps(model, spec, dev, gflops)
            state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            cost = dataclasses.replace(cost, device=name, gflops=gflops, build_s=build_s, state_bytes=state,
                                       gpu_memory_bytes=gpu)
        except Exception as exc:  # an estimate must never stop the run it describes
            cost = StepCost(device=name, timing=f"not timed ({error_words(exc)})", gpu_memory_bytes=gpu)
        if math.isfinite(cost.memory_per_image_bytes):
            return cost
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            fixed, per_image, how = estimate_memory(spec, model)
            return dataclasses.replace(cost, memory=how, memory_fixed_bytes=fixed, memory_per_image_bytes=per_image)
        except Exception as exc:  # nor must a memory estimate
            return dataclasses.replace(cost, memory=f"memory not estimated ({error_words(exc)})")
    finally:
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def step_memory(spec: RunSpec, device: str | torch.device = "cpu") -> StepCost:
    """The memory of a training step of ``spec``'s network as the plan finds it, without the CPU's
    timing: on CUDA :func:`measure` (the peak at the recipe's batch, halved until it fits), elsewhere
    :func:`estimate_memory`, compared with :data:`REFERENCE_GPU`. ``reslab doctor`` reports it.

    Raises:
        ValueError: for a device that cannot be had; off CUDA, whatever the estimate raised.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return measure(spec, dev)
    fixed, per_image, how = estimate_memory(spec)
    return StepCost(device=device_name(dev), memory=how, memory_fixed_bytes=fixed, memory_per_image_bytes=per_image)


def first_cpu_batch(gflops: float, batch: int) -> int:
    """The first batch size to time on the CPU: a quarter of the one whose step the FLOP count (at
    :data:`CPU_GUESS_GFLOPS_PER_S`) puts near :data:`CPU_STEP_BUDGET_S`, so that a second, larger
    batch gives a line through two points; between 1 and the recipe's ``batch``; 2 when the FLOPs
    are unknown."""
    if not math.isfinite(gflops) or gflops <= 0:
        return min(2, batch)
    per_image = 3 * gflops / CPU_GUESS_GFLOPS_PER_S  # forward + backward ~ 3x the forward
    return max(1, min(batch, int(CPU_STEP_BUDGET_S / per_image) // 4))


def _measure_steps(model: torch.nn.Module, spec: RunSpec, dev: torch.device, gflops: float) -> StepCost:
    """Time training steps (and one evaluation batch) at one or more batch sizes; see the module docstring."""
    cfg = spec.cfg
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s / 100, cfg.epochs))
    batch = cfg.batch_size
    on_cpu = dev.type == "cpu"
    points: list[tuple[int, float]] = []
    evals: list[tuple[int, float]] = []
    warm = 0.0
    t_start = time.perf_counter()
    b = first_cpu_batch(gflops, batch) if on_cpu else batch
    out_of_memory = 0
    while True:
        try:
            images, labels = _batch(spec, b, dev)
            first = _time_step(model, optimizer, scheduler, images, labels, spec, dev, 1 if on_cpu else 3)
            repeats = (3 if first[-1] < SLOW_STEP_S / 2 else 2 if first[-1] < SLOW_STEP_S else 1) if on_cpu else 10
            if not on_cpu:  # weights, gradients and optimiser state (all there after the warm-up), not the batch
                fixed_bytes = torch.cuda.memory_allocated(dev) - images.nbytes - labels.nbytes
                torch.cuda.reset_peak_memory_stats(dev)
            # The fastest: other work on a shared machine only ever slows a step down.
            t = min(_time_step(model, optimizer, scheduler, images, labels, spec, dev, repeats))
            if not on_cpu:
                per_image_bytes = (torch.cuda.max_memory_allocated(dev) - fixed_bytes) / b
            # Evaluation at the same batch: its first pass in eval mode is a warm-up unless slow.
            e = _time_eval(model, images, labels, spec, dev, (1 if t > SLOW_STEP_S else 2) if on_cpu else 5)
        except torch.cuda.OutOfMemoryError:
            if b == 1:
                raise
            out_of_memory = out_of_memory or b
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            b //= 2
            continue
        points.append((b, t))
        evals.append((b, e))
        warm = max(0.0, first[0] - t) * batch / b  # the first step's extra cost, at the recipe's batch
        if not on_cpu or b >= batch or time.perf_counter() - t_start > CPU_MODEL_BUDGET_S:
            break
        if t * batch / b <= CPU_RECIPE_STEP_S:  # the recipe's step takes seconds: time it there
            b = batch
            continue
        if t >= CPU_STEP_BUDGET_S:  # a slow network: a line through what was measured
            break
        b = min(batch, max(2 * b, int(b * CPU_STEP_BUDGET_S / t)))
    fixed, per_image, how = _line(points, batch)
    e_fixed, e_per_image, _ = _line(evals, evals[-1][0])
    optimizer_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                          if torch.is_tensor(t))
    cost = StepCost(device="", timing=how, train_fixed_s=fixed, train_per_image_s=per_image, eval_fixed_s=e_fixed,
                    eval_per_image_s=e_per_image, warmup_s=warm, optimizer_bytes=optimizer_bytes)
    if on_cpu:
        return cost
    memory = f"peak measured at batch {b}"
    if out_of_memory:
        total = torch.cuda.get_device_properties(dev).total_memory
        memory = (f"out of memory at batch {out_of_memory} on {torch.cuda.get_device_name(dev)} "
                  f"({total / 2**30:.0f} GiB); measured at batch {b}")
    return dataclasses.replace(cost, memory=memory, memory_fixed_bytes=fixed_bytes,
                               memory_per_image_bytes=per_image_bytes, out_of_memory_batch=out_of_memory)


def measure_key(spec: RunSpec, device: torch.device) -> str:
    """What decides a measurement: network, its arguments, input shape, batch, optimiser, autocast,
    memory format and device (not the data set's number of classes, not the seed)."""
    cfg = spec.cfg
    kwargs = {k: v for k, v in spec.model_kwargs.items() if k != "pretrained"}
    return json.dumps([spec.model, kwargs, input_shape(spec), cfg.batch_size, cfg.optimizer, cfg.momentum > 0,
                       cfg.amp, cfg.channels_last, str(device)], sort_keys=True, default=str)


@functools.lru_cache(maxsize=None)
def checkpoint_write_rate() -> float:
    """Bytes per second ``torch.save`` writes here (32 MB, measured once per process)."""
    payload = {"w": torch.zeros(8 * 1024 * 1024)}
    with tempfile.TemporaryDirectory(prefix="reslab-plan-") as tmp:
        t0 = time.perf_counter()
        torch.save(payload, Path(tmp) / "probe.pt")
        return 32 * 1024 * 1024 / max(time.perf_counter() - t0, 1e-3)


# --------------------------------------------------------------------------------------------
# Costing runs


@dataclass
class PlannedRun:
    """One run to cost: a spec, a seed, its split sizes and whether it is finished.

    Attributes:
        notebook: The notebook that trains it (``""`` inside :func:`reslab.runs.execute.run_specs`).
        train_images: Images in the training split the run uses.
        test_images: Images in the test split it evaluates.
        status: a status of :mod:`reslab.runs.store` (``TO_TRAIN``, ``FINISHED`` or ``NOT_LOOKED_UP``).
        epochs_done: Epochs of an unfinished run already in its checkpoint (it resumes after them).
    """

    notebook: str
    spec: RunSpec
    seed: int
    train_images: int
    test_images: int
    status: str = TO_TRAIN
    epochs_done: int = 0


def split_sizes(spec: RunSpec, profile: Profile) -> tuple[int, int]:
    """Training and test images of ``spec`` under ``profile`` from the data set's definition (the
    official split sizes, at the profile's subsets and the recipe's ``test_subset``)."""
    sizes = get_spec(spec.dataset).split_sizes
    train = profile.data_kwargs("train")["subset"]
    test = profile.data_kwargs("test", spec.recipe.test_subset)["subset"]
    return (min(train, sizes["train"]) if train else sizes["train"]), (min(test, sizes["test"]) if test else sizes["test"])


def cost_runs(runs: Sequence[PlannedRun], device: str | torch.device | None = None) -> pd.DataFrame:
    """One row per run (columns :data:`PLAN_COLUMNS`, ``kind == "run"``), each distinct network
    measured once.

    Args:
        runs: The runs.
        device: Where to measure; ``None``: each run's own training device (``cfg.device``).
    """
    costs: dict[str, StepCost] = {}
    rows = []
    for run in runs:
        dev = resolve_device(device if device is not None else run.spec.cfg.device)
        key = measure_key(run.spec, dev)
        if key not in costs:
            costs[key] = measure(run.spec, dev)
        rows.append(_run_row(run, costs[key]))
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def _run_row(run: PlannedRun, cost: StepCost) -> dict[str, Any]:
    spec, cfg = run.spec, run.spec.cfg
    per_step = cfg.batch_size if run.train_images > cfg.batch_size else run.train_images  # full batches only
    steps_per_epoch = max(1, run.train_images // cfg.batch_size) if run.train_images > cfg.batch_size else 1
    steps = steps_per_epoch * cfg.epochs
    steps = min(steps, cfg.max_steps) if cfg.max_steps else steps
    epochs_run = math.ceil(steps / steps_per_epoch)
    train_images, eval_images = steps * per_step, epochs_run * run.test_images
    train_s = steps * cost.step_s(per_step)
    eval_s = epochs_run * cost.eval_s(run.test_images, cfg.eval_batch_size)
    ckpt_bytes = cost.state_bytes + cost.optimizer_bytes
    start_s, epoch_write_s = cost.build_s + cost.warmup_s, 0.0
    if spec.recipe.checkpoint:  # after every epoch, then the final weights are rewritten once
        rate = checkpoint_write_rate()
        start_s, epoch_write_s = start_s + 2 * cost.state_bytes / rate, ckpt_bytes / rate
    overhead_s = start_s + epochs_run * epoch_write_s
    epochs_s = train_s + eval_s + epochs_run * epoch_write_s
    minutes = (start_s + epochs_s) / 60
    # A run that resumes from its checkpoint has only its remaining epochs to go (and starts once more).
    # The fraction is taken first so that a run with nothing done costs exactly its minutes (1.0 * x == x).
    done = 0 if run.status == FINISHED else min(max(int(run.epochs_done), 0), epochs_run)
    left = (epochs_run - done) / epochs_run
    to_go = 0.0 if run.status == FINISHED else (start_s + epochs_s * left) / 60
    memory = cost.train_memory_bytes(per_step)
    c, h, w = input_shape(spec)
    return {
        "kind": "run", "notebook": run.notebook, "table": spec.table, "label": spec.label, "model": spec.model,
        "dataset": spec.dataset, "seed": run.seed, "input": f"{c}x{h}x{w}", "batch_size": cfg.batch_size,
        "epochs": cfg.epochs, "epochs_done": done, "max_steps": cfg.max_steps, "steps": steps, "train_images": train_images,
        "eval_images": eval_images, "gflops_per_image": round(cost.gflops, 4),
        "train_tflops": round(3 * cost.gflops * train_images / 1e3, 3),
        "eval_tflops": round(cost.gflops * eval_images / 1e3, 3),
        "step_s": round(cost.step_s(per_step), 4) if cost.timed else float("nan"), "timing": cost.timing,
        "train_memory_gib": round(memory / 2**30, 6) if math.isfinite(memory) else float("nan"),
        "gpu_memory_gib": round(cost.gpu_memory_bytes / 2**30, 1), "memory": cost.memory,
        "over_memory": int(cost.over_memory(per_step)),
        "train_min": train_s / 60, "eval_min": eval_s / 60, "overhead_min": overhead_s / 60, "minutes": minutes,
        "status": run.status, "minutes_to_go": to_go, "device": cost.device,
        "runs": 1, "runs_to_go": int(run.status != FINISHED), "not_timed": int(not cost.timed),
    }


def with_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` followed by one total row per notebook and one overall (``kind`` says which).

    Sums skip runs that were not timed (``not_timed`` counts them); ``over_memory`` counts the runs
    whose training step needs more memory than their GPU holds.
    """
    sums = ["train_images", "eval_images", "train_tflops", "eval_tflops", "train_min", "eval_min", "overhead_min",
            "minutes", "minutes_to_go", "runs", "runs_to_go", "not_timed", "over_memory"]

    def total(group: pd.DataFrame, kind: str, notebook: str) -> dict[str, Any]:
        row = {c: group[c].sum() for c in sums} | {"kind": kind, "notebook": notebook}
        row["device"] = ",".join(sorted({str(d) for d in group["device"].dropna() if d}))
        return row

    out = []
    for notebook, group in rows.groupby("notebook", sort=False):
        out += [group, pd.DataFrame([total(group, "notebook", notebook)])]
    out.append(pd.DataFrame([total(rows, "overall", "")]))
    frame = pd.concat([f for f in out if len(f)], ignore_index=True) if len(rows) else pd.DataFrame([total(rows, "overall", "")])
    return frame.reindex(columns=list(PLAN_COLUMNS))


# --------------------------------------------------------------------------------------------
# Words


def duration(minutes: float) -> str:
    """``minutes`` in the unit that reads best: ``40 s``, ``12 min``, ``3.4 h``, ``2.1 days``."""
    if not math.isfinite(minutes):
        return "?"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def _count(n: float) -> str:
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def format_runs(rows: pd.DataFrame) -> str:
    """The runs of ``rows`` (``kind == "run"``) as a readable table."""
    runs = rows[rows["kind"] == "run"]
    if runs.empty:
        return ""
    view = pd.DataFrame({
        "label": runs["label"].str.slice(0, 34), "model": runs["model"], "data": runs["dataset"],
        "seed": runs["seed"].astype(int), "input": runs["input"], "batch": runs["batch_size"].astype(int),
        "epochs": runs["epochs"].astype(int),
        "train img": runs["train_images"].map(_count), "eval img": runs["eval_images"].map(_count),
        "GFLOP/img": runs["gflops_per_image"].map(lambda v: f"{v:.3g}" if math.isfinite(v) else "?"),
        "step s": runs["step_s"].map(lambda v: f"{v:.3g}" if math.isfinite(v) else "?"),
        "timing": runs["timing"].str.slice(0, 60),
        "mem GiB": [(f"{v:.3g}" if math.isfinite(v) else "?") + (" !" if over else "")
                    for v, over in zip(runs["train_memory_gib"], runs["over_memory"])],
        "time": runs["minutes"].map(duration),
        "status": [f"{status}: {done} of {epochs} epochs done, {duration(to_go)} to go" if done else status
                   for status, done, epochs, to_go in zip(runs["status"], runs["epochs_done"].fillna(0).astype(int),
                                                          runs["epochs"].astype(int), runs["minutes_to_go"])],
    })
    return view.to_string(index=False)


def memory_lines(rows: pd.DataFrame) -> list[str]:
    """One sentence per network of ``rows`` (``kind == "run"``) whose training step needs more
    memory than the GPU it would train on holds (``over_memory``; marked ``!`` by
    :func:`format_runs`): how much, how it was found, and what to do. No recipe is changed."""
    runs = rows[(rows["kind"] == "run") & (rows["over_memory"] > 0)]
    lines = []
    for row in runs.itertuples():
        batch = int(row.train_images // row.steps) if row.steps else int(row.batch_size)
        gpu = str(row.device)[len("cuda:"):] if str(row.device).startswith("cuda:") else REFERENCE_GPU[0]
        need = f"~{row.train_memory_gib:.0f} GiB" if math.isfinite(row.train_memory_gib) else "more"
        line = (f"{row.model} {row.input} batch {batch}: {need} for one training step ({row.memory}): would not fit "
                f"one {row.gpu_memory_gib:.0f} GiB GPU ({gpu}) at batch {batch}; use gradient accumulation or a "
                "smaller batch.")
        if line not in lines:
            lines.append(line)
    return lines


def total_line(total: pd.Series, what: str) -> str:
    """One sentence: runs, runs to go and minutes of a total row of :func:`with_totals`."""
    text = (f"{what}: {int(total['runs'])} run(s), {int(total['runs_to_go'])} still to train: about "
            f"{duration(total['minutes_to_go'])} to go (of {duration(total['minutes'])} in all; training "
            f"{duration(total['train_min'])}, evaluation {duration(total['eval_min'])}, overhead "
            f"{duration(total['overhead_min'])}), {_count(total['train_tflops'] + total['eval_tflops'])} TFLOPs")
    if total["not_timed"]:
        text += f"; {int(total['not_timed'])} run(s) not timed, not counted"
    return text


def before_training(rows: pd.DataFrame, profile: Profile) -> str:
    """What :func:`reslab.runs.execute.run_specs` prints before training the runs of ``rows``
    (:func:`with_totals` of the runs still to train): under a protocol profile the runs and their
    total, else (a budget profile on the CPU) one line."""
    total = rows[rows["kind"] == "overall"].iloc[0]
    devices = ", ".join(d for d in str(total["device"]).split(",") if d) or "?"
    if profile.evidence != PROTOCOL:
        text = (f"[reslab] profile {profile.name} on the CPU: about {duration(total['minutes_to_go'])} for "
                f"{int(total['runs_to_go'])} run(s) still to train (training {duration(total['train_min'])}, "
                f"evaluation {duration(total['eval_min'])}, overhead {duration(total['overhead_min'])}; step times "
                f"measured here on {devices})")
        if total["not_timed"]:
            text += f"; {int(total['not_timed'])} run(s) not timed, not counted"
        return "\n".join([text + ".", *(f"[reslab] {line}" for line in memory_lines(rows))])
    lines = [f"[reslab] cost plan of the {int(total['runs_to_go'])} run(s) still to train (profile {profile.name}; "
             f"step times measured on {devices}; `reslab plan` plans whole notebooks):", format_runs(rows),
             total_line(total, "[reslab] total"), *(f"[reslab] {line}" for line in memory_lines(rows))]
    if "cpu" in devices.split(", ") and total["minutes_to_go"] > 24 * 60:
        lines.append(f"[reslab] that is days of CPU time: profile {profile.name} is meant for a GPU (device='cuda').")
    return "\n".join(lines)


def device_words(device: torch.device) -> str:
    """The device step times were measured on, in words (``cpu (2 threads, <model name>)``)."""
    if device.type == "cuda":
        return device_name(device)
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = ", " + line.split(":", 1)[1].strip()
                break
    return f"cpu ({torch.get_num_threads()} threads{model})"

