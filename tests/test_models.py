"""Tests of the model zoo: every registered model, the shared layers, pretrained loading, the registry."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.models import (
    PretrainedWeightsError,
    count_params,
    create_model,
    list_models,
    model_info,
    weights_filename,
)
from reslab.models.layers import CBAM, ChannelGate, SoftThreshold, SpatialGate, StochasticDepth, soft_threshold
from reslab.models.resnet import BasicBlock, ResNet, ZeroPadShortcut
from reslab.models.tv import tv_weights

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _disable_stochastic_depth(model: nn.Module) -> None:
    """Evaluation-mode stochastic depth (scaled, never dropped) so every branch gets a gradient."""
    for m in model.modules():
        if isinstance(m, StochasticDepth):
            m.eval()


# ---------------------------------------------------------------- every registered model


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str) -> None:
    """Shape, finiteness and a gradient for every parameter, at the smallest input the model takes."""
    torch.manual_seed(0)
    c, h, w = model_info(name)["test_input_size"]
    num_classes = 7  # not 10, to catch heads hard-wired to CIFAR-10
    model = create_model(name, num_classes=num_classes, in_chans=c)
    model.train()
    _disable_stochastic_depth(model)
    x = torch.randn(2, c, h, w)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list_models())
def test_info_is_consistent(name: str) -> None:
    info = model_info(name)
    assert len(info["input_size"]) == 3 and len(info["test_input_size"]) == 3
    assert info["input_size"][0] == info["test_input_size"][0]


def test_grey_input_for_torchvision_and_trunk_models() -> None:
    for name in ("resnet18", "alexnet", "drstn_v5", "selu_resnet34_all"):
        _, h, w = model_info(name)["test_input_size"]
        model = create_model(name, in_chans=1).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 1, h, w)).shape == (2, 10)


# ---------------------------------------------------------------- soft thresholding (DRSTN)


def test_soft_threshold_matches_equation_15() -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 8, 5, 5) * 3
    tau = torch.rand(4, 8, 1, 1) * 2
    y = soft_threshold(x, tau)
    tau_b = tau.expand_as(x)
    inside = x.abs() <= tau_b
    assert (y[inside] == 0).all()
    above, below = x > tau_b, x < -tau_b
    assert torch.allclose(y[above], x[above] - tau_b[above])
    assert torch.allclose(y[below], x[below] + tau_b[below])
    assert inside.any() and above.any() and below.any()


def test_soft_threshold_gradient_is_0_or_1_as_equation_16() -> None:
    torch.manual_seed(2)
    x = (torch.randn(3, 6, 4, 4) * 2).requires_grad_(True)
    tau = torch.rand(3, 6, 1, 1)
    soft_threshold(x, tau).sum().backward()
    outside = (x.detach().abs() > tau).float()
    assert torch.equal(x.grad, outside)


def test_soft_threshold_layer_formula_and_ranges() -> None:
    torch.manual_seed(3)
    layer = SoftThreshold(16).eval()
    with torch.no_grad():
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 16, 7, 7)
    with torch.no_grad():
        y = layer(x)
        a = x.abs().mean(dim=(2, 3))
        alpha = torch.sigmoid(layer.fc2(F.relu(layer.bn(layer.fc1(a)))))
        tau = (a * alpha)[:, :, None, None]
    assert torch.allclose(layer.threshold(x), tau)
    assert torch.allclose(y, torch.sign(x) * torch.clamp(x.abs() - tau, min=0))
    assert (tau > 0).all() and (tau < a[:, :, None, None]).all()  # 0 < alpha < 1
    assert (y * x >= 0).all() and (y.abs() <= x.abs()).all()
    assert (y == 0).any() and (y != 0).any()


def test_soft_threshold_is_computed_in_float32_under_bf16_autocast() -> None:
    """In bfloat16 the threshold's sigmoid would be exactly 1 above ~6.2 (tau = the whole channel
    mean); the layer keeps tau in float32 and returns the input's dtype, and gives the float32
    numbers to bfloat16's resolution."""
    torch.manual_seed(0)
    layer = SoftThreshold(8).eval()
    with torch.no_grad():
        layer.fc2.weight.zero_()
        layer.fc2.bias.fill_(7.0)  # alpha = sigmoid(7) = 0.99909: 1.0 in bfloat16
    x = torch.randn(4, 8, 6, 6)
    a = x.bfloat16().float().abs().mean(dim=(2, 3))[:, :, None, None]  # the channel means the layer sees
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tau = layer.threshold(x.bfloat16())
        y = layer(x.bfloat16())
    assert tau.dtype == torch.float32 and (tau < a).all() and torch.allclose(tau, a * torch.sigmoid(torch.tensor(7.0)))
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), layer(x), atol=0.02, rtol=0.01)
    assert torch.equal(layer(x), soft_threshold(x, layer.threshold(x)))  # float32: unchanged


