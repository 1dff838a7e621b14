"""The ResNet trunk shared by the DRSTN, SELU-ablation and stochastic-depth models.

Provenance:
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016: basic and bottleneck
      blocks, the ImageNet stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool), the
      CIFAR networks (3x3 stem, three stages of 16/32/64 channels, option-A zero-padding
      shortcuts) and the projection shortcut (1x1 conv + BN). Layout follows torchvision and
      timm ``models/resnet.py`` (read, not copied).
    - Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016: ResNet-110 whose residual
      branches are dropped per mini-batch with a survival probability decaying linearly from 1
      to ``p_L = 0.5``, and scaled by it at test time (survey seed 002, Table 8
      ``Stoc-depth-110``, 1.7M parameters). The original code (yueatsprograms/Stochastic_Depth,
      ``ResidualDrop.lua``) uses option-A shortcuts: 2x2 average pooling with stride 2, then
      zero channels appended (``shortcut='zeropad_avg'``; see ``resnet110_sd``).
    - The Inception-style stem of the SELU paper (seed 003, Fig. 3 and Table 1) lives here so
      every stem is one ``stem=`` argument of the same trunk.

Blocks take layer classes, not flags: ``act_layer`` (``nn.ReLU`` / ``nn.SELU``), ``attn_layer``
(a callable ``channels -> nn.Module`` applied after the last BN of the residual branch, before
the addition: ``SoftThreshold`` for DRSTN, ``CBAM`` for CBAM blocks) and
``shortcut='conv1x1'|'zeropad'|'zeropad_avg'``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._pretrained import refuse_pretrained
from ._registry import register_model
from .layers import (
    StochasticDepth,
    conv1x1,
    conv3x3,
    get_act,
    kaiming_init_,
    lecun_normal_,
    linear_survival,
    make_act,
)

AttnLayer = Callable[[int], nn.Module]
SHORTCUTS = ("conv1x1", "zeropad", "zeropad_avg")
STEMS = ("imagenet", "cifar", "inception")


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: downsample by ``stride`` and append zero channels (no parameters).

    Args:
        in_chs: Input channels.
        out_chs: Output channels (``out_chs - in_chs`` zero channels are appended after the input's).
        stride: Spatial downsampling factor.
        pool: How to downsample when ``stride > 1``: ``'subsample'`` keeps every ``stride``-th
            pixel (``x[:, :, ::s, ::s]``, He et al.'s option A; the SELU models) or ``'avg'``
            averages ``stride x stride`` windows with stride ``stride`` (the stochastic-depth
            code). Both give ``ceil(H / stride)`` pixels, like the branch's strided 3x3 conv
            (``'avg'`` uses ``ceil_mode=True``: a window cut by the border averages the pixels
            inside the map).

    Raises:
        ValueError: if ``out_chs < in_chs`` or ``pool`` is unknown.
    """

    POOLS = ("subsample", "avg")

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, pool: str = "subsample"):
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"a zero-padding shortcut cannot reduce channels ({in_chs} -> {out_chs}); use 'conv1x1'")
        if pool not in self.POOLS:
            raise ValueError(f"unknown zero-padding shortcut pool {pool!r}; expected one of {self.POOLS}")
        self.extra = out_chs - in_chs
        self.stride = stride
        self.pool = pool

    def extra_repr(self) -> str:
        return f"extra={self.extra}, stride={self.stride}, pool={self.pool!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The output keeps the input's memory format: a residual add that mixes channels-last and
        # NCHW copies a tensor at every block (a cat with new zeros, or the subsampling view, gave NCHW).
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if self.stride > 1 and self.pool == "avg":
            x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
        elif self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_shortcut(
    kind: str, in_chs: int, out_chs: int, stride: int, norm_layer: type[nn.Module] = nn.BatchNorm2d
) -> nn.Module:
    """Build the shortcut of a residual block.

    Args:
        kind: ``'conv1x1'`` (projection: 1x1 conv + norm when shapes change), ``'zeropad'``
            (identity, subsampled by ``stride`` and zero-padded when shapes change: He et al.'s
            option A, used by the SELU models) or ``'zeropad_avg'`` (the same, but downsampled
            by ``stride x stride`` average pooling instead of subsampling: the stochastic-depth
            code, used by ``resnet110_sd``). See ``ZeroPadShortcut``; neither zero-padding kind
            has parameters.
        in_chs: Input channels.
        out_chs: Output channels of the residual branch.
        stride: Spatial stride of the block.
        norm_layer: Norm layer of the projection.

    Returns:
        ``nn.Identity`` when shapes already match, else the chosen shortcut.

    Raises:
        ValueError: if ``kind`` is unknown.
    """
    if kind not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {kind!r}; expected one of {SHORTCUTS}")
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    if kind in ("zeropad", "zeropad_avg"):
        return ZeroPadShortcut(in_chs, out_chs, stride, pool="avg" if kind == "zeropad_avg" else "subsample")
    return nn.Sequential(conv1x1(in_chs, out_chs, stride), norm_layer(out_chs))


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``attn_layer`` after the second BN; activation after the addition.

    Args:
        in_chs: Input channels.
        planes: Channels of both convs (output = ``planes``).
        stride: Stride of the first conv.
        shortcut: ``'conv1x1'``, ``'zeropad'`` or ``'zeropad_avg'`` when shapes change (see
            ``make_shortcut``).
        act_layer: Activation class (``nn.ReLU``, ``nn.SELU``, ...).
        norm_layer: Norm class.
        attn_layer: Optional ``channels -> module`` applied to the branch before the addition.
        survival: Stochastic-depth survival probability of the branch (1 = never dropped).
        sd_mode: ``'batch'`` or ``'row'`` (see ``StochasticDepth``).
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "conv1x1",
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        attn_layer: AttnLayer | None = None,
        survival: float = 1.0,
        sd_mode: str = "batch",
    ):
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn1 = norm_layer(planes)
        self.act1 = make_act(act_layer)
        self.conv2 = conv3x3(planes, out_chs)
        self.bn2 = norm_layer(out_chs)
        self._add_merge(in_chs, out_chs, stride, shortcut, act_layer, norm_layer, attn_layer, survival, sd_mode)

    def _add_merge(self, in_chs: int, out_chs: int, stride: int, shortcut: str, act_layer: type[nn.Module],
                   norm_layer: type[nn.Module], attn_layer: AttnLayer | None, survival: float, sd_mode: str) -> None:
        """The parts every block shares: branch attention, shortcut, stochastic depth, final activation."""
        self.attn = attn_layer(out_chs) if attn_layer is not None else nn.Identity()
        self.shortcut = make_shortcut(shortcut, in_chs, out_chs, stride, norm_layer)
        self.drop = StochasticDepth(survival, sd_mode) if survival < 1.0 else nn.Identity()
        self.act2 = make_act(act_layer, inplace=False)  # may see the identity input

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``F(x)``, attention/thresholding included."""
        out = self.act1(self.bn1(self.conv1(x)))
        return self.attn(self.bn2(self.conv2(out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sc = self.shortcut(x)
        drop = self.drop
        if isinstance(drop, StochasticDepth) and drop.training and drop.mode == "batch":
            if drop.predrawn:  # the step's draw as a 0/1 multiplier: no branch in a compiled graph (DepthDraws)
                return self.act2(self.branch(x) * drop.keep + sc)
            # One draw per mini-batch; a dropped branch is not computed at all (as the original).
            return self.act2(self.branch(x) + sc) if drop.draw() else self.act2(sc)
        return self.act2(drop(self.branch(x)) + sc)


class Bottleneck(BasicBlock):
    """1x1 reduce, 3x3 (stride here, as torchvision), 1x1 expand x4; same hooks as ``BasicBlock``."""

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "conv1x1",
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        attn_layer: AttnLayer | None = None,
        survival: float = 1.0,
        sd_mode: str = "batch",
    ):
        nn.Module.__init__(self)
        out_chs = planes * self.expansion
        self.conv1 = conv1x1(in_chs, planes)
        self.bn1 = norm_layer(planes)
        self.act1 = make_act(act_layer)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.act_mid = make_act(act_layer)
        self.conv3 = conv1x1(planes, out_chs)
        self.bn3 = norm_layer(out_chs)
        self._add_merge(in_chs, out_chs, stride, shortcut, act_layer, norm_layer, attn_layer, survival, sd_mode)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act_mid(self.bn2(self.conv2(out)))
        return self.attn(self.bn3(self.conv3(out)))


class InceptionStem(nn.Module):
    """Inception-style stem of the SELU paper (seed 003, Fig. 3, Table 1: "3x3, 32+16+16").

    Three branches of three stacked 3x3 convolutions, widths ``(8, 16, 32)``, ``(4, 8, 16)``,
    ``(4, 8, 16)``; their outputs are concatenated (32 + 16 + 16 = 64 channels) and batch
    normalised. The paper is silent on strides and on activations inside the branches; we use
    stride 1 everywhere (28x28 Fashion-MNIST keeps its resolution into conv2) and the block
    activation after each of the first two convs of a branch and after the BN.

    Args:
        in_chans: Input channels.
        branches: Widths of each branch's three convs.
        act_layer: Activation class.
    """

    def __init__(
        self,
        in_chans: int = 3,
        branches: Sequence[Sequence[int]] = ((8, 16, 32), (4, 8, 16), (4, 8, 16)),
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        self.branches = nn.ModuleList()
        for widths in branches:
            layers: list[nn.Module] = []
            prev = in_chans
            for i, w in enumerate(widths):
                layers.append(conv3x3(prev, w))
                if i < len(widths) - 1:
                    layers.append(make_act(act_layer))
                prev = w
            self.branches.append(nn.Sequential(*layers))
        self.out_chs = sum(w[-1] for w in branches)
        self.bn = norm_layer(self.out_chs)
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([b(x) for b in self.branches], dim=1)  # (B, 64, H, W)
        return self.act(self.bn(out))


def make_stem(
    stem: str,
    in_chans: int,
    width: int,
    act_layer: type[nn.Module],
    norm_layer: type[nn.Module] = nn.BatchNorm2d,
    kernel_size: int | None = None,
    stride: int | None = None,
    pool: bool | None = None,
) -> tuple[nn.Module, int]:
    """Build a stem and return it with its output channels.

    Args:
        stem: ``'imagenet'`` (7x7/2 conv, BN, act, 3x3/2 max-pool), ``'cifar'`` (3x3/1 conv, BN,
            act) or ``'inception'`` (``InceptionStem``; ``width`` is ignored, output is 64).
        in_chans: Input channels.
        width: Output channels of the conv stems.
        act_layer: Activation class.
        norm_layer: Norm class.
        kernel_size: Override the conv kernel of ``'imagenet'``/``'cifar'`` stems.
        stride: Override the conv stride.
        pool: Override whether a 3x3/2 max-pool follows.

    Raises:
        ValueError: if ``stem`` is unknown.
    """
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; expected one of {STEMS}")
    if stem == "inception":
        s = InceptionStem(in_chans, act_layer=act_layer, norm_layer=norm_layer)
        return s, s.out_chs
    k = kernel_size or (7 if stem == "imagenet" else 3)
    st = stride or (2 if stem == "imagenet" else 1)
    use_pool = (stem == "imagenet") if pool is None else pool
    layers: list[nn.Module] = [
        nn.Conv2d(in_chans, width, k, stride=st, padding=k // 2, bias=False),
        norm_layer(width),
        make_act(act_layer),
    ]
    if use_pool:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
    return nn.Sequential(*layers), width


class ResNet(nn.Module):
    """Configurable ResNet: stem, N stages of blocks, global average pool, linear head.

    Args:
        block: ``BasicBlock`` or ``Bottleneck`` (or a subclass).
        layers: Blocks per stage, e.g. ``(2, 2, 2, 2)``; the stage count follows its length.
        widths: ``planes`` of each stage (defaults to 64, 128, 256, 512, ... doubling).
        num_classes: Classifier outputs.
        in_chans: Input channels.
        stem: ``'imagenet'``, ``'cifar'`` or ``'inception'`` (see ``make_stem``).
        stem_width: Output channels of a conv stem (default: ``widths[0]``).
        stem_kernel: Override the stem conv kernel size.
        stem_stride: Override the stem conv stride.
        stem_pool: Override whether the stem ends with a max-pool.
        shortcut: ``'conv1x1'``, ``'zeropad'`` or ``'zeropad_avg'`` (see ``make_shortcut``).
        act_layer: Activation class or name (``'relu'``, ``'selu'``).
        attn_layer: Optional ``channels -> module`` in every block (e.g. ``SoftThreshold``).
        final_survival: Stochastic depth: survival probability of the last block, decaying
            linearly from 1 (1.0 disables stochastic depth).
        sd_mode: ``'batch'`` (original) or ``'row'``.
        init: ``'auto'`` (LeCun normal when the activation is SELU, else He/fan-out), ``'kaiming'``
            or ``'lecun'``.

    Raises:
        ValueError: on an empty ``layers``, mismatched ``widths`` or unknown options.
    """

    def __init__(
        self,
        block: type[BasicBlock],
        layers: Sequence[int],
        widths: Sequence[int] | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        stem: str = "imagenet",
        stem_width: int | None = None,
        stem_kernel: int | None = None,
        stem_stride: int | None = None,
        stem_pool: bool | None = None,
        shortcut: str = "conv1x1",
        act_layer: str | type[nn.Module] = nn.ReLU,
        attn_layer: AttnLayer | None = None,
        final_survival: float = 1.0,
        sd_mode: str = "batch",
        init: str = "auto",
    ):
        super().__init__()
        if not layers or any(n < 1 for n in layers):
            raise ValueError(f"layers must be a non-empty sequence of positive block counts, got {layers}")
        widths = tuple(widths) if widths is not None else tuple(64 * 2**i for i in range(len(layers)))
        if len(widths) != len(layers):
            raise ValueError(f"widths {widths} and layers {tuple(layers)} must have the same length")
        if init not in ("auto", "kaiming", "lecun"):
            raise ValueError(f"init must be 'auto', 'kaiming' or 'lecun', got {init!r}")
        act_layer = get_act(act_layer)
        self.stem, chs = make_stem(
            stem, in_chans, stem_width or widths[0], act_layer, kernel_size=stem_kernel, stride=stem_stride, pool=stem_pool
        )
        survivals = linear_survival(sum(layers), final_survival) if final_survival < 1.0 else [1.0] * sum(layers)
        stages: list[nn.Module] = []
        idx = 0
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(
                    block(chs, planes, stride, shortcut=shortcut, act_layer=act_layer, attn_layer=attn_layer,
                          survival=survivals[idx], sd_mode=sd_mode)
                )
                chs = planes * block.expansion
                idx += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = chs
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chs, num_classes)
        use_lecun = init == "lecun" or (init == "auto" and act_layer is nn.SELU)
        if use_lecun:
            lecun_normal_(self)
        else:
            kaiming_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map ``(B, num_features, h, w)``."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))


def _create_resnet(name: str, pretrained: bool, args: dict, **kwargs) -> ResNet:
    """Build a ``ResNet`` from a variant's args, letting call-site kwargs override them."""
    refuse_pretrained(name, pretrained)
    return ResNet(**{**args, **kwargs})


