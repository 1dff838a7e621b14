"""Pretrained weights (torchvision weights API), head replacement, input-channel adaptation, freezing.

Weights live where torchvision puts them: ``torch.hub.get_dir()/checkpoints``
(``$TORCH_HOME/hub/checkpoints``). A file already there is loaded without touching the network;
a missing file is downloaded through torchvision's own path (``WeightsEnum.get_state_dict``);
if that fails (offline machine), ``PretrainedWeightsError`` says which file to put where.
Set ``RESLAB_DOWNLOAD=0`` to skip the download attempt altogether.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlparse

import torch
from torch import nn

from .._env import DOWNLOAD_ENV, download_allowed
from ..distributed import FROZEN_BN



class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable."""


def refuse_pretrained(name: str, pretrained: bool) -> None:
    """The pretrained policy of a model trained from scratch in its paper: ``pretrained=True`` is an error.

    Raises:
        ValueError: when ``pretrained`` is true.
    """
    if pretrained:
        raise ValueError(
            f"model {name!r} has no pretrained weights (it is trained from scratch in its paper); "
            "call it with pretrained=False"
        )


def checkpoint_dir() -> str:
    """Folder torchvision reads weights from: ``torch.hub.get_dir()/checkpoints``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def weights_filename(weights) -> str:
    """File name of a torchvision ``WeightsEnum`` member, e.g. ``resnet50-0676ba61.pth``."""
    return os.path.basename(urlparse(weights.url).path)


def _home_relative(path: str) -> str:
    """``path`` with the home folder written ``~``: the message is printed, and also kept in
    committed results (a table listing what it tried), which name no machine path."""
    home = os.path.expanduser("~")
    rel = os.path.relpath(path, home)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else os.path.join("~", rel)


def _missing_message(weights, reason: str) -> str:
    folder = _home_relative(checkpoint_dir())
    fname = weights_filename(weights)
    return (
        f"pretrained weights {weights} are not on disk and could not be downloaded ({reason}). "
        f"Download {weights.url} on a machine with internet access and copy the file "
        f"{fname} into {folder} (that is $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to "
        f"~/.cache/torch), or call the model with pretrained=False."
    )


def load_weights_state_dict(weights, progress: bool = True) -> dict[str, torch.Tensor]:
    """Return the state dict of a torchvision ``WeightsEnum`` member.

    Args:
        weights: e.g. ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1``.
        progress: Show a download progress bar.

    Raises:
        PretrainedWeightsError: if the file is not in ``checkpoint_dir()`` and the download fails
            (or ``RESLAB_DOWNLOAD=0``); the message names the file and the folder.
    """
    path = os.path.join(checkpoint_dir(), weights_filename(weights))
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    if not download_allowed():
        raise PretrainedWeightsError(_missing_message(weights, f"downloads are off: {DOWNLOAD_ENV}=0"))
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as err:  # URLError, HTTPError, socket errors, hash mismatch: one clear message
        raise PretrainedWeightsError(_missing_message(weights, f"{type(err).__name__}: {err}")) from err


def replace_linear(parent: nn.Module, attr: str | int, num_classes: int) -> None:
    """Replace ``parent[attr]`` (or ``parent.attr``), a ``nn.Linear``, by one with ``num_classes`` outputs."""
    old = parent[attr] if isinstance(attr, int) else getattr(parent, attr)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"expected an nn.Linear head at {attr!r}, found {type(old).__name__}")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    if isinstance(attr, int):
        parent[attr] = new
    else:
        setattr(parent, attr, new)


def adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """Return a copy of ``conv`` taking ``in_chans`` inputs.

    Pretrained RGB filters are summed over channels for 1 input channel, and tiled and rescaled
    by ``3 / in_chans`` otherwise (the timm convention), so a grey image replicated to RGB and
    the same image fed as one channel give the same response.
    """
    if conv.in_channels == in_chans:
        return conv
    new = nn.Conv2d(
        in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    with torch.no_grad():
        w = conv.weight
        if in_chans == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_chans // w.shape[1])
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _bn_eval_hook(module: nn.Module, args) -> None:
    module.train(False)


def freeze(modules: Iterable[nn.Module], bn_eval: bool = True) -> None:
    """Freeze parameters (``requires_grad=False``) of ``modules``.

    Args:
        modules: The backbone parts to freeze.
        bn_eval: Keep their BatchNorm layers in eval mode even under ``model.train()`` (a forward
            pre-hook resets them), so running statistics stay those of the pretrained weights.
    """
    for mod in modules:
        for p in mod.parameters():
            p.requires_grad_(False)
        if bn_eval:
            for m in mod.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
                    m.register_forward_pre_hook(_bn_eval_hook)
                    setattr(m, FROZEN_BN, True)  # a conversion to global batch norm keeps it (and its hook)
