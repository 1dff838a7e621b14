"""reslab: reproduce four papers on improved deep residual networks for image classification.

Public API (see README.md):

- data: :func:`load_dataset`, :class:`BatchLoader`, :class:`Augment`
- models: :func:`create_model`, :func:`list_models`, :func:`count_params`
- training: :class:`TrainConfig`, :func:`train`, :func:`evaluate`, :class:`History`
- tables: ``reslab.tables.run_<table>()``, the one call each notebook makes
"""

from ._version import __version__  # noqa: E402
from ._env import require_torch

require_torch()  # a clear message on an older torch, before a model or loader fails obscurely


from . import models, tables  # noqa: E402  (importing models registers every model)
from .claims import load_claims  # noqa: E402
from .data import Augment, BatchLoader, Dataset, load_dataset  # noqa: E402
from .models import count_params, create_model, list_models  # noqa: E402
from .profiles import get_profile  # noqa: E402
from .train import History, TrainConfig, evaluate, train  # noqa: E402

__all__ = [
    "Augment", "BatchLoader", "Dataset", "History", "TrainConfig", "count_params", "create_model",
    "evaluate", "get_profile", "list_models", "load_claims", "load_dataset", "models", "tables",
    "train", "__version__",
]
