"""``reslab train``: one run of a table into the run store, in this process or on all the
processes of a ``torchrun`` / ``srun`` (DistributedDataParallel)."""

from __future__ import annotations

import argparse
import dataclasses

from .. import distributed
from .._env import COMPILE_MODES, compile_setting
from ..catalog import parse_param, run_spec
from ..profiles import PROFILES
from ..runs.execute import run_alone
from ..runs.store import RunStore
from . import DESCRIPTIONS, command_paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab train", description=DESCRIPTIONS["train"] + " The run is the one the table's notebook would "
        "train with the same parameters, filed under the same key, so the notebook then shows it without training "
        "it again. Several processes: 'torchrun --nproc-per-node 4 -m reslab.cli train ...', or 'srun' with one "
        "task per GPU; the recipe's batch_size stays the global batch.")
    parser.add_argument("table", help="The notebook whose run to train (reslab reproduce --list names them).")
    parser.add_argument("--label", required=True, help="The run's row label in the table (or its model name).")
    parser.add_argument("--dataset", help="The run's data set, where the table trains the label on several.")
    parser.add_argument("--seed", type=int, help="The seed (default: the table's first seed under the profile).")
    parser.add_argument("--profile", default="smoke",
                        help=f"The profile whose recipe the run follows: one of {', '.join(PROFILES)} (default: smoke).")
    parser.add_argument("--data-root", help="The folder that holds the data sets (default: $RESLAB_DATA).")
    parser.add_argument("--device", help="The training device: auto, cpu or cuda (default: the recipe's; each "
                        "process of a CUDA run takes the GPU of its local rank).")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="A notebook parameter that shapes the run (epochs=2, batch_size=64...); repeatable.")
    parser.add_argument("--force", action="store_true", help="Train again even when the run store has the run.")
    speed = parser.add_argument_group(
        "speed settings", "How the run is executed, not what it is: neither changes the run's key nor makes it a "
        "budget run, a run may resume with other settings, and its row states them (compile, channels_last).")
    speed.add_argument("--compile", choices=[m for m in COMPILE_MODES if m != "auto"],
                       help="Compile the training step with torch.compile in this mode, on any device (default: "
                       "$RESLAB_COMPILE on CUDA, off on the CPU). On 2 CPU cores 'default' with --channels-last on "
                       "made ConvNeXt-tiny 1.2x faster and DRSTN V5 no faster (benchmarks/bench_cpu_options.py).")
    speed.add_argument("--channels-last", choices=["on", "off"],
                       help="Channels-last weights and batches (default: on on CUDA, off on the CPU).")
    return parser


def speed_settings(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig changes of the command's speed settings (none given: none)."""
    changes: dict[str, object] = {"cuda_compile": compile_setting()}
    if args.compile:
        changes["compile"] = args.compile
    if args.channels_last:
        changes["channels_last"] = args.channels_last == "on"
    return changes


def main(argv: list[str] | None = None) -> int:
    """``reslab train``: one run spec of a table, in this process or on all of a torchrun/srun's."""
    parser = build_parser()
    args = parser.parse_args(argv)
    paths = command_paths(parser, args.data_root)
    try:
        params = dict(parse_param(p) for p in args.param)
        spec, seed = run_spec(args.table, args.profile, args.label, dataset=args.dataset, seed=args.seed,
                              params=params, device=args.device, paths=paths)
        dist = distributed.init_from_env(spec.cfg.device)
        # A run of hours in a terminal or a log says where it stands (bars and a line per epoch), from the
        # main process only, whatever the recipe says for notebooks (SELU, CBAM and the survey keep theirs quiet).
        spec = dataclasses.replace(spec, recipe=spec.recipe.replace(**speed_settings(args), progress=dist.is_main))
        row, _ = run_alone(spec, args.profile, seed, paths, force=args.force)
    except ValueError as exc:
        parser.error(str(exc))
    if dist.is_main:
        keys = ("label", "dataset", "seed", "epochs", "best_acc", "final_acc", "world_size", "batch_norm",
                "evidence", "reused", "run_dir")
        print("\n".join(f"{k}: {row.get(k, '')}" for k in keys))
        record = RunStore.of(paths).record_run(row["run_dir"])
        if record is not None:  # commit it with the results: another machine then reuses the run
            print(f"recorded: {record}")
    if dist.distributed:
        import torch.distributed

        torch.distributed.destroy_process_group()
    return 0
