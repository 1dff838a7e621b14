"""Shared layers: conv helpers, activations, soft thresholding, CBAM gates, stochastic depth.

Provenance:
    - ``SoftThreshold``: the channel-wise threshold sub-network of Deep Residual Shrinkage Networks
      (Zhao et al., IEEE TII 2020; reference code zhao62/Deep-Residual-Shrinkage-Networks), as
      used by DRSTN (seed 000, section 3.2-3.3, equations 15-16 and Fig. 2).
    - ``ChannelGate`` / ``SpatialGate`` / ``CBAM``: Woo et al., "CBAM: Convolutional Block
      Attention Module", ECCV 2018, equations 2-3 (as quoted in seed 004); reference code
      Jongchan/attention-module ``MODELS/cbam.py`` and the init loop of ``MODELS/model_resnet.py``
      (read, not copied).
    - ``StochasticDepth``: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016 (the
      survey's ``Stoc-depth-110``); reference code yueatsprograms/Stochastic_Depth.
"""

from __future__ import annotations

import contextlib

import math

import torch
import torch.nn.functional as F
from torch import nn

_ACTS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "selu": nn.SELU}


def get_act(act: str | type[nn.Module]) -> type[nn.Module]:
    """Return an activation layer class from a name or a class.

    Args:
        act: ``'relu'``, ``'selu'`` or an ``nn.Module`` subclass (returned unchanged).

    Raises:
        ValueError: if ``act`` is an unknown name.
    """
    if isinstance(act, type) and issubclass(act, nn.Module):
        return act
    if isinstance(act, str) and act.lower() in _ACTS:
        return _ACTS[act.lower()]
    raise ValueError(f"unknown activation {act!r}; expected one of {sorted(_ACTS)} or an nn.Module class")


def make_act(act_layer: type[nn.Module], inplace: bool = True) -> nn.Module:
    """Instantiate an activation, in place where asked and the class supports it (ReLU, SELU)."""
    if act_layer in (nn.ReLU, nn.SELU, nn.ReLU6, nn.ELU):
        return act_layer(inplace=inplace)
    return act_layer()


def conv3x3(in_chs: int, out_chs: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """3x3 convolution with padding 1."""
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, groups=groups, bias=bias)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """1x1 convolution."""
    return nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=bias)


