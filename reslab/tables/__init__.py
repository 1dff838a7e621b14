"""One ``run_<table>()`` function per notebook: the single call each notebook makes.

Each function validates its parameters, does the work, writes its CSVs, figures and manifest
into ``results/<profile>/<table>/`` (or ``out_dir``) atomically, and returns a
:class:`TableOutput` the notebook displays. One module per paper; this package re-exports them.
"""

from ._common import TableOutput
from .datasets import dataset_specs, run_datasets
from .selu import run_selu_ablation

__all__ = ["TableOutput", "dataset_specs", "run_datasets", "run_selu_ablation"]
