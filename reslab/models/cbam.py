"""CBAM models of seed 004 ("图像分类": CBAM / ResNet50 on CIFAR-10 resized to 224x224).

The seed describes three models and trains two of them two ways (its 5-row results table):

- ``cbam_sample_resnet`` ("Sample ResNet", printed 230000 parameters): Conv7x7, BatchNorm, ReLU,
  MaxPool, ResAttention, AttentionModule, ResAttention, AvgPool, FC (Softmax is in the loss).
- ``resnet50`` (torchvision, in ``tv.py``): "ResNet50 Scratch" 23,528,522 parameters; "ResNet50"
  fine-tuned from ImageNet weights with everything but ``fc`` frozen: 20,490 trainable.
- ``cbam_resnet50_attention`` ("ResNet Attention"): ResNet-50 (its printed structure starts with
  torchvision's conv1 / bn1 / relu / maxpool / layer1...), then after layer4 "a conv layer that
  maps to a lower width and a ResAttention layer", then average pool and a 10-class FC.
  Printed: 28,616,876 parameters from scratch, 5,108,884 trainable with the backbone frozen.

CBAM itself (``layers.CBAM``) is Woo et al., ECCV 2018, as quoted in the seed (equations 2-3):
channel gate = shared MLP (reduction 16, ReLU after ``W0``) over average- and max-pooled
vectors, summed, sigmoid; spatial gate = 7x7 conv over the channel-wise mean and max maps,
sigmoid; channel gate first, then spatial. Reference code Jongchan/attention-module
(``MODELS/cbam.py``, ``MODELS/model_resnet.py``), read, not copied; like it we put a BatchNorm
after the 7x7 conv (2 parameters, momentum 0.01) and apply CBAM to the residual branch before the
addition, and like its init loop we start the spatial gate's BN scale at 0 and the channel-gate
MLP biases at 0 (``layers.SpatialGate`` / ``layers.ChannelGate`` say where each comes from).
Both models call ``kaiming_init_`` on their new parts, which resets BN scales to 1 and then gives
the CBAM gates their reference init back; ``ResNetAttention`` loads ImageNet weights into the
torchvision backbone only, so its CBAM bottleneck is initialised the same way with or without
them. The rest of the models' init is ``kaiming_init_`` (He fan-out convs, BN 1/0) with
PyTorch's default for the final ``fc``; the reference's loop also zeroes ``fc.bias`` and draws
``fc.weight`` He-normal (fan-in), which we do not.

Choices where the seed is silent (its figures of ResAttention and AttentionModule are not in the
text):

- ResAttention = a residual block with CBAM on its branch (the CBAM-ResNet block of Woo et al.):
  in Sample ResNet a basic block (two 3x3 convs, 64 channels); in ResNet Attention a bottleneck
  block 2048 -> 512 -> 512 -> 2048 whose opening 1x1 conv is "the conv to a lower width" and whose
  closing 1x1 conv 512 -> 2048 + BatchNorm2d(2048) matches the ``(512, 2048, kernel_size=(1, 1))``
  conv and ``BatchNorm2d(2048)`` visible just before the head in the seed's log (that log belongs
  to the ResNet50 Scratch run, whose layer4 ends the same way, so it does not settle the choice).
  The identity shortcut needs no projection.
- AttentionModule = the attention module of the Residual Attention Network (Wang et al. 2017,
  ``resattention.AttentionModule``) at 64 channels, ``{p=1, t=2, r=1}``, with 2 skip connections
  (its stage-1 form, for the 56x56 map a 224x224 input reaches after the stem).
- Frozen-backbone mode (``freeze_backbone=True``): the ResNet-50 part gets
  ``requires_grad=False``; its BatchNorm layers are kept in eval mode (``freeze_bn=True``, the
  default), so fine-tuning does not drift the pretrained statistics.

With these readings the counts are: Sample ResNet 222,490 (printed 230000, a round figure);
ResNet Attention 28,517,678 total / 5,009,646 trainable, i.e. 99,198 / 99,238 below the printed
integers. The two printed integers are not mutually consistent with one architecture either:
printed total minus printed trainable is 23,507,992, 40 less than ResNet-50's frozen part
(23,508,032), so the seed's two ResNet Attention runs differ by 40 parameters somewhere.
"""

