"""Command line: ``reslab reproduce`` runs the notebooks headless with papermill.

Each notebook runs into a staging folder; only a notebook that finishes replaces
``results/<profile>/<notebook>/``, so a failed run never overwrites earlier results. A failing
notebook does not stop the others: the failures are listed at the end and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .executor import DEFAULT_JOBS, EXECUTOR_ENV, EXECUTORS, JOBS_ENV, SLURM_ENV_PREFIX, SLURM_SETTINGS, Executor
from .profiles import PROFILES, get_profile
from .results import MANIFEST, RECORD, add_to_manifest, results_root
from .train import COMPILE_ENV, COMPILE_MODES

# Dependency order: a notebook that reads another's results runs after it; the summary runs last.
NOTEBOOK_ORDER = [
    "datasets",
    "drstn_table4_cifar10",
    "drstn_table5_transfer",
    "drstn_table1_gradcam",
    "selu_ablation_fashion_mnist",
    "cbam_resnet50_cifar10",
    "survey_error_rates",
    "summary",
]
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
KERNEL_NAME = "reslab"
REQUIRED_PARAMETERS = ("profile",)
# Notebooks that read every profile's results and write results/<name>/ (no profile parameter).
ACROSS_PROFILES = ("summary",)


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the reslab checkout (else of the working directory)."""
    repo = Path(__file__).resolve().parent.parent / "notebooks"
    return repo if repo.is_dir() else Path.cwd() / "notebooks"


def list_notebooks(folder: Path | None = None) -> list[str]:
    """Notebook names in run order: the known order first, any others alphabetically, summary last."""
    folder = folder or notebooks_dir()
    found = {p.stem for p in folder.glob("*.ipynb")}
    known = [n for n in NOTEBOOK_ORDER if n in found and n != "summary"]
    others = sorted(found - set(NOTEBOOK_ORDER))
    return known + others + (["summary"] if "summary" in found else [])


