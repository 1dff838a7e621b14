"""``reslab reproduce`` runs the notebooks headless with papermill; ``reslab reproduce --check``
says which results are stale; ``reslab notebooks`` refreshes the outputs committed in notebooks/.

Each notebook runs into a staging folder; only a notebook that finishes replaces
``results/<profile>/<notebook>/``, so a failed run never overwrites earlier results. A failing
notebook does not stop the others: the failures are listed at the end and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .. import catalog
from ..catalog import ACROSS_PROFILES, REQUIRED_PARAMETERS, list_notebooks, notebook_parameters, notebook_params
from ..paths import Paths
from ..profiles import PROFILES, get_profile
from ..results import MANIFEST, add_to_manifest
from ..runs.jobs import DEFAULT_JOBS, EXECUTOR_ENV, EXECUTORS, JOBS_ENV, SLURM_ENV_PREFIX, SLURM_SETTINGS, Executor
from ..runs.store import RunStore
from .._env import COMPILE_ENV, COMPILE_MODES, compile_setting, environment
from . import DESCRIPTIONS, check, command_paths
from .readme import checkout_results, update_readme
from .timebox import TimeBox, report, train_for, write_report

KERNEL_NAME = "reslab"
#: Where ``reslab reproduce`` keeps what each notebook printed (git-ignored), under the results root.
LOGS = "_logs"


def _kernel_name() -> str | None:
    """The registered ``reslab`` kernel if there is one, else the notebook's own kernelspec."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"
    except Exception:
        return None


