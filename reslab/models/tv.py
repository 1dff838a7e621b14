"""Wrappers around models torchvision and timm already provide.

Provenance:
    - DRSTN (seed 000) Table 1, Grad-CAM comparison: ``squeezenet1_1``, ``alexnet``, ``vgg16``,
      ``resnet18`` (torchvision, ImageNet weights in the paper).
    - DRSTN Table 4, CIFAR-10 baselines: ``resnet18`` (torchvision), ``skresnet18`` (SKNet-18,
      timm) and ``convnext_tiny`` (torchvision).
    - Seed 004 (CBAM / ResNet50 on CIFAR-10 at 224x224): ``resnet50`` with a 10-class head, either
      from scratch or fine-tuned with a frozen pretrained backbone (``freeze_backbone=True``).
    - Survey (seed 002) Table 8: ``efficientnet_b7`` (Tan & Le 2019, 64M parameters).

Every wrapper takes ``num_classes``, ``in_chans``, ``pretrained`` and ``freeze_backbone``:

- ``pretrained=True`` loads the ImageNet weights named in ``_SPECS`` through torchvision's weights
  API (see ``_pretrained.load_weights_state_dict`` for where the file must be) and then
  replaces the 1000-class head when ``num_classes != 1000``.
- ``in_chans != 3`` replaces the first convolution (pretrained filters summed / tiled).
- ``freeze_backbone=True`` sets ``requires_grad=False`` on everything but the classifier head and
  keeps the frozen BatchNorm layers in eval mode (running statistics are not updated); pass
  ``freeze_bn=False`` to let them update as plain ``requires_grad=False`` code would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision.models as tvm
from torch import nn

from .._env import DOWNLOAD_ENV, download_allowed
from ._pretrained import (
    PretrainedWeightsError,
    adapt_first_conv,
    freeze,
    load_weights_state_dict,
    replace_linear,
)
from ._registry import register_model
from .layers import in_layout_of


@dataclass(frozen=True)
class _TvSpec:
    builder: Callable[..., nn.Module]
    weights: object
    head: tuple[str, ...]  # attribute path of the classifier layer, e.g. ("classifier", "6")


_SPECS: dict[str, _TvSpec] = {
    "resnet18": _TvSpec(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, ("fc",)),
    "resnet50": _TvSpec(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, ("fc",)),
    "convnext_tiny": _TvSpec(tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1, ("classifier", "2")),
    "squeezenet1_1": _TvSpec(tvm.squeezenet1_1, tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1, ("classifier", "1")),
    "alexnet": _TvSpec(tvm.alexnet, tvm.AlexNet_Weights.IMAGENET1K_V1, ("classifier", "6")),
    "vgg16": _TvSpec(tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1, ("classifier", "6")),
    "efficientnet_b7": _TvSpec(tvm.efficientnet_b7, tvm.EfficientNet_B7_Weights.IMAGENET1K_V1, ("classifier", "1")),
}


def _get(model: nn.Module, path: tuple[str, ...]) -> nn.Module:
    for p in path:
        model = model[int(p)] if p.isdigit() else getattr(model, p)
    return model


def _set(model: nn.Module, path: tuple[str, ...], new: nn.Module) -> None:
    parent = _get(model, path[:-1])
    if path[-1].isdigit():
        parent[int(path[-1])] = new
    else:
        setattr(parent, path[-1], new)


def _replace_head(model: nn.Module, head: tuple[str, ...], num_classes: int) -> None:
    old = _get(model, head)
    if isinstance(old, nn.Conv2d):  # SqueezeNet's classifier is a 1x1 conv
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
        nn.init.normal_(new.weight, mean=0.0, std=0.01)  # torchvision's init of that layer
        nn.init.zeros_(new.bias)
        _set(model, head, new)
        model.num_classes = num_classes
    else:
        replace_linear(_get(model, head[:-1]), int(head[-1]) if head[-1].isdigit() else head[-1], num_classes)


def _first_conv_path(model: nn.Module) -> tuple[str, ...]:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return tuple(name.split("."))
    raise ValueError(f"{type(model).__name__} has no Conv2d to adapt to in_chans")


def _build_tv(
    name: str,
    num_classes: int,
    in_chans: int,
    pretrained: bool,
    freeze_backbone: bool = False,
    freeze_bn: bool = True,
    **kwargs,
) -> nn.Module:
    spec = _SPECS[name]
    if pretrained:
        model = spec.builder(weights=None, num_classes=1000, **kwargs)
        model.load_state_dict(load_weights_state_dict(spec.weights))
        if num_classes != 1000:
            _replace_head(model, spec.head, num_classes)
    else:
        model = spec.builder(weights=None, num_classes=num_classes, **kwargs)
    if in_chans != 3:
        path = _first_conv_path(model)
        _set(model, path, adapt_first_conv(_get(model, path), in_chans))
    if freeze_backbone:
        freeze([model], freeze_bn)
        for p in _get(model, spec.head).parameters():
            p.requires_grad_(True)
    return model


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def resnet18(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision ResNet-18 (He et al. 2016): 7x7/2 stem + max-pool, (2, 2, 2, 2) basic blocks."""
    return _build_tv("resnet18", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def resnet50(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision ResNet-50 with a ``num_classes`` head (seed 004: 10 classes, 23,528,522 params).

    Seed 004 trains it from scratch ("ResNet50 Scratch") and fine-tunes a pretrained copy with
    every parameter but the final ``fc`` frozen ("ResNet50": 2048 * 10 + 10 = 20,490 trainable):
    ``create_model('resnet50', pretrained=True, freeze_backbone=True)``.
    """
    return _build_tv("resnet50", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def convnext_tiny(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision ConvNeXt-T (Liu et al. 2022); DRSTN Table 4 baseline. Needs inputs >= 32x32."""
    return _build_tv("convnext_tiny", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def squeezenet1_1(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision SqueezeNet 1.1 (DRSTN Table 1). Smallest input that runs: 17x17."""
    return _build_tv("squeezenet1_1", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 224, 224), test_input_size=(3, 63, 63))
def alexnet(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision AlexNet (DRSTN Table 1). Smallest input that runs: 63x63 (three max-pools)."""
    return _build_tv("alexnet", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def vgg16(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision VGG-16 (DRSTN Table 1). Smallest input that runs: 32x32 (five 2x2 max-pools)."""
    return _build_tv("vgg16", num_classes, in_chans, pretrained, **kwargs)


@register_model(input_size=(3, 600, 600), test_input_size=(3, 32, 32))
def efficientnet_b7(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision EfficientNet-B7 (Tan & Le 2019; survey Table 8, 64M parameters).

    Tan & Le's CIFAR results are transfer learning from ImageNet checkpoints, fine-tuned at the
    network's own resolution (600x600 for B7), hence ``input_size``.
    """
    return _build_tv("efficientnet_b7", num_classes, in_chans, pretrained, **kwargs)


_SK_REPO = "timm/skresnet18.ra_in1k"


def _hf_cached(repo_id: str) -> bool:
    """Whether timm's weights file for ``repo_id`` is already in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("model.safetensors", "pytorch_model.bin"))


def _sk_missing(reason: str) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"timm weights {_SK_REPO} are not in the Hugging Face cache and could not be downloaded ({reason}); "
        f"run timm.create_model('skresnet18', pretrained=True) once online (it fills $HF_HOME/hub, default "
        "~/.cache/huggingface/hub, which you can copy to this machine), or use pretrained=False."
    )


@register_model(input_size=(3, 224, 224), test_input_size=(3, 32, 32))
def skresnet18(num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """SKNet-18 (Li et al. 2019, selective kernels) from timm; DRSTN Table 4 baseline.

    ``pretrained=True`` loads timm's ``skresnet18.ra_in1k`` from the Hugging Face cache
    (``$HF_HOME/hub``), downloading it when missing unless ``RESLAB_DOWNLOAD=0`` (offline, the
    hub client's own retries take about a minute before ``PretrainedWeightsError``).
    """
    import timm

    freeze_backbone = kwargs.pop("freeze_backbone", False)
    freeze_bn = kwargs.pop("freeze_bn", True)
    if pretrained and not _hf_cached(_SK_REPO) and not download_allowed():
        raise _sk_missing(f"downloads are off: {DOWNLOAD_ENV}=0")
    try:
        model = timm.create_model("skresnet18", pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (OSError, RuntimeError) as err:
        if not pretrained:
            raise
        raise _sk_missing(f"{type(err).__name__}: {err}") from err
    if freeze_backbone:
        freeze([model], freeze_bn)
        for p in model.get_classifier().parameters():
            p.requires_grad_(True)
    for module in model.modules():  # timm sums the kernel paths of a 5-D stack: the sum comes back NCHW
        if type(module).__name__ == "SelectiveKernel":
            module.register_forward_hook(_layout_of_input)
    return model


def _layout_of_input(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    """A forward hook: ``out`` in the memory format of the module's input (channels-last kept)."""
    return in_layout_of(out, args[0] if args else None)


def tv_weights(name: str):
    """Return the torchvision ``WeightsEnum`` member that ``pretrained=True`` loads for ``name``.

    Raises:
        ValueError: if ``name`` is not a torchvision wrapper.
    """
    if name not in _SPECS:
        raise ValueError(f"{name!r} is not a torchvision wrapper; expected one of {sorted(_SPECS)}")
    return _SPECS[name].weights


__all__ = ["PretrainedWeightsError", "tv_weights"]