def _kernel_name() -> str | None:
    """The registered ``reslab`` kernel if there is one, else the notebook's own kernelspec."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"
    except Exception:
        return None


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
    prefixes = [(str(notebooks_dir().resolve().parent), "<checkout>"), (sys.prefix, "<python>"),
                (sys.base_prefix, "<python>")]
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for prefix, name_ in prefixes:
                    output["text"] = output["text"].replace(prefix, name_)
    nbformat.write(nb, executed)


def notebook_parameters(path: Path) -> dict:
    """The parameters a notebook declares in its ``parameters`` cell."""
    import papermill

    return papermill.inspect_notebook(str(path))


def _absolute_env(name: str) -> Path | None:
    """The path in environment variable ``name``, made absolute against this process's working
    directory; ``None`` when unset or empty."""
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else None


def _kernel_paths() -> dict[str, str]:
    """``RESLAB_DATA``, ``RESLAB_RUNS``, ``RESLAB_CACHE`` and ``RESLAB_RECORD`` as absolute paths, for
    a kernel that runs in ``notebooks/`` (``RESLAB_DATA=../shared/data`` means relative to where the
    command was typed)."""
    return {k: str(p) for k in ("RESLAB_DATA", "RESLAB_RUNS", "RESLAB_CACHE", "RESLAB_RECORD")
            if (p := _absolute_env(k))}


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


def run_notebook(name: str, profile: str, params: dict, folder: Path, results: Path,
                 data_root: Path | None = None) -> float:
    """Execute one notebook into ``results/<profile>/<name>/``; return its wall time.

    The notebook writes into a staging results root (passed as ``RESLAB_RESULTS``, with the data
    root as ``RESLAB_DATA``, so no machine path is written into the executed notebook); only when
    it finishes does the staging folder replace ``results/<profile>/<name>/``.

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
    sub = Path(name) if name in ACROSS_PROFILES else Path(profile) / name
    final = results / sub
    _remove_stale_staging(results)
    stage_root = results / f".staging-{name}-{os.getpid()}"
    staged = stage_root / sub
    shutil.rmtree(stage_root, ignore_errors=True)
    staged.mkdir(parents=True)
    executed = staged / f"{name}.ipynb"
    # Finished training runs live outside the staging folder, so a rerun reuses them.
    # The summary reads the real results (RESLAB_SOURCE_RESULTS) and writes into the staging root.
    # Finished runs are read from the record in the real results root, too (reslab.experiment.record_root).
    env = {"RESLAB_RUNS": str(results / "_runs"), "RESLAB_RECORD": str(results / RECORD), **_kernel_paths(),
           "RESLAB_RESULTS": str(stage_root), "RESLAB_SOURCE_RESULTS": str(results)}
    if data_root is not None:
        env["RESLAB_DATA"] = str(data_root)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    t0 = time.perf_counter()
    log = results / LOGS / f"{str(sub).replace('/', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        # What the notebook prints (which run, each epoch and the time left) shows here and in the log.
        with open(log, "w", encoding="utf-8") as fh:
            papermill.execute_notebook(
                str(src), str(executed), parameters=params, kernel_name=_kernel_name(),
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
        _record_runs(final)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(stage_root, ignore_errors=True)
    return time.perf_counter() - t0


#: Where ``reslab reproduce`` keeps what each notebook printed (git-ignored), under the results root.
LOGS = "_logs"


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


def _record_runs(folder: Path) -> list[Path]:
    """Put the finished runs a results folder's tables name (their ``run_dir`` column) into the
    record of finished runs, which is committed with the results (:func:`reslab.experiment.record_run`)."""
    import pandas as pd

    from .experiment import record_run

    done = []
    for table in sorted(folder.glob("*.csv")):
        try:
            frame = pd.read_csv(table, usecols=lambda c: c == "run_dir")
        except (ValueError, pd.errors.EmptyDataError):
            continue
        if "run_dir" not in frame:
            continue
        for run in frame["run_dir"].dropna().unique():
            if str(run).startswith("<runs>/") and (rec := record_run(run)) is not None:
                done.append(rec)
    return done


def _reproduce_parser() -> argparse.ArgumentParser:
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
                        "this machine, --jobs at once) or slurm (a SLURM job array per table; settings with --slurm). "
                        f"Default: ${EXECUTOR_ENV}, else inline.")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help=f"Runs at once: local processes, or the SLURM array's parallelism (default: ${JOBS_ENV}, "
                        f"else {DEFAULT_JOBS} locally and no limit on SLURM).")
    parser.add_argument("--slurm", action="append", default=[], metavar="NAME=VALUE",
                        help="A SLURM setting (repeatable; default: $RESLAB_SLURM_<NAME>): " + "; ".join(
                            f"{k}: {v}" for k, v in SLURM_SETTINGS.items()) + ".")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="Pass a parameter to every notebook that declares it (repeatable); VALUE is JSON when "
                        "it parses, e.g. --param 'seeds=[0, 1]', else text.")
    parser.add_argument("--list", action="store_true", help="List the notebooks in run order and exit.")
    parser.add_argument("--check", action="store_true",
                        help="Run nothing; report the results whose code or data changed since they were made, "
                        "and exit 1 if there are any.")
    return parser


