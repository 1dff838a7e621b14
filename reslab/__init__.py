"""reslab: reproduce four papers on improved deep residual networks for image classification.

Public API (see README.md):

- data: :func:`load_dataset`, :class:`BatchLoader`, :class:`Augment`
- models: :func:`create_model`, :func:`list_models`, :func:`count_params`
- training: :class:`TrainConfig`, :func:`train`, :func:`evaluate`, :class:`History`
- tables: ``reslab.tables.run_<table>()``, the one call each notebook makes

The names load on first use (PEP 562), so ``import reslab`` and ``reslab --help`` stay light;
the data layer and the model zoo check the installed torch when they load, and loading the
model zoo registers every model.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ._version import __version__  # noqa: F401  (public, in __all__)

#: Public name -> the module that defines it.
_PUBLIC = {
    "Augment": "data", "BatchLoader": "data", "Dataset": "data", "load_dataset": "data",
    "count_params": "models", "create_model": "models", "list_models": "models",
    "History": "train", "TrainConfig": "train", "evaluate": "train", "train": "train",
    "get_profile": "profiles", "load_claims": "claims",
}
_SUBMODULES = ("models", "tables")

__all__ = sorted([*_PUBLIC, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC and name not in _SUBMODULES:
        raise AttributeError(f"module 'reslab' has no attribute {name!r}")
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """``reslab.train`` is the function (the public API), not the submodule of the same name that
    the import system would set on the package when it loads ``reslab.train`` (the module stays
    importable as ``from reslab.train import ...``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