def test_drstn_blocks_carry_soft_thresholding_before_the_addition() -> None:
    expected = {"drstn_v1": ((2, 2, 2, 2), 7), "drstn_v2": ((2, 2, 2, 2), 3), "drstn_v3": ((1, 1, 1, 1), 3),
                "drstn_v4": ((2, 3, 5, 2), 3), "drstn_v5": ((2, 2, 2), 3)}  # seed 000 Table 2
    for name, (layers, kernel) in expected.items():
        model = create_model(name)
        assert tuple(len(stage) for stage in model.stages) == layers
        assert model.stem[0].kernel_size == (kernel, kernel)
        blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
        assert blocks and all(isinstance(b.attn, SoftThreshold) for b in blocks)
        # the threshold sees the second BN's output: replacing it by identity changes the block
        b = blocks[0].eval()
        x = torch.randn(2, b.conv1.in_channels, 8, 8)
        with torch.no_grad():
            branch = b.bn2(b.conv2(b.act1(b.bn1(b.conv1(x)))))
            assert torch.allclose(b(x), F.relu(b.attn(branch) + b.shortcut(x)), atol=1e-6)


# ---------------------------------------------------------------- CBAM gates


def test_cbam_gate_shapes_and_ranges() -> None:
    torch.manual_seed(4)
    x = torch.randn(3, 32, 9, 11) * 5
    cg, sg = ChannelGate(32, 16), SpatialGate(7)
    mc, ms = cg.gate(x), sg.eval().gate(x)
    assert mc.shape == (3, 32, 1, 1) and ms.shape == (3, 1, 9, 11)
    for m in (mc, ms):
        assert ((m > 0) & (m < 1)).all()
    # equation 2: shared MLP over average- and max-pooled descriptors
    ref = torch.sigmoid(cg.mlp(x.mean(dim=(2, 3))) + cg.mlp(x.amax(dim=(2, 3))))
    assert torch.allclose(mc[:, :, 0, 0], ref)
    cbam = CBAM(32).eval()
    assert cbam.channel.mlp[0].out_features == 2  # reduction 16
    assert cbam.spatial.conv.kernel_size == (7, 7) and cbam.spatial.conv.in_channels == 2
    out = cbam(x)
    assert out.shape == x.shape
    assert torch.allclose(out, cbam.spatial(cbam.channel(x)))


def test_frozen_backbone_modes() -> None:
    r50 = create_model("resnet50", freeze_backbone=True)
    fc = r50.fc
    assert count_params(r50, trainable_only=True) == fc.in_features * fc.out_features + fc.out_features
    r50.train()
    with torch.no_grad():
        r50(torch.randn(2, 3, 32, 32))
    assert not r50.bn1.training and fc.weight.requires_grad  # frozen BN stays in eval mode

    att = create_model("cbam_resnet50_attention", freeze_backbone=True)
    assert count_params(att, trainable_only=True) == count_params(att.res_attention) + count_params(att.fc)
    assert count_params(att) == count_params(create_model("cbam_resnet50_attention"))


