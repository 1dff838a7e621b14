"""DenseNet-BC for CIFAR (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

Survey (seed 002) Table 6 quotes the paper's Table 2 rows DenseNet-BC (L=100, k=12) 0.8M,
(L=250, k=24) 15.3M and (L=190, k=40) 25.6M.

CIFAR DenseNet-BC as the paper's section 3 ("Implementation Details") and andreasveit/
densenet-pytorch (read, not copied): a 3x3 conv with ``2k`` output channels, three dense blocks of
``(L - 4) / 6`` bottleneck layers each (BN-ReLU-1x1 conv to ``4k``, BN-ReLU-3x3 conv to ``k``),
transitions BN-ReLU-1x1 conv (compression 0.5)-2x2 average pool between blocks, then BN-ReLU,
global average pooling and a linear classifier. No BN/ReLU/pooling after the first conv.

The dense blocks and transitions are torchvision's (``torchvision.models.DenseNet`` with three
blocks); only the ImageNet stem (7x7/2 conv, BN, ReLU, max-pool) is replaced by the CIFAR conv.

Differences from both reference implementations, kept on purpose (torchvision's blocks) and
stated here:

- Conv init: torchvision's ``nn.init.kaiming_normal_(m.weight)``, He normal with its default
  ``mode="fan_in"`` (``std = sqrt(2 / (k * k * C_in))``), and the same for our CIFAR stem conv.
  Both references use fan-out, ``std = sqrt(2 / (k * k * C_out))``: the authors' Torch code
  (liuzhuang13/DenseNet ``models/densenet.lua``, ``ConvInit``: ``local n =
  v.kW*v.kH*v.nOutputPlane; v.weight:normal(0,math.sqrt(2/n))``) and andreasveit/densenet-pytorch
  ``densenet.py`` (``n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels;
  m.weight.data.normal_(0, math.sqrt(2. / n))``). BN (weight 1, bias 0) and the zero classifier
  bias agree; the classifier weight is PyTorch's default in torchvision and andreasveit, Torch's
  default ``nn.Linear`` init in the authors' code.
- Dropout (only when ``drop_rate > 0``; the paper adds dropout 0.2 after every convolution
  except the first, and only for its runs without data augmentation):
  torchvision drops the dense layer's new features once, after the 3x3 conv, and never in
  transitions. Both references drop after the bottleneck 1x1 conv and again after the 3x3 conv
  (``models/DenseConnectLayer.lua``, ``DenseConnectLayerStandard``; andreasveit
  ``BottleneckBlock.forward``), and after each transition's 1x1 conv, before the average pool
  (``models/densenet.lua``, ``addTransition``; andreasveit ``TransitionBlock.forward``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet

from ._pretrained import refuse_pretrained
from ._registry import register_model


class DenseNetBCCifar(DenseNet):
    """torchvision ``DenseNet`` with the CIFAR stem.

    Args:
        depth: Total depth ``L`` (``6n + 4`` for DenseNet-BC).
        growth_rate: ``k``.
        num_classes: Classifier outputs.
        in_chans: Input channels.
        drop_rate: Dropout rate (0 with data augmentation, as in the paper). Placed as
            torchvision does (after each dense layer's 3x3 conv only), not as the references
            (also after the 1x1 bottleneck conv and after each transition conv); see the
            module docstring.

    Raises:
        ValueError: if ``depth`` is not ``6n + 4``.
    """

    def __init__(self, depth: int, growth_rate: int, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0):
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        init = 2 * growth_rate
        super().__init__(
            growth_rate=growth_rate, block_config=(n, n, n), num_init_features=init, bn_size=4,
            drop_rate=drop_rate, num_classes=num_classes,
        )
        stem = nn.Conv2d(in_chans, init, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(stem.weight)  # fan-in, as torchvision's convs (references: fan-out)
        rest = [(k, m) for k, m in self.features.named_children() if k not in ("conv0", "norm0", "relu0", "pool0")]
        self.features = nn.Sequential(OrderedDict([("conv0", stem), *rest]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))  # features end with BN (norm5)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _create(name: str, pretrained: bool, args: dict, **kwargs) -> DenseNetBCCifar:
    refuse_pretrained(name, pretrained)
    return DenseNetBCCifar(**{**args, **kwargs})


_CIFAR = dict(input_size=(3, 32, 32), test_input_size=(3, 8, 8))


@register_model(**_CIFAR)
def densenet_bc100_k12(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DenseNet-BC, L=100, k=12 (survey Table 6: 0.8M)."""
    args = dict(depth=100, growth_rate=12, num_classes=num_classes, in_chans=in_chans)
    return _create("densenet_bc100_k12", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def densenet_bc250_k24(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DenseNet-BC, L=250, k=24 (survey Table 6: 15.3M)."""
    args = dict(depth=250, growth_rate=24, num_classes=num_classes, in_chans=in_chans)
    return _create("densenet_bc250_k24", pretrained, args, **kwargs)


@register_model(**_CIFAR)
def densenet_bc190_k40(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DenseNet-BC, L=190, k=40 (survey Tables 6 and 8: 25.6M)."""
    args = dict(depth=190, growth_rate=40, num_classes=num_classes, in_chans=in_chans)
    return _create("densenet_bc190_k40", pretrained, args, **kwargs)
