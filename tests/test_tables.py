"""The datasets table: smoke on synthetic data, paper refuses to run without real data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reslab.tables import dataset_specs, run_datasets


def test_smoke_without_data_uses_synthetic_and_says_so(no_data_root):
    out = run_datasets(profile="smoke", datasets=["mnist", "cifar10"], samples_per_class=2,
                       out_dir=no_data_root / "out")
    table = pd.read_csv(no_data_root / "out" / "datasets.csv")
    assert (table["data_source"] == "synthetic").all() and len(table) == 4
    assert (table["profile"] == "smoke").all()
    assert any("SYNTHETIC" in n for n in out.notes)
    counts = pd.read_csv(no_data_root / "out" / "class_counts.csv")
    assert set(counts["dataset"]) == {"mnist", "cifar10"} and (counts["count"] > 0).all()
    for f in ("samples_mnist.png", "samples_cifar10.png", "manifest.json"):
        assert (no_data_root / "out" / f).is_file()
    manifest = json.loads((no_data_root / "out" / "manifest.json").read_text())
    assert {d["data_source"] for d in manifest["data"]} == {"synthetic"}


def test_paper_without_data_stops_with_the_missing_data_message(no_data_root):
    with pytest.raises(FileNotFoundError, match="no mnist data found.*RESLAB_DATA"):
        run_datasets(profile="paper", datasets=["mnist"], out_dir=no_data_root / "out")
    assert not (no_data_root / "out" / "datasets.csv").exists()


def test_bad_parameters():
    with pytest.raises(ValueError, match="unknown profile 'smok'.*'smoke'"):
        run_datasets(profile="smok")
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        run_datasets(datasets=["svhn"])


def test_dataset_specs_are_the_official_ones():
    specs = dataset_specs().set_index("dataset")
    assert specs.loc["cifar10", "train_images"] == 50000 and specs.loc["mnist", "test_images"] == 10000
    assert specs.loc["cifar10", "class_names"].startswith("airplane, automobile")
