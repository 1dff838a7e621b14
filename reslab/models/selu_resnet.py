"""Improved residual CNN with SELU, Inception stem and projection shortcuts (seed 003, Fashion-MNIST).

Paper: "基于残差的改进卷积神经网络图像分类算法" (an improved residual CNN for image
classification), seed ``003_732fd889b80ad54d.txt``: a ResNet-34 trunk (section 4.1, Table 1:
3, 4, 6, 3 basic blocks of 64/128/256/512 channels, average pooling, softmax classifier) with
three architectural changes, ablated one at a time in Tables 3-4 and combined in Table 5
(Table 2's learning-rate decay is a training setting, not a model):

- SELU (section 3.1, Fig. 2): the block is conv-BN-SELU-conv-BN, addition, SELU, i.e. the
  ResNet basic block (Fig. 1) with both ReLUs replaced by SELU (``act_layer=nn.SELU``, also in
  the stem). Conv and linear weights then use LeCun-normal init (``N(0, 1/fan_in)``), which
  SELU's self-normalisation assumes; ReLU models keep He init.
- Inception stem (section 3.2, Fig. 3, Table 1 "Inception 3x3, 32+16+16"): replaces the
  conv + max-pool input layer by three branches of stacked 3x3 convs (8-16-32, 4-8-16, 4-8-16
  channels) concatenated to 64 channels and batch-normalised (``resnet.InceptionStem``).
- Projection shortcut (section 3.3, "改进一"): where the channel count grows, a 1x1 conv
  (+ BN) replaces the "traditional" zero-padding identity (``shortcut='conv1x1'`` vs
  ``'zeropad'``).

Choices where the paper is silent:

- The baseline's "standard" stem is ResNet-34's: 7x7 stride-2 conv, BN, act, 3x3 stride-2
  max-pool; on 28x28 inputs the stages then run at 7, 4, 2, 1 pixels.
- The Inception stem uses stride 1 and no pooling (the paper gives no stride), so the stages
  run at 28, 14, 7, 4 pixels; inside each branch the activation follows the first two convs, and
  the activation follows the BN of the concatenation.
- The ablation rows "+SELU" and "+Inception" keep the baseline's zero-padding shortcut; only
  "all improvements" switches to 1x1 projections, since the paper ablates that change only
  inside the combined model.
- Input: Fashion-MNIST is grey; build with ``in_chans=1`` (the paper's setting) or feed grey
  images replicated to 3 channels with the default ``in_chans=3``.
"""

from __future__ import annotations

from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .resnet import BasicBlock, ResNet

_FM = dict(input_size=(1, 28, 28), test_input_size=(1, 28, 28))


def _create_selu_resnet(
    name: str,
    pretrained: bool,
    num_classes: int,
    in_chans: int,
    act_layer: type[nn.Module] | str = nn.ReLU,
    stem: str = "imagenet",
    shortcut: str = "zeropad",
    **kwargs,
) -> ResNet:
    """Build the seed-003 ResNet-34 with a pluggable activation, stem and shortcut."""
    refuse_pretrained(name, pretrained)
    return ResNet(
        BasicBlock, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), num_classes=num_classes, in_chans=in_chans,
        stem=stem, shortcut=shortcut, act_layer=act_layer, init="auto", **kwargs,
    )


@register_model(**_FM)
def selu_resnet34_baseline(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """Tables 2-5 row "ResNet34": ReLU, conv + max-pool stem, zero-padding shortcuts."""
    args = dict(act_layer=nn.ReLU, stem="imagenet", shortcut="zeropad")
    return _create_selu_resnet("selu_resnet34_baseline", pretrained, num_classes, in_chans, **{**args, **kwargs})


@register_model(**_FM)
def selu_resnet34_selu(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """Table 3 row "ResNet34+SELU": SELU everywhere (LeCun-normal init), otherwise the baseline."""
    args = dict(act_layer=nn.SELU, stem="imagenet", shortcut="zeropad")
    return _create_selu_resnet("selu_resnet34_selu", pretrained, num_classes, in_chans, **{**args, **kwargs})


@register_model(**_FM)
def selu_resnet34_inception(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """Table 4 row "ResNet34+Inception": the Inception stem, otherwise the baseline (ReLU)."""
    args = dict(act_layer=nn.ReLU, stem="inception", shortcut="zeropad")
    return _create_selu_resnet("selu_resnet34_inception", pretrained, num_classes, in_chans, **{**args, **kwargs})


@register_model(**_FM)
def selu_resnet34_all(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """Table 5 row "整体改进后的模型" (all improvements): SELU, Inception stem, 1x1 projections."""
    args = dict(act_layer=nn.SELU, stem="inception", shortcut="conv1x1")
    return _create_selu_resnet("selu_resnet34_all", pretrained, num_classes, in_chans, **{**args, **kwargs})
