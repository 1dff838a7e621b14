"""Layer choices pinned to the reference code: DRSN threshold widths, CBAM init (issue 13).

DRSN: zhao62/Deep-Residual-Shrinkage-Networks, ``DRSN_Keras.py`` (M = C) and ``DRSN_TFLearn.py``
(M = C // 4). CBAM: Jongchan/attention-module, ``MODELS/cbam.py`` (spatial BN momentum 0.01) and
the init loop of ``MODELS/model_resnet.py`` (spatial BN scale 0, every bias 0).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from reslab.models import create_model
from reslab.models.layers import CBAM, ChannelGate, SoftThreshold, SpatialGate, kaiming_init_, lecun_normal_

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _threshold_widths(model: nn.Module) -> list[tuple[int, int]]:
    """``(C, M)`` of every threshold sub-network, in order."""
    return [(m.fc1.in_features, m.fc1.out_features) for m in model.modules() if isinstance(m, SoftThreshold)]


# ---------------------------------------------------------------- DRSTN threshold width M


def test_drstn_threshold_width_defaults_to_c_in_every_unit() -> None:
    widths = _threshold_widths(create_model("drstn_v3"))
    assert [c for c, _ in widths] == [64, 128, 256, 512]
    assert all(m == c for c, m in widths)  # DRSN_Keras.py: Dense(out_channels, ...)


def test_drstn_threshold_reduction_4_gives_c_over_4_per_unit() -> None:
    model = create_model("drstn_v3", threshold_reduction=4)
    widths = _threshold_widths(model)
    assert widths == [(64, 16), (128, 32), (256, 64), (512, 128)]  # DRSN_TFLearn.py: out_channels//4
    for t in (m for m in model.modules() if isinstance(m, SoftThreshold)):
        c, m = t.fc1.in_features, t.fc1.out_features
        assert t.bn.num_features == m and (t.fc2.in_features, t.fc2.out_features) == (m, c)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_drstn_threshold_hidden_still_fixes_one_width_and_conflicts_are_refused() -> None:
    assert {m for _, m in _threshold_widths(create_model("drstn_v3", threshold_hidden=8))} == {8}
    with pytest.raises(ValueError, match="not both"):
        create_model("drstn_v3", threshold_hidden=8, threshold_reduction=4)
    with pytest.raises(ValueError, match="reduction"):
        SoftThreshold(16, reduction=0)
    assert SoftThreshold(3, reduction=4).fc1.out_features == 1  # never 0 wide


# ---------------------------------------------------------------- CBAM init


def _assert_reference_init(cbam: CBAM) -> None:
    bn = cbam.spatial.bn
    assert isinstance(bn, nn.BatchNorm2d)
    assert torch.equal(bn.weight, torch.zeros(1)) and torch.equal(bn.bias, torch.zeros(1))
    assert bn.momentum == 0.01 and bn.eps == 1e-5
    for lin in (m for m in cbam.channel.mlp if isinstance(m, nn.Linear)):
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
        assert lin.weight.abs().sum() > 0  # weights keep PyTorch's default init, as the reference


def test_standalone_cbam_and_gates_start_as_the_reference() -> None:
    torch.manual_seed(0)
    cbam = CBAM(32)
    _assert_reference_init(cbam)
    # spatial gate is sigmoid(0) = 0.5 everywhere at init, in training and in evaluation
    x = torch.randn(2, 32, 5, 6)
    assert torch.allclose(SpatialGate().gate(x), torch.full((2, 1, 5, 6), 0.5))
    assert torch.allclose(SpatialGate().eval().gate(x), torch.full((2, 1, 5, 6), 0.5))
    assert torch.equal(ChannelGate(32).mlp[2].bias, torch.zeros(32))
    # the generic inits reset BN scales to 1 and biases; the gates get their reference init back
    for init in (kaiming_init_, lecun_normal_):
        init(cbam)
        _assert_reference_init(cbam)


@pytest.mark.parametrize("name", ["cbam_sample_resnet", "cbam_resnet50_attention"])
def test_cbam_models_keep_the_reference_init(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    cbams = [m for m in model.modules() if isinstance(m, CBAM)]
    assert cbams
    for cbam in cbams:
        _assert_reference_init(cbam)
    # other BatchNorms are untouched by the gate init (scale 1 after kaiming_init_ / torchvision)
    block = model.res_att1 if name == "cbam_sample_resnet" else model.res_attention
    assert torch.equal(block.bn2.weight, torch.ones_like(block.bn2.weight))


def test_cbam_resnet50_attention_with_imagenet_weights_keeps_the_gate_init(monkeypatch, tmp_path) -> None:
    """Weights (random here, where torchvision's file would be) load into the backbone only."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    state = tvm.resnet50().state_dict()
    torch.save(state, folder / "resnet50-0676ba61.pth")
    model = create_model("cbam_resnet50_attention", pretrained=True, freeze_backbone=True)
    assert torch.equal(model.layer4[2].bn3.weight, state["layer4.2.bn3.weight"])
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    _assert_reference_init(model.res_attention.attn)
    assert all(p.requires_grad for p in model.res_attention.parameters())
