"""Model registry: ``register_model``, ``create_model``, ``list_models``, ``count_params``.

A variant is a registered function that only fills an args dict and calls a family's builder;
training code never branches on model names (timm ``@register_model``).
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model constructor under its function name.

    Args:
        fn: A function ``fn(num_classes=10, in_chans=3, pretrained=False, **kwargs)`` returning
            an ``nn.Module``.

    Returns:
        ``fn`` unchanged, so this works as a decorator.

    Raises:
        ValueError: if a model of the same name is registered already.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice; rename one of the two functions")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Return the sorted names of registered models, optionally filtered by a glob pattern."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def is_model(name: str) -> bool:
    """Return whether ``name`` is a registered model."""
    return name in _MODELS


def create_model(
    name: str,
    num_classes: int = 10,
    in_chans: int = 3,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: A name from ``list_models()``.
        num_classes: Size of the classifier output.
        in_chans: Number of input channels.
        pretrained: Load torchvision ImageNet weights where the model has them.
        **kwargs: Passed on to the model's builder (for example ``drop_path_rate``).

    Raises:
        ValueError: if ``name`` is not registered; the message lists close matches.
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} See reslab.models.list_models() for all "
            f"{len(_MODELS)} names."
        )
    return _MODELS[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Count a model's parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
