"""Input sizes that are not powers of two, and parameter-free shortcuts checked against hand-built references.

Audit issue 13: PyramidNet's pooled shortcut came out one pixel smaller than the strided branch on
odd feature maps (a 30x30 input raised in stage 3), and ``resnet110_sd`` subsampled its shortcut
where the stochastic-depth code (yueatsprograms/Stochastic_Depth, ``ResidualDrop.lua``)
average-pools 2x2 windows with stride 2 before appending zero channels.
"""

from __future__ import annotations

import fnmatch

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.models import count_params, create_model, list_models, model_info
from reslab.models.pyramidnet import PyramidBasicBlock, PyramidBottleneck
from reslab.models.resnet import BasicBlock, ZeroPadShortcut, make_shortcut


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: these forwards are tiny, and on a shared 2-core machine two OpenMP
    threads spin-wait for each other (12 s for the whole file on one thread, over 60 s on two
    under load). Restored afterwards, since the setting is process-wide."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- inputs that are not powers of two

# Square input sizes per model family: an even size that is not a power of two and an odd one,
# each the smallest we found that the architecture accepts and that sends an odd feature map
# into a strided layer (checked for every model in ``test_forward_at_sizes_that_are_not_powers_of_two``).
# Every registered model must match exactly one pattern, so a new model needs a decision here.
# No registered model refuses odd sizes by design; the lower bounds below come from pooling
# or patchifying down to 0x0, not from odd sizes.
_SIZES: dict[str, tuple[tuple[int, ...], str]] = {
    "pyramidnet*": ((14, 9), "CIFAR trunk, two stride-2 stages: 14 -> 7 -> 4 and 9 -> 5 -> 3"),
    "resnet110_sd": ((14, 9), "CIFAR trunk, two stride-2 stages"),
    "wrn28_10": ((14, 9), "CIFAR trunk, two stride-2 stages"),
    "densenet_bc*": ((14, 9), "CIFAR trunk, two 2x2 pooling transitions"),
    "attention*_cifar": ((14, 9), "CIFAR trunk; masks are resized to the trunk's size"),
    "resnet18_cifar": ((14, 9), "CIFAR stem, three stride-2 stages: 9 -> 5 -> 3 -> 2"),
    "drstn_v*": ((30, 27), "ImageNet-style stem (stride 2 + max-pool), 32x32 CIFAR inputs"),
    "selu_resnet34_*": ((30, 27), "1-channel Fashion-MNIST models (28x28 in the paper)"),
    "cbam_*": ((30, 27), "ResNet-50 trunk with the ImageNet stem"),
    "resnet18": ((30, 27), "torchvision, ImageNet stem"),
    "resnet50": ((30, 27), "torchvision, ImageNet stem"),
    "skresnet18": ((30, 27), "timm, ImageNet stem"),
    "squeezenet1_1": ((30, 27), "torchvision; below about 17 pixels its ceil-mode pools reach 0x0"),
    "efficientnet_b7": ((30, 27), "torchvision; padded convs take any size, smallest kept for speed"),
    "convnext_tiny": ((36, 45), "4x4/4 patchify + three 2x2/2 downsamplings need >= 32; 36 -> 9 and 45 -> 11"),
    "vgg16": ((48, 47), "five 2x2/2 max-pools need >= 32; 48 -> ... -> 3 and 47 -> 23 -> 11 -> 5"),
    "alexnet": ((70, 63), "11x11/4 conv and three 3x3/2 max-pools need >= 63 (the registered test size)"),
}


def _sizes(name: str) -> tuple[int, ...]:
    matches = [p for p in _SIZES if fnmatch.fnmatchcase(name, p)]
    assert len(matches) == 1, f"{name}: matches {matches} in _SIZES; give it exactly one entry"
    return _SIZES[matches[0]][0]