def _kernel_manager_class() -> type:
    """The kernel manager papermill starts kernels with: IPC transport (the kernel runs on this
    machine), so the kernel neither opens TCP ports nor prints its warning about unencrypted TCP
    in front of the user's output."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

    return LocalKernelManager


def _strip_machine_paths(executed: Path, name: str) -> None:
    """papermill records absolute input and output paths; keep them relative to the checkout. A
    library warning printed into a cell's stream output may name a file under the checkout or the
    Python installation: those prefixes become ``<checkout>`` and ``<python>``."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    if "input_path" in meta:
        meta["input_path"] = f"notebooks/{name}.ipynb"
    if "output_path" in meta:
        meta["output_path"] = f"{name}.ipynb"
    prefixes = [(str(catalog.notebooks_dir().resolve().parent), "<checkout>"), (sys.prefix, "<python>"),
                (sys.base_prefix, "<python>")]
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for prefix, name_ in prefixes:
                    output["text"] = output["text"].replace(prefix, name_)
    nbformat.write(nb, executed)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts)."""
    if pid <= 0:
        return True  # not a pid we wrote: never treat its folder as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to someone else
        return True
    return True


def _remove_stale_staging(results: Path) -> list[Path]:
    """Remove the staging folders (``.staging-<name>-<pid>``) and set-aside results folders
    (``.old-<name>-<pid>``) that a killed ``reslab reproduce`` left behind; return what it removed.

    Only folders of processes that no longer run are touched. A set-aside folder whose results
    folder is missing (killed between the two renames of :func:`run_notebook`) holds the last good
    results: it is put back instead of removed.
    """
    removed = []
    leftovers = [*results.glob(".staging-*-*"), *results.glob(".old-*-*"), *results.glob("*/.old-*-*")]
    for path in leftovers:
        stem, _, pid = path.name.rpartition("-")
        if not pid.isdigit() or not path.is_dir() or _pid_alive(int(pid)):
            continue
        if path.name.startswith(".old-"):
            final = path.parent / stem.removeprefix(".old-")
            if not final.exists():
                os.replace(path, final)
                print(f"[reslab] restored {final} from {path.name}, left by a process that was stopped", flush=True)
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        print(f"[reslab] removed {len(removed)} folder(s) left by stopped runs: "
              f"{', '.join(p.name for p in removed)}", flush=True)
    return removed


def run_notebook(name: str, profile: str, params: dict, folder: Path, paths: Paths,
                 settings: dict[str, str] | None = None) -> float:
    """Execute one notebook into ``<paths.results>/<profile>/<name>/``; return its wall time.

    The notebook writes into a staging results root; its kernel gets every folder of ``paths``
    through ``RESLAB_*`` variables (:meth:`reslab.paths.Paths.env`, so no machine path is written
    into the executed notebook); only when it finishes does the staging folder replace
    ``results/<profile>/<name>/``.

    Raises:
        ValueError: if the notebook does not declare a ``profile`` parameter.
        Exception: whatever the notebook raised (papermill's execution error); the previous
            results folder is then left untouched and the executed notebook is kept under
            ``results/<profile>/_failed/``.
    """
    import papermill

    src = folder / f"{name}.ipynb"
    declared = notebook_parameters(src)
    missing = [k for k in REQUIRED_PARAMETERS if k not in declared and name not in ACROSS_PROFILES]
    if missing:
        raise ValueError(
            f"{src.name} declares no parameter(s) {missing} in its parameters cell; every notebook "
            f"must take {list(REQUIRED_PARAMETERS)} (it has {sorted(declared)})."
        )
    # Options such as --device go only to the notebooks that take them (datasets trains nothing).
    params = {k: v for k, v in params.items() if k in declared}
    results = paths.results
    sub = Path(name) if name in ACROSS_PROFILES else Path(profile) / name
    final = results / sub
    _remove_stale_staging(results)
    stage_root = results / f".staging-{name}-{os.getpid()}"
    staged = stage_root / sub
    shutil.rmtree(stage_root, ignore_errors=True)
    staged.mkdir(parents=True)
    executed = staged / f"{name}.ipynb"
    # Finished training runs (the run store, the record) live outside the staging folder, so a
    # rerun reuses them; the summary reads the real results and writes into the staging root.
    env = paths.writing_to(stage_root).env() | (settings or {})  # and the executor and compile settings
    t0 = time.perf_counter()
    log = results / LOGS / f"{str(sub).replace('/', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with environment(env):  # the kernel inherits this process's environment
            try:
                # What the notebook prints (which run, each epoch and the time left) shows here and in the log.
                with open(log, "w", encoding="utf-8") as fh:
                    papermill.execute_notebook(
                        str(src), str(executed), parameters=params, kernel_name=_kernel_name(),
                        kernel_manager_class=_kernel_manager_class(),
                        cwd=str(folder), progress_bar=False, log_output=False, stdout_file=_Tee(sys.stdout, fh),
                        stderr_file=_Tee(sys.stderr, fh),
                    )
            except BaseException:
                failed = final.parent / "_failed"
                failed.mkdir(parents=True, exist_ok=True)
                if executed.exists():
                    shutil.copy2(executed, failed / f"{name}.ipynb")
                raise
            else:
                _strip_machine_paths(executed, name)
                if (staged / MANIFEST).is_file():  # the notebook is saved after the kernel wrote the manifest
                    add_to_manifest(staged, executed.name)
                old = final.parent / f".old-{name}-{os.getpid()}"
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():
                    os.replace(final, old)
                os.replace(staged, final)
                shutil.rmtree(old, ignore_errors=True)
                (final.parent / "_failed" / f"{name}.ipynb").unlink(missing_ok=True)
                _record_runs(final, RunStore.of(paths))
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    return time.perf_counter() - t0


class _Tee:
    """A text stream that writes to several (the terminal and a log file), flushing each write."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _record_runs(folder: Path, store: RunStore) -> list[Path]:
    """Put the finished runs a results folder's tables name (their ``run_dir`` column) into the
    record of finished runs, which is committed with the results (:meth:`RunStore.record_run`)."""
    import pandas as pd

    done = []
    for table in sorted(folder.glob("*.csv")):
        try:
            frame = pd.read_csv(table, usecols=lambda c: c == "run_dir")
        except (ValueError, pd.errors.EmptyDataError):
            continue
        if "run_dir" not in frame:
            continue
        for run in frame["run_dir"].dropna().unique():
            if str(run).startswith("<runs>/") and (rec := store.record_run(run)) is not None:
                done.append(rec)
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab reproduce", description=DESCRIPTIONS["reproduce"] + " Each notebook runs into a staging "
        "folder, and only a notebook that finishes replaces its results folder, so a failed run never overwrites "
        "earlier results. A failing notebook does not stop the others; the exit code is then 1.")
    parser.add_argument("--profile", default="smoke",
                        help=f"The profile to run: one of {', '.join(PROFILES)} (default: smoke).")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="Run only these notebooks (the summary still runs last).")
    parser.add_argument("--data-root", help="The folder that holds the data sets (default: $RESLAB_DATA).")
    parser.add_argument("--device", help="The training device: auto, cpu, cuda or cuda:N (default: each "
                        "notebook's own).")
    parser.add_argument("--compile", choices=[m for m in COMPILE_MODES if m != "auto"],
                        help="Compile the training step of every run on CUDA with torch.compile in this mode (default: "
                        "$RESLAB_COMPILE, else off); a speed setting that each result row records.")
    parser.add_argument("--results", help="The results root (default: $RESLAB_RESULTS, else results/ of the "
                        "checkout).")
    parser.add_argument("--executor", choices=EXECUTORS,
                        help="Where the runs are made: inline (in each notebook's process), local (a process per run on "
                        "this machine, --jobs at once), slurm (a SLURM job array per table; settings with --slurm) or none "
                        "(train nothing: the tables of the runs already in the run store or the record of finished runs, "
                        "the others 'not run'). "
                        f"Default: ${EXECUTOR_ENV}, else inline.")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help=f"Runs at once: local processes, or the SLURM array's parallelism (default: ${JOBS_ENV}, "
                        f"else {DEFAULT_JOBS} locally and no limit on SLURM).")
    parser.add_argument("--slurm", action="append", default=[], metavar="NAME=VALUE",
                        help="A SLURM setting (repeatable; default: $RESLAB_SLURM_<NAME>): " + "; ".join(
                            f"{k}: {v}" for k, v in SLURM_SETTINGS.items()) + ".")
    parser.add_argument("--minutes", type=float, metavar="N",
                        help="Time-boxed: first train, within N minutes of wall time, unfinished runs of the chosen "
                        "notebooks (one seed of every row before a second of any; a run only when the cost plan, "
                        "measured on this device, says it fits the time left; --jobs runs at once), then make every "
                        "table of what is finished, the rest 'not run' (executor none). A second call goes on where "
                        "this one stopped.")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="Pass a parameter to every notebook that declares it (repeatable); VALUE is JSON when "
                        "it parses, e.g. --param 'seeds=[0, 1]', else text.")
    parser.add_argument("--list", action="store_true", help="List the notebooks in run order and exit.")
    parser.add_argument("--check", action="store_true",
                        help="Run nothing; report the results whose code or data changed since they were made, "
                        "and exit 1 if there are any.")
    return parser


