"""The benchmarks still run (on tiny inputs; their speed targets are read from their output,
never asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script, args", [
    ("bench_loader.py", ["--subset", "512", "--batch-size", "64"]),
    ("bench_train.py", ["--subset", "64", "--batch-size", "16", "--device", "cpu"]),
    ("bench_plan.py", ["--train", "64", "--test", "32", "--epochs", "1", "--device", "cpu", "--models", "drstn_v5,resnet18"]),
    ("bench_cpu_options.py", ["--models", "drstn_v5", "--subset", "256", "--epochs", "2"]),
    ("bench_executor.py", ["--runs", "2", "--jobs", "2", "--model", "resnet18", "--device", "cpu"]),
])
def test_benchmark_runs_and_prints_a_ratio(script, args, no_data_root):
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                         timeout=600, env={**os.environ}, cwd=BENCH)
    assert out.returncode == 0, out.stderr
    assert "ratio" in out.stdout and "synthetic" in out.stdout
