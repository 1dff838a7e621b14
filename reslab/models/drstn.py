"""DRSTN: Deep Residual Soft Thresholding Network (Cao & Zhu, Computer Science 51(6A), 2024; seed 000).

A ResNet-18 whose every basic block ends its residual branch with a learned, channel-wise soft
thresholding layer (section 3.2-3.3, Fig. 2): after the branch's last BatchNorm and before the
addition, ``y = sign(x) * max(|x| - tau, 0)`` with ``tau = GAP(|x|) * sigmoid(FC(ReLU(BN(FC(GAP(|x|))))))``
(the "DRSN-CW" unit of Zhao et al., IEEE TII 2020, reference code
zhao62/Deep-Residual-Shrinkage-Networks). The block is the trunk's ``BasicBlock`` with
``attn_layer=SoftThreshold``; nothing else changes.

Variants, exactly as Table 2 (Conv_1 kernel; STRB = soft-thresholding residual blocks per stage
Conv_2..Conv_5):

=========  ======  ==============  =============================================
variant    Conv_1  STRB            Table 4 / Fig. 3 label
=========  ======  ==============  =============================================
drstn_v1   7x7     (2, 2, 2, 2)    DRSTN
drstn_v2   3x3     (2, 2, 2, 2)    DRSTN_KS(3*3)
drstn_v3   3x3     (1, 1, 1, 1)    DRSTN_KS(3*3)_RB(1:1:1:1)
drstn_v4   3x3     (2, 3, 5, 2)    DRSTN_KS(3*3)_RB(2:3:5:2)
drstn_v5   3x3     (2, 2, 2), no Conv_5   DRSTN_KS(3*3)_RB(2:2:2)
=========  ======  ==============  =============================================

``drstn_v5_no_st`` is ours, not the paper's: V5's network with plain basic blocks (no soft
thresholding), the control of Table 4 that tells what soft thresholding adds to V5 (as ResNet-18
is V1's control).

Choices where the paper is silent (override any of them through ``create_model`` kwargs):

- Stem stride and max-pool: the paper builds DRSTN by editing torchvision's ResNet-18 ("model
  transfer") and for V2 only says the Conv_1 kernel goes from 7x7 to 3x3. We therefore keep the
  ResNet-18 stem otherwise unchanged in every variant: stride 2, padding ``k // 2``, BN, ReLU,
  3x3 stride-2 max-pool (``stem_stride=1, stem_pool=False`` gives the CIFAR-style stem).
- Stage widths 64/128/256/512 as ResNet-18; V5 simply has no fourth stage, so its head sees 256
  channels.
- FC width ``M`` of the threshold sub-network (Fig. 2): ``M = C`` in every unit by default, as
  the Keras version of the DRSN code (zhao62/Deep-Residual-Shrinkage-Networks ``DRSN_Keras.py``:
  ``Dense(out_channels, ...)``). The TFLearn version, which the DRSN authors recommend
  (``DRSN_TFLearn.py``, ``DRSN.py`` in older commits), uses ``M = C // 4``
  (``tflearn.fully_connected(abs_mean, out_channels//4, ...)``): pass ``threshold_reduction=4``
  (``M = C // r`` in each unit, so ``M`` follows the stage width). ``threshold_hidden=M`` instead
  fixes one width for every unit. BN in the sub-network is ``BatchNorm1d``.
- Shortcuts: ResNet-18's 1x1 conv + BN projection where shapes change.
- ``pretrained=True`` is refused: the paper's "model transfer" edits the ResNet-18 structure and
  its "pre-trained parameter transfer" starts MNIST / Fashion-MNIST runs from DRSTN_V5's own
  CIFAR-10 checkpoint, which is a training matter (load a state dict), not a model option.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .layers import SoftThreshold
from .resnet import BasicBlock, ResNet


def _create_drstn(
    name: str,
    pretrained: bool,
    args: dict,
    threshold_hidden: int | None = None,
    threshold_reduction: int = 1,
    **kwargs,
) -> nn.Module:
    """Build a DRSTN variant.

    Args:
        name: Registered name (for error messages).
        pretrained: Must be False (see the module docstring).
        args: The variant's ``ResNet`` arguments; ``kwargs`` override them.
        threshold_hidden: One fixed width ``M`` for every threshold sub-network (``None``: use
            ``threshold_reduction``).
        threshold_reduction: ``M = C // r`` per unit: 1 (default) as DRSN's Keras code, 4 as its
            TFLearn code (see ``layers.SoftThreshold``).
    """
    refuse_pretrained(name, pretrained)
    attn = partial(SoftThreshold, hidden=threshold_hidden, reduction=threshold_reduction)
    return ResNet(**{"block": BasicBlock, "attn_layer": attn, "stem": "imagenet", **args, **kwargs})


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v1(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DRSTN_V1: ResNet-18 (7x7/2 stem + max-pool, 2-2-2-2) with soft thresholding in every block."""
    args = dict(layers=(2, 2, 2, 2), stem_kernel=7, num_classes=num_classes, in_chans=in_chans)
    return _create_drstn("drstn_v1", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v2(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DRSTN_V2 = DRSTN_KS(3*3): V1 with a 3x3 Conv_1 (stride 2 and max-pool kept, see module doc)."""
    args = dict(layers=(2, 2, 2, 2), stem_kernel=3, num_classes=num_classes, in_chans=in_chans)
    return _create_drstn("drstn_v2", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v3(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DRSTN_V3 = DRSTN_KS(3*3)_RB(1:1:1:1): V2 with one block per stage."""
    args = dict(layers=(1, 1, 1, 1), stem_kernel=3, num_classes=num_classes, in_chans=in_chans)
    return _create_drstn("drstn_v3", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v4(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DRSTN_V4 = DRSTN_KS(3*3)_RB(2:3:5:2): V2 with 2, 3, 5, 2 blocks per stage."""
    args = dict(layers=(2, 3, 5, 2), stem_kernel=3, num_classes=num_classes, in_chans=in_chans)
    return _create_drstn("drstn_v4", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v5(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """DRSTN_V5 = DRSTN_KS(3*3)_RB(2:2:2): V2 with stage Conv_5 removed (64/128/256 channels)."""
    args = dict(layers=(2, 2, 2), stem_kernel=3, num_classes=num_classes, in_chans=in_chans)
    return _create_drstn("drstn_v5", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 32, 32))
def drstn_v5_no_st(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """Control (ours, not in the paper): DRSTN_V5's network without soft thresholding, i.e. ResNet
    basic blocks 2-2-2 (64/128/256 channels) behind the 3x3/2 stem and max-pool. V5 minus this
    network is what soft thresholding adds to V5."""
    refuse_pretrained("drstn_v5_no_st", pretrained)
    args = dict(block=BasicBlock, stem="imagenet", layers=(2, 2, 2), stem_kernel=3, num_classes=num_classes,
                in_chans=in_chans)
    return ResNet(**{**args, **kwargs})
