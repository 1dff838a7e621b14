"""Runs of a table: provenance rows, reuse of finished runs, force, init_from, summaries."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from reslab import experiment as E
from reslab.results import PROVENANCE_COLUMNS
from reslab.train import TrainConfig

CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", progress=False)


@pytest.fixture
def runs(no_data_root, monkeypatch):
    monkeypatch.setenv("RESLAB_RUNS", str(no_data_root / "runs"))
    return no_data_root / "runs"


def spec(label="tiny", cfg=CFG, **kw):
    return E.RunSpec(table="t", label=label, model="resnet18_cifar", dataset="mnist", cfg=cfg,
                     train_augment=E.Augment.standard("mnist", train=True, to_rgb=True), **kw)


@pytest.fixture(autouse=True)
def small_model(monkeypatch):
    """A tiny registered model keeps these tests fast."""
    from reslab.models import _registry

    from conftest import tiny_cnn

    monkeypatch.setitem(_registry._MODELS, "resnet18_cifar",
                        lambda num_classes=10, in_chans=3, pretrained=False, **kw: tiny_cnn(in_chans, num_classes))


def test_rows_carry_provenance_and_runs_are_reused(runs, monkeypatch):
    rows, hist = E.run_specs([spec()], "smoke", seeds=[0, 1])
    assert len(rows) == 2 and set(PROVENANCE_COLUMNS) <= set(rows.columns)
    assert (rows["data_source"] == "synthetic").all() and (rows["profile"] == "smoke").all()
    assert not rows["reused"].any() and list(hist["seed"].unique()) == [0, 1]
    assert rows.loc[0, "best_acc"] != rows.loc[1, "best_acc"] or rows.loc[0, "final_acc"] != rows.loc[1, "final_acc"]

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(E, "train", no_training)
    again, hist2 = E.run_specs([spec()], "smoke", seeds=[0, 1])
    assert again["reused"].all()
    pd.testing.assert_frame_equal(again.drop(columns="reused"), rows.drop(columns="reused"))
    pd.testing.assert_frame_equal(hist2, hist)
    with pytest.raises(AssertionError, match="trained again"):
        E.run_specs([spec()], "smoke", seeds=[0], force=True)
    with pytest.raises(AssertionError, match="trained again"):  # another recipe is another run
        E.run_specs([spec(cfg=CFG.replace(lr=0.01))], "smoke", seeds=[0])


def test_init_from_loads_matching_weights(runs):
    rows, _ = E.run_specs([spec("source")], "smoke", seeds=[0])
    train_data, test_data = E.load_splits("mnist", "smoke")
    ckpt = E.checkpoint_path(spec("source"), "smoke", 0, train_data, test_data)
    assert ckpt.is_file()
    row, _ = E.run_one(spec("target", init_from=ckpt, cfg=CFG.replace(epochs=1)), "smoke", 5, train_data, test_data)
    assert row["fresh_from_init"] == 0 and row["init_from"] == str(ckpt)
    with pytest.raises(FileNotFoundError, match="train the run it comes from first"):
        E.run_one(spec("x", init_from=runs / "missing.pt"), "smoke", 0, train_data, test_data)


def test_without_checkpoint_and_smaller_test_subset(runs):
    rows, _ = E.run_specs([spec("nock", checkpoint=False)], "smoke", seeds=[0], test_subset=16)
    assert rows.loc[0, "test_images"] == 16 and rows.loc[0, "train_images"] == 512
    train_data, test_data = E.load_splits("mnist", "smoke", test_subset=16)
    assert len(test_data) == 16 and len(E.load_splits("mnist", "smoke")[1]) > 16  # the profile's subset
    ckpt = E.checkpoint_path(spec("nock", checkpoint=False), "smoke", 0, train_data, test_data)
    assert not ckpt.exists() and (ckpt.parent / E.RESULT_NAME).is_file()
    again, _ = E.run_specs([spec("nock")], "smoke", seeds=[0], test_subset=16)  # same key: reused
    assert again["reused"].all()


def test_summarise_mean_std_n():
    rows = pd.DataFrame({
        "label": ["a", "a", "b"], "model": ["m", "m", "n"], "dataset": ["d"] * 3, "seed": [0, 1, 0],
        "best_acc": [0.5, 0.7, 0.9], "final_acc": [0.4, 0.6, 0.8], "train_acc": [1, 1, 1],
        "params": [10, 10, 20], "trainable_params": [10, 10, 20], "epochs": [2, 2, 2],
        "data_source": ["synthetic"] * 3, "profile": ["smoke"] * 3, "device": ["cpu"] * 3,
    })
    s = E.summarise(rows).set_index("label")
    assert s.loc["a", "best_acc_mean"] == pytest.approx(0.6) and s.loc["a", "n"] == 2
    assert s.loc["a", "best_acc_std"] == pytest.approx(torch.tensor([0.5, 0.7]).std().item())
    assert s.loc["b", "n"] == 1 and pd.isna(s.loc["b", "best_acc_std"])


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="specs is empty"):
        E.run_specs([], "smoke", seeds=[0])
    with pytest.raises(ValueError, match="at least one seed"):
        E.run_specs([spec()], "smoke", seeds=[])
