"""Runs as jobs (reslab.runs.jobs, reslab.runs.execute): the local executor against inline, a killed job that resumes, a
failing job reported with its log while the table renders, and the SLURM submission checked
against a fake ``sbatch``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from reslab.paths import Paths
from reslab.runs import jobs as ex
from reslab.runs.execute import RunJob, Submission, run_specs
from reslab.runs.spec import Recipe, RunSpec, load_splits
from reslab.runs.store import RESULT_NAME, RunStore
from reslab.tables import run_drstn_table4
from reslab.checkpoint import CHECKPOINT_NAME
from reslab.train import TrainConfig

pytest.importorskip("submitit")

#: Columns that must agree between a run made inline and the same run made as a job.
NUMBERS = ["label", "seed", "params", "epochs", "best_acc", "final_acc", "train_acc", "best_epoch", "run_key",
           "train_fingerprint", "test_fingerprint", "evidence", "evidence_note"]
MODELS = ["resnet18", "drstn_v2"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty run store, results root and data cache; synthetic data (an empty data folder)."""
    for name in ("RESLAB_RUNS", "RESLAB_RESULTS", "RESLAB_CACHE"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("RESLAB_DOWNLOAD", "0")
    for name in [k for k in os.environ if k.startswith(("RESLAB_SLURM_", "RESLAB_EXECUTOR", "RESLAB_JOBS"))]:
        monkeypatch.delenv(name)
    (tmp_path / "nodata").mkdir()
    return tmp_path


def _table4(store: Path, runs: str, executor: str | None, **kw):
    os.environ["RESLAB_RUNS"] = str(store / runs)
    return run_drstn_table4("smoke", data_root=store / "nodata", models=MODELS, device="cpu", executor=executor,
                            out_dir=store / f"out-{runs}", **kw)


def test_local_executor_two_jobs_gives_the_inline_rows(store, monkeypatch):
    monkeypatch.setenv("RESLAB_JOBS", "2")
    jobs = _table4(store, "jobs", "local")
    inline = _table4(store, "inline", None)
    a, b = jobs.tables["table4_runs"], inline.tables["table4_runs"]
    assert list(a["status"]) == ["finished"] * 2 and not a["reused"].any()
    pd.testing.assert_frame_equal(a[NUMBERS], b[NUMBERS])
    pd.testing.assert_frame_equal(jobs.tables["table4"].drop(columns="checkpoints"),
                                  inline.tables["table4"].drop(columns="checkpoints"))
    # Both jobs ran at once: each run folder names the job (a process of its own) that trained it.
    records = [json.loads((store / "jobs" / r.removeprefix("<runs>/") / ex.JOB_FILE).read_text())
               for r in a["run_dir"]]
    assert len({r["pid"] for r in records}) == 2 and all(r["submitit_executor"] == "local" for r in records)
    logs = sorted((store / "jobs" / "_jobs" / "smoke" / "drstn_table4_cifar10").glob("*_0_log.err"))
    assert len(logs) == 2
    manifest = json.loads((store / "out-jobs" / "manifest.json").read_text())
    assert manifest["executor"].startswith("local (jobs=2")
    # Made again: every run is reused from the store, nothing is submitted.
    again = _table4(store, "jobs", "local")
    assert again.tables["table4_runs"]["reused"].all()
    assert len(sorted((store / "jobs" / "_jobs" / "smoke" / "drstn_table4_cifar10").glob("*_0_log.err"))) == 2


def _spec(epochs: int) -> RunSpec:
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, schedule="cosine", device="cpu", progress=False,
                      channels_last=False)
    return RunSpec(table="executor_test", label="tiny", model="resnet18_cifar", dataset="cifar10",
                   recipe=Recipe(cfg=cfg))


