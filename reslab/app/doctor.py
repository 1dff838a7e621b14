"""``reslab doctor``: every path of training on this machine's device, checked in minutes, before
the hours (or the fifteen lent minutes) of a real run.

Each check prints one row: ``pass``, ``fail`` (with what went wrong) or ``skip`` (with why: it means
nothing on this device), its seconds and what it measured; the exit code is 1 when a check failed.
On a CPU the checks that mean something there take a minute or two; on a GPU all of them, a few
minutes on one H100.

- ``environment``: torch, the device, CUDA / cuDNN versions, bf16 support, the cuDNN and TF32 flags
  training sets (:func:`reslab.train.cuda_backend`).
- ``train and resume``: two epochs of a CIFAR ResNet-18 on synthetic data with a checkpoint, then a
  third that resumes from it (bf16 autocast and channels-last where the recipe has them on CUDA).
- ``resume on another device``: the CUDA checkpoint resumed on the CPU.
- ``NaN watch``: a model that returns NaN stops with :class:`reslab.train.NonFiniteLossError`.
- ``every model``: one training step and one evaluation of every registered model at its test input
  size: finite, and channels-last kept by every module that returns a feature map.
- ``compile``: ``torch.compile`` ``reduce-overhead`` (CUDA graphs) on a CIFAR ResNet-18, DRSTN V5 and
  a stochastic-depth ResNet-20 through :func:`reslab.train.train`: no fallback to eager in the
  first steps (where CUDA graphs are recorded), no graph break, the graphs counted.
- ``one-process DDP``: one DistributedDataParallel step with global batch norm (NCCL and
  SyncBatchNorm on CUDA, gloo and the all-reduced batch norm on the CPU).
- ``Grad-CAM``: a map of a torchvision ResNet-18 on the device, finite and in [0, 1].
- ``largest model``: the memory of one training step of the largest registered model
  (EfficientNet-B7, 600x600) at its ``paper`` recipe's batch, as ``reslab plan`` finds it: the peak
  measured on CUDA, estimated elsewhere; whether it fits the GPU (off a GPU: one 80 GiB H100).
- ``determinism``: two identical short runs give the same losses (bit for bit on the CPU; on CUDA
  the difference, which cuDNN autotuning allows).
- ``images/s``: training images/s of ResNet-18 and DRSTN V5 under DRSTN Table 4's ``paper``
  recipe (batch 128), from the plan's step timing (:func:`reslab.runs.cost.measure`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from .._errors import error_words
from ..data import Dataset
from ..distributed import convert_batch_norm
from ..gradcam import grad_cam
from ..catalog import table_runs
from ..models import create_model, list_models, model_info
from ..train import (NonFiniteLossError, TrainConfig, build_optimizer, cuda_backend, device_name, resolve_device,
                     train, train_step)
from ..runs.cost import REFERENCE_GPU, input_shape, measure, step_memory
from ..runs.spec import RunSpec
from ..tables.drstn import TABLE4
from ..tables.survey import TABLE as SURVEY
from . import DESCRIPTIONS

PASS, FAIL, SKIP = "pass", "fail", "skip"
#: The registered model whose training step needs the most memory at its paper input size (the
#: survey's EfficientNet-B7 at 600x600).
LARGEST = "efficientnet_b7"
#: The networks whose training images/s the last check gives (the plan's step time, DRSTN Table 4's
#: ``paper`` recipe at its batch of 128).
THROUGHPUT_MODELS = ("resnet18", "drstn_v5")
#: Modules that return another layout on purpose (torchvision's ``Permute`` turns ConvNeXt's maps into
#: (N, H, W, C) for its LayerNorm).
LAYOUT_CHANGERS = ("Permute",)


class Skip(Exception):
    """A check that means nothing on this device (the message says why)."""


class _Stopped(Exception):
    """A run stopped on purpose (a process killed mid-run)."""


class _StopAfter(nn.Module):
    """``inner``, raising :class:`_Stopped` at training forward number ``steps`` + 1."""

    def __init__(self, inner: nn.Module, steps: float = math.inf):
        super().__init__()
        self.inner, self.steps, self.calls = inner, steps, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls > self.steps:
                raise _Stopped(f"stopped at training step {self.calls}")
        return self.inner(x)


@dataclass
class Check:
    name: str
    status: str
    seconds: float
    detail: str


def synthetic(n: int, channels: int = 3, size: int = 32, classes: int = 10, seed: int = 0) -> Dataset:
    """``n`` random images in memory, labels cycling over ``classes``."""
    g = torch.Generator().manual_seed(seed)
    return Dataset(name="cifar10", split="train", images=torch.randint(0, 256, (n, channels, size, size),
                                                                        dtype=torch.uint8, generator=g),
                   labels=torch.arange(n) % classes, classes=[str(i) for i in range(classes)], source="synthetic",
                   data_source="synthetic", fingerprint="doctor", path="(in memory)")


def _cfg(device: torch.device, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 32, "lr": 0.05, "weight_decay": 0.0, "amp": True,
                          "progress": False, "device": str(device), **kw})


def _finite(history) -> None:
    bad = [r["epoch"] for r in history.rows if not math.isfinite(r["train_loss"])]
    if bad:
        raise AssertionError(f"non-finite training loss at epoch(s) {bad}")


class Doctor:
    """The checks on one device (``folder``: where checkpoints go)."""

    def __init__(self, device: torch.device, folder: Path, full: bool = False):
        self.device, self.folder, self.full = device, folder, full
        self.cuda = device.type == "cuda"

    def checks(self) -> list[tuple[str, Callable[[], str]]]:
        return [("environment", self.environment), ("train and resume", self.train_and_resume),
                ("resume on another device", self.resume_elsewhere), ("NaN watch", self.nan_watch),
                ("every model", self.every_model), ("compile", self.compile), ("one-process DDP", self.ddp),
                ("Grad-CAM", self.gradcam), ("largest model", self.largest_model),
                ("determinism", self.determinism), ("images/s", self.throughput)]

    def environment(self) -> str:
        parts = [f"torch {torch.__version__}", f"device {device_name(self.device)}"]
        if self.cuda:
            backend = cuda_backend(_cfg(self.device), self.device)
            parts += [f"CUDA {torch.version.cuda}", f"cuDNN {backend['cudnn']}",
                      f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'NO'}",
                      f"capability {'.'.join(map(str, torch.cuda.get_device_capability(self.device)))}",
                      f"{torch.cuda.get_device_properties(self.device).total_memory / 2**30:.0f} GiB",
                      f"cudnn.benchmark {backend['cudnn_benchmark']}, TF32 {backend['tf32']}"]
            if not torch.cuda.is_bf16_supported():
                raise AssertionError("; ".join(parts) + ": the paper recipes train under bf16 autocast on CUDA")
        else:
            parts += [f"CPU capability {torch.backends.cpu.get_cpu_capability()}",
                      f"{torch.get_num_threads()} threads"]
        return "; ".join(parts)

    def _resnet(self) -> nn.Module:
        torch.manual_seed(0)
        return create_model("resnet18_cifar", num_classes=10)

    def _drstn(self, stop_after: float = math.inf) -> nn.Module:
        torch.manual_seed(0)
        return _StopAfter(create_model("drstn_v5", num_classes=10), stop_after)

    def train_and_resume(self) -> str:
        data, folder, cfg = synthetic(64), self.folder / "resume", _cfg(self.device, epochs=3)
        try:  # killed in its third epoch (two steps an epoch)
            train(self._drstn(stop_after=5), data, synthetic(32, seed=1), cfg, folder)
            raise AssertionError("the run was not interrupted")
        except _Stopped:
            pass
        shutil.copytree(folder, self.folder / "resume-elsewhere")
        again = train(self._drstn(), data, synthetic(32, seed=1), cfg, folder)
        _finite(again)
        if again.resumed_from_epoch != 2 or again.epochs != 3:
            raise AssertionError(f"resumed from epoch {again.resumed_from_epoch} with {again.epochs} epochs; "
                                 "expected epoch 2 of 3")
        return (f"DRSTN V5 stopped in epoch 3, resumed from epoch 2; {again.setup.get('precision')}, channels-last "
                f"{again.setup.get('channels_last')}, loss {again.rows[-1]['train_loss']:.3f}")

    def resume_elsewhere(self) -> str:
        if not self.cuda:
            raise Skip("one device here")
        folder = self.folder / "resume-elsewhere"
        if not (folder / "last.pt").is_file():
            raise AssertionError("no checkpoint from 'train and resume'")
        again = train(self._drstn(), synthetic(64), synthetic(32, seed=1), _cfg(torch.device("cpu"), epochs=3), folder)
        _finite(again)
        if again.resumed_from_epoch != 2:
            raise AssertionError(f"resumed from epoch {again.resumed_from_epoch}, expected 2")
        return "the CUDA checkpoint of epoch 2 resumed on the CPU for epoch 3"

    def nan_watch(self) -> str:
        class Poisoned(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(3, 10)

            def forward(self, x):
                return self.linear(x.mean(dim=(2, 3))) * float("nan")

        try:
            train(Poisoned(), synthetic(64), synthetic(32), _cfg(self.device, epochs=1))
        except NonFiniteLossError as exc:
            return f"stopped: {str(exc).split('.')[0]}"
        raise AssertionError("a NaN loss did not stop training")

    def every_model(self) -> str:
        if not self.cuda and not self.full:
            raise Skip(f"{len(list_models())} models take about 8 min on 2 CPU cores: name the check with --only to "
                       "run it here")
        names = list_models()
        lost, failed = [], []
        cfg = _cfg(self.device, batch_size=2, lr=1e-3)
        for name in names:
            try:
                changed = self._one_model(name, cfg)
                if changed:
                    lost.append(f"{name} ({', '.join(changed[:3])})")
            except Exception as exc:  # every model is tried; the failures are listed
                failed.append(f"{name}: {error_words(exc)}")
        if failed or lost:
            raise AssertionError("; ".join([*failed, *(f"channels-last lost in {x}" for x in lost)]))
        return f"{len(names)} models: a training step and an evaluation each, finite, channels-last kept"

    def _one_model(self, name: str, cfg: TrainConfig) -> list[str]:
        """One step and one evaluation of ``name`` in channels-last; the modules whose 4-D output
        is not channels-last (a 1x1 map is both)."""
        c, h, w = model_info(name)["test_input_size"]
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_chans=c).to(self.device).to(memory_format=torch.channels_last)
        x = torch.randn(2, c, h, w, device=self.device).contiguous(memory_format=torch.channels_last)
        y = torch.tensor([0, 1], device=self.device)
        lost: list[str] = []

        def hook(module, args, out):  # a module given a channels-last map that returns a map that is not
            x = args[0] if args else None
            if (isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                    and isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1
                    and out.shape[1] > 1 and not out.is_contiguous(memory_format=torch.channels_last)
                    and type(module).__name__ not in LAYOUT_CHANGERS):
                lost.append(type(module).__name__)

        handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
        try:  # evaluation first: a step on two random images can blow up a network's weights, as is its right
            model.eval()
            with torch.no_grad():
                out = model(x)
            model.train()
            loss, _ = train_step(model, x, y, build_optimizer(model, cfg), None, cfg)
        finally:
            for handle in handles:
                handle.remove()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not torch.isfinite(out).all():
            raise AssertionError("non-finite output in evaluation")
        if not torch.isfinite(loss) or not grads or not all(torch.isfinite(g).all() for g in grads):
            raise AssertionError("non-finite loss or gradients, or no gradient at all")
        return list(dict.fromkeys(lost))

    def compile(self) -> str:
        if not self.cuda:
            raise Skip("reduce-overhead records CUDA graphs: a GPU check (on the CPU, runs train eagerly unless "
                       "`reslab train --compile` says otherwise)")
        out = []
        # A ResNet-20 with stochastic depth (resnet110_sd's blocks, 3 per stage): its draws are made
        # before each step, so its graph must have no break either.
        for name, kwargs in (("resnet18_cifar", {}), ("drstn_v5", {}), ("resnet110_sd", {"layers": (3, 3, 3)})):
            torch.manual_seed(0)
            history = train(create_model(name, num_classes=10, **kwargs), synthetic(256), synthetic(64, seed=1),
                            _cfg(self.device, epochs=2, batch_size=64, compile="reduce-overhead"))
            _finite(history)
            mode = history.setup.get("compile", "")  # train() resets dynamo and counts this run's graphs
            if not mode.startswith("reduce-overhead ("):
                raise AssertionError(f"{name}: compile fell back ({mode})")
            if " 0 graph break(s)" not in mode:
                raise AssertionError(f"{name}: {mode}")
            out.append(f"{name}{' (3 blocks a stage)' if kwargs else ''}: {mode.split(' (', 1)[1].split(';')[0]}")
        torch._dynamo.reset()
        return "; ".join(out)

    def ddp(self) -> str:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if dist.is_initialized():
            raise Skip("a process group is already initialised in this process")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        backend = "nccl" if self.cuda else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        try:
            model, kind = convert_batch_norm(self._resnet(), self.device)
            model = DistributedDataParallel(model.to(self.device), device_ids=[self.device.index or 0]
                                            if self.cuda else None)
            cfg = _cfg(self.device)
            x = torch.randn(8, 3, 32, 32, device=self.device)
            loss, _ = train_step(model, x, torch.arange(8, device=self.device) % 10, build_optimizer(model, cfg),
                                 None, cfg)
            if not torch.isfinite(loss):
                raise AssertionError("non-finite loss")
        finally:
            dist.destroy_process_group()
        return f"{backend}, batch norm {kind}: one step, loss {float(loss):.3f}"

    def gradcam(self) -> str:
        try:
            import pytorch_grad_cam  # noqa: F401
        except ImportError as exc:
            raise Skip(f"grad-cam is not installed ({exc}); Table 1 needs it") from exc
        torch.manual_seed(0)
        from torchvision.models import resnet18

        model = resnet18(num_classes=10).to(self.device)
        maps, _ = grad_cam(model, torch.randn(2, 3, 64, 64, device=self.device), "layer4")
        if not (maps.min() >= 0 and maps.max() <= 1 and maps.shape == (2, 64, 64)):
            raise AssertionError(f"maps of shape {maps.shape} in [{maps.min()}, {maps.max()}]")
        return f"2 maps of 64x64 in [0, 1] on {self.device.type}"

    def _paper_run(self, table: str, model: str) -> RunSpec:
        """The ``paper`` run of ``model`` in ``table`` on this device, as the plan and the notebook make it."""
        return next(s for s in table_runs(table, "paper", device=str(self.device)).specs if s.model == model)

    def largest_model(self) -> str:
        spec = self._paper_run(SURVEY, LARGEST)
        c, h, w = input_shape(spec)
        batch = spec.cfg.batch_size
        step = step_memory(spec, self.device)  # the plan's own measurement (CUDA) or estimate (elsewhere)
        need = step.train_memory_bytes(batch)
        if not math.isfinite(need):
            raise AssertionError(f"{LARGEST} at {h}x{w}: {step.memory}")
        gpu = f"{step.gpu_memory_bytes / 2**30:.0f} GiB " + ("on this GPU" if self.cuda else
                                                              f"of one {REFERENCE_GPU[0]}, the plan's reference")
        text = (f"{LARGEST} at {h}x{w}, the paper recipe's batch {batch}: {need / 2**30:.1f} GiB for one training "
                f"step ({step.memory}), {gpu}")
        if step.over_memory(batch):
            text += "; does not fit: the plan flags it before training (gradient accumulation or a smaller batch)"
        return text

    def determinism(self) -> str:
        losses = []
        for _ in range(2):
            history = train(self._drstn(), synthetic(64), synthetic(32, seed=1), _cfg(self.device, epochs=1))
            losses.append(history.rows[-1]["train_loss"])
        diff = abs(losses[0] - losses[1])
        if not self.cuda and diff != 0:
            raise AssertionError(f"two identical CPU runs differ by {diff:.3g}")
        return f"two identical runs: losses {losses[0]:.6f} and {losses[1]:.6f} (difference {diff:.2g})"

    def throughput(self) -> str:
        out = []
        for model in THROUGHPUT_MODELS:
            spec = self._paper_run(TABLE4, model)
            step = measure(spec, self.device)  # the plan's own step timing
            if not step.timed:
                raise AssertionError(f"{model}: {step.timing}")
            batch = spec.cfg.batch_size
            out.append(f"{model} {batch / step.step_s(batch):.0f} img/s (step {step.timing})")
        return "DRSTN Table 4's paper recipe: " + ", ".join(out)


def run_checks(device: str = "auto", only: list[str] | None = None,
               say: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[Check]:
    """Run the checks (all, or those named in ``only``) on ``device``; one :class:`Check` each."""
    dev = resolve_device(device)
    results = []
    with tempfile.TemporaryDirectory(prefix="reslab-doctor-") as tmp:
        doctor = Doctor(dev, Path(tmp), full=bool(only))
        for name, fn in doctor.checks():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                status, detail = PASS, fn()
            except Skip as exc:
                status, detail = SKIP, str(exc)
            except Exception as exc:  # a failing check is reported; the others go on
                status = FAIL
                detail = f"{type(exc).__name__}: {exc}".strip()[:600]
                where = traceback.extract_tb(exc.__traceback__)[-1]
                detail += f" ({Path(where.filename).name}:{where.lineno})"
            check = Check(name, status, round(time.perf_counter() - t0, 1), detail)
            results.append(check)
            say(f"[doctor] {check.status:4s} {check.name:26s} {check.seconds:7.1f} s  {check.detail}")
            if dev.type == "cuda":
                with contextlib.suppress(Exception):
                    torch.cuda.empty_cache()
    return results


def table(checks: list[Check]) -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in checks], columns=["name", "status", "seconds", "detail"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab doctor", description=DESCRIPTIONS["doctor"] + " One row per check: "
                                     "pass, fail (what went wrong) or skip (why it means nothing here), its seconds "
                                     "and what it measured; the exit code is 1 when a check failed.")
    parser.add_argument("--device", default="auto", help="The device to check: auto, cpu, cuda or cuda:N (default: auto).")
    parser.add_argument("--only", nargs="+", metavar="CHECK", help="Run only these checks (names as printed).")
    parser.add_argument("--csv", metavar="PATH", help="Also write the table as CSV.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``reslab doctor``: run the checks; exit 1 when one failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n for n, _ in Doctor(torch.device("cpu"), Path(".")).checks()]
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        parser.error(f"unknown check(s) {unknown}; the checks: {', '.join(repr(n) for n in names)}")
    try:
        checks = run_checks(args.device, args.only)
    except ValueError as exc:
        parser.error(str(exc))
    frame = table(checks)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False)
    counts = frame["status"].value_counts()
    print(f"[doctor] {counts.get(PASS, 0)} passed, {counts.get(FAIL, 0)} failed, {counts.get(SKIP, 0)} skipped "
          f"in {frame['seconds'].sum():.0f} s on {device_name(resolve_device(args.device))}")
    return 1 if counts.get(FAIL, 0) else 0