def _executor_env(executor: str | None, jobs: int | None, slurm: list[str]) -> None:
    """Put the executor settings where every notebook's kernel reads them (its environment),
    after checking them all (:class:`reslab.executor.Executor`).

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
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        Executor.resolve()  # every setting checked before a notebook starts
    except ValueError:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        raise


def reproduce(argv: list[str] | None = None) -> int:
    """``reslab reproduce``: run notebooks with papermill; return the exit code."""
    parser = _reproduce_parser()
    args = parser.parse_args(argv)
    if args.check:
        return check(args.results, args.data_root)

    try:
        get_profile(args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    folder = notebooks_dir()
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
    data_root = None
    if args.data_root:
        data_root = Path(args.data_root).expanduser().resolve()
        if not data_root.is_dir():
            parser.error(f"--data-root {args.data_root} is not a folder")
    if args.device:
        params["device"] = args.device
    if args.compile:
        os.environ[COMPILE_ENV] = args.compile  # the notebooks' kernels inherit it
    try:
        _executor_env(args.executor, args.jobs, args.slurm)
    except ValueError as exc:
        parser.error(str(exc))
    if args.param:
        try:
            params |= _notebook_params(args.param, [n for n in names if n not in ACROSS_PROFILES], folder)
        except ValueError as exc:
            parser.error(str(exc))
    results = Path(args.results).expanduser().resolve() if args.results else results_root()

    failures = []
    for name in names:
        print(f"[reslab] {name} ({args.profile}) ...", flush=True)
        try:
            wall = run_notebook(name, args.profile, params, folder, results, data_root)
        except Exception as exc:  # go on past a failing notebook; report at the end
            reason = f"{type(exc).__name__}: {getattr(exc, 'evalue', None) or exc}"
            failures.append((name, reason))
            print(f"[reslab] {name} FAILED: {reason}", flush=True)
            continue
        where = results / (name if name in ACROSS_PROFILES else f"{args.profile}/{name}")
        print(f"[reslab] {name} done in {wall:.1f} s -> {where}", flush=True)
        if name == "summary" and results == _checkout_results():
            _update_readme(results / name)

    _print_run_store(_absolute_env("RESLAB_RUNS") or results / "_runs")
    if failures:
        print(f"\n[reslab] {len(failures)} of {len(names)} notebook(s) failed "
              f"(executed copies in {results / args.profile / '_failed'}):", file=sys.stderr)
        for name, reason in failures:
            print(f"  - {name}: {reason.splitlines()[0] if reason else ''}", file=sys.stderr)
        return 1
    print(f"\n[reslab] all {len(names)} notebook(s) finished; results in {results / args.profile}")
    return 0


def parse_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> ``(NAME, VALUE)``; VALUE is JSON when it parses (``[0, 1]``, ``true``,
    ``["mnist"]``), else the text itself (``weights=random``).

    Raises:
        ValueError: when ``text`` is not ``NAME=VALUE`` with a Python identifier as NAME.
    """
    import json

    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise ValueError(f"a notebook parameter is NAME=VALUE with the parameter's name, got {text!r}.")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def _notebook_params(pairs: list[str], names: list[str], folder: Path) -> dict:
    """``--param NAME=VALUE`` of ``reslab reproduce`` as a dict (VALUE parsed as JSON when it can be).

    Raises:
        ValueError: for a malformed pair, or a name that none of ``names`` declares.
    """
    params = dict(parse_param(p) for p in pairs)
    declared = set().union(*(notebook_parameters(folder / f"{n}.ipynb") for n in names)) if names else set()
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ValueError(f"--param {', '.join(unknown)}: no notebook among {', '.join(names)} declares it; the "
                         "parameters cell of each notebook lists the names it takes.")
    return params


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


def _checkout_results() -> Path | None:
    """``results/`` of the reslab checkout this package runs from (None for an installed package)."""
    repo = Path(__file__).resolve().parent.parent
    return (repo / "results").resolve() if (repo / "pyproject.toml").is_file() else None


def _update_readme(summary_dir: Path) -> None:
    from .tables.summary import update_readme

    readme = Path(__file__).resolve().parent.parent / "README.md"
    if readme.is_file() and not update_readme(readme, summary_dir):
        print(f"[reslab] README.md Results section regenerated from {summary_dir}", flush=True)


def check(results: str | None = None, data_root: str | None = None) -> int:
    """``reslab reproduce --check``: one line per results folder; 1 if any is stale or has no
    manifest (a folder whose data cannot be found is ``not checked``, which does not count)."""
    from .results import NOT_CHECKED, UP_TO_DATE, check_results

    root = Path(results).expanduser().resolve() if results else results_root()
    data = Path(data_root).expanduser().resolve() if data_root else _absolute_env("RESLAB_DATA")
    report = check_results(root, data_root=data)
    if report.empty:
        print(f"[reslab] no results under {root}")
        return 0
    for r in report.itertuples():
        print(f"{r.status:11s} {r.folder}  (made {r.finished or '?'} at commit {r.git_commit or '?'})"
              + (f": {r.detail}" if r.detail else ""))
    stale = report[~report["status"].isin([UP_TO_DATE, NOT_CHECKED])]
    unchecked = int((report["status"] == NOT_CHECKED).sum())
    print(f"\n[reslab] {int((report['status'] == UP_TO_DATE).sum())} of {len(report)} results folders up to date"
          + (f"; {unchecked} not checked (code and files match, data not found: set RESLAB_DATA or --data-root)"
             if unchecked else "")
          + (f"; rerun the stale ones: reslab reproduce --only {' '.join(dict.fromkeys(stale['table']))}"
             if len(stale) else "."))
    return 1 if len(stale) else 0