from __future__ import annotations

from functools import partial

import torch
import torchvision.models as tvm
from torch import nn

from ._pretrained import freeze, load_weights_state_dict, refuse_pretrained
from ._registry import register_model
from .layers import CBAM, kaiming_init_
from .resattention import AttentionModule
from .resnet import BasicBlock, Bottleneck, make_stem


class SampleResNet(nn.Module):
    """Seed 004's small CBAM network.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels.
        width: Channels of every layer after the stem conv.
        reduction: CBAM channel-gate reduction ratio.
        mask_skips: Skip connections in the attention module's mask branch.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 64, reduction: int = 16, mask_skips: int = 2):
        super().__init__()
        cbam = partial(CBAM, reduction=reduction)
        self.stem, _ = make_stem("imagenet", in_chans, width, nn.ReLU)  # 7x7/2 conv, BN, ReLU, 3x3/2 max-pool
        self.res_att1 = BasicBlock(width, width, attn_layer=cbam)
        self.attention = AttentionModule(width, skips=mask_skips, p=1, t=2, r=1)
        self.res_att2 = BasicBlock(width, width, attn_layer=cbam)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        kaiming_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_att2(self.attention(self.res_att1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNetAttention(nn.Module):
    """ResNet-50 backbone, a CBAM bottleneck after layer4, average pool, linear head.

    Module names follow torchvision's ResNet (``conv1`` ... ``layer4``), as in the seed's printout,
    so ImageNet weights load directly.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels (3 when ``pretrained``).
        pretrained: Load torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` into the backbone.
        freeze_backbone: ``requires_grad=False`` on conv1 ... layer4.
        freeze_bn: Keep the frozen BatchNorm layers in eval mode.
        att_planes: Width the ResAttention bottleneck reduces to (512).
        reduction: CBAM channel-gate reduction ratio (16).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        pretrained: bool = False,
        freeze_backbone: bool = False,
        freeze_bn: bool = True,
        att_planes: int = 512,
        reduction: int = 16,
    ):
        super().__init__()
        r = tvm.resnet50(weights=None)
        if pretrained:
            if in_chans != 3:
                raise ValueError(f"pretrained ResNet Attention expects in_chans=3, got {in_chans}; use pretrained=False")
            r.load_state_dict(load_weights_state_dict(tvm.ResNet50_Weights.IMAGENET1K_V1))
        elif in_chans != 3:
            r.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(r.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        chs = 512 * Bottleneck.expansion
        self.res_attention = Bottleneck(chs, att_planes, attn_layer=partial(CBAM, reduction=reduction))
        kaiming_init_(self.res_attention)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(att_planes * Bottleneck.expansion, num_classes)
        if freeze_backbone:
            freeze(self.backbone_modules(), freeze_bn)

    def backbone_modules(self) -> list[nn.Module]:
        """The ResNet-50 part (frozen in the seed's fine-tuning run)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.res_attention(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def cbam_sample_resnet(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Seed 004 "Sample ResNet": stem, CBAM basic block, attention module, CBAM basic block, pool, FC."""
    refuse_pretrained("cbam_sample_resnet", pretrained)
    args = dict(num_classes=num_classes, in_chans=in_chans)
    return SampleResNet(**{**args, **kwargs})


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def cbam_resnet50_attention(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Seed 004 "ResNet Attention": ResNet-50 + CBAM bottleneck (2048 -> 512 -> 2048) + FC.

    The seed's two runs: from scratch (all trainable) and
    ``create_model('cbam_resnet50_attention', pretrained=True, freeze_backbone=True)``.
    """
    args = dict(num_classes=num_classes, in_chans=in_chans, pretrained=pretrained)
    return ResNetAttention(**{**args, **kwargs})