@register_model(input_size=(3, 32, 32), test_input_size=(3, 8, 8))
def resnet18_cifar(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool); the training benchmarks' model.

    Same stages as torchvision ``resnet18`` (2, 2, 2, 2 basic blocks, 64-512 channels, 1x1
    projection shortcuts); only the stem differs, so 32x32 inputs reach layer4 at 4x4.
    """
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2), stem="cifar", num_classes=num_classes, in_chans=in_chans)
    return _create_resnet("resnet18_cifar", pretrained, args, **kwargs)


@register_model(input_size=(3, 32, 32), test_input_size=(3, 8, 8))
def resnet110_sd(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-110 with stochastic depth (Huang et al. 2016; survey Table 8, 1.7M parameters).

    CIFAR ResNet of He et al.: 3x3 stem with 16 channels, three stages of 18 basic blocks with
    16/32/64 channels. Survival probability decays linearly from 1 to ``final_survival=0.5`` at
    the last block; branches are dropped per mini-batch in training and scaled by their survival
    probability at evaluation.

    Built as the authors' Torch code (yueatsprograms/Stochastic_Depth, ``main.lua`` and
    ``ResidualDrop.lua``; read, not copied). Two points to know:

    - Shortcut (``'zeropad_avg'``): where a block downsamples, the identity is average-pooled
      over 2x2 windows with stride 2 (``nn.SpatialAveragePooling(stride, stride, stride,
      stride)``), then ``nn.Padding`` appends zero channels after the input's (option A with
      pooling, no parameters). The repository's first version pooled 1x1 windows with stride 2,
      i.e. plain subsampling (what ``'zeropad'`` does); the paper's first author changed it to
      2x2 windows in February 2017 ("Bug in Average Pooling layer", commit 8389752), after the
      paper, so the published numbers were probably obtained with subsampling. We follow the
      current code; ``create_model('resnet110_sd', shortcut='zeropad')`` builds the earlier one.
      On odd feature maps (from inputs such as 30x30; never from 32x32) our pooling uses
      ``ceil_mode=True`` so the shortcut keeps the branch's ``ceil(H / 2)`` size, where Torch's
      floor mode would make the addition fail.
    - Conv biases: every ``cudnn.SpatialConvolution`` of the original (stem and blocks) has a
      bias, initialised to 0; ours have none, since each conv is followed by BatchNorm, which
      subtracts the per-channel mean (in training and, through the running mean, at evaluation)
      and so cancels a bias exactly; BN's own shift plays its role. The networks represent the
      same functions; the parameter count differs: 1,727,962 here versus 1,732,010 with the
      original's 4,048 conv biases (109 convs: 16 + 36 x 16 + 36 x 32 + 36 x 64 output
      channels), for 10 classes. Both round to the printed 1.7M.
    """
    args = dict(
        block=BasicBlock, layers=(18, 18, 18), widths=(16, 32, 64), stem="cifar", shortcut="zeropad_avg",
        final_survival=0.5, sd_mode="batch", num_classes=num_classes, in_chans=in_chans,
    )
    return _create_resnet("resnet110_sd", pretrained, args, **kwargs)