def _forward_watching_strides(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Run ``model(x)`` without gradients; return the output and the (H, W) of every input to a strided module."""
    seen: list[tuple[int, int]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            seen.append(tuple(args[0].shape[-2:]))

    handles = []
    for m in model.modules():
        stride = getattr(m, "stride", None)
        if isinstance(stride, int) and not isinstance(stride, bool):
            stride = (stride,)
        if isinstance(m, nn.Module) and isinstance(stride, tuple) and max(stride) > 1:
            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def test_odd_size_table_covers_every_model() -> None:
    for name in list_models():
        _sizes(name)
    unused = [p for p in _SIZES if not list_models(p)]
    assert not unused, f"patterns in _SIZES that match no registered model: {unused}"


@pytest.mark.parametrize("name", list_models())
def test_forward_at_sizes_that_are_not_powers_of_two(name: str) -> None:
    """Every registered model runs at an even non-power-of-two size and at an odd size.

    Each size must also be meaningful: some strided layer (conv or pool) receives an odd map.
    """
    torch.manual_seed(0)
    c = model_info(name)["input_size"][0]
    model = create_model(name, num_classes=3, in_chans=c).eval()
    for size in _sizes(name):
        assert size & (size - 1), f"{size} is a power of two"
        out, seen = _forward_watching_strides(model, torch.randn(1, c, size, size))
        assert out.shape == (1, 3), f"{name} at {size}x{size}"
        assert torch.isfinite(out).all(), f"{name} at {size}x{size}"
        assert any(h % 2 or w % 2 for h, w in seen), f"{name} at {size}: strided layers saw only {seen}"


def test_pyramidnet_at_the_audits_30x30_input() -> None:
    """The audit's failing case: 30 -> 15 -> 8 in the branch, 7 in a floor-mode shortcut."""
    model = create_model("pyramidnet110_a48", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 30, 30)).shape == (1, 3)


# ---------------------------------------------------------------- PyramidNet shortcut


@pytest.mark.parametrize("block_cls", [PyramidBasicBlock, PyramidBottleneck])
def test_pyramidnet_shortcut_is_ceil_mode_2x2_average(block_cls: type[PyramidBasicBlock]) -> None:
    block = block_cls(1, 2, stride=2).eval()
    x = torch.arange(9.0).view(1, 1, 3, 3)
    # windows {0,1,3,4}, {2,5}, {6,7}, {8}: a window cut by the border averages what is inside
    expected = torch.tensor([[[[2.0, 3.5], [6.5, 8.0]]]])
    assert torch.equal(block.shortcut(x), expected)
    with torch.no_grad():
        out = block(x)
        branch = block.branch(x)
    assert out.shape == branch.shape == (1, 2 * block_cls.expansion, 2, 2)
    pad = torch.zeros(1, branch.shape[1] - 1, 2, 2)
    assert torch.allclose(out, branch + torch.cat([expected, pad], dim=1))
    assert torch.equal(block_cls(4, 2, stride=1).shortcut(x), x)  # identity where the block keeps the size


# ---------------------------------------------------------------- zero-padding shortcuts (option A)


def test_zeropad_avg_shortcut_matches_hand_arithmetic() -> None:
    """2x2 windows, stride 2, then zero channels after the input's (ResidualDrop.lua)."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    sc = make_shortcut("zeropad_avg", 1, 3, stride=2)
    assert isinstance(sc, ZeroPadShortcut) and count_params(sc) == 0
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0] = torch.tensor([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4],
                                   [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]])
    assert torch.equal(sc(x), expected)
    odd = torch.arange(9.0).view(1, 1, 3, 3)
    assert torch.equal(make_shortcut("zeropad_avg", 1, 1, stride=2)(odd), torch.tensor([[[[2.0, 3.5], [6.5, 8.0]]]]))


def test_zeropad_subsample_shortcut_is_unchanged() -> None:
    """``'zeropad'`` (the SELU models) still keeps every second pixel."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = make_shortcut("zeropad", 1, 2, stride=2)(x)
    assert torch.equal(out, torch.tensor([[[[0.0, 2.0], [8.0, 10.0]], [[0.0, 0.0], [0.0, 0.0]]]]))
    odd = torch.arange(9.0).view(1, 1, 3, 3)
    assert torch.equal(make_shortcut("zeropad", 1, 1, stride=2)(odd), torch.tensor([[[[0.0, 2.0], [6.0, 8.0]]]]))
    selu = create_model("selu_resnet34_baseline", in_chans=1)
    pads = [m for m in selu.modules() if isinstance(m, ZeroPadShortcut)]
    assert pads and all(m.pool == "subsample" for m in pads)
    with pytest.raises(ValueError, match="pool"):
        ZeroPadShortcut(4, 8, 2, pool="max")


def test_resnet110_sd_shortcuts_match_the_stochastic_depth_code() -> None:
    torch.manual_seed(0)
    model = create_model("resnet110_sd")
    blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
    down = [b for b in blocks if b.conv1.stride == (2, 2)]
    assert len(down) == 2
    for b in down:
        cin, cout = b.conv1.in_channels, b.conv2.out_channels
        x = torch.randn(2, cin, 8, 8)
        reference = torch.cat([F.avg_pool2d(x, 2, 2), torch.zeros(2, cout - cin, 4, 4)], dim=1)
        assert torch.equal(b.shortcut(x), reference)
    assert all(isinstance(b.shortcut, nn.Identity) for b in blocks if b not in down)
    # the shortcut has no parameters: the count is the one printed in the model's docstring
    assert count_params(model) == 1_727_962
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
