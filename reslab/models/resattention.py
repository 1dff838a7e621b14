"""Residual Attention Network (Wang et al., "Residual Attention Network for Image Classification", CVPR 2017).

Survey (seed 002) Table 7 quotes the paper's CIFAR results: Attention-92 (1.9M), Attention-236
(5.1M) and Attention-452 (8.6M). Built from the paper's text (sections 3-4) and its ImageNet
Table 2, read alongside tengshaofeng/ResidualAttentionNetwork-pytorch (read, not copied):

- Residual unit: the pre-activation bottleneck (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, width
  ``out / 4``) with a 1x1 projection of the pre-activated input when shape changes.
- Attention module ``{p, t, r}``: ``p`` units before and after, a trunk of ``t`` units, and a
  soft mask branch: max-pool, ``r`` units, a skip unit, ... down to the lowest resolution
  (``2r`` units there), then bilinear up-sampling, adding each skip, ``r`` units per level, and
  BN-ReLU-1x1 conv, BN-ReLU-1x1 conv, sigmoid. Output ``(1 + M(x)) * T(x)`` (attention
  residual learning, equation 3). The number of skip connections falls by one per stage (2, 1,
  0), as in the paper's Table 2.
- Up-sampling in the mask branch: ``F.interpolate(mode="bilinear", align_corners=False)``
  (half-pixel centres) to the size of the skip / trunk map. The authors' prototxts
  (fwang91/residual-attention-network ``imagenet_model/Attention-56-deploy.prototxt``, e.g.
  ``AttentionA_1/mask/up_sample/interp_1``) use an ``Interp`` layer with two bottoms (output size =
  the second bottom's) from their Caffe fork, buptwangfei/caffe ``src/caffe/util/interp.cpp``:
  ``rheight = (height1 - 1) / (height2 - 1)``, source row ``rheight * h2``, i.e. corners mapped to
  corners, PyTorch's ``align_corners=True``. We keep ``align_corners=False``, so the mask differs
  slightly from the reference's interpolation (no parameter count is affected).
- Mask-branch max-pooling: ours is 3x3, stride 2, padding 1; the prototxt's ``pool1_3x3_s2`` is
  3x3, stride 2, no padding, in Caffe's ceil mode: the same output size on even maps, with the
  windows shifted by one pixel.
- Depth ``36m + 20`` for ``{p=1, t=2, r=1}``: ``m`` modules per stage; the 20 are the first conv,
  six residual units (one before each stage and three after the last) and the classifier.

CIFAR network (the paper gives no CIFAR table, so these are our reading, stated here): a 3x3
conv to 16 channels; three stages at 32x32, 16x16, 8x8 with 64, 128 and 256 channels (the
pre-activation ResNet-164 widths the paper compares with); stage transitions by a stride-2
residual unit; three residual units after the last stage; BN-ReLU, global average pool, linear.

- ``attention92_cifar``: ``m = 2`` modules per stage, ``{p=1, t=2, r=1}`` (36 * 2 + 20 = 92).
- ``attention236_cifar``: ``m = 6``, ``{p=1, t=2, r=1}`` (36 * 6 + 20 = 236).
- ``attention452_cifar``: ``{p=2, t=4, r=3}`` as the paper's Table 6 footnote says, ``m = 6``
  (each module is 24 trunk layers per stage: 72 * 6 + 20 = 452).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .layers import conv1x1, conv3x3, in_layout_of, kaiming_init_


def _upsample(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``m`` resized bilinearly to ``like``'s height and width, in ``like``'s memory format (from a
    1x1 map, ``F.interpolate`` returns NCHW even under channels-last)."""
    return in_layout_of(F.interpolate(m, size=like.shape[-2:], mode="bilinear", align_corners=False), like)

class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit (He et al., ECCV 2016), width ``out_chs // 4``.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        stride: Stride of the 3x3 conv (and of the projection).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        mid = out_chs // 4
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv1x1(in_chs, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid, stride)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(mid, out_chs)
        self.proj = conv1x1(in_chs, out_chs, stride) if (stride != 1 or in_chs != out_chs) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        sc = self.proj(pre) if self.proj is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + sc


def _units(chs: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[PreActBottleneck(chs, chs) for _ in range(n)])