def test_a_job_killed_midway_is_submitted_again_and_resumes(store, monkeypatch):
    # Smoke's synthetic splits (an empty data folder) with several epochs of a small network.
    spec = _spec(epochs=3)
    splits = {"cifar10": load_splits("cifar10", "smoke", Paths.from_env(data=store / "nodata"))}
    folder = RunStore.of(Paths.from_env()).run_dir(spec, "smoke", 0, *splits["cifar10"])
    killed = {}

    def kill_after_first_epoch():
        deadline = time.time() + 300
        while time.time() < deadline and not (folder / CHECKPOINT_NAME).is_file():
            time.sleep(0.02)
        record = json.loads((folder / ex.JOB_FILE).read_text())
        killed["pid"] = record["pid"]
        killed["epoch_done"] = not (folder / RESULT_NAME).is_file()
        os.kill(record["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    runs = run_specs([spec], "smoke", [0], Paths.from_env(data=store / "nodata"), splits=splits,
                     executor=ex.Executor("local", jobs=1, poll_s=0.2))
    killer.join(timeout=5)
    row = runs.rows.iloc[0]
    assert killed["epoch_done"], "the job finished before it could be killed; make the test run longer"
    assert row["status"] == "finished" and row["resumed_from_epoch"] >= 1
    assert json.loads((folder / ex.JOB_FILE).read_text())["pid"] != killed["pid"]  # a second job finished it
    os.environ["RESLAB_RUNS"] = str(store / "uninterrupted")
    whole = run_specs([spec], "smoke", [0], Paths.from_env(data=store / "nodata"), splits=splits)
    assert whole.rows.iloc[0]["resumed_from_epoch"] == 0
    for col in ("best_acc", "final_acc", "train_acc", "run_key"):
        assert row[col] == whole.rows.iloc[0][col], col
    pd.testing.assert_frame_equal(runs.histories[["epoch", "train_loss", "test_loss", "test_acc"]],
                                  whole.histories[["epoch", "train_loss", "test_loss", "test_acc"]])


FAULT = '''
# Injected by tests/test_executor.py into the jobs' Python: building DRSTN V2 fails.
import reslab.runs.execute as _e
_build = _e.build_model
def build_model(spec, *args, **kwargs):
    if spec.model == "drstn_v2":
        raise RuntimeError("injected failure: drstn_v2 cannot be built")
    return _build(spec, *args, **kwargs)
_e.build_model = build_model
'''


def test_a_failing_job_is_reported_with_its_log_and_the_rest_renders(store, monkeypatch, capsys):
    site = store / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAULT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    out = _table4(store, "jobs", "local")
    runs = out.tables["table4_runs"].set_index("model")
    assert runs.loc["resnet18", "status"] == "finished"
    status = runs.loc["drstn_v2", "status"]
    assert status.startswith("not run: RuntimeError: injected failure") and "(log: <runs>/_jobs/" in status
    assert pd.isna(runs.loc["drstn_v2", "best_acc"])
    log = store / "jobs" / status.split("(log: <runs>/", 1)[1].rstrip(")")
    assert log.is_file() and "injected failure" in log.read_text()
    assert str(log) in capsys.readouterr().err  # reported where the notebook shows it
    table = out.tables["table4"].set_index("model")
    assert table.loc["resnet18", "n"] == 1 and pd.notna(table.loc["resnet18", "best_acc_mean"])
    assert table.loc["drstn_v2", "n"] == 0 and pd.isna(table.loc["drstn_v2", "best_acc_mean"])
    assert any("1 of 2 runs NOT RUN" in n and "injected failure" in n for n in out.notes)
    assert (store / "out-jobs" / "table4.csv").is_file() and (store / "out-jobs" / "fig3_test_acc.png").is_file()
    # Without the fault, the run is made the next time and the finished one is reused.
    monkeypatch.setenv("PYTHONPATH", os.environ["PYTHONPATH"].split(os.pathsep, 1)[1])
    again = _table4(store, "jobs", "local").tables["table4_runs"].set_index("model")
    assert list(again["status"]) == ["finished"] * 2
    assert bool(again.loc["resnet18", "reused"]) and not bool(again.loc["drstn_v2", "reused"])


# --------------------------------------------------------------------------------------------
# SLURM, without a cluster

FAKE_SBATCH = """#!/bin/sh
# A stand-in for SLURM's sbatch: records its arguments and the script, answers like sbatch.
printf '%s\\n' "$@" > "{record}/args"
cp "$1" "{record}/script.sh"
echo "Submitted batch job 4242"
"""


def test_slurm_parameters_from_settings():
    e = ex.Executor("slurm", jobs=3, slurm={"partition": "gpu", "account": "lab", "time": "1-02:00:00", "gpus": "4",
                                          "cpus": "10", "mem": "64G", "extra": "mail-type=END;--exclude=node3",
                                          "setup": "module load cuda; source venv/bin/activate"})
    p = e.slurm_parameters()
    assert p["time"] == 26 * 60 and p["partition"] == "gpu" and p["account"] == "lab" and p["mem"] == "64G"
    assert p["gpus_per_node"] == 4 and p["ntasks_per_node"] == 4 and p["cpus_per_task"] == 10
    assert p["array_parallelism"] == 3 and p["additional_parameters"] == {"mail-type": "END", "exclude": "node3"}
    assert p["setup"] == ["module load cuda", "source venv/bin/activate"]
    assert ex.parse_minutes("90") == 90 and ex.parse_minutes("1:30:00") == 90 and ex.parse_minutes("0:00:30") == 1
    for bad, match in [({"time": "soon"}, "time="), ({"gpus": "0"}, "gpus="), ({"extra": "exclusive"}, "key=value"),
                       ({"gpu": "1"}, "unknown SLURM setting")]:
        with pytest.raises(ValueError, match=match):
            ex.Executor("slurm", slurm=bad)
    with pytest.raises(ValueError, match="executor must be one of"):
        ex.Executor("cluster")
    with pytest.raises(ValueError, match="positive integer"):
        ex.Executor("local", jobs=0)


def test_slurm_executor_needs_sbatch(store, monkeypatch):
    monkeypatch.setenv("PATH", str(store / "empty"))
    with pytest.raises(RuntimeError, match="sbatch and srun"):
        ex.submit(ex.Executor("slurm"), RunJob(), [], store / "jobs")


def test_slurm_submission_is_one_job_array_made_with_the_settings(store, monkeypatch):
    record = store / "sbatch"
    record.mkdir()
    bin_dir = store / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH.format(record=record))
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    srun = bin_dir / "srun"  # submitit looks for it before submitting; the job's script would call it
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for k, v in {"PARTITION": "gpu", "ACCOUNT": "lab", "TIME": "2:00:00", "EXTRA": "mail-type=END"}.items():
        monkeypatch.setenv(f"RESLAB_SLURM_{k}", v)
    monkeypatch.setenv("RESLAB_JOBS", "2")
    executor = ex.Executor.resolve("slurm")
    spec = _spec(epochs=1)
    paths = Paths.from_env(runs=store / "runs")
    subs = [Submission(spec=spec, profile="smoke", seed=s, paths=paths, fingerprints=("a", "b")) for s in range(3)]
    folder = RunStore.of(paths).jobs_folder("smoke", spec.table)
    jobs = ex.submit(executor, RunJob(), subs, folder)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    args = (record / "args").read_text().split()
    assert len(args) == 1 and args[0].endswith(".sh")  # sbatch <script>, called once for the whole array
    script = (record / "script.sh").read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=120",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --nodes=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mail-type=END", "#SBATCH --signal=USR2@120",
                 "#SBATCH --job-name=reslab"):
        assert line in script.splitlines(), line
    assert f"#SBATCH --output={folder}/%A_%a_0_log.out" in script.splitlines()
    # Each array element finds its run: one pickled submission per run, in the jobs folder.
    assert len(list(folder.glob("4242_*_submitted.pkl"))) == 3