# ---------------------------------------------------------------- stochastic depth


def test_stochastic_depth_module_train_and_eval() -> None:
    torch.manual_seed(5)
    x = torch.randn(8, 4, 3, 3)
    sd = StochasticDepth(0.7, mode="batch")
    sd.eval()
    assert torch.allclose(sd(x), 0.7 * x)
    sd.train()
    kept = 0
    for _ in range(400):
        y = sd(x)
        assert torch.equal(y, x) or torch.equal(y, torch.zeros_like(x))  # whole batch kept or dropped, unscaled
        kept += torch.equal(y, x)
    assert 0.6 < kept / 400 < 0.8
    row = StochasticDepth(0.5, mode="row").train()
    y = row(x)
    per_sample = [torch.equal(y[i], x[i]) or torch.equal(y[i], torch.zeros_like(x[i])) for i in range(len(x))]
    assert all(per_sample)
    with pytest.raises(ValueError, match="survival"):
        StochasticDepth(0.0)


def test_resnet110_stochastic_depth_schedule_and_behaviour() -> None:
    model = create_model("resnet110_sd")
    blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
    assert len(blocks) == 54 and all(isinstance(b.shortcut, (nn.Identity, ZeroPadShortcut)) for b in blocks)
    survival = [b.drop.survival for b in blocks]
    assert survival[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(survival, survival[1:]))  # linear decay
    assert survival[0] == pytest.approx(1 - 0.5 / 54)

    block = blocks[-1]
    x = torch.relu(torch.randn(2, block.conv1.in_channels, 8, 8))
    block.eval()
    with torch.no_grad():
        expected = F.relu(block.branch(x) * 0.5 + block.shortcut(x))
        assert torch.allclose(block(x), expected, atol=1e-6)  # eval: branch scaled by its survival
    block.train()
    outs = set()
    torch.manual_seed(6)
    with torch.no_grad():
        for _ in range(40):
            y = block(x)
            if torch.allclose(y, F.relu(block.shortcut(x))):
                outs.add("dropped")
            else:
                outs.add("kept")
    assert outs == {"dropped", "kept"}  # training: the branch is either skipped or kept whole

    model.eval()
    inp = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(inp), model(inp))  # evaluation is deterministic


# ---------------------------------------------------------------- SELU ablation


def test_selu_variants_pluggable_parts() -> None:
    base, selu = create_model("selu_resnet34_baseline", in_chans=1), create_model("selu_resnet34_selu", in_chans=1)
    incep, full = create_model("selu_resnet34_inception", in_chans=1), create_model("selu_resnet34_all", in_chans=1)
    for m in (base, selu, incep, full):
        assert tuple(len(s) for s in m.stages) == (3, 4, 6, 3)
    assert not any(isinstance(m, nn.SELU) for m in base.modules())
    assert any(isinstance(m, nn.SELU) for m in selu.modules()) and not any(isinstance(m, nn.ReLU) for m in selu.modules())
    assert incep.stem.out_chs == 64 and sorted(b[-1].out_channels for b in incep.stem.branches) == [16, 16, 32]
    assert any(isinstance(m, ZeroPadShortcut) for m in base.modules())
    assert not any(isinstance(m, ZeroPadShortcut) for m in full.modules())
    # LeCun-normal init under SELU: conv weight std close to 1 / sqrt(fan_in)
    conv = selu.stages[2][1].conv1
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.05)


def test_resnet_trunk_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="shortcut"):
        ResNet(BasicBlock, (1, 1), shortcut="pad")
    with pytest.raises(ValueError, match="stem"):
        ResNet(BasicBlock, (1, 1), stem="vit")
    with pytest.raises(ValueError, match="activation"):
        create_model("resnet18_cifar", act_layer="gelu2")


# ---------------------------------------------------------------- pretrained weights


