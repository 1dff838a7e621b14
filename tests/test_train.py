"""The training engine: config checks, schedules, seeding, resume equality, the NaN stop."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from reslab.data import load_dataset
from reslab.train import (
    CHECKPOINT_NAME,
    NonFiniteLossError,
    TrainConfig,
    load_checkpoint,
    lr_factor,
    resolve_device,
    train,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import os

    old = os.environ.get("RESLAB_CACHE")
    os.environ["RESLAB_CACHE"] = str(tmp_path_factory.mktemp("train-cache"))
    tr = load_dataset("cifar10", "train", download=False, allow_synthetic=True, root=tmp_path_factory.mktemp("none"))
    te = load_dataset("cifar10", "test", download=False, allow_synthetic=True, root=tmp_path_factory.mktemp("none2"))
    if old is not None:
        os.environ["RESLAB_CACHE"] = old
    assert tr.source == "synthetic"
    return tr, te


CFG = dict(epochs=3, batch_size=32, lr=0.05, schedule="cosine", warmup_epochs=0.5, device="cpu", progress=False)


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def comparable(history):
    timing = {"seconds", "train_seconds", "images_per_s"}
    return [{k: v for k, v in r.items() if k not in timing} for r in history.rows]


# ------------------------------------------------------------------ config

def test_unknown_config_field_is_an_error():
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig().replace(epoch=3)


@pytest.mark.parametrize("bad", [dict(optimizer="rmsprop"), dict(schedule="linear"), dict(epochs=0),
                                 dict(lr=-1.0), dict(max_steps=-1), dict(label_smoothing=1.0)])
def test_bad_config_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_schedules():
    step = TrainConfig(schedule="step", step_size=2, gamma=0.5)
    assert [lr_factor(step, e, 6) for e in (0, 1.9, 2, 4.5)] == [1, 1, 0.5, 0.25]
    multi = TrainConfig(schedule="multistep", milestones=(3, 5), gamma=0.1)
    assert lr_factor(multi, 2.9, 6) == 1 and lr_factor(multi, 3, 6) == pytest.approx(0.1)
    assert lr_factor(multi, 5.5, 6) == pytest.approx(0.01)
    cos = TrainConfig(schedule="cosine", warmup_epochs=1)
    assert lr_factor(cos, 0.5, 5) == pytest.approx(0.5)  # half-way through the warm-up
    assert lr_factor(cos, 1, 5) == pytest.approx(1.0)
    assert lr_factor(cos, 3, 5) == pytest.approx(0.5)
    assert lr_factor(cos, 5, 5) == pytest.approx(0.0, abs=1e-12)
    exp = TrainConfig(schedule="exponential", gamma=0.9)
    assert lr_factor(exp, 2.5, 5) == pytest.approx(0.81)


# ------------------------------------------------------------------ training

def test_learns_the_synthetic_data_and_reports_history(synth, make_tiny):
    tr, te = synth
    h = train(make_tiny(0, width=16), tr, te, TrainConfig(**{**CFG, "epochs": 6}))
    frame = h.to_frame()
    assert list(frame["epoch"]) == [1, 2, 3, 4, 5, 6]
    for col in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "images_per_s"):
        assert frame[col].notna().all(), col
    # Ten classes: chance is 0.1. The synthetic classes are learnable by a tiny CNN.
    assert h.best_acc > 0.8, frame
    assert h.best_acc == frame["test_acc"].max() and h.final_acc == frame["test_acc"].iloc[-1]
    assert frame["lr"].iloc[-1] < 1e-6  # cosine to zero
    assert h.summary()["epochs"] == 6 and h.device == "cpu"


def test_same_seed_same_result_other_seed_differs(synth, make_tiny):
    tr, te = synth
    a, b, c = make_tiny(0), make_tiny(0), make_tiny(0)
    ha = train(a, tr, te, TrainConfig(**{**CFG, "epochs": 1}))
    hb = train(b, tr, te, TrainConfig(**{**CFG, "epochs": 1}))
    train(c, tr, te, TrainConfig(**{**CFG, "epochs": 1, "seed": 1}))
    assert state_equal(a, b) and comparable(ha) == comparable(hb)
    assert not state_equal(a, c)


def test_max_steps_caps_training(synth, make_tiny):
    tr, te = synth
    h = train(make_tiny(), tr, te, TrainConfig(**{**CFG, "max_steps": 5}))
    assert h.epochs == 1 and h.rows[0]["steps"] == 5 and h.rows[0]["train_images"] == 5 * 32


def test_frozen_parameters_stay_frozen(synth, make_tiny):
    tr, te = synth
    model = make_tiny()
    for p in model[0].parameters():
        p.requires_grad_(False)
    before = model[0].weight.clone()
    train(model, tr, te, TrainConfig(**{**CFG, "epochs": 1}))
    assert torch.equal(model[0].weight, before)


class Interrupt(Exception):
    pass


def test_resume_is_bit_identical(synth, make_tiny, tmp_path):
    tr, te = synth
    cfg = TrainConfig(**CFG)
    ref = make_tiny(0)
    # Dropout makes the global RNG matter: the resumed run must restore it.
    ref = nn.Sequential(ref, nn.Dropout(0.1))
    h_ref = train(ref, tr, te, cfg)

    model = nn.Sequential(make_tiny(0), nn.Dropout(0.1))
    calls = {"n": 0}
    steps_per_epoch = len(tr) // cfg.batch_size

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 3:  # in the middle of epoch 3
            raise Interrupt

    handle = model.register_forward_pre_hook(interrupt)
    with pytest.raises(Interrupt):
        train(model, tr, te, cfg, checkpoint_dir=tmp_path)
    handle.remove()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 2

    fresh = nn.Sequential(make_tiny(0), nn.Dropout(0.1))
    h = train(fresh, tr, te, cfg, checkpoint_dir=tmp_path)
    assert h.resumed_from_epoch == 2
    assert state_equal(fresh, ref)
    assert comparable(h) == comparable(h_ref)
    # A finished run found again resumes to the end without training.
    again = nn.Sequential(make_tiny(5), nn.Dropout(0.1))
    h2 = train(again, tr, te, cfg, checkpoint_dir=tmp_path)
    assert state_equal(again, ref) and comparable(h2) == comparable(h_ref)


def test_checkpoint_of_another_recipe_is_refused(synth, make_tiny, tmp_path):
    tr, te = synth
    train(make_tiny(), tr, te, TrainConfig(**{**CFG, "epochs": 1}), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different recipe"):
        train(make_tiny(), tr, te, TrainConfig(**{**CFG, "epochs": 1, "lr": 0.01}), checkpoint_dir=tmp_path)


def test_corrupt_checkpoint_is_a_clear_error(synth, make_tiny, tmp_path):
    tr, te = synth
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable reslab checkpoint"):
        train(make_tiny(), tr, te, TrainConfig(**CFG), checkpoint_dir=tmp_path)


class NaNAfter(nn.Module):
    """Wraps a model; its output turns NaN from the ``at``-th forward pass in training."""

    def __init__(self, inner: nn.Module, at: int):
        super().__init__()
        self.inner, self.at, self.n = inner, at, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.n += 1
            if self.n >= self.at:
                return out * float("nan")
        return out


def test_nan_loss_stops_naming_epoch_and_step(synth, make_tiny, tmp_path):
    tr, te = synth
    cfg = TrainConfig(**CFG)
    steps_per_epoch = len(tr) // cfg.batch_size
    model = NaNAfter(make_tiny(), at=steps_per_epoch + 4)  # step 4 of epoch 2
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 4 of that epoch"):
        train(model, tr, te, cfg, checkpoint_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["epoch"] == 1
    assert all(math.isfinite(v.float().sum().item()) for v in ckpt["model"].values())


# ------------------------------------------------------------------ speed options (CUDA defaults, compile)

def test_speed_defaults_resolve_per_device(monkeypatch):
    from reslab._env import compile_setting
    from reslab.train import compile_mode, precision, use_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cfg = TrainConfig(amp=True)
    assert use_channels_last(cfg, cuda) and not use_channels_last(cfg, cpu)
    assert use_channels_last(cfg.replace(channels_last=True), cpu)
    assert not use_channels_last(cfg.replace(channels_last=False), cuda)
    assert precision(cfg, cuda) == "bf16-autocast" and precision(cfg, cpu) == "fp32"
    assert precision(cfg.replace(amp=False), cuda) == "fp32"
    monkeypatch.setenv("RESLAB_COMPILE", "reduce-overhead")  # training reads no environment
    assert compile_mode(cfg, cuda) == "off" and compile_mode(cfg, cpu) == "off"
    assert compile_setting() == "reduce-overhead" and compile_setting({}) == "off"  # where a command starts
    on = cfg.replace(cuda_compile=compile_setting())
    assert compile_mode(on, cuda) == "reduce-overhead" and compile_mode(on, cpu) == "off"
    assert compile_mode(cfg.replace(compile="default"), cpu) == "default"
    with pytest.raises(ValueError, match=r"RESLAB_COMPILE='fast'"):
        compile_setting({"RESLAB_COMPILE": "fast"})
    with pytest.raises(ValueError, match="cuda_compile must be one of"):
        cfg.replace(cuda_compile="auto")
    assert TrainConfig(compile=True).compile == "default" and TrainConfig(compile=False).compile == "off"
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="turbo")


def test_history_states_how_the_run_was_executed(synth, make_tiny):
    tr, te = synth
    h = train(make_tiny(), tr, te, TrainConfig(**{**CFG, "max_steps": 2, "amp": True}))
    summary = h.summary()
    # amp is a no-op on the CPU, channels-last is off there by default, compile "auto" is off there
    assert {k: summary[k] for k in ("precision", "compile", "channels_last")} == {
        "precision": "fp32", "compile": "off", "channels_last": False}


class _BrokenCompile(nn.Module):
    """What torch.compile returns in this test: a wrapper whose call number ``fail_at`` fails, as a
    failing backend does (on the first call) or a failing CUDA-graph recording (on the second or
    third); it touches a BatchNorm buffer and the RNG first, as a real forward would."""

    def __init__(self, model: nn.Module, fail_at: int = 1):
        super().__init__()
        self.model, self.fail_at, self.calls = model, fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls < self.fail_at:
            return self.model(x)
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.add_(1.0)
        torch.rand(3)
        raise RuntimeError("backend compiler failed\nlong traceback")


def test_failed_compile_falls_back_to_eager_with_the_same_numbers(synth, make_tiny, monkeypatch):
    tr, te = synth
    cfg = TrainConfig(**{**CFG, "epochs": 2})
    eager_model, fallback_model = make_tiny(0), make_tiny(0)
    h_eager = train(eager_model, tr, te, cfg)
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: _BrokenCompile(model))
    with pytest.warns(RuntimeWarning, match="torch.compile failed on training step 1"):
        h_fallback = train(fallback_model, tr, te, cfg.replace(compile="reduce-overhead"))
    assert state_equal(eager_model, fallback_model) and comparable(h_eager) == comparable(h_fallback)
    note = h_fallback.summary()["compile"]
    assert note.startswith("off (torch.compile reduce-overhead failed: RuntimeError at step 1: backend compiler failed")


@pytest.mark.parametrize("fail_at", [2, 3])
def test_a_compiled_model_failing_on_a_later_first_step_falls_back_there(synth, make_tiny, monkeypatch, fail_at):
    """CUDA graphs are recorded on the second and third steps: a failure there falls back too,
    from that step on, with the numbers of an eager run (the earlier steps stay taken)."""
    tr, te = synth
    cfg = TrainConfig(**{**CFG, "epochs": 1})
    eager_model, fallback_model = make_tiny(0), make_tiny(0)
    h_eager = train(eager_model, tr, te, cfg)
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: _BrokenCompile(model, fail_at))
    with pytest.warns(RuntimeWarning, match=f"torch.compile failed on training step {fail_at}"):
        h_fallback = train(fallback_model, tr, te, cfg.replace(compile="reduce-overhead"))
    assert state_equal(eager_model, fallback_model) and comparable(h_eager) == comparable(h_fallback)
    assert h_fallback.summary()["compile"].startswith(f"off (torch.compile reduce-overhead failed: RuntimeError at step {fail_at}")


def _depth_resnet(seed: int = 0) -> nn.Module:
    """A six-block CIFAR ResNet whose blocks stochastic depth drops per batch (survival 1 to 0.5)."""
    from reslab.models.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    return ResNet(block=BasicBlock, layers=(2, 2, 2), widths=(8, 16, 32), stem="cifar", shortcut="zeropad_avg",
                  final_survival=0.5, sd_mode="batch", num_classes=10)


def test_predrawn_stochastic_depth_has_no_graph_break_and_drops_the_eager_blocks():
    """Under torch.compile the per-batch draw is made before the step and applied as a 0/1
    multiplier: one graph instead of a graph break per block, and the same dropped blocks (so the
    same outputs) as the eager draws from the same seed."""
    from reslab.models.layers import share_depth_draws

    x = torch.randn(4, 3, 16, 16)
    eager = _depth_resnet().train()
    depth = share_depth_draws(eager)
    assert torch._dynamo.explain(eager)(x).graph_break_count >= 5  # a break at every dropped block's draw
    predrawn = _depth_resnet().train()
    drawn = share_depth_draws(predrawn)
    drawn.predraw(torch.device("cpu"))
    explained = torch._dynamo.explain(predrawn)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    depth.manual_seed(7)
    drawn.manual_seed(7)
    patterns = set()
    for _ in range(6):
        drawn.draw_step()
        patterns.add(tuple(float(b.keep) for b in drawn.blocks))
        assert torch.allclose(eager(x), predrawn(x), atol=1e-5)
    assert len(patterns) > 1 and any(0.0 in p for p in patterns)  # blocks were dropped, not always the same
    assert "predrawn" in drawn.describe() and "skipped" in depth.describe()


def test_a_compiled_run_states_its_graphs_breaks_and_how_depth_was_drawn(synth, monkeypatch):
    """dynamo with its eager backend (no code generation): the row's ``compile`` says one graph, no
    graph break and no recompilation, and that stochastic depth was predrawn."""
    tr, te = synth
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real_compile(model, backend="eager"))
    h = train(_depth_resnet(), tr, te, TrainConfig(**{**CFG, "epochs": 2, "compile": "default"}))
    assert h.summary()["compile"] == (
        "default (1 graph(s), 0 graph break(s) in the first epoch; 0 recompiled later; stochastic depth predrawn: "
        "dropped branches computed and multiplied by 0 (their weights get weight decay and momentum, their batch "
        "norm updates its statistics))")


def test_optimizer_state_takes_the_layout_of_its_parameters_on_resume():
    """A checkpoint of an NCHW run resumed with channels-last weights: momentum in the weights' layout."""
    from reslab.train import match_parameter_layout

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    saved = opt.state_dict()
    last = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    opt2 = torch.optim.SGD(last.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(saved)
    buf = opt2.state[last.weight]["momentum_buffer"]
    assert buf.stride() != last.weight.stride()  # what load_state_dict leaves
    match_parameter_layout(opt2)
    after = opt2.state[last.weight]["momentum_buffer"]
    assert after.stride() == last.weight.stride() and torch.equal(after, buf)


def test_an_error_of_the_model_itself_is_not_hidden_by_the_fallback(synth, monkeypatch):
    tr, te = synth

    class Wrong(nn.Module):  # expects 1 channel: fails compiled or not
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 10, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    monkeypatch.setattr(torch, "compile", lambda model, mode=None: nn.Sequential(model))  # a wrapper
    with pytest.raises(RuntimeError, match="channels"):
        with pytest.warns(RuntimeWarning):
            train(Wrong(), tr, te, TrainConfig(**{**CFG, "compile": "default", "max_steps": 1}))


def test_resume_accepts_other_speed_settings(synth, make_tiny, tmp_path):
    tr, te = synth
    cfg = TrainConfig(**{**CFG, "epochs": 2, "channels_last": False})
    model = make_tiny(0)
    calls = {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == len(tr) // cfg.batch_size + 2:  # in epoch 2
            raise Interrupt

    handle = model.register_forward_pre_hook(interrupt)
    with pytest.raises(Interrupt):
        train(model, tr, te, cfg, checkpoint_dir=tmp_path)
    handle.remove()
    # Another machine may pick the run up with other speed settings: the same run, resumed.
    faster = cfg.replace(channels_last=True, compile="off", eval_batch_size=64)
    h = train(make_tiny(0), tr, te, faster, checkpoint_dir=tmp_path)
    assert h.resumed_from_epoch == 1 and h.epochs == 2 and h.summary()["channels_last"] is True
    assert h.summary()["trained_on"] == "epochs 1-2 on cpu"


def test_a_run_resumed_on_another_device_says_where_each_epoch_trained(synth, make_tiny, tmp_path):
    tr, te = synth
    cfg = TrainConfig(**{**CFG, "epochs": 3})
    train(make_tiny(0), tr, te, cfg.replace(epochs=1), checkpoint_dir=tmp_path / "one")  # a run of 1 epoch...
    ckpt = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    assert ckpt["devices"] == [[1, 1, "cpu"]]
    ckpt["devices"] = [[1, 1, "cuda:NVIDIA H100 80GB HBM3"]]  # ...as if it had trained on a GPU
    ckpt["config"]["epochs"] = 3
    (tmp_path / "three").mkdir()
    torch.save(ckpt, tmp_path / "three" / "last.pt")
    h = train(make_tiny(0), tr, te, cfg, checkpoint_dir=tmp_path / "three")
    assert h.summary()["trained_on"] == "epoch 1 on cuda:NVIDIA H100 80GB HBM3; epochs 2-3 on cpu"


@pytest.mark.slow
def test_torch_compile_trains_to_the_eager_numbers(synth, make_tiny):
    """A real torch.compile (inductor's CPU backend here, about 20 s): a speed option, so the
    weights after a few steps match an eager run's up to float rounding."""
    tr, te = synth
    cfg = TrainConfig(**{**CFG, "epochs": 1, "max_steps": 4})
    eager, compiled = make_tiny(0), make_tiny(0)
    train(eager, tr, te, cfg)
    h = train(compiled, tr, te, cfg.replace(compile="default"))
    assert h.summary()["compile"].startswith("default (1 graph(s), 0 graph break(s)")  # it compiled: no fallback
    sa, sb = eager.state_dict(), compiled.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-5) for k in sa)


