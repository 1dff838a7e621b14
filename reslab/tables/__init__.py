"""One ``run_<table>()`` function per notebook: the single call each notebook makes.

Each function validates its parameters, does the work, writes its CSVs, figures and manifest
into ``results/<profile>/<table>/`` (or ``out_dir``) atomically, and returns a
:class:`TableOutput` the notebook displays. One module per paper; this package re-exports them.
"""

from ._common import TableOutput
from .cbam import cbam_claims, cbam_params, run_cbam
from .datasets import dataset_specs, run_datasets
from .drstn import run_drstn_table1, run_drstn_table4, run_drstn_table5
from .selu import run_selu_ablation
from .summary import run_summary
from .survey import run_survey

__all__ = [
    "TableOutput", "cbam_claims", "cbam_params", "dataset_specs", "run_cbam", "run_datasets",
    "run_drstn_table1", "run_drstn_table4", "run_drstn_table5", "run_selu_ablation", "run_summary",
    "run_survey",
]
