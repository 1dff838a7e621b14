#!/usr/bin/env bash
# Rerun the notebooks of this reslab bundle on a machine without internet, then pack the results.
#
#   bash run.sh [OUT]     OUT: where the results, run.log and the archive go (default: out/ beside run.sh)
#
# Environment: DOCTOR (0: no `reslab doctor` first), PYTHON (default python3), PROFILE (default: the bundle's profile), DEVICE (auto, cuda,
# cuda:N or cpu; default: each notebook's own), MINUTES (time-boxed: train for at most that many minutes,
# one seed of every row first, then make the tables of what finished: reslab reproduce --minutes), JOBS
# (with MINUTES: runs at once on the device, default 1). Needs no root and no network: Python and PyTorch
# (>= 2.4, with torchvision) must be on the machine, with the packages bundle.json assumes preinstalled;
# everything else is installed from wheels/ into .runtime/ beside this script.
#
# Steps: (a) check the machine, (b) install the wheels into a private folder, (c) register the `reslab`
# Jupyter kernel there, (d) copy the bundled runs into the run store and run `reslab reproduce`,
# (e) always write ONE archive with `reslab export` (bring it home and run `reslab import` on it).
# The exit code is non-zero when a notebook failed, after the archive is written.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out" || { echo "[run.sh] ERROR: cannot create $out" >&2; exit 2; }
out="$(cd "$out" && pwd)"
PYTHON="${PYTHON:-python3}"

say() { printf '[run.sh] %s\n' "$*"; }
die() { printf '[run.sh] ERROR: %s\n' "$*" >&2; exit 2; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no Python as '$PYTHON' on PATH: set PYTHON=/path/to/python3."

# (a) The machine: the Python version of the wheels, torch and torchvision, the preinstalled packages
# the bundle relies on, and pip. Prints shell assignments; on a problem, says what to do and exits 2.
facts="$("$PYTHON" - "$here/bundle.json" <<'PY'
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import shlex
import sys

b = json.load(open(sys.argv[1]))
pre = b["preinstalled"]
problems = []
here_py = "%d.%d" % sys.version_info[:2]
if here_py != b["python"]:
    problems.append(f"this is Python {here_py} ({sys.executable}) but the wheels of this bundle are for Python "
                    f"{b['python']}. Run with PYTHON=/path/to/python{b['python']}, or make a bundle for this Python: "
                    f"reslab bundle --python {here_py} ...")
try:
    import torch
    version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    minimum = tuple(int(x) for x in pre["torch_min"].split("."))
    if version < minimum:
        problems.append(f"torch {torch.__version__} is too old: reslab needs torch >= {pre['torch_min']}. Install a "
                        "newer PyTorch (with torchvision) on this machine; the bundle does not carry it (too large).")
except Exception as exc:
    problems.append(f"torch does not import ({type(exc).__name__}: {exc}). This machine needs PyTorch >= "
                    f"{pre['torch_min']} with torchvision; the bundle does not carry them (too large).")
try:
    import torchvision  # noqa: F401
except Exception as exc:
    problems.append(f"torchvision does not import ({type(exc).__name__}: {exc}). Install the torchvision that "
                    "matches this machine's torch.")
if "torch" in sys.modules:
    want = os.environ.get("DEVICE", "").strip().lower()
    run_profile = os.environ.get("PROFILE") or b["profile"]
    if run_profile in ("paper", "strong") and want != "cpu" and not torch.cuda.is_available():
        problems.append(f"profile {run_profile} is meant for a GPU, but torch {torch.__version__} sees none "
                        "(torch.cuda.is_available() is False: a CPU-only torch, no driver, or no visible device); "
                        "it would train on the CPU for hours or days. Set DEVICE=cpu to do that on purpose.")
missing = []
for check in pre["checks"]:
    try:
        md.distribution(check["dist"])
    except md.PackageNotFoundError:
        missing.append(check["dist"])
        continue
    if check["module"]:
        try:
            importlib.import_module(check["module"])
        except Exception as exc:
            missing.append(f"{check['dist']} (import {check['module']} fails: {type(exc).__name__}: {exc})")
if missing:
    assumed = ("the stock set " + ", ".join(pre["stock"]) + " and their dependencies" if pre["source"] == "stock"
               else f"the packages of {pre['source']}")
    problems.append(f"missing here, though the bundle assumed them preinstalled ({assumed}): {', '.join(missing)}. "
                    "Install them here, or make a bundle for this machine: run `python3 -m pip list --format=freeze "
                    "> have.txt` here, copy have.txt to the machine with internet and run `reslab bundle --have "
                    "have.txt ...` there.")
if b["wheels"] and importlib.util.find_spec("pip") is None:
    problems.append(f"pip is missing from {sys.executable}: run.sh installs the wheels with `python -m pip install "
                    "--no-index` (no network). Use a Python that has pip (python3 -m ensurepip --user adds it).")
if problems:
    for p in problems:
        print(f"[run.sh] ERROR: {p}", file=sys.stderr)
    sys.exit(2)
for warning in b.get("warnings", []):
    print(f"[run.sh] WARNING (from the bundle): {warning}", file=sys.stderr)
try:
    hub = os.path.join(torch.hub.get_dir(), "checkpoints")
    for w in b.get("hub_weights", []):
        if not os.path.isfile(os.path.join(hub, w["file"])):
            print(f"[run.sh] WARNING: {w['notebook']} reads ImageNet weights {w['file']} ({w['model']}), not in {hub}: "
                  "copy the file there (the bundle cannot carry it), or that notebook falls back or fails.",
                  file=sys.stderr)
except Exception:
    pass
assign = {"b_profile": b["profile"], "b_commit": b["git_commit"], "b_tag": b.get("archive_tag", ""),
          "b_info": f"Python {here_py}, torch {torch.__version__}, " + (
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}"
              f"{'' if torch.cuda.is_bf16_supported() else ' (no bf16)'}" if torch.cuda.is_available()
              else "no GPU visible")}