def soft_threshold(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Soft thresholding ``sign(x) * max(|x| - tau, 0)`` (seed 000, equation 15).

    Its derivative with respect to ``x`` (``tau`` held fixed) is 1 where ``|x| > tau`` and 0
    inside ``[-tau, tau]`` (equation 16).

    Args:
        x: Input of any shape.
        tau: Non-negative thresholds, broadcastable to ``x``.
    """
    return torch.sign(x) * F.relu(x.abs() - tau)


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device`` (CPU or CUDA); nothing to turn off elsewhere (the ``meta``
    device of parameter counting, where ``torch.autocast`` refuses the device type)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class SoftThreshold(nn.Module):
    """Channel-wise learned soft thresholding (DRSN-CW), placed at the end of a residual branch.

    ``A = GAP(|x|)``; ``alpha = sigmoid(FC(ReLU(BN(FC(A)))))``; ``tau = A * alpha`` per channel;
    ``y = sign(x) * max(|x| - tau, 0)``. Because ``0 < alpha < 1``, ``0 <= tau < A``: the
    threshold is positive and never zeroes a whole channel.

    The width ``M`` of the first FC layer is left unspecified by the DRSTN paper (Fig. 2), and the
    two versions of the DRSN reference code (zhao62/Deep-Residual-Shrinkage-Networks) differ:

    - ``DRSN_Keras.py``: ``M = C`` (``Dense(out_channels, ...)`` on the absolute means). This is
      our default (``reduction=1``).
    - ``DRSN_TFLearn.py`` (named ``DRSN.py`` in older commits), the version the authors
      recommend ("The TFLearn code is recommended for usage.", header of ``DRSN_Keras.py``):
      ``M = C // 4`` (``tflearn.fully_connected(abs_mean, out_channels//4, ...)``), i.e.
      ``reduction=4``.

    Args:
        channels: Number of channels ``C`` of the input.
        hidden: A fixed width ``M`` of the first FC layer (the same for every unit built with it);
            ``None`` (default) derives it from ``reduction``. Give one of ``hidden`` and
            ``reduction``, not both.
        reduction: ``M = max(C // reduction, 1)``, a per-unit rule (like CBAM's ``reduction``):
            1 (default) is the Keras reference, 4 the TFLearn reference.

    Raises:
        ValueError: if ``hidden`` or ``reduction`` is below 1, or both are given.
    """

    def __init__(self, channels: int, hidden: int | None = None, reduction: int = 1):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"threshold reduction must be >= 1 (M = C // reduction), got {reduction}")
        if hidden is not None:
            if hidden < 1:
                raise ValueError(f"threshold hidden width must be >= 1, got {hidden}")
            if reduction != 1:
                raise ValueError(
                    f"give either hidden={hidden} (one width for every unit) or reduction={reduction} "
                    "(M = C // reduction per unit), not both"
                )
        else:
            hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """Return the per-sample, per-channel thresholds ``tau``, shape ``(B, C, 1, 1)``, in float32
        even under autocast: they are only B x C values, and in bfloat16 the sigmoid is exactly 1.0
        above about 6.2 (tau = A, the channel's whole mean) and tau keeps 8 mantissa bits."""
        with _full_precision(x.device):
            a = x.float().abs().mean(dim=(2, 3))  # (B, C)
            alpha = torch.sigmoid(self.fc2(F.relu(self.bn(self.fc1(a)))))  # (B, C)
            return (a * alpha)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # |x| - tau in float32, rounded once to x's dtype (a no-op for a float32 x).
        with _full_precision(x.device):
            return soft_threshold(x.float(), self.threshold(x)).to(x.dtype)


class ChannelGate(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with a shared MLP.

    Initialisation follows the reference code: the init loop of Jongchan/attention-module
    ``MODELS/model_resnet.py`` zeroes every bias (``elif key.split(".")[-1]=='bias':
    self.state_dict()[key][...] = 0``), which includes both MLP biases, and leaves the MLP weights
    at PyTorch's default (their keys contain neither ``conv`` nor ``bn``). We zero the biases in
    the module itself (``reference_init_``), so they are zero for a standalone gate too.

    Deliberate difference: the hidden width is ``max(C // r, 1)``; the reference's ``C // r`` is
    0 when ``C < r``.

    Args:
        channels: Number of input channels ``C``.
        reduction: MLP reduction ratio ``r`` (hidden width ``C // r``, at least 1).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.reference_init_()

    def reference_init_(self) -> None:
        """Zero both MLP biases, as the reference's init loop does; generic inits call this last."""
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the channel attention map ``M_c``, shape ``(B, C, 1, 1)``, values in (0, 1)."""
        avg = self.mlp(x.mean(dim=(2, 3)))  # (B, C)
        mx = self.mlp(x.amax(dim=(2, 3)))  # (B, C)
        return torch.sigmoid(avg + mx)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``sigmoid(BN(conv7x7([mean_c(F); max_c(F)])))``.

    Follows the reference code (Jongchan/attention-module):

    - BatchNorm after the conv with ``eps=1e-5, momentum=0.01`` (``MODELS/cbam.py``,
      ``BasicConv``: ``nn.BatchNorm2d(out_planes,eps=1e-5, momentum=0.01, affine=True)``), no
      conv bias, no ReLU.
    - The BN scale starts at 0 and its shift at 0 (``MODELS/model_resnet.py`` init loop:
      ``if "SpatialGate" in key: self.state_dict()[key][...] = 0`` for BN weights; biases are
      zeroed there too), so at init the gate is ``sigmoid(0) = 0.5`` everywhere and the block
      starts as channel attention scaled by 0.5.

    Deliberate differences: the reference zeroes the BN scale in its model's init loop (its
    standalone ``SpatialGate`` keeps scale 1); we do it in the module (``reference_init_``) and
    ``kaiming_init_`` / ``lecun_normal_`` re-apply it after resetting BN weights, so every model
    that uses the gate gets it. The pooled map is ``[mean; max]`` in the order of the paper's
    equation 3; the reference's ``ChannelPool`` concatenates ``[max; mean]`` (the same family of
    functions, conv input channels swapped). The conv weight is left to the enclosing model's
    init (``kaiming_init_``: He normal, fan-out, as the reference's loop does for ``conv`` keys).

    Args:
        kernel_size: Size of the convolution over the 2-channel pooled map (7 in the paper).
        norm: Put a BatchNorm after the convolution, as the CBAM reference code does.
    """

    def __init__(self, kernel_size: int = 7, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if norm else nn.Identity()
        self.reference_init_()

    def reference_init_(self) -> None:
        """BN scale and shift to 0 (conv bias to 0 without BN), as the reference's init loop."""
        if isinstance(self.bn, nn.BatchNorm2d):
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
        elif self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial attention map ``M_s``, shape ``(B, 1, H, W)``, values in (0, 1)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.bn(self.conv(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate.

    Initialised as the reference code (see ``ChannelGate`` and ``SpatialGate``): MLP biases 0,
    spatial BN scale 0 (momentum 0.01).

    Args:
        channels: Number of input channels.
        reduction: Channel-gate MLP reduction ratio (16 in the paper).
        spatial_kernel: Spatial-gate kernel size (7 in the paper).
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def in_layout_of(out: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor:
    """``out`` in the memory format of ``like``: channels-last when ``like`` is a channels-last 4-D
    tensor and ``out`` is not (some ops return NCHW whatever their input: ``F.interpolate`` from a
    1x1 map, a sum over a 5-D stack), else ``out`` as it is. Every add after an op that drops the
    layout would mix layouts, and a channels-last run would be slower than an NCHW one."""
    if (isinstance(like, torch.Tensor) and like.dim() == 4 and out.dim() == 4
            and like.is_contiguous(memory_format=torch.channels_last)
            and not out.is_contiguous(memory_format=torch.channels_last)):
        return out.contiguous(memory_format=torch.channels_last)
    return out


class StochasticDepth(nn.Module):
    """Randomly drop a residual branch (Huang et al. 2016).

    Multiply the branch output by a Bernoulli(``survival``) draw in training and by ``survival``
    at evaluation, as in the original paper (no rescaling during training). ``mode='batch'``
    draws once per mini-batch (the original); ``mode='row'`` draws once per sample
    (``drop_path`` style, still unscaled in training and scaled at evaluation).

    Args:
        survival: Probability ``p_l`` that the branch is kept, in (0, 1].
        mode: ``'batch'`` or ``'row'``.

    Raises:
        ValueError: if ``survival`` is outside (0, 1] or ``mode`` is unknown.
    """

    def __init__(self, survival: float, mode: str = "batch"):
        super().__init__()
        if not 0.0 < survival <= 1.0:
            raise ValueError(f"survival probability must be in (0, 1], got {survival}")
        if mode not in ("batch", "row"):
            raise ValueError(f"stochastic depth mode must be 'batch' or 'row', got {mode!r}")
        self.survival = survival
        self.mode = mode
        #: Where per-batch draws come from (:func:`share_depth_draws`); ``None``: the global RNG.
        self.generator: torch.Generator | None = None
        #: ``True`` once :meth:`DepthDraws.predraw` makes the per-batch draws before each step: the
        #: block then reads its draw from :attr:`keep` instead of drawing (see :class:`DepthDraws`).
        self.predrawn = False
        # The predrawn draw, 1.0 (kept) or 0.0 (dropped), on the model's device; not in the state dict.
        self.register_buffer("keep", torch.ones(()), persistent=False)

    def draw(self) -> bool:
        """One Bernoulli(``survival``) draw: whether a branch is kept for this mini-batch."""
        return bool(torch.rand((), generator=self.generator) < self.survival)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.survival >= 1.0:
            return x
        if not self.training:
            return x * self.survival
        if self.mode == "batch":
            if self.predrawn:
                return x * self.keep
            return x if self.draw() else torch.zeros_like(x)
        mask = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) < self.survival  # (B, 1, ...)
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        return f"survival={self.survival:.3f}, mode={self.mode!r}"


class DepthDraws:
    """The per-batch draws of every :class:`StochasticDepth` block of a model, from one generator.

    Whoever seeds it the same way draws the same dropped blocks: every process of a distributed
    run seeds it from the run's seed and epoch (:meth:`manual_seed`), so that all ranks run the
    same graph (each rank's own RNG would drop different blocks, and the gradient all-reduce
    would mix different graphs), and one process draws what several would.

    Two ways to apply a draw, with the same draws in the same order:

    - **eager** (the default, as the original): each block draws in its forward pass and a
      dropped branch is not computed at all; its weights get no gradient in that step, so the
      optimiser leaves them (and their momentum) alone, and its batch norm keeps its statistics.
    - **predrawn** (:meth:`predraw`, for ``torch.compile``): :meth:`draw_step` makes the step's
      draws on the host before the step and copies them, one 0/1 value per block, to the device;
      each branch is computed and multiplied by its value. The compiled graph then has no
      data-dependent branch, no host sync and no graph break per block. A dropped branch's
      weights get a zero gradient (weight decay and momentum still apply) and its batch norm
      updates its statistics: the result row says so (:meth:`describe`).
    """

    def __init__(self, blocks: list[StochasticDepth]):
        self.blocks = blocks
        self.generator = torch.Generator()
        for block in blocks:
            block.generator = self.generator
        self._device: torch.device | None = None

    @property
    def predrawn(self) -> bool:
        return self._device is not None

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def predraw(self, device: torch.device | None) -> None:
        """Make the draws before each step (:meth:`draw_step`) for a model on ``device``; ``None``
        goes back to drawing in the forward pass."""
        self._device = None if device is None else torch.device(device)
        for block in self.blocks:
            block.predrawn = device is not None

    def draw_step(self) -> None:
        """The draws of the next step, when predrawn (else nothing: the blocks draw themselves)."""
        if self._device is None:
            return
        flags = torch.tensor([float(block.draw()) for block in self.blocks]).to(self._device, non_blocking=True)
        torch._foreach_copy_([block.keep for block in self.blocks], list(flags.unbind()))

    def describe(self) -> str:
        """How the result row states the draws were applied."""
        if self.predrawn:
            return ("stochastic depth predrawn: dropped branches computed and multiplied by 0 (their weights get "
                    "weight decay and momentum, their batch norm updates its statistics)")
        return "stochastic depth: dropped branches skipped"


def share_depth_draws(model: nn.Module) -> DepthDraws | None:
    """Give every per-batch :class:`StochasticDepth` of ``model`` one generator, and return their
    :class:`DepthDraws` (``None`` when the model drops no block per batch)."""
    blocks = [m for m in model.modules() if isinstance(m, StochasticDepth) and m.mode == "batch" and m.survival < 1.0]
    return DepthDraws(blocks) if blocks else None


def linear_survival(num_blocks: int, final_survival: float) -> list[float]:
    """Linear-decay survival probabilities ``p_l = 1 - l / L * (1 - p_L)`` for ``l = 1..L``."""
    return [1.0 - (i + 1) / num_blocks * (1.0 - final_survival) for i in range(num_blocks)]


def _reference_inits_(module: nn.Module) -> None:
    """Re-apply module-specific inits (CBAM gates) that a generic init just overwrote."""
    for m in module.modules():
        if isinstance(m, (ChannelGate, SpatialGate)):
            m.reference_init_()


def lecun_normal_(module: nn.Module) -> None:
    """LeCun-normal init (``N(0, 1/fan_in)``) of every conv and linear weight; zero biases.

    SELU's self-normalising property assumes this init (Klambauer et al. 2017). CBAM gates then
    get their reference init back (``reference_init_`` of ``ChannelGate`` and ``SpatialGate``).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _reference_inits_(module)


def kaiming_init_(module: nn.Module) -> None:
    """He init (fan_out, ReLU) for convs, BN weight 1 / bias 0 (torchvision ResNet default).

    CBAM gates then get their reference init back (spatial BN scale 0, MLP biases 0; see
    ``SpatialGate`` and ``ChannelGate``), so it survives this reset of BN weights to 1.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    _reference_inits_(module)
