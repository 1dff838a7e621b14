"""The CBAM / ResNet-50 table (seed 004): claims transcription, rows and readings, smoke runs,
run reuse, the pretrained-weights fallback and error, and the Scratch audit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torchvision.models as tvm

from reslab.data import IMAGENET_MEAN_STD, Augment
from reslab.models import PretrainedWeightsError
from reslab.tables import cbam, cbam_claims, cbam_params, run_cbam


@pytest.fixture
def runs(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """An empty torch hub folder: the ImageNet weights are missing (downloads are off in tests)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def fake_weights(monkeypatch, tmp_path):
    """A ResNet-50 state dict (random, not ImageNet) where torchvision's weights file would be."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(tvm.resnet50().state_dict(), folder / "resnet50-0676ba61.pth")


def test_claims_are_the_five_row_table_and_the_log() -> None:
    table = cbam_claims()
    assert list(table["paper_row"]) == list(dict.fromkeys(r.paper_row for r in cbam.ROWS))
    assert (table["train_acc"].between(0, 1) & table["test_acc"].between(0, 1)).all()
    by_row = table.set_index("paper_row")
    # transcription check of printed integers and which count each is
    assert by_row.loc["ResNet50 Scratch", "parameters"] == 23528522
    assert by_row.loc["ResNet50", "parameters_counted"] == "trainable_params"
    log = cbam.paper_log().set_index("epoch")
    assert list(log.index) == list(range(1, 11))
    assert log.loc[1, "train_acc"] == 0.8297 and log.loc[10, "train_acc"] == by_row.loc["ResNet50 Scratch", "train_acc"]
    assert log["test_acc"].dropna().index.tolist() == [5, 10]  # validation printed after epochs 5 and 10 only
    assert log["test_acc"].max() == by_row.loc["ResNet50 Scratch", "test_acc"]  # the table's value is the best


def test_parameter_column_reuses_the_model_zoo_table() -> None:
    params = cbam_params().set_index("paper_row")
    assert params.loc["ResNet50", "match"] and params.loc["ResNet50 Scratch", "match"]
    for row in ("Sample ResNet", "ResNet Attention", "ResNet Attention Scratch"):
        assert not params.loc[row, "match"] and len(params.loc[row, "note"]) > 50


def test_pipeline_is_the_seeds() -> None:
    aug = cbam.seed_augment(224)
    mean, std = IMAGENET_MEAN_STD
    assert (aug.flip, aug.resize, aug.rrc_scale, aug.rrc_ratio, aug.pad_crop) == (True, 224, (0.8, 1.0), (1.0, 1.0), 0)
    assert aug.eval() == Augment(resize=224, mean=mean, std=std)  # test time: resize + normalise
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert aug(x, torch.Generator().manual_seed(0)).shape == (4, 3, 224, 224)


def test_rows_and_readings() -> None:
    scratch = cbam.select_rows(["ResNet50 Scratch"])
    assert [r.label for r in scratch] == ["ResNet50 Scratch (ImageNet init, all layers)", "ResNet50 Scratch (random init)"]
    specs = cbam.cbam_specs(cbam.RECIPES["paper"], scratch, imagenet=True)
    assert [s.model_kwargs for s in specs] == [{"pretrained": True}, {"pretrained": False}]
    assert [s.tags["paper_row"] for s in specs] == ["ResNet50 Scratch"] * 2
    frozen = cbam.cbam_specs(cbam.RECIPES["paper"], cbam.select_rows("ResNet50"), imagenet=True)[0]
    assert frozen.model_kwargs == {"pretrained": True, "freeze_backbone": True}
    assert cbam.RECIPES["paper"].cfg.epochs == 10 and cbam.RECIPES["paper"].input_size == 224
    # Without the file a pretrained row runs from random weights: said in its tags, and never judged.
    missing = cbam.cbam_specs(cbam.RECIPES["paper"], cbam.select_rows("ResNet50"), imagenet=False)[0]
    assert missing.model_kwargs["pretrained"] is False and missing.tags["weights_missing"]
    assert missing.tags["init"].startswith("random init") and missing.recipe.overrides
    with pytest.raises(ValueError, match="unknown row"):
        cbam.select_rows(["ResNet101"])


def test_bad_parameters(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        run_cbam(profile="smok", out_dir=tmp_path)
    with pytest.raises(ValueError, match="weights must be one of"):
        run_cbam(weights="imagenet21k", out_dir=tmp_path)
    with pytest.raises(ValueError, match="resize must be at least 32"):
        run_cbam(resize=16, out_dir=tmp_path)
    with pytest.raises(ValueError, match="seeds must be a non-empty list"):
        run_cbam(seeds=[], rows=["Sample ResNet"], out_dir=tmp_path)


def test_paper_without_weights_names_the_file_and_folder(no_weights, no_data_root, runs) -> None:
    with pytest.raises(PretrainedWeightsError, match=r"resnet50-0676ba61\.pth into .*hub.checkpoints"):
        run_cbam(profile="paper", rows=["ResNet50"], out_dir=no_data_root / "out")
    assert not runs.exists()  # stopped before any training


def test_smoke_synthetic_without_weights_falls_back_and_reuses(no_weights, no_data_root, runs) -> None:
    out_dir = no_data_root / "out"
    out = run_cbam(rows=["Sample ResNet", "ResNet50"], out_dir=out_dir)
    table = pd.read_csv(out_dir / "cbam_table.csv")
    assert list(table["paper_row"]) == ["Sample ResNet", "ResNet50"]
    assert table["weights_missing"].tolist() == [False, True] and "random weights" in table["label"].iloc[1]
    assert (table["data_source"] == "synthetic").all() and (table["evidence"] == "smoke").all()
    assert (table["input_size"] == 32).all() and (table["profile"] == "smoke").all()
    frozen = table.set_index("paper_row").loc["ResNet50"]
    assert frozen["trainable_params"] == frozen["paper_params"] and frozen["init"].startswith("random init")
    assert any("SYNTHETIC" in n for n in out.notes) and any("not found" in n for n in out.notes)
    for f in ("cbam_runs.csv", "cbam_history.csv", "cbam_params.csv", "train_acc_per_epoch.png",
              "test_acc_per_epoch.png", "manifest.json"):
        assert (out_dir / f).is_file(), f
    assert json.loads((out_dir / "manifest.json").read_text())["parameters"]["weights"] == "imagenet"
    again = run_cbam(rows=["Sample ResNet", "ResNet50"], out_dir=out_dir)
    assert again.tables["cbam_runs"]["reused"].all()
    assert again.tables["cbam_table"]["best_acc_mean"].tolist() == out.tables["cbam_table"]["best_acc_mean"].tolist()


def test_smoke_with_weights_runs_both_readings(fake_weights, no_data_root, runs) -> None:
    out = run_cbam(rows=["ResNet50 Scratch"], out_dir=no_data_root / "out")
    table = out.tables["cbam_table"]
    assert list(table["init"]) == ["ImageNet weights, all layers trained", "random init"]
    stored = [json.loads(p.read_text())["model_kwargs"] for p in sorted(runs.rglob("result.json"))]
    assert sorted(k["pretrained"] for k in stored) == [False, True]
    audit = out.tables["cbam_audit"]
    assert len(audit) == 2 and (audit["paper_train_acc"] == cbam.paper_log()["train_acc"].iloc[0]).all()
    assert any(n.startswith("audit: no reading is chosen") for n in out.notes)  # smoke: no verdict


def test_audit_names_the_closer_reading() -> None:
    rows = cbam.select_rows(["ResNet50 Scratch"])
    labels = [r.label for r in rows]
    hist = pd.DataFrame({"label": labels, "paper_row": [r.paper_row for r in rows], "epoch": [1, 1], "seed": [0, 0],
                         "train_acc": [0.80, 0.35], "test_acc": [0.9, 0.4], "train_loss": [0.6, 1.8]})

    def table(evidence: str) -> pd.DataFrame:
        return pd.DataFrame({"label": labels, "profile": "paper", "data_source": "official", "evidence": evidence,
                             "evidence_note": ""})

    audit, notes = cbam._audit(hist, table("protocol"))
    assert "closest reading is 'ResNet50 Scratch (ImageNet init, all layers)'" in notes[0]
    assert audit["train_acc_diff"].round(4).tolist() == [round(0.80 - 0.8297, 4), round(0.35 - 0.8297, 4)]
    _, smoke_notes = cbam._audit(hist, table("smoke"))
    assert smoke_notes[0].startswith("audit: no reading is chosen")