def test_reproduce_checks_executor_settings_before_running(monkeypatch):
    for name in [k for k in os.environ if k.startswith(("RESLAB_SLURM_", "RESLAB_EXECUTOR", "RESLAB_JOBS"))]:
        monkeypatch.delenv(name)
    for argv, message in [(["--executor", "slurm", "--slurm", "time=soon"], "time="),
                          (["--executor", "slurm", "--slurm", "gpu=1"], "unknown SLURM setting"),
                          (["--executor", "local", "--jobs", "0"], "positive integer"),
                          (["--slurm", "partition"], "NAME=VALUE")]:
        proc = subprocess.run([sys.executable, "-m", "reslab.cli", "reproduce", "--only", "datasets", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
    assert "RESLAB_SLURM_TIME" not in os.environ


def test_a_requeued_job_resumes_instead_of_retraining():
    """submitit calls ``checkpoint`` at SLURM's time-limit signal or on preemption, and requeues what
    it returns: the same run, never retrained from scratch (``force`` off), so it resumes from last.pt."""
    sub = Submission(spec=_spec(epochs=2), profile="smoke", seed=0, paths=Paths.from_env(runs="runs"),
                     fingerprints=("a", "b"), force=True)
    again = RunJob().checkpoint(sub)
    assert isinstance(again.function, RunJob) and again.args[0] == dataclasses.replace(sub, force=False)


def test_a_row_filed_before_rows_said_where_epochs_trained_says_what_is_known():
    """Rows of runs made before ``trained_on``: the epochs since the last resume were trained on the
    row's device; the earlier ones say their device was not recorded."""
    from reslab.runs.execute import _trained_on

    assert _trained_on({"epochs": 10, "resumed_from_epoch": 0, "device": "cuda:NVIDIA H100 80GB HBM3"}) == \
        "epochs 1-10 on cuda:NVIDIA H100 80GB HBM3"
    assert _trained_on({"epochs": 50, "resumed_from_epoch": 19, "device": "cpu"}) == \
        "epochs 1-19 on a device not recorded; epochs 20-50 on cpu"
    assert _trained_on({"epochs": 10, "resumed_from_epoch": 9, "device": "cpu"}) == \
        "epochs 1-9 on a device not recorded; epoch 10 on cpu"