def test_pretrained_missing_names_file_and_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("RESLAB_DOWNLOAD", "1")
    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(PretrainedWeightsError) as err:
        create_model("resnet50", pretrained=True)
    msg = str(err.value)
    folder = os.path.join(str(tmp_path), "hub", "checkpoints")
    assert weights_filename(tv_weights("resnet50")) in msg and folder in msg
    assert calls == [tv_weights("resnet50").url]  # the real download path was tried once


def test_pretrained_missing_writes_the_home_folder_as_a_tilde(tmp_path, monkeypatch) -> None:
    """The message also lands in committed results (Table 1 lists what it tried): no machine path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / ".cache" / "torch"))
    monkeypatch.setenv("RESLAB_DOWNLOAD", "0")
    with pytest.raises(PretrainedWeightsError) as err:
        create_model("resnet18", pretrained=True)
    msg = str(err.value)
    assert os.path.join("~", ".cache", "torch", "hub", "checkpoints") in msg and str(tmp_path) not in msg


def test_pretrained_offline_flag_skips_download(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("RESLAB_DOWNLOAD", "0")

    def must_not_run(*args, **kwargs):
        raise AssertionError("download attempted although RESLAB_DOWNLOAD=0")

    monkeypatch.setattr(torch.hub, "download_url_to_file", must_not_run)
    with pytest.raises(PretrainedWeightsError, match="squeezenet1_1"):
        create_model("squeezenet1_1", pretrained=True)


def test_pretrained_file_on_disk_loads_then_replaces_head(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download attempted"))
    donor = create_model("resnet18", num_classes=1000)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(donor.state_dict(), folder / weights_filename(tv_weights("resnet18")))
    model = create_model("resnet18", num_classes=10, pretrained=True)
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc.out_features == 10
    grey = create_model("resnet18", num_classes=10, in_chans=1, pretrained=True)
    assert torch.allclose(grey.conv1.weight, donor.conv1.weight.sum(dim=1, keepdim=True))


def test_models_without_weights_refuse_pretrained() -> None:
    with pytest.raises(ValueError, match="pretrained=False"):
        create_model("drstn_v1", pretrained=True)


# ---------------------------------------------------------------- registry


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError) as err:
        create_model("resnet_18")
    assert "resnet18" in str(err.value) and "list_models" in str(err.value)
    with pytest.raises(ValueError, match="drstn_v5"):
        create_model("drstn_v6")
    with pytest.raises(ValueError, match="unknown model"):
        model_info("no_such_model")


@pytest.mark.parametrize("name, size, chans", [("resnet110_sd", 32, 3), ("pyramidnet110_a48", 32, 3),
                                               ("selu_resnet34_baseline", 28, 1)])
def test_zero_padding_shortcuts_keep_channels_last(name, size, chans):
    """Every module of the models with zero-padding shortcuts returns channels-last for a
    channels-last input (a residual add that mixes layouts copies at every block), and the
    shortcut's numbers are those of appending zero channels."""
    from reslab.models.resnet import ZeroPadShortcut

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=chans).eval().to(memory_format=torch.channels_last)
    mixed = []

    def check(module, _inputs, out):
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] > 1 and out.shape[2] * out.shape[3] > 1 \
                and not out.is_contiguous(memory_format=torch.channels_last):
            mixed.append(type(module).__name__)

    for module in model.modules():
        module.register_forward_hook(check)
    with torch.no_grad():
        model(torch.randn(2, chans, size, size).contiguous(memory_format=torch.channels_last))
    assert not mixed, sorted(set(mixed))
    x = torch.randn(2, 4, 7, 7).contiguous(memory_format=torch.channels_last)
    for pool in ZeroPadShortcut.POOLS:
        out = ZeroPadShortcut(4, 10, 2, pool)(x)
        ref = ZeroPadShortcut(4, 4, 2, pool)(x.contiguous())
        assert torch.equal(out[:, :4], ref) and not out[:, 4:].any() and out.shape == (2, 10, 4, 4)