def _executor_env(executor: str | None, jobs: int | None, slurm: list[str]) -> dict[str, str]:
    """The executor settings as the environment every notebook's kernel reads them from, after
    checking them all (:class:`reslab.runs.jobs.Executor`).

    Raises:
        ValueError: for a setting that is not ``NAME=VALUE``, an unknown name or an invalid value.
    """
    env = {}
    if executor:
        env[EXECUTOR_ENV] = executor
    if jobs is not None:
        env[JOBS_ENV] = str(jobs)
    for item in slurm:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--slurm {item!r}: write NAME=VALUE, e.g. --slurm partition=gpu.")
        env[SLURM_ENV_PREFIX + name.strip().upper()] = value
    with environment(env):
        Executor.resolve()  # every setting checked before a notebook starts
    return env


def main(argv: list[str] | None = None) -> int:
    """``reslab reproduce``: run notebooks with papermill; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check:
        return check.main(args.results, args.data_root)

    try:
        get_profile(args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    folder = catalog.notebooks_dir()
    names = list_notebooks(folder)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no notebooks found in {folder}", file=sys.stderr)
        return 2
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown notebook(s) {unknown}; known: {', '.join(names)}")
        # The summary reads every table's results: refresh it after any of them.
        names = [n for n in names if n in args.only or n in ACROSS_PROFILES]

    params = {"profile": args.profile}
    paths = command_paths(parser, args.data_root, results=args.results)
    if args.device:
        params["device"] = args.device
    if args.minutes is not None and (args.executor not in (None, "none") or args.slurm or not args.minutes > 0):
        parser.error("--minutes N (a positive number) trains the runs itself, --jobs at once, then makes the tables "
                     "with executor none: drop --executor and --slurm.")
    try:
        settings = _executor_env(None if args.minutes is not None else args.executor,
                                 None if args.minutes is not None else args.jobs, args.slurm)
    except ValueError as exc:
        parser.error(str(exc))
    if args.compile:
        settings[COMPILE_ENV] = args.compile
    if args.param:
        try:
            params |= notebook_params(args.param, [n for n in names if n not in ACROSS_PROFILES], folder)
        except ValueError as exc:
            parser.error(str(exc))
    results = paths.results
    if args.minutes is not None:
        try:
            box = TimeBox(get_profile(args.profile), paths, {k: v for k, v in params.items() if k != "profile"},
                          device=args.device, jobs=args.jobs or 1, settings=dict(settings),
                          compile_mode=args.compile or compile_setting())
        except ValueError as exc:
            parser.error(str(exc))
        slots = train_for(args.minutes, [n for n in names if n not in ACROSS_PROFILES], box)
        print(report(slots).to_string(index=False) if slots else "[reslab] --minutes: nothing to train", flush=True)
        print(f"[reslab] --minutes: report in {write_report(slots, paths, box.profile)}", flush=True)
        settings[EXECUTOR_ENV] = "none"  # the tables show what is finished; nothing more is trained

    failures = []
    for name in names:
        print(f"[reslab] {name} ({args.profile}) ...", flush=True)
        try:
            wall = run_notebook(name, args.profile, params, folder, paths, settings)
        except Exception as exc:  # go on past a failing notebook; report at the end
            reason = f"{type(exc).__name__}: {getattr(exc, 'evalue', None) or exc}"
            failures.append((name, reason))
            print(f"[reslab] {name} FAILED: {reason}", flush=True)
            continue
        where = results / (name if name in ACROSS_PROFILES else f"{args.profile}/{name}")
        print(f"[reslab] {name} done in {wall:.1f} s -> {where}", flush=True)
        if name == "summary" and results == checkout_results():
            _update_readme(results / name)

    _print_run_store(paths.runs)
    if failures:
        print(f"\n[reslab] {len(failures)} of {len(names)} notebook(s) failed "
              f"(executed copies in {results / args.profile / '_failed'}):", file=sys.stderr)
        for name, reason in failures:
            print(f"  - {name}: {reason.splitlines()[0] if reason else ''}", file=sys.stderr)
        return 1
    print(f"\n[reslab] all {len(names)} notebook(s) finished; results in {results / args.profile}")
    return 0


def _print_run_store(runs: Path) -> None:
    """Say how much disk the run store takes (its checkpoints apart), so it never grows unseen."""
    if not runs.is_dir():
        return
    total = checkpoints = n_runs = 0
    for path in runs.rglob("*"):
        if path.is_file():
            size = path.stat().st_size
            total += size
            checkpoints += size if path.suffix == ".pt" else 0
            n_runs += path.name == "result.json"
    print(f"[reslab] run store {runs}: {_size(total)} in {n_runs} finished run(s), "
          f"of which checkpoints {_size(checkpoints)}", flush=True)


def _size(n_bytes: float) -> str:
    unit = "B"
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            break
        n_bytes /= 1000
    return f"{n_bytes:.0f} B" if unit == "B" else f"{n_bytes:.1f} {unit}"


def notebooks_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab notebooks", description=DESCRIPTIONS["notebooks"] + " The outputs committed in notebooks/ "
        "thus come from a papermill run, never from hand execution.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="The notebooks to refresh (default: all of them).")
    return parser


def notebooks_main(argv: list[str] | None = None) -> int:
    """``reslab notebooks``: re-execute notebooks in place with their defaults, so the outputs
    committed in ``notebooks/`` come from a papermill run, never from hand execution."""

    import papermill

    parser = notebooks_parser()
    args = parser.parse_args(argv)
    folder = catalog.notebooks_dir()
    names = args.names or list_notebooks(folder)
    with tempfile.TemporaryDirectory() as scratch:
        # The summary shows the committed results; every notebook writes into a throw-away folder.
        with environment(Paths.from_env().writing_to(scratch).env()):
            for name in names:
                src = folder / f"{name}.ipynb"
                if not src.is_file():
                    parser.error(f"no notebook {src}")
                tmp = folder / f".{name}.executing.ipynb"
                print(f"[reslab] executing {src.name} ...", flush=True)
                try:
                    papermill.execute_notebook(str(src), str(tmp), kernel_name=_kernel_name(), cwd=str(folder),
                                               progress_bar=False, kernel_manager_class=_kernel_manager_class())
                    _strip_machine_paths(tmp, name)
                    os.replace(tmp, src)
                finally:
                    tmp.unlink(missing_ok=True)
    return 0


def _update_readme(summary_dir: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if readme.is_file() and not update_readme(readme, summary_dir):
        print(f"[reslab] README.md Results section regenerated from {summary_dir}", flush=True)
