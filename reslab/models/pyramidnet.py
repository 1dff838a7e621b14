"""PyramidNet (Han, Kim & Kim, "Deep Pyramidal Residual Networks", CVPR 2017), CIFAR versions.

Survey (seed 002) Table 5 quotes the paper's Table 4: basic-block PyramidNet-110 with widening
factor alpha = 48 / 84 / 270 (1.7M / 3.8M / 28.3M) and bottleneck PyramidNets with
(depth, alpha) = (164, 270), (200, 240), (236, 220), (272, 200) (27.0M / 26.6M / 26.8M / 26.0M).

Architecture as the paper (section 3, Fig. 6) and its official PyTorch code
dyhan0920/PyramidNet-PyTorch (read, not copied):

- 3x3 conv to 16 channels + BN; three stages (32x32, 16x16, 8x8) of ``N`` blocks each; the width
  grows additively by ``alpha / (3N)`` every block (equation 2 of the survey), rounded to an
  integer per block; a bottleneck block outputs 4x its width.
- Basic block: BN, 3x3 conv, BN, ReLU, 3x3 conv, BN (no ReLU after the addition, no ReLU before
  the first conv). Bottleneck: BN, 1x1, BN, ReLU, 3x3, BN, ReLU, 1x1 (x4), BN.
- Shortcut: identity with zero-padded extra channels; 2x2 average pooling with stride 2 where
  the block downsamples (no projection parameters). The pooling uses ``ceil_mode=True`` as the
  official code does (``nn.AvgPool2d((2,2), stride=(2,2), ceil_mode=True)`` since its commit
  b1031d1; the initial commit had no ``ceil_mode``): on an odd feature map the branch's strided
  3x3 conv gives ``ceil(H / 2)`` pixels, and so does the shortcut, whose last row / column
  then averages the pixels inside the map only. On even maps (32x32 CIFAR inputs) ceil and
  floor modes are the same, so this only matters for other input sizes (30x30, 27x27, ...).
- Final BN, ReLU, global average pooling, linear classifier.
- Depth: ``6N + 2`` (basic), ``9N + 2`` (bottleneck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .layers import conv1x1, conv3x3, kaiming_init_


class PyramidBasicBlock(nn.Module):
    """PyramidNet basic block (BN-conv-BN-ReLU-conv-BN) with a zero-padded shortcut."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn3 = nn.BatchNorm2d(planes)
        self.stride = stride

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out)))
        return self.bn3(out)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The parameter-free shortcut before zero padding: ``x``, or 2x2/2 average pooling.

        ``ceil_mode=True`` keeps odd feature maps aligned with the strided branch
        (``ceil(H / 2)`` pixels), as in the official code.
        """
        return F.avg_pool2d(x, 2, 2, ceil_mode=True) if self.stride != 1 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        sc = self.shortcut(x)  # (B, C_in, H', W'); zero channels appended below
        extra = out.shape[1] - sc.shape[1]
        if extra:  # F.pad keeps the memory format (channels-last stays channels-last)
            sc = F.pad(sc, (0, 0, 0, 0, 0, extra))
        return out + sc


class PyramidBottleneck(PyramidBasicBlock):
    """PyramidNet bottleneck block (BN-1x1-BN-ReLU-3x3-BN-ReLU-1x1-BN), output ``4 * planes``."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1):
        nn.Module.__init__(self)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv1x1(in_chs, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn4 = nn.BatchNorm2d(planes * 4)
        self.stride = stride

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return self.bn4(out)


class PyramidNet(nn.Module):
    """CIFAR PyramidNet with additive widening.

    Args:
        depth: Total depth (``6N + 2`` basic, ``9N + 2`` bottleneck).
        alpha: Widening factor (final width is ``16 + alpha``, times 4 for bottlenecks).
        bottleneck: Use bottleneck blocks.
        num_classes: Classifier outputs.
        in_chans: Input channels.

    Raises:
        ValueError: if ``depth`` does not fit the block type.
    """

    def __init__(self, depth: int, alpha: float, bottleneck: bool = False, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        per = 9 if bottleneck else 6
        if (depth - 2) % per:
            kind = "bottleneck" if bottleneck else "basic"
            raise ValueError(f"PyramidNet depth must be {per}N + 2 for {kind} blocks, got {depth}")
        n = (depth - 2) // per
        block = PyramidBottleneck if bottleneck else PyramidBasicBlock
        add = alpha / (3 * n)
        self.conv1 = conv3x3(in_chans, 16)
        self.bn1 = nn.BatchNorm2d(16)
        width = 16.0
        in_chs = 16
        stages = []
        for s in range(3):
            blocks = []
            for i in range(n):
                width += add
                planes = int(round(width))
                blocks.append(block(in_chs, planes, stride=2 if (s > 0 and i == 0) else 1))
                in_chs = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn_final = nn.BatchNorm2d(in_chs)
        self.num_features = in_chs
        self.fc = nn.Linear(in_chs, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.bn1(self.conv1(x)))
        x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _create(name: str, pretrained: bool, args: dict, **kwargs) -> PyramidNet:
    refuse_pretrained(name, pretrained)
    return PyramidNet(**{**args, **kwargs})


_CIFAR = dict(input_size=(3, 32, 32), test_input_size=(3, 8, 8))


@register_model(**_CIFAR)
def pyramidnet110_a48(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-110, basic blocks, alpha 48 (survey Table 5: 1.7M)."""
    args = dict(depth=110, alpha=48, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet110_a48", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet110_a84(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-110, basic blocks, alpha 84 (survey Table 5: 3.8M)."""
    args = dict(depth=110, alpha=84, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet110_a84", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet110_a270(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-110, basic blocks, alpha 270 (survey Table 5: 28.3M)."""
    args = dict(depth=110, alpha=270, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet110_a270", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet164_bottleneck_a270(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-164, bottleneck blocks, alpha 270 (survey Table 5: 27.0M)."""
    args = dict(depth=164, alpha=270, bottleneck=True, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet164_bottleneck_a270", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet200_bottleneck_a240(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-200, bottleneck blocks, alpha 240 (survey Table 5: 26.6M)."""
    args = dict(depth=200, alpha=240, bottleneck=True, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet200_bottleneck_a240", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet236_bottleneck_a220(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-236, bottleneck blocks, alpha 220 (survey Table 5: 26.8M)."""
    args = dict(depth=236, alpha=220, bottleneck=True, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet236_bottleneck_a220", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def pyramidnet272_bottleneck_a200(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """PyramidNet-272, bottleneck blocks, alpha 200 (survey Table 5: 26.0M)."""
    args = dict(depth=272, alpha=200, bottleneck=True, num_classes=num_classes, in_chans=in_chans)
    return _create("pyramidnet272_bottleneck_a200", pretrained, args, **kwargs)