for key, value in assign.items():
    print(f"{key}={shlex.quote(str(value))}")
print("b_notebooks=(" + " ".join(shlex.quote(n) for n in b["notebooks"]) + ")")
print("b_params=(" + " ".join(shlex.quote(p) for p in b["parameters"]) + ")")
PY
)" || exit 2
eval "$facts"
profile="${PROFILE:-$b_profile}"
say "$b_info: ok; notebooks ${b_notebooks[*]} ($profile)"

# (b) The wheels, into a private folder (beside this script, else under OUT when the bundle is read-only).
runtime="$here/.runtime"
if ! mkdir -p "$runtime" 2>/dev/null || [ ! -w "$runtime" ]; then runtime="$out/.runtime"; fi
site="$runtime/site-packages"
rm -rf "$site" && mkdir -p "$site" || die "cannot write $site"
shopt -s nullglob
wheels=("$here"/wheels/*.whl)
shopt -u nullglob
if [ "${#wheels[@]}" -gt 0 ]; then
    say "installing ${#wheels[@]} wheel(s) into $site"
    PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile \
        --disable-pip-version-check --target "$site" "${wheels[@]}" \
        || die "pip could not install the bundled wheels (see above); they are for manylinux x86_64."
fi
export PYTHONPATH="$here/src:$site${PYTHONPATH:+:$PYTHONPATH}"

# (c) The `reslab` kernel, in a prefix of its own; JUPYTER_PATH points there and nowhere in HOME is read.
export JUPYTER_PATH="$runtime/kernel/share/jupyter"
export JUPYTER_DATA_DIR="$runtime/jupyter/data" JUPYTER_CONFIG_DIR="$runtime/jupyter/config"
export JUPYTER_RUNTIME_DIR="$runtime/jupyter/runtime" IPYTHONDIR="$runtime/ipython"
rm -rf "$runtime/kernel"
"$PYTHON" -m ipykernel install --prefix "$runtime/kernel" --name reslab --display-name "Python (reslab)" >/dev/null \
    || die "could not register the reslab Jupyter kernel (see above)."
"$PYTHON" -c 'import sys; from jupyter_client.kernelspec import KernelSpecManager as K; sys.exit("reslab" not in K().find_kernel_specs())' \
    || die "the reslab kernel is not found through JUPYTER_PATH=$JUPYTER_PATH."

# (d) The bundled runs into the run store (never over a run already there), then the notebooks.
results="$out/results"
mkdir -p "$results/_runs"
if [ -d "$here/runs" ]; then cp -R -n "$here/runs/." "$results/_runs/"; fi
# The record of runs finished before (here or in an earlier slice): they are not trained again.
if [ -d "$here/record" ]; then mkdir -p "$results/_finished" && cp -R -n "$here/record/." "$results/_finished/"; fi
unset RESLAB_RESULTS RESLAB_RUNS RESLAB_DATA RESLAB_SOURCE_RESULTS
export RESLAB_DOWNLOAD=0 RESLAB_GIT_COMMIT="$b_commit"
args=(--profile "$profile" --only "${b_notebooks[@]}" --data-root "$here/data" --results "$results")
if [ -n "${DEVICE:-}" ]; then args+=(--device "$DEVICE"); fi
if [ -n "${MINUTES:-}" ]; then args+=(--minutes "$MINUTES"); fi
if [ -n "${JOBS:-}" ]; then args+=(--jobs "$JOBS"); fi
for p in ${b_params[@]+"${b_params[@]}"}; do args+=(--param "$p"); done
# (d') The device first: `reslab doctor` (a few minutes on a GPU; DOCTOR=0 leaves it out), kept beside the archive.
if [ "${DOCTOR:-1}" != "0" ]; then
    say "reslab doctor (DOCTOR=0 leaves it out)"
    "$PYTHON" -m reslab.cli doctor ${DEVICE:+--device "$DEVICE"} --csv "$out/doctor.csv" 2>&1 | tee "$out/doctor.txt"
fi
say "reslab reproduce ${args[*]}"
"$PYTHON" -m reslab.cli reproduce "${args[@]}" 2>&1 | tee "$out/run.log"
status=${PIPESTATUS[0]}

# (e) Always one archive, even when a notebook failed.
export_args=(--profile "$profile" --results "$results" --out "$out" --only "${b_notebooks[@]}" --skip-runs "$here/runs")
if [ -n "$b_tag" ]; then export_args+=(--tag "$b_tag"); fi
"$PYTHON" -m reslab.cli export "${export_args[@]}" 2>&1 | tee -a "$out/run.log"
export_status=${PIPESTATUS[0]}

if [ "$status" -ne 0 ]; then
    say "reslab reproduce failed (exit $status; see $out/run.log and $results/$profile/_failed/); the archive holds what finished."
fi
if [ "$export_status" -ne 0 ]; then
    say "reslab export failed (exit $export_status): the results are in $results."
    [ "$status" -ne 0 ] || status=$export_status
fi
if [ "$status" -eq 0 ]; then
    say "done: bring the reslab-results-*.tar.gz in $out home and run: reslab import <archive>"
fi
exit "$status"