def _readme_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab readme", description=DESCRIPTIONS["readme"])
    parser.add_argument("--check", action="store_true",
                        help="Compare only, and exit 1 if the README is out of date.")
    parser.add_argument("--summary", help="The summary folder (default: results/summary of the checkout).")
    return parser


def readme(argv: list[str] | None = None) -> int:
    """``reslab readme``: regenerate README.md's Results section from results/summary (``--check``:
    exit 1 if it differs instead)."""
    from .tables.summary import update_readme

    parser = _readme_parser()
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    summary = Path(args.summary) if args.summary else (_checkout_results() or results_root()) / "summary"
    if not (summary / "headline.csv").is_file():
        parser.error(f"{summary} has no headline.csv; run `reslab reproduce --only summary` first.")
    same = update_readme(repo / "README.md", summary, check=args.check)
    if args.check:
        print("README.md Results section is up to date." if same else
              "README.md Results section differs from results/summary; run `reslab readme`.")
        return 0 if same else 1
    print("README.md unchanged." if same else "README.md Results section regenerated.")
    return 0


def _notebooks_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab notebooks", description=DESCRIPTIONS["notebooks"] + " The outputs committed in notebooks/ "
        "thus come from a papermill run, never from hand execution.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="The notebooks to refresh (default: all of them).")
    return parser


def refresh_notebooks(argv: list[str] | None = None) -> int:
    """``reslab notebooks``: re-execute notebooks in place with their defaults, so the outputs
    committed in ``notebooks/`` come from a papermill run, never from hand execution."""
    import tempfile

    import papermill

    parser = _notebooks_parser()
    args = parser.parse_args(argv)
    folder = notebooks_dir()
    names = args.names or list_notebooks(folder)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.update(_kernel_paths())
        # The summary shows the committed results; every notebook writes into a throw-away folder.
        os.environ.setdefault("RESLAB_SOURCE_RESULTS", str(_checkout_results() or results_root()))
        os.environ["RESLAB_RESULTS"] = scratch
        for name in names:
            src = folder / f"{name}.ipynb"
            if not src.is_file():
                parser.error(f"no notebook {src}")
            tmp = folder / f".{name}.executing.ipynb"
            print(f"[reslab] executing {src.name} ...", flush=True)
            try:
                papermill.execute_notebook(str(src), str(tmp), kernel_name=_kernel_name(), cwd=str(folder),
                                           progress_bar=False)
                _strip_machine_paths(tmp, name)
                os.replace(tmp, src)
            finally:
                tmp.unlink(missing_ok=True)
    return 0


def params(argv: list[str] | None = None) -> int:
    """``reslab params``: the parameter table of every paper model beside the printed values."""
    from .params import main as params_main

    return params_main(argv)


def _params_parser() -> argparse.ArgumentParser:
    from .params import build_parser

    return build_parser()


def _plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab plan", description=DESCRIPTIONS["plan"] + " For every run of the chosen notebooks (model x "
        "seed, at the notebook's default parameters) it prints the images to process, forward GFLOPs per image, "
        "a training step timed on this device, the minutes of training, evaluation and overhead, and whether the "
        "run is already finished in the run store; then the totals per notebook and overall. No data set is "
        "needed, only to look runs up in the run store.")
    parser.add_argument("--profile", default="paper",
                        help=f"The profile to plan: one of {', '.join(PROFILES)} (default: paper).")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="Plan only these notebooks (default: all).")
    parser.add_argument("--device", default="auto",
                        help="Where to time the steps: auto, cpu, cuda or cuda:N (default: auto).")
    parser.add_argument("--csv", metavar="PATH",
                        help="Where to write the plan as CSV (default: <results>/_plan/plan-<profile>-<device>.csv).")
    parser.add_argument("--data-root", help="The folder that holds the data sets, to look finished runs up in the "
                        "run store (default: $RESLAB_DATA).")
    return parser


