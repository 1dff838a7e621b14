"""The ``reslab`` command: argparse dispatch only.

Each command lives in :mod:`reslab.app` (``build_parser()`` and ``main(argv)``) and is imported
only when it runs, so ``reslab --help`` loads neither torch nor pandas. Nothing imports this module.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from .app import DESCRIPTIONS

#: Each command: (module under reslab.app, its entry function, its parser builder). The one-line
#: description of each is in :data:`reslab.app.DESCRIPTIONS`.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "reproduce": ("reproduce", "main", "build_parser"),
    "notebooks": ("reproduce", "notebooks_main", "notebooks_parser"),
    "params": ("params", "main", "build_parser"),
    "readme": ("readme", "main", "build_parser"),
    "plan": ("plan", "main", "build_parser"),
    "bundle": ("bundle", "main_bundle", "bundle_parser"),
    "export": ("bundle", "main_export", "export_parser"),
    "import": ("bundle", "main_import", "import_parser"),
    "train": ("train", "main", "build_parser"),
    "doctor": ("doctor", "main", "build_parser"),
}


def command(name: str, part: int = 1) -> Callable:
    """The entry function (``part=1``) or parser builder (``part=2``) of command ``name``, imported now."""
    module = importlib.import_module(f"reslab.app.{COMMANDS[name][0]}")
    return getattr(module, COMMANDS[name][part])


class _CommandsFormatter(argparse.HelpFormatter):
    """Puts each command's description beside its name (argparse leaves the indentation of
    sub-commands out of the column width, so their descriptions would start on the next line)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        for sub in getattr(action, "_get_subactions", list)():
            self._action_max_length = max(self._action_max_length, len(sub.dest) + self._current_indent + 4)


def _main_parser() -> argparse.ArgumentParser:
    """The ``reslab`` parser: it lists the commands with their descriptions."""
    parser = argparse.ArgumentParser(
        prog="reslab", description="Reproduce the tables of four papers on improved residual networks "
        "from the notebooks in notebooks/.", epilog="Run 'reslab COMMAND --help' for the options of a command.",
        formatter_class=_CommandsFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        commands.add_parser(name, help=DESCRIPTIONS[name], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reslab`` command: dispatch to a command, or list them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _main_parser()
    if argv and argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"reslab: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    return command(argv[0])(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