class AttentionModule(nn.Module):
    """Attention module with a bottom-up top-down soft mask branch.

    Args:
        channels: Input and output channels.
        skips: Skip connections in the mask branch (its depth is ``skips + 1`` max-pools).
        p: Residual units before and after the split.
        t: Residual units in the trunk branch.
        r: Residual units between adjacent pooling layers in the mask branch.
    """

    def __init__(self, channels: int, skips: int = 1, p: int = 1, t: int = 2, r: int = 1):
        super().__init__()
        self.pre = _units(channels, p)
        self.trunk = _units(channels, t)
        self.down = nn.ModuleList([_units(channels, r) for _ in range(skips)])
        self.skip = nn.ModuleList([PreActBottleneck(channels, channels) for _ in range(skips)])
        self.bottom = _units(channels, 2 * r)
        self.up = nn.ModuleList([_units(channels, r) for _ in range(skips)])
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), conv1x1(channels, channels),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), conv1x1(channels, channels),
        )
        self.post = _units(channels, p)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, stride=2, padding=1)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Soft mask ``M(x)`` in (0, 1), same shape as ``x``."""
        m = self._pool(x)
        skips = []
        for down, skip in zip(self.down, self.skip):
            m = down(m)
            skips.append(skip(m))
            m = self._pool(m)
        m = self.bottom(m)
        # align_corners=False; the authors' Caffe Interp is corner-aligned (module docstring)
        for up, s in zip(reversed(self.up), reversed(skips)):
            m = _upsample(m, s) + s
            m = up(m)
        m = _upsample(m, x)
        return torch.sigmoid(self.mask_head(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        out = (1 + self.mask(x)) * self.trunk(x)  # attention residual learning, eq. (3)
        return self.post(out)


class ResidualAttentionNetCifar(nn.Module):
    """CIFAR Residual Attention Network (see the module docstring for the layout).

    Args:
        modules_per_stage: Attention modules in each of the three stages.
        p: Units before/after each module's split.
        t: Trunk units.
        r: Mask-branch units between poolings.
        widths: Channels of the three stages.
        stem_width: Channels of the first 3x3 conv.
        num_classes: Classifier outputs.
        in_chans: Input channels.
    """

    def __init__(
        self,
        modules_per_stage: Sequence[int] = (2, 2, 2),
        p: int = 1,
        t: int = 2,
        r: int = 1,
        widths: Sequence[int] = (64, 128, 256),
        stem_width: int = 16,
        num_classes: int = 10,
        in_chans: int = 3,
    ):
        super().__init__()
        if len(modules_per_stage) != len(widths):
            raise ValueError(f"modules_per_stage {tuple(modules_per_stage)} and widths {tuple(widths)} must have the same length")
        self.stem = conv3x3(in_chans, stem_width)
        layers: list[nn.Module] = []
        prev = stem_width
        n_stages = len(widths)
        for i, (m, w) in enumerate(zip(modules_per_stage, widths)):
            layers.append(PreActBottleneck(prev, w, stride=1 if i == 0 else 2))
            layers += [AttentionModule(w, skips=max(n_stages - 1 - i, 0), p=p, t=t, r=r) for _ in range(m)]
            prev = w
        layers += [PreActBottleneck(prev, prev) for _ in range(3)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(prev)
        self.num_features = prev
        self.fc = nn.Linear(prev, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.features(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _create_ran(name: str, pretrained: bool, args: dict, **kwargs) -> ResidualAttentionNetCifar:
    refuse_pretrained(name, pretrained)
    return ResidualAttentionNetCifar(**{**args, **kwargs})


_CIFAR = dict(input_size=(3, 32, 32), test_input_size=(3, 16, 16))


@register_model(**_CIFAR)
def attention92_cifar(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Attention-92 for CIFAR: 2 attention modules per stage, ``{p=1, t=2, r=1}`` (survey Table 7: 1.9M)."""
    args = dict(modules_per_stage=(2, 2, 2), p=1, t=2, r=1, num_classes=num_classes, in_chans=in_chans)
    return _create_ran("attention92_cifar", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def attention236_cifar(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Attention-236 for CIFAR: 6 attention modules per stage, ``{p=1, t=2, r=1}`` (survey Table 7: 5.1M)."""
    args = dict(modules_per_stage=(6, 6, 6), p=1, t=2, r=1, num_classes=num_classes, in_chans=in_chans)
    return _create_ran("attention236_cifar", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def attention452_cifar(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Attention-452 for CIFAR: 6 modules per stage, ``{p=2, t=4, r=3}`` (survey Table 7: 8.6M)."""
    args = dict(modules_per_stage=(6, 6, 6), p=2, t=4, r=3, num_classes=num_classes, in_chans=in_chans)
    return _create_ran("attention452_cifar", pretrained, args, **kwargs)