def plan(argv: list[str] | None = None) -> int:
    """``reslab plan``: print the cost plan of a profile's runs and write it as CSV."""
    from .plan import make_plan

    parser = _plan_parser()
    args = parser.parse_args(argv)
    data_root = Path(args.data_root).expanduser().resolve() if args.data_root else None
    if data_root is not None and not data_root.is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder")
    try:
        result = make_plan(args.profile, only=args.only, device=args.device, data_root=data_root)
    except ValueError as exc:
        parser.error(str(exc))
    print(result.text())
    path = result.write_csv(args.csv)
    print(f"[reslab] plan written to {path} (made in {result.seconds:.0f} s)")
    return 0


def bundle(argv: list[str] | None = None) -> int:
    """``reslab bundle``: an offline bundle for a GPU machine without internet (:mod:`reslab.bundle`)."""
    from .bundle import main_bundle

    return main_bundle(argv)


def _bundle_parser() -> argparse.ArgumentParser:
    from .bundle import bundle_parser

    return bundle_parser()


def export(argv: list[str] | None = None) -> int:
    """``reslab export``: one archive of finished results to bring home (:mod:`reslab.bundle`)."""
    from .bundle import main_export

    return main_export(argv)


def _export_parser() -> argparse.ArgumentParser:
    from .bundle import export_parser

    return export_parser()


def import_results(argv: list[str] | None = None) -> int:
    """``reslab import``: check an archive of ``reslab export``, then put it in place (:mod:`reslab.bundle`)."""
    from .bundle import main_import

    return main_import(argv)


def _import_parser() -> argparse.ArgumentParser:
    from .bundle import import_parser

    return import_parser()


def _train_parser() -> argparse.ArgumentParser:
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
    return parser


def train(argv: list[str] | None = None) -> int:
    """``reslab train``: one run spec of a table, in this process or on all of a torchrun/srun's."""
    from . import distributed
    from .experiment import record_run, run_alone
    from .plan import run_spec

    parser = _train_parser()
    args = parser.parse_args(argv)
    data_root = Path(args.data_root).expanduser().resolve() if args.data_root else None
    if data_root is not None and not data_root.is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder")
    try:
        params = dict(parse_param(p) for p in args.param)
        spec, seed = run_spec(args.table, args.profile, args.label, dataset=args.dataset, seed=args.seed,
                              params=params, device=args.device)
        dist = distributed.init_from_env(spec.cfg.device)
        row, _ = run_alone(spec, args.profile, seed, data_root, force=args.force)
    except ValueError as exc:
        parser.error(str(exc))
    if dist.is_main:
        keys = ("label", "dataset", "seed", "epochs", "best_acc", "final_acc", "world_size", "batch_norm",
                "evidence", "reused", "run_dir")
        print("\n".join(f"{k}: {row.get(k, '')}" for k in keys))
        record = record_run(row["run_dir"])
        if record is not None:  # commit it with the results: another machine then reuses the run
            print(f"recorded: {record}")
    if dist.distributed:
        import torch.distributed

        torch.distributed.destroy_process_group()
    return 0


#: Each command: (function, parser builder); its one-line description is in :data:`DESCRIPTIONS`.
COMMANDS = {"reproduce": (reproduce, _reproduce_parser), "notebooks": (refresh_notebooks, _notebooks_parser),
            "params": (params, _params_parser), "readme": (readme, _readme_parser), "plan": (plan, _plan_parser),
            "bundle": (bundle, _bundle_parser), "export": (export, _export_parser),
            "import": (import_results, _import_parser), "train": (train, _train_parser)}


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
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
