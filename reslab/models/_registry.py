"""Model registry: ``register_model``, ``create_model``, ``list_models``, ``count_params``.

A variant is a registered function that only fills an args dict and calls a family's builder;
training code never branches on model names (timm ``@register_model``).
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, dict[str, Any]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, **info: Any) -> Any:
    """Register a model constructor under its function name.

    Use bare (``@register_model``) or with metadata (``@register_model(input_size=(3, 32, 32))``).
    Known metadata keys: ``input_size`` (C, H, W the paper feeds the model; default
    ``(3, 224, 224)``) and ``test_input_size`` (the smallest input the architecture accepts,
    used to keep the test suite fast; default ``input_size``).

    Args:
        fn: A function ``fn(num_classes=10, in_chans=3, pretrained=False, **kwargs)`` returning
            an ``nn.Module``.
        **info: Metadata stored for ``model_info``.

    Returns:
        ``fn`` unchanged (or a decorator when called with metadata only).

    Raises:
        ValueError: if a model of the same name is registered already.
    """
    if fn is None:
        return lambda f: register_model(f, **info)
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice; rename one of the two functions")
    _MODELS[name] = fn
    meta = {"input_size": (3, 224, 224), **info}
    meta.setdefault("test_input_size", meta["input_size"])
    _INFO[name] = meta
    return fn


def model_info(name: str) -> dict[str, Any]:
    """Return the metadata registered with a model (``input_size``, ``test_input_size``, ...).

    Raises:
        ValueError: if ``name`` is not registered.
    """
    if name not in _MODELS:
        _raise_unknown(name)
    return dict(_INFO[name])


def _raise_unknown(name: str) -> None:
    close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown model {name!r}.{hint} See reslab.models.list_models() for all {len(_MODELS)} names."
    )


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
        pretrained: Load ImageNet weights where the model has them (torchvision weights API);
            a head of another size is replaced after loading.
        **kwargs: Passed on to the model's builder (for example ``drop_path_rate``).

    Raises:
        ValueError: if ``name`` is not registered; the message lists close matches.
        PretrainedWeightsError: if ``pretrained=True`` and the weights file is neither on disk
            nor downloadable; the message names the file and the folder to put it in.
    """
    if name not in _MODELS:
        _raise_unknown(name)
    return _MODELS[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Count a model's parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
