"""The application layer: what the commands do (reproduce, plan, train, readme, params, bundle).

Each command is a module (or, for the bundle, a package) with ``build_parser()`` and
``main(argv)``; :mod:`reslab.cli` only dispatches to them. This file imports nothing heavy, so
that ``reslab --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import Paths

#: One sentence per command, shown by ``reslab --help`` and at the top of the command's own help.
DESCRIPTIONS = {
    "reproduce": "Run the notebooks headless with papermill and write their results under results/.",
    "notebooks": "Re-execute the notebooks in place with their default parameters.",
    "params": "Print the parameter table of every paper model beside the values the papers print.",
    "readme": "Regenerate the Results section of README.md from results/summary.",
    "bundle": "Gather the wheels, data, code and runs that notebooks need into one folder that reruns them on a "
              "GPU machine without internet.",
    "export": "Pack finished results, and the checkpoints later notebooks read, into one archive to bring home.",
    "import": "Put the results and runs of an archive made by reslab export into the results folder.",
    "plan": "Estimate what a profile's runs cost on this device (images, FLOPs, measured step time, memory, minutes).",
    "doctor": "Check every path of training on this machine's device in minutes (run it first on a new GPU machine).",
    "train": "Train one run of a table into the run store; under torchrun or srun, on all their processes "
             "(DistributedDataParallel).",
}


def command_paths(parser: argparse.ArgumentParser, data_root: str | None = None, **given: str | None) -> Paths:
    """A command's folders (:class:`reslab.paths.Paths`), resolved once from its arguments and the
    ``RESLAB_*`` variables and passed down; the parser's error when ``--data-root`` is not a folder."""
    if data_root and not Path(data_root).expanduser().is_dir():
        parser.error(f"--data-root {data_root} is not a folder")
    return Paths.from_env(data=data_root, **given)