def test_each_epoch_prints_where_the_run_stands(make_tiny, no_data_root, capsys):
    """With progress on, a line per epoch names the run, its numbers and the time left."""
    data = load_dataset("cifar10", "test", download=False, allow_synthetic=True)
    cfg = TrainConfig(epochs=2, batch_size=32, device="cpu", progress=True, channels_last=False)
    train(make_tiny(), data, data, cfg, name="demo run")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[reslab] demo run: epoch")]
    assert [line.split(":")[1].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "left (about" in lines[0] and "test loss" in lines[0] and ", 0 s left" in lines[1]


def test_the_time_left_follows_the_last_epochs_pace():
    """A slow first epoch (compiling) or a pause weighs on the estimate for three epochs, not the
    whole run: the pace is the mean of the last three epochs."""
    from reslab.progress import EpochClock

    now = [1000.0]
    clock = EpochClock("r", 0, 10, clock=lambda: now[0])
    row = {"train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5}

    def after(seconds: float, epoch: int) -> str:
        now[0] += seconds
        return clock.line(row | {"epoch": epoch})

    assert "10.0 min per epoch, 1 h 30 min left" in after(600, 1)  # a compiling first epoch
    assert "5.5 min per epoch" in after(60, 2)
    after(60, 3)
    assert "60 s per epoch, 6.0 min left" in after(60, 4)  # the first epoch no longer counts
    resumed = EpochClock("r", 4, 10, clock=lambda: now[0])  # resumed from epoch 4's checkpoint
    now[0] += 120
    assert "2.0 min per epoch, 10.0 min left" in resumed.line(row | {"epoch": 5})


def test_a_cuda_device_is_named_with_its_index(monkeypatch):
    """``cuda`` and ``cuda:N`` of one GPU compare equal (the loader check) and rows name the GPU used."""
    from reslab.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == resolve_device("auto") == resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"sees 2 GPU\(s\).*CUDA_VISIBLE_DEVICES"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")


def test_the_cuda_backend_is_set_on_purpose_and_recorded():
    """cuDNN autotuning on, TF32 only in mixed precision (an ``fp32`` row is float32 throughout);
    nothing set on the CPU, and the row says so."""
    from reslab.train import cuda_backend

    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        assert cuda_backend(TrainConfig(), torch.device("cpu"))["tf32"] == "n/a (cpu)"
        assert saved == (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
                         torch.backends.cuda.matmul.allow_tf32)  # the CPU leaves the flags alone
        fp32 = cuda_backend(TrainConfig(amp=False), torch.device("cuda", 0))
        assert fp32["tf32"] == "off" and not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        mixed = cuda_backend(TrainConfig(amp=True), torch.device("cuda", 0))
        assert mixed["tf32"].startswith("on") and torch.backends.cudnn.allow_tf32 and torch.backends.cudnn.benchmark
        assert mixed["cudnn_benchmark"] is True and mixed["deterministic"] is False
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
