"""One run on several processes (GPUs, nodes): the process group, and the few collectives training needs.

A run is distributed when it is started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)
or by ``srun`` with several tasks (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``), as in
the DeiT / ConvNeXt / DINO reference scripts' ``init_distributed_mode``. :func:`init_from_env`
reads either, joins the process group (NCCL on CUDA, gloo on the CPU) and picks this process's
GPU (``cuda:<local rank>``). In a single process nothing is initialised and every collective here
is a no-op, so training code calls them unconditionally.

What stays fixed whatever the number of processes: a recipe's ``batch_size`` is the global batch
(each rank trains on a contiguous shard of it, :class:`reslab.data.BatchLoader`), the epoch's
shuffling and augmentation are drawn for the global batch, batch-norm statistics are taken over
the global batch (``TrainConfig.sync_bn``), gradients are averaged by DistributedDataParallel, and
metrics are summed over ranks. Rank 0 alone writes checkpoints and results.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

#: Port of the rendezvous when neither ``MASTER_PORT`` nor a SLURM job id gives one.
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Dist:
    """Where this process stands in its run.

    Attributes:
        rank: This process's rank, 0 .. ``world_size`` - 1.
        world_size: Processes training the run together.
        local_rank: Rank on this node (the GPU index it uses).
        backend: ``nccl``, ``gloo``, or ``""`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, results and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_SINGLE = Dist()


def current() -> Dist:
    """This process's place in the run's process group (:class:`Dist` of one process when none)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return _SINGLE
    return Dist(rank=torch_dist.get_rank(), world_size=torch_dist.get_world_size(),
                local_rank=int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0))),
                backend=str(torch_dist.get_backend()))


def env_ranks(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables, else SLURM's, else one process.

    SLURM's are those of a job step (``srun``): the batch script of a job with ``--ntasks=4`` has
    ``SLURM_NTASKS=4`` too, but is one process, and waiting there for three more would hang.

    Raises:
        ValueError: when a variable is not a whole number, or the rank is outside the world.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        names = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")
    else:
        return 0, 1, 0
    values = []
    for name in names:
        raw = env.get(name, "0")
        try:
            values.append(int(raw))
        except ValueError:
            raise ValueError(f"${name}={raw!r} is not a whole number; it is set by torchrun or srun, "
                             f"do not set it by hand.") from None
    rank, world, local = values
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"${names[0]}={rank} does not fit ${names[1]}={world} (and ${names[2]}={local}).")
    return rank, world, local


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-005,9],cpu1`` -> ``gpu003``.

    Raises:
        ValueError: for an empty or malformed list.
    """
    text = nodelist.strip()
    m = re.match(r"([^,\[\]]+)(?:\[([^\]]+)\])?", text)
    if not text or not m:
        raise ValueError(f"cannot read a host from the SLURM node list {nodelist!r}.")
    prefix, ranges = m.group(1), m.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0].strip()
    if not first.isdigit():
        raise ValueError(f"cannot read a host from the SLURM node list {nodelist!r}.")
    return prefix + first  # the width of "003" is kept: SLURM pads host numbers


def rendezvous(env: dict[str, str] | None = None) -> tuple[str, int]:
    """``(MASTER_ADDR, MASTER_PORT)``: torchrun's when set, else from the SLURM job step (its first
    host, and a port from the job id, so that jobs sharing a node do not collide), else localhost."""
    env = os.environ if env is None else env
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    addr = env.get("MASTER_ADDR") or (first_host(nodes) if nodes else "127.0.0.1")
    if env.get("MASTER_PORT"):
        port = int(env["MASTER_PORT"])
    elif env.get("SLURM_JOB_ID", "").isdigit():
        port = 20000 + int(env["SLURM_JOB_ID"]) % 20000
    else:
        port = DEFAULT_PORT
    return addr, port


def init_from_env(device: str | torch.device = "auto") -> Dist:
    """Join the run's process group when this process is one of several (see the module's doc).

    Idempotent: a second call returns the group already joined. On CUDA the process's GPU is
    ``cuda:<local rank>`` and is made the current device.

    Args:
        device: The recipe's device (``auto``, ``cpu``, ``cuda``...): CUDA means NCCL, the CPU gloo.

    Returns:
        This process's :class:`Dist` (one process, nothing initialised, when the environment names
        no world larger than 1).

    Raises:
        ValueError: when the environment's ranks are malformed, or more processes share a node
            than it has GPUs.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        return current()
    rank, world, local = env_ranks()
    if world == 1:
        return _SINGLE
    if not torch_dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; run one process per run.")
    use_cuda = str(device) != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} but this node has {torch.cuda.device_count()} GPU(s): start at "
                             f"most one process per GPU (torchrun --nproc-per-node, srun --ntasks-per-node).")
        torch.cuda.set_device(local)
    addr, port = rendezvous()
    os.environ.setdefault("MASTER_ADDR", addr)
    os.environ.setdefault("MASTER_PORT", str(port))
    os.environ.setdefault("LOCAL_RANK", str(local))
    torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                  device_id=torch.device("cuda", local) if use_cuda else None)
    return current()


def device_for(device: str | torch.device) -> str:
    """The device this process trains on: ``cuda:<local rank>`` for a CUDA run of several processes
    (``auto``, ``cuda`` or any ``cuda:N`` of the recipe), the recipe's device otherwise. Where
    SLURM binds one GPU to each task, a process sees only its own, as ``cuda:0``: it takes that one."""
    d = current()
    text = str(device)
    if d.distributed and d.backend == "nccl" and (text == "auto" or text.startswith("cuda")):
        visible = torch.cuda.device_count()
        return f"cuda:{d.local_rank if d.local_rank < visible else 0 if visible == 1 else d.local_rank % visible}"
    return text


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if current().distributed:
        torch_dist.barrier()


def all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sum each tensor over ranks, in place and in one collective per dtype (no-op in one process)."""
    if not current().distributed:
        return tensors
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # the same order on every rank
        group = [t for t in tensors if t.dtype == dtype]
        flat = torch.cat([t.reshape(-1) for t in group])
        torch_dist.all_reduce(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
    return tensors


def all_reduce_min(value: int, device: torch.device) -> int:
    """The smallest of each rank's ``value`` (``value`` itself in one process)."""
    if not current().distributed:
        return value
    t = torch.tensor(value, device=device, dtype=torch.long)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
    return int(t)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
    if not current().distributed:
        return
    for buf in model.buffers():
        torch_dist.broadcast(buf, src=0)


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over ranks, differentiable: the gradient of every rank's input is the sum
    of the ranks' output gradients (each rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        torch_dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch_dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are taken over every rank's shard of the batch.

    ``torch.nn.SyncBatchNorm`` does this on GPUs only; this is the same arithmetic with two
    autograd-aware all-reduces (sum, then sum of squared deviations), for runs on CPUs (gloo), so a
    run of several CPU processes equals the one-process run. In evaluation, and in one process, it
    is plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().distributed):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.shape[1]
        total = _SumOverRanks.apply(torch.cat([x.sum(dims), x.new_tensor([float(count)])]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.pow(2).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)
        return y


#: Set (True) on a batch norm whose statistics are frozen (:func:`reslab.models.freeze`: eval mode
#: under ``model.train()``): :func:`convert_batch_norm` leaves it as it is, with its hook, since
#: running statistics have nothing to share between processes.
FROZEN_BN = "reslab_frozen_statistics"


def convert_batch_norm(model: nn.Module, device: torch.device) -> tuple[nn.Module, str]:
    """Make every batch norm of ``model`` that trains take its statistics over the global batch.

    Frozen batch norms (:data:`FROZEN_BN`) are kept as they are, in eval mode.

    Returns:
        ``(model, how)``: ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` elsewhere;
        ``how`` is what a result row states. A model without batch norm, or with frozen ones only,
        is returned as it is.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model, "none in the model"
    if all(getattr(m, FROZEN_BN, False) for m in norms):
        return model, "frozen (running statistics, nothing to share)"
    if device.type == "cuda":
        return _replace_norms(model, _to_sync), "global (SyncBatchNorm)"
    return _replace_norms(model, _to_global), "global (all-reduced on the CPU)"


def _replace_norms(module: nn.Module, make) -> nn.Module:
    """``module`` with every batch norm that is not frozen replaced by ``make(norm)``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module if getattr(module, FROZEN_BN, False) else make(module)
    for name, child in module.named_children():
        setattr(module, name, _replace_norms(child, make))
    return module


def _to_sync(module: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    new = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    new.train(module.training)
    return new


def _to_global(module: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    if isinstance(module, GlobalBatchNorm):
        return module
    new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                          module.track_running_stats, device=module.running_mean.device
                          if module.running_mean is not None else None)
    if module.affine:
        with torch.no_grad():
            new.weight.copy_(module.weight)
            new.bias.copy_(module.bias)
        new.weight.requires_grad_(module.weight.requires_grad)
        new.bias.requires_grad_(module.bias.requires_grad)
    if module.track_running_stats:
        new.running_mean.copy_(module.running_mean)
        new.running_var.copy_(module.running_var)
        new.num_batches_tracked.copy_(module.num_batches_tracked)
    new.train(module.training)
    return new


def warn_on_main(message: str) -> None:
    """A warning from rank 0 only (the others would repeat it); every call warns."""
    if current().is_main:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
