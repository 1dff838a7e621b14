"""One time-boxed GPU slice: train a table's runs in a given order, K at a time, and pack what finished.

Runs inside a reslab bundle's folder (src/, data/, wheels/, bundle.json) on the device machine:

    python3 gpu_slice.py --bundle .gpu/bundle --out $OUT --budget 540 --jobs 7 \
        --table selu_ablation_fashion_mnist --profile paper --seeds 0-9 --labels "A" "B" ...

Phases: (1) the machine (GPU, torch, the hub cache's ImageNet weights) into info.txt; (2) the wheels
into a private site folder; (3) a self-check: the smoke recipe of every distinct model on the device
(whole train/eval/record path, seconds); a failure stops the slice at once, with its logs; (4) the
runs, seed-major, at most K at once, a run started only when its estimated time fits the deadline;
at the deadline the runs still going are stopped (they are lost: their checkpoints are too large to
bring back); (5) the record of every finished run (result rows and histories) and every log packed
into $OUT (a few files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def say(msg: str, log: Path | None = None) -> None:
    line = f"[slice {now():6.1f}s] {msg}"
    print(line, flush=True)
    if log is not None:
        with log.open("a") as fh:
            fh.write(line + "\n")


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout
    except Exception as exc:  # noqa: BLE001 - information only
        return f"({cmd}: {exc})"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="/tmp/reslab-slice")
    p.add_argument("--budget", type=float, required=True, help="seconds from start to the packed results")
    p.add_argument("--pack-s", type=float, default=25.0, help="seconds kept for packing")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="OMP threads per run")
    p.add_argument("--table", required=True)
    p.add_argument("--profile", default="paper")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seeds", default="0")
    p.add_argument("--labels", nargs="+", required=True, help="within a seed, in this order")
    p.add_argument("--weights", nargs="*", default=[], help="LABEL=relative cost, for estimates before a run ends")
    p.add_argument("--check-labels", nargs="*", default=None, help="labels of the self-check (default: all)")
    p.add_argument("--check-profile", default="smoke")
    p.add_argument("--param", action="append", default=[])
    args = p.parse_args()

    bundle = Path(args.bundle).resolve()
    out = Path(args.out).resolve()
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    logs = work / "logs"
    logs.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    dlog = logs / "driver.log"
    deadline = args.budget - args.pack_s
    meta = json.loads((bundle / "bundle.json").read_text())

    # (1) the machine
    info = ["$ nvidia-smi", sh("nvidia-smi"), "$ torch",
            sh(f"{sys.executable} -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, "
               "torch.version.cuda, torch.backends.cudnn.version(), torch.cuda.is_available(), "
               "[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])'"),
            "$ torch hub cache", sh(f"{sys.executable} -c 'import torch, os; d = os.path.join(torch.hub.get_dir(), "
                                    "\"checkpoints\"); print(d); print(sorted(os.listdir(d)) if os.path.isdir(d) "
                                    "else \"(no such folder)\")'"),
            "$ find / -name '*.pth' (ImageNet weights anywhere)",
            sh("timeout 15 find / -xdev \\( -name '*.pth' -o -name '*.safetensors' \\) -size +1M 2>/dev/null | head -50"),
            "$ lscpu", sh("lscpu | head -20"), "$ pip list", sh(f"{sys.executable} -m pip list 2>/dev/null")]
    (logs / "info.txt").write_text("\n".join(info))
    say(f"machine noted; bundle commit {meta['git_commit'][:12]}", dlog)

    # (2) the wheels
    site = work / "site"
    wheels = sorted(str(w) for w in (bundle / "wheels").glob("*.whl"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                        "--disable-pip-version-check", "--target", str(site), *wheels],
                       capture_output=True, text=True, env={**os.environ, "PIP_CONFIG_FILE": "/dev/null"})
    if r.returncode:
        (logs / "pip.log").write_text(r.stdout + r.stderr)
        say(f"pip failed (rc {r.returncode}); see pip.log", dlog)
    say(f"{len(wheels)} wheels installed", dlog)

    def env_for(store: str) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("RESLAB_")}
        e.update(PYTHONPATH=f"{bundle / 'src'}:{site}", RESLAB_DATA=str(bundle / "data"),
                 RESLAB_RUNS=str(work / store / "runs"), RESLAB_RECORD=str(work / store / "record"),
                 RESLAB_CACHE=str(work / "cache"), RESLAB_RESULTS=str(work / store / "results"),
                 RESLAB_DOWNLOAD="0", RESLAB_GIT_COMMIT=meta["git_commit"], OMP_NUM_THREADS=str(args.threads),
                 PYTHONUNBUFFERED="1")
        return e

    def start(label: str, seed: int, profile: str, store: str, tag: str) -> tuple[subprocess.Popen, Path]:
        log = logs / f"{tag}-{label.replace(' ', '_').replace('+', 'p').replace('(', '').replace(')', '')}-s{seed}.log"
        cmd = [sys.executable, "-m", "reslab.cli", "train", args.table, "--label", label, "--seed", str(seed),
               "--profile", profile, "--device", args.device]
        for prm in args.param:
            cmd += ["--param", prm]
        fh = log.open("w")
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env_for(store), cwd=str(work),
                                start_new_session=True)
        return proc, log

    summary: dict = {"bundle_commit": meta["git_commit"], "jobs": args.jobs, "device": args.device,
                     "profile": args.profile, "table": args.table, "check": [], "runs": []}

    def pack(code: int) -> int:
        if mon is not None:
            mon.kill()
        summary["elapsed_s"] = round(now(), 1)
        summary["exit"] = code
        (logs / "summary.json").write_text(json.dumps(summary, indent=1))
        rec = work / "main" / "record"
        with tarfile.open(out / "record.tar.gz", "w:gz") as tf:
            if rec.exists():
                tf.add(rec, arcname="record")
        with tarfile.open(out / "logs.tar.gz", "w:gz") as tf:
            tf.add(logs, arcname="logs")
        shutil.copy(logs / "summary.json", out / "summary.json")
        shutil.copy(dlog, out / "driver.log")
        say(f"packed; exit {code}", None)
        return code

    mon = None
    if shutil.which("nvidia-smi"):
        mon = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used,power.draw",
                                "--format=csv", "-l", "5"], stdout=(logs / "gpu.csv").open("w"),
                               stderr=subprocess.DEVNULL, start_new_session=True)

    # (3) the self-check
    checks = args.check_labels if args.check_labels is not None else args.labels
    procs = [(lbl, *start(lbl, 0, args.check_profile, "check", "check")) for lbl in checks]
    t_check = now()
    for lbl, proc, log in procs:
        try:
            rc = proc.wait(timeout=max(5.0, 180 - (now() - t_check)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = "timeout"
        summary["check"].append({"label": lbl, "rc": rc})
        say(f"self-check {lbl}: rc {rc}", dlog)
    bad = [c for c in summary["check"] if c["rc"] != 0]
    if bad:
        say(f"self-check failed for {[c['label'] for c in bad]}: stopping the slice (logs come back)", dlog)
        return pack(3)
    say(f"self-check passed in {now() - t_check:.0f} s", dlog)

    # (4) the runs
    weights = {lbl: 1.0 for lbl in args.labels}
    for w in args.weights:
        k, v = w.rsplit("=", 1)
        weights[k] = float(v)
    queue = [(lbl, s) for s in parse_seeds(args.seeds) for lbl in args.labels]
    running: list[dict] = []
    durations: dict[str, float] = {}

    def estimate(label: str) -> float | None:
        if label in durations:
            return durations[label]
        units = [d / weights[lbl] for lbl, d in durations.items()]
        return max(units) * weights[label] if units else None

    failures = 0
    while queue or running:
        for r_ in list(running):
            rc = r_["proc"].poll()
            if rc is None:
                continue
            r_["end"] = now()
            r_["rc"] = rc
            r_["seconds"] = round(r_["end"] - r_["start"], 1)
            running.remove(r_)
            entry = {k: r_[k] for k in ("label", "seed", "rc", "seconds")} | {"log": r_["log"].name}
            summary["runs"].append(entry)
            if rc == 0:
                durations[r_["label"]] = max(durations.get(r_["label"], 0.0), r_["seconds"])
            else:
                failures += 1
            say(f"done {r_['label']} s{r_['seed']}: rc {rc}, {r_['seconds']} s ({len(running)} running)", dlog)
        if failures >= 3 and queue:
            say("three runs failed: no more are started", dlog)
            queue = []
        while queue and len(running) < args.jobs:
            lbl, seed = queue[0]
            est = estimate(lbl)
            left = deadline - now()
            if est is not None and est * 1.1 > left:
                # the cheapest remaining run that fits, else none
                fits = [(l2, s2) for l2, s2 in queue if (estimate(l2) or 0) * 1.1 <= left and estimate(l2)]
                if not fits:
                    say(f"nothing left fits the {left:.0f} s left: {len(queue)} runs not started", dlog)
                    summary["not_started"] = [f"{l2} s{s2}" for l2, s2 in queue]
                    queue = []
                    break
                lbl, seed = fits[0]
            queue.remove((lbl, seed))
            proc, log = start(lbl, seed, args.profile, "main", "run")
            running.append({"label": lbl, "seed": seed, "proc": proc, "log": log, "start": now()})
            say(f"start {lbl} s{seed} (estimate {est if est is None else round(est)} s, {len(running)} running)", dlog)
        if now() >= deadline:
            for r_ in running:
                os.killpg(r_["proc"].pid, signal.SIGTERM)
            time.sleep(3)
            for r_ in running:
                if r_["proc"].poll() is None:
                    os.killpg(r_["proc"].pid, signal.SIGKILL)
                summary["runs"].append({"label": r_["label"], "seed": r_["seed"], "rc": "stopped at the deadline",
                                        "seconds": round(now() - r_["start"], 1), "log": r_["log"].name})
                say(f"stopped at the deadline: {r_['label']} s{r_['seed']}", dlog)
            summary["not_started"] = summary.get("not_started", []) + [f"{l2} s{s2}" for l2, s2 in queue]
            running, queue = [], []
            break
        time.sleep(1.0)
    return pack(0)


if __name__ == "__main__":
    sys.exit(main())
