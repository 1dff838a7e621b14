"""One run on several processes: the loader's shards, the environment, and DDP training with the
gloo backend on the CPU (two processes under torchrun against one process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dist_worker
import pytest
import torch
from torch import nn

from reslab import distributed
from reslab.data import BatchLoader
from reslab.distributed import GlobalBatchNorm, convert_batch_norm, env_ranks, first_host, rendezvous
from reslab.runs.store import run_key
from reslab.checkpoint import CHECKPOINT_NAME, load_checkpoint
from reslab.train import TrainConfig

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(dist_worker.__file__)
#: Two processes add up the same numbers as one in another order (gradients averaged over ranks,
#: batch-norm sums all-reduced): after 18 steps the weights agree to about 1e-6; this leaves room.
ATOL = 1e-4


def torchrun(*args: str, nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(WORKER.parent), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([str(TORCHRUN), "--nproc-per-node", str(nproc), "--standalone", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def close(a: dict, b: dict, atol: float = ATOL) -> list[str]:
    """The entries of two state dicts that differ by more than ``atol`` (none: equal within it)."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0)]


@pytest.fixture(scope="module")
def one_process():
    """The reference: the run in this one process."""
    net, history = dist_worker.run()
    return {"state": net.state_dict(), "rows": history.rows, "setup": history.setup}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The same run on two processes, uninterrupted."""
    out = tmp_path_factory.mktemp("ddp") / "two.pt"
    torchrun(str(WORKER), str(out))
    return torch.load(out, weights_only=False)


# ------------------------------------------------------------------ the loader's shards

def test_rank_shards_put_together_are_the_one_process_batch():
    data = dist_worker.split("train", 96, 1)
    one = BatchLoader(data, 16, augment=dist_worker.AUGMENT, shuffle=True, drop_last=True, seed=3)
    shards = [BatchLoader(data, 16, augment=dist_worker.AUGMENT, shuffle=True, drop_last=True, seed=3, rank=r,
                          world_size=4) for r in range(4)]
    for loader in (one, *shards):
        loader.set_epoch(2)
    assert all(len(s) == len(one) == 6 for s in shards)
    for (x, y), *parts in zip(one, *shards):
        assert all(px.shape[0] == 4 for px, _ in parts)
        assert torch.equal(torch.cat([px for px, _ in parts]), x)  # the same crops and flips, not only images
        assert torch.equal(torch.cat([py for _, py in parts]), y)


def test_evaluation_shards_cover_the_split_once():
    data = dist_worker.split("test", 41, 2)
    one = BatchLoader(data, 8, augment=dist_worker.AUGMENT.eval())
    shards = [BatchLoader(data, 8, augment=dist_worker.AUGMENT.eval(), rank=r, world_size=3) for r in range(3)]
    x = torch.cat([b for b, _ in one])
    assert torch.equal(torch.cat([b for s in shards for b, _ in s]), x)


def test_a_batch_that_does_not_split_evenly_is_refused():
    data = dist_worker.split("train", 96, 1)
    with pytest.raises(ValueError, match="does not split evenly between 3 processes"):
        BatchLoader(data, 16, shuffle=True, drop_last=True, rank=0, world_size=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchLoader.for_split(data, 128, dist_worker.AUGMENT, train=True, rank=1, world_size=2)
    with pytest.raises(ValueError, match="rank 2 does not fit a world of 2"):
        BatchLoader(data, 16, rank=2, world_size=2)


# ------------------------------------------------------------------ environment

def test_ranks_come_from_torchrun_or_slurm():
    assert env_ranks({}) == (0, 1, 0)
    assert env_ranks({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1"}
    assert env_ranks(slurm) == (5, 8, 1)
    # The batch script of a job of 8 tasks is one process (srun starts the 8): nothing to wait for.
    assert env_ranks({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"}) == (0, 1, 0)
    assert env_ranks({**slurm, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == (0, 2, 0)  # torchrun first
    with pytest.raises(ValueError, match=r"\$RANK='x' is not a whole number"):
        env_ranks({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match=r"\$SLURM_PROCID=4 does not fit \$SLURM_STEP_NUM_TASKS=4"):
        env_ranks({"SLURM_PROCID": "4", "SLURM_STEP_NUM_TASKS": "4"})


@pytest.mark.parametrize("nodelist, host", [("node7", "node7"), ("gpu[003-005,9]", "gpu003"),
                                            ("gpu[12,14],cpu1", "gpu12"), ("a-b-1,a-b-2", "a-b-1")])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_rendezvous_from_slurm_or_torchrun():
    assert rendezvous({"SLURM_JOB_NODELIST": "gpu[003-004]", "SLURM_JOB_ID": "123456"}) == ("gpu003", 23456)
    assert rendezvous({"SLURM_JOB_NODELIST": "gpu[003-004]", "SLURM_STEP_NODELIST": "gpu004"})[0] == "gpu004"
    assert rendezvous({"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234", "SLURM_JOB_NODELIST": "x1"}) == ("10.0.0.1", 1234)
    assert rendezvous({}) == ("127.0.0.1", distributed.DEFAULT_PORT)
    with pytest.raises(ValueError, match="cannot read a host"):
        first_host("")


@pytest.mark.parametrize("local_rank, visible, expected", [(1, 4, "cuda:1"), (3, 1, "cuda:0"), (5, 4, "cuda:1")])
def test_each_process_of_a_cuda_run_takes_a_gpu_it_sees(monkeypatch, local_rank, visible, expected):
    """torchrun: local rank N takes cuda:N; SLURM binding one GPU per task: each task's only GPU."""
    monkeypatch.setattr(distributed, "current", lambda: distributed.Dist(rank=local_rank, world_size=8,
                                                                         local_rank=local_rank, backend="nccl"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    assert distributed.device_for("auto") == distributed.device_for("cuda:3") == expected
    monkeypatch.setattr(distributed, "current", lambda: distributed.Dist())
    assert distributed.device_for("cuda:3") == "cuda:3" and distributed.device_for("cpu") == "cpu"


def test_one_process_initialises_nothing(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    d = distributed.init_from_env("cpu")
    assert (d.rank, d.world_size, d.is_main, d.distributed) == (0, 1, True, False)
    assert not torch.distributed.is_initialized()
    distributed.barrier()  # no-op
    t = torch.ones(2)
    distributed.all_reduce_sum(t)
    assert torch.equal(t, torch.ones(2))


def test_global_batch_norm_keeps_the_state_dict_and_is_batch_norm_in_one_process():
    torch.manual_seed(0)
    net = dist_worker.model()
    keys = list(net.state_dict())
    converted, how = convert_batch_norm(dist_worker.model(), torch.device("cpu"))
    assert how == "global (all-reduced on the CPU)"
    assert list(converted.state_dict()) == keys
    assert sum(isinstance(m, GlobalBatchNorm) for m in converted.modules()) == 2
    x = torch.randn(8, 3, 12, 12)
    assert torch.allclose(net(x), converted(x))
    assert convert_batch_norm(nn.Linear(2, 2), torch.device("cpu"))[1] == "none in the model"


def test_frozen_batch_norm_stays_frozen_after_either_conversion():
    """A frozen backbone's batch norms (eval mode under model.train(), reslab.models.freeze) keep
    their running statistics after the conversion to global batch norm, on the CPU and for CUDA."""
    from reslab.models._pretrained import freeze

    for device in ("cpu", "cuda"):  # the CUDA conversion builds its modules without needing a GPU
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
        freeze([net[0], net[1]])
        frozen = {k: v.clone() for k, v in net[1].state_dict().items()}
        converted, how = convert_batch_norm(net, torch.device(device))
        assert how.startswith("global") and isinstance(converted[1], nn.BatchNorm2d)
        assert type(converted[1]) is nn.BatchNorm2d and type(converted[4]) is not nn.BatchNorm2d  # only the trained one
        if device == "cpu":
            converted.train()
            converted(torch.randn(8, 3, 10, 10) * 3 + 1)
            assert not converted[1].training and converted[4].training
            assert all(torch.equal(frozen[k], v) for k, v in converted[1].state_dict().items())
    only = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    freeze([only])
    assert convert_batch_norm(only, torch.device("cpu")) == (only, "frozen (running statistics, nothing to share)")


def test_sync_bn_does_not_change_run_keys():
    from reslab.runs.spec import Recipe, RunSpec

    spec = RunSpec(table="t", label="a", model="resnet18", dataset="cifar10", recipe=Recipe(TrainConfig(epochs=1)))
    off = RunSpec(table="t", label="a", model="resnet18", dataset="cifar10",
                  recipe=Recipe(TrainConfig(epochs=1, sync_bn=False)))
    assert run_key(spec, 0, "a", "b") == run_key(off, 0, "a", "b") == "14d1aaad4e"  # the key before sync_bn existed


# ------------------------------------------------------------------ training on two processes

def test_two_processes_end_with_the_one_process_weights(one_process, two_processes):
    assert two_processes["setup"]["world_size"] == 2
    assert two_processes["setup"]["batch_norm"] == "global (all-reduced on the CPU)"
    assert one_process["setup"]["batch_norm"] == "whole batch (one process)"
    assert one_process["setup"]["cpu_threads"] == torch.get_num_threads()
    assert not close(two_processes["state"], one_process["state"])
    # The weights moved (the check is not of two untrained copies).
    assert close(dist_worker.model().state_dict(), one_process["state"])
    for a, b in zip(two_processes["rows"], one_process["rows"]):
        assert a["train_images"] == b["train_images"] == 96
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1 / 40 + 1e-9)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-4)


@pytest.mark.parametrize("name", ["depth", "frozen"])
def test_stochastic_depth_and_a_frozen_backbone_on_two_processes_match_one(name, tmp_path):
    """Stochastic depth drops the same blocks on every rank (one draw per batch, seeded by the run's
    seed and epoch; DDP told that a dropped block's parameters get no gradient), and a frozen
    backbone's batch norms stay frozen through the conversion to global batch norm: two processes
    end with the one-process weights."""
    net, history = dist_worker.run(name=name)
    out = tmp_path / f"{name}.pt"
    torchrun(str(WORKER), str(out), "--model", name)
    two = torch.load(out, weights_only=False)
    start = dist_worker.model(name).state_dict()
    assert not close(two["state"], net.state_dict())
    assert close(start, net.state_dict())  # it trained
    if name == "frozen":  # the frozen norm's statistics are the initial ones, on both
        assert all(torch.equal(start[k], two["state"][k]) and torch.equal(start[k], net.state_dict()[k])
                   for k in start if k.startswith("1."))
    for a, b in zip(two["rows"], history.rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)


def test_stochastic_depth_draws_repeat_per_epoch_and_differ_between_epochs():
    from reslab.models.layers import StochasticDepth, share_depth_draws

    net = dist_worker.model("depth")
    depth = share_depth_draws(net)
    blocks = [m for m in net.modules() if isinstance(m, StochasticDepth)]
    assert depth is not None and depth.blocks == blocks and len(blocks) == 6
    assert all(b.generator is depth.generator for b in blocks)

    def draws(epoch: int) -> list[bool]:
        depth.manual_seed(epoch)
        return [b.draw() for _ in range(20) for b in blocks]

    assert draws(0) == draws(0) and draws(0) != draws(1)
    assert share_depth_draws(dist_worker.model("tiny")) is None


def test_per_process_batch_norm_differs_and_says_so(one_process, tmp_path):
    out = tmp_path / "per.pt"
    torchrun(str(WORKER), str(out), "--no-sync-bn")
    per = torch.load(out, weights_only=False)
    assert per["setup"]["batch_norm"] == "per process (8 of 16 images)"
    assert close(per["state"], one_process["state"])  # statistics of 8 images are not those of 16


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(two_processes, tmp_path):
    ckpt = tmp_path / "ckpt"
    torchrun(str(WORKER), str(tmp_path / "unused.pt"), "--ckpt", str(ckpt), "--stop-at-step", "9")  # mid epoch 2
    assert load_checkpoint(ckpt / CHECKPOINT_NAME)["epoch"] == 1
    kept = tmp_path / "kept"
    shutil.copytree(ckpt, kept)
    out = tmp_path / "resumed.pt"
    torchrun(str(WORKER), str(out), "--ckpt", str(ckpt))
    resumed = torch.load(out, weights_only=False)
    assert not close(resumed["state"], two_processes["state"], atol=0)  # bit for bit
    timing = {"seconds", "train_seconds", "images_per_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed["rows"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in two_processes["rows"]]

    # The two-process checkpoint goes on in one process: the one-process run's weights, within noise.
    net, history = dist_worker.run(str(kept))
    assert history.resumed_from_epoch == 1 and history.epochs == 3
    assert not close(net.state_dict(), two_processes["state"])


def test_reslab_train_under_torchrun_files_the_run_the_notebook_reads(shared_data, tmp_path, monkeypatch):
    """``reslab train`` on two processes files the run under the key one process (and so the
    notebook) looks for: one process then finds it instead of training it again."""
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("RESLAB_DATA", str(shared_data))
    args = ["drstn_table4_cifar10", "--label", "resnet18", "--device", "cpu", "--param", "max_steps=2"]
    proc = torchrun("-m", "reslab.cli", "train", *args)
    assert "world_size: 2" in proc.stdout and "batch_norm: global (all-reduced on the CPU)" in proc.stdout
    assert proc.stdout.count("label: Original_Resnet18") == 1  # rank 0 alone reports
    stored = [json.loads(p.read_text())["row"] for p in (tmp_path / "_runs").rglob("result.json")]
    assert len(stored) == 1 and stored[0]["world_size"] == 2
    # Rank 0 also put it in the record of finished runs (committed with the results).
    recorded = [json.loads(p.read_text())["row"] for p in (tmp_path / "_finished").rglob("result.json")]
    assert recorded == stored and "recorded: " in proc.stdout
    again = subprocess.run([sys.executable, "-m", "reslab.cli", "train", *args], capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reused: True" in again.stdout


def test_reslab_train_names_the_runs_it_has(capsys):
    from reslab.cli import main

    with pytest.raises(SystemExit):
        main(["train", "selu_ablation_fashion_mnist", "--label", "ResNet99"])
    err = capsys.readouterr().err
    assert "no run named 'ResNet99'" in err and "'ResNet34+SELU' on fashion_mnist" in err


def test_batch_norm_per_process_makes_a_protocol_run_budget(monkeypatch, tmp_path):
    import dataclasses

    from reslab.runs import execute
    from reslab.runs.execute import run_one
    from reslab.runs.spec import Recipe, RunSpec

    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path))
    train_data, test_data = (dataclasses.replace(dist_worker.split(s, 16, 1), data_source="official")
                             for s in ("train", "test"))
    spec = RunSpec(table="t", label="a", model="resnet18", dataset="cifar10", recipe=Recipe(TrainConfig(epochs=1)))
    for batch_norm, evidence in (("global (SyncBatchNorm)", "protocol"), ("per process (32 of 128 images)", "budget")):
        monkeypatch.setattr(execute, "_train_run", lambda *a, bn=batch_norm: ({"batch_norm": bn}, execute.pd.DataFrame()))
        row, _ = run_one(spec, "paper", 0, train_data, test_data, force=True)
        assert row["evidence"] == evidence
        assert ("sync_bn off" in row["evidence_note"]) == (evidence == "budget")
