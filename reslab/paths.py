"""Where reslab reads and writes: one :class:`Paths`, resolved once where a command or a notebook
starts and passed down.

The ``RESLAB_*`` path variables are read here and nowhere else. An entry point (a ``reslab``
command, a table function a notebook calls, a job's process) calls :meth:`Paths.from_env` with
what its own arguments say; every layer below takes the folders it needs as arguments, the way
torchvision's reference scripts pass ``args.output_dir``. A child process that is itself an entry
point (a notebook's kernel, a job) gets the same folders through :meth:`Paths.env`.

=====================  ==========================  ==================================================
field                  variable                    default
=====================  ==========================  ==================================================
``results``            ``RESLAB_RESULTS``          ``results/`` of the checkout around the working
                                                   directory, else ``./results``
``output``             ``RESLAB_OUTPUT``           where a table writes when given no folder: the
                                                   results root when ``RESLAB_RESULTS`` is set
                                                   (``reslab reproduce``'s staging folder), else its
                                                   git-ignored ``_scratch`` folder
``source``             ``RESLAB_SOURCE_RESULTS``   the results the summary reads (``results``)
``runs``               ``RESLAB_RUNS``             ``<results>/_runs`` (the run store)
``record``             ``RESLAB_RECORD``           ``<results>/_finished`` (the record of finished runs)
``data``               ``RESLAB_DATA``             none: download into the cache, or synthetic data
``cache``              ``RESLAB_CACHE``            ``~/.cache/reslab``
=====================  ==========================  ==================================================
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

#: The folder under the results root of the record of finished runs (result rows and histories of
#: the run store, no checkpoints), committed with the results.
RECORD = "_finished"

#: The folder under the results root of the run store, when ``RESLAB_RUNS`` does not move it.
RUNS = "_runs"

#: The git-ignored folder under the results root where a notebook run outside ``reslab reproduce``
#: writes: papermill, nbval or JupyterLab must never replace the committed results (whose executed
#: notebook, manifest and summary would then no longer match their tables).
SCRATCH = "_scratch"

#: ``field: variable`` of every path :meth:`Paths.from_env` reads.
VARIABLES = {"results": "RESLAB_RESULTS", "output": "RESLAB_OUTPUT", "source": "RESLAB_SOURCE_RESULTS",
             "runs": "RESLAB_RUNS", "record": "RESLAB_RECORD", "data": "RESLAB_DATA", "cache": "RESLAB_CACHE"}

PathLike = str | os.PathLike


def _path(value: PathLike | None) -> Path | None:
    """``value`` as an absolute path (``~`` expanded; relative to the working directory, so that a
    child process started elsewhere reads the same folder); ``None`` when unset or empty."""
    if value is None or str(value).strip() == "":
        return None
    return Path(value).expanduser().resolve()


def checkout_results_root(start: PathLike | None = None) -> Path:
    """``results/`` of the reslab checkout enclosing ``start`` (default: the working directory),
    found by walking up to a folder with ``pyproject.toml`` and ``reslab/``; else ``<start>/results``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "reslab").is_dir():
            return folder / "results"
    return here / "results"


@dataclass(frozen=True)
class Paths:
    """The folders of one command or notebook run (see the module docstring); every path absolute.

    Attributes:
        results: The results root: ``reslab reproduce`` writes here, ``--check`` checks here.
        output: Where a table writes when given no folder (``results`` or ``results/_scratch``).
        source: The results the summary (and ``reslab readme``) reads.
        runs: The run store (checkpoints, histories, result rows; keyed by content).
        record: The record of finished runs (result rows and histories, committed).
        data: The data root, or ``None``.
        cache: The cache of decoded tensors, downloads, synthetic files and locks.
    """

    results: Path
    output: Path
    source: Path
    runs: Path
    record: Path
    data: Path | None
    cache: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: PathLike | None) -> "Paths":
        """Resolve every folder: an argument in ``given`` (a field name; ``None`` = not given) wins
        over its ``RESLAB_*`` variable in ``environ`` (default ``os.environ``), which wins over the
        default. Relative paths are taken against the working directory.

        Raises:
            TypeError: for a name in ``given`` that is not a field.
        """
        unknown = sorted(set(given) - set(VARIABLES))
        if unknown:
            raise TypeError(f"Paths.from_env got unknown folder(s) {unknown}; the folders are {sorted(VARIABLES)}.")
        env = os.environ if environ is None else environ
        value = {name: _path(given.get(name)) or _path(env.get(var)) for name, var in VARIABLES.items()}
        results = value["results"] or checkout_results_root()
        # A results root named by the caller is written as it is; the default one only via its scratch folder.
        output = value["output"] or (results if value["results"] else results / SCRATCH)
        return cls(results=results, output=output, source=value["source"] or results,
                   runs=value["runs"] or results / RUNS, record=value["record"] or results / RECORD,
                   data=value["data"], cache=value["cache"] or Path.home() / ".cache" / "reslab")

    @property
    def scratch(self) -> bool:
        """Whether a table given no folder writes into the git-ignored scratch folder (a notebook run
        outside ``reslab reproduce``)."""
        return self.output != self.results

    def replace(self, **changes: PathLike | None) -> "Paths":
        """A copy with some folders changed (made absolute; ``data=None`` means no data root). Moving
        ``results`` moves nothing else."""
        return dataclasses.replace(self, **{k: _path(v) if k == "data" else _path(v) or getattr(self, k)
                                            for k, v in changes.items()})

    def writing_to(self, root: PathLike) -> "Paths":
        """These folders, with tables writing into ``root`` (a staging or throw-away results root)
        while the summary still reads these results and runs stay in this run store and record."""
        root = _path(root)
        return dataclasses.replace(self, results=root, output=root, source=self.source)

    def env(self) -> dict[str, str]:
        """The ``RESLAB_*`` variables that give a child process (a notebook's kernel, a job) these
        same folders through :meth:`from_env`."""
        return {var: str(getattr(self, name)) for name, var in VARIABLES.items() if getattr(self, name) is not None}
