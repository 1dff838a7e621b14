"""Offline bundles: rerun notebooks on a GPU machine without internet, and bring the results back.

Three commands and one script:

- ``reslab bundle --only <notebooks> OUT_DIR`` gathers into one folder what the notebooks need on
  a machine that has Python and PyTorch but no internet: ``wheels/`` (every runtime dependency the
  target lacks, for its Python version and manylinux x86_64), ``data/`` (only the files the data
  loader reads for the notebooks' data sets), ``src/`` (the package and the notebooks as committed
  at HEAD), ``runs/`` (finished runs of other notebooks that a chosen notebook reads),
  ``bundle.json`` and ``run.sh``.
- ``bash run.sh [OUT]`` on the target checks the machine, installs the wheels into a private
  folder, registers the ``reslab`` Jupyter kernel there, runs ``reslab reproduce`` and, whatever
  happened, ``reslab export``.
- ``reslab export`` packs the finished results folders, the result rows and histories of their
  runs, and the checkpoints a later notebook reads (while they fit under ``--max-mb``) into one
  archive; ``reslab import ARCHIVE`` checks the archive before it touches anything, then puts the
  results folders in place and merges the runs into the run store.

What each notebook needs (data sets, requirements beyond the notebook runtime, runs of other
notebooks) is one table of the notebook catalog, :data:`reslab.catalog.NOTEBOOKS`.

The wheels are the dependency closure of reslab's own requirements that the chosen notebooks
need, computed offline from the metadata of the distributions installed here (``Requires-Dist``,
markers evaluated for the target's Python on Linux x86_64) and pinned to the versions installed
here, minus what the target already has: :data:`~.wheels.STOCK_PREINSTALLED` and its closure (what this
project's GPU image holds), or exactly the packages of a ``--have`` file (the target's
``pip list --format=freeze``). One ``pip download --no-deps --only-binary=:all:`` call fetches them.

The package: :mod:`.wheels` (the dependency closure and the wheels),
:mod:`.gather` (``reslab bundle``: data, source, runs) and :mod:`.archive` (``reslab export`` and
``reslab import``); ``run.sh`` beside them is the script a bundle ships.
"""

from __future__ import annotations

from ...catalog import NOTEBOOKS, needs
from .archive import export_parser, export_results, import_parser, main_export, main_import
from .gather import RunCopy, bundle_parser, dataset_files, datasets_to_train, main_bundle, plan_datasets
from .wheels import (
                     NOT_NEEDED_HEADLESS,
                     Have,
                     installed_distributions,
                     read_have,
                     repack_wheel,
                     reslab_requirements,
                     resolve,
                     runtime_requirements,
                     stock_have,
)

__all__ = [
    "NOTEBOOKS", "NOT_NEEDED_HEADLESS", "Have", "RunCopy", "bundle_parser", "dataset_files", "datasets_to_train",
    "export_parser", "export_results", "import_parser", "installed_distributions", "main_bundle", "main_export",
    "main_import", "needs", "plan_datasets", "read_have", "repack_wheel", "reslab_requirements", "resolve",
    "runtime_requirements", "stock_have",
]
