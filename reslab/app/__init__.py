"""The application layer: what the commands do (reproduce, plan, train, readme, params, bundle).

Each command is a module (or, for the bundle, a package) with ``build_parser()`` and
``main(argv)``; :mod:`reslab.cli` only dispatches to them. This file imports nothing heavy, so
that ``reslab --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    "plan": "Estimate what a profile's runs cost on this device (images, FLOPs, measured step time, minutes).",
    "train": "Train one run of a table into the run store; under torchrun or srun, on all their processes "
             "(DistributedDataParallel).",
}


def data_root_arg(parser: argparse.ArgumentParser, value: str | None) -> Path | None:
    """A command's ``--data-root`` as an absolute folder (``None`` when not given: the data layer
    then reads ``$RESLAB_DATA``); the parser's error when it is not a folder."""
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        parser.error(f"--data-root {value} is not a folder")
    return root
