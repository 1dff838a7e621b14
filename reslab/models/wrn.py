"""Wide Residual Networks (Zagoruyko & Komodakis, BMVC 2016), CIFAR version.

Survey (seed 002) Table 8 quotes WRN-28-10: 36.5M parameters, 4.17% / 20.5% CIFAR-10/100 error
(the paper's Table 4 row without dropout).

Architecture as the paper (Table 1) and szagoruyko/wide-residual-networks (read, not copied):
3x3 conv to 16 channels; three groups of ``N = (depth - 4) / 6`` pre-activation basic blocks
(BN-ReLU-3x3 conv, BN-ReLU-[dropout]-3x3 conv) with ``16k``, ``32k``, ``64k`` channels, the
first block of groups 2 and 3 striding by 2; a 1x1 conv shortcut (no BN) wherever the width or
resolution changes (as in the official code, the shortcut takes the pre-activated input);
BN-ReLU, global average pooling, linear classifier. Convs have no bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .layers import conv1x1, conv3x3, kaiming_init_


class WideBasic(nn.Module):
    """Pre-activation wide basic block with optional dropout between the convs."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv3x3(in_chs, out_chs, stride)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = conv3x3(out_chs, out_chs)
        self.drop_rate = drop_rate
        self.shortcut = conv1x1(in_chs, out_chs, stride) if (stride != 1 or in_chs != out_chs) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        sc = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + sc


class WideResNet(nn.Module):
    """WRN-depth-k for CIFAR.

    Args:
        depth: ``6N + 4``.
        widen_factor: ``k``.
        drop_rate: Dropout between the convs of each block (0: the survey's quoted row).
        num_classes: Classifier outputs.
        in_chans: Input channels.

    Raises:
        ValueError: if ``depth`` is not ``6N + 4``.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, drop_rate: float = 0.0, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6N + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = conv3x3(in_chans, 16)
        blocks = []
        prev = 16
        for g, w in enumerate(widths):
            for i in range(n):
                blocks.append(WideBasic(prev, w, stride=2 if (g > 0 and i == 0) else 1, drop_rate=drop_rate))
                prev = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(prev)
        self.num_features = prev
        self.fc = nn.Linear(prev, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model(input_size=(3, 32, 32), test_input_size=(3, 8, 8))
def wrn28_10(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """WRN-28-10 (survey Table 8: 36.5M)."""
    refuse_pretrained("wrn28_10", pretrained)
    args = dict(depth=28, widen_factor=10, num_classes=num_classes, in_chans=in_chans)
    return WideResNet(**{**args, **kwargs})
