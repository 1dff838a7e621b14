"""The SELU ablation (seed 003, Tables 2-5): recipes, runs on tiny budgets, claims, paired intervals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reslab import stats as STATS
from reslab.claims import load_claims
from reslab.runs import execute as EX
from reslab.tables import run_selu_ablation
from reslab.tables import selu as S


@pytest.fixture
def tiny_models(monkeypatch):
    """The four ResNet-34 variants replaced by a tiny CNN: these tests check the table, not the models."""
    from conftest import tiny_cnn

    from reslab.models import _registry

    for v in S.VARIANTS:
        monkeypatch.setitem(_registry._MODELS, v.model,
                            lambda num_classes=10, in_chans=3, pretrained=False, **kw: tiny_cnn(in_chans, num_classes))


@pytest.fixture
def runs(no_data_root, monkeypatch):
    monkeypatch.setenv("RESLAB_RUNS", str(no_data_root / "runs"))
    return no_data_root / "runs"


def test_smoke_on_synthetic_data_writes_every_output_and_reuses_runs(runs, tiny_models, monkeypatch):
    out_dir = runs.parent / "out"
    out = run_selu_ablation(profile="smoke", seeds=[0, 1], device="cpu", out_dir=out_dir)
    table = pd.read_csv(out_dir / "selu_ablation.csv")
    assert list(table["label"]) == list(S.RECIPES["smoke"].rows)
    assert (table["n"] == 2).all() and (table["data_source"] == "synthetic").all()
    assert (table["evidence"] == "smoke").all() and any("SYNTHETIC" in n for n in out.notes)
    # The paper's numbers come from the claims file, the differences from the runs.
    claims = load_claims("selu")
    base = table.set_index("label").loc["ResNet34"]
    assert base["paper_acc"] * 100 in set(claims["value"])
    assert base["diff_best"] == pytest.approx(base["best_acc_mean"] - base["paper_acc"])
    paired = pd.read_csv(out_dir / "paired.csv")
    assert set(paired["label"]) == set(table["label"]) - {"ResNet34"} and (paired["n"] == 2).all()
    assert (paired["ci95_low"] <= paired["mean_diff"]).all() and (paired["mean_diff"] <= paired["ci95_high"]).all()
    runs_csv = pd.read_csv(out_dir / "runs.csv")
    selu = runs_csv[runs_csv["label"] == "ResNet34+SELU"].set_index("seed")["best_acc"]
    relu = runs_csv[runs_csv["label"] == "ResNet34"].set_index("seed")["best_acc"]
    row = paired[(paired["label"] == "ResNet34+SELU") & (paired["metric"] == "best_acc")].iloc[0]
    assert row["mean_diff"] == pytest.approx((selu - relu).mean())
    for name in ("runs.csv", "histories.csv", "claims.csv", "fig4_5_lr_decay_loss.png",
                 "fig6_selu_vs_relu_loss.png", "manifest.json"):
        assert (out_dir / name).is_file(), name
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["parameters"]["seeds"] == [0, 1]
    assert manifest["parameters"]["recipes"]["ResNet34+LR decay"]["schedule"] == "exponential"

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(EX, "train", no_training)
    again = run_selu_ablation(profile="smoke", seeds=[0, 1], device="cpu", out_dir=out_dir)
    assert again.tables["runs"]["reused"].all() and any("reused" in n for n in again.notes)


def test_missing_baselines_are_added_and_long_rows_double_the_budget(runs, tiny_models):
    out = run_selu_ablation(profile="smoke", seeds=[0], epochs=1, max_steps=1,
                            variants=["ResNet34+LR decay (2x epochs)"], device="cpu", out_dir=runs.parent / "o")
    assert list(out.tables["selu_ablation"]["label"]) == ["ResNet34 (2x epochs)", "ResNet34+LR decay (2x epochs)"]
    assert any("added baseline" in n for n in out.notes)
    assert out.tables["histories"]["steps"].max() == 2  # 2x of max_steps=1
    paired = out.tables["paired"]
    assert paired["n"].eq(1).all() and paired["ci95_low"].isna().all()  # one seed: no interval


def test_paper_and_strong_recipes_follow_their_definitions():
    specs = {s.label: s for s in S.make_specs(S.RECIPES["paper"], S.VARIANTS)}
    assert len(specs) == len(S.VARIANTS)
    for v in S.VARIANTS:
        cfg = specs[v.label].cfg
        assert cfg.optimizer == "adam" and cfg.max_steps == 0 and specs[v.label].model == v.model
        assert cfg.epochs == v.paper_epochs  # 10, and 20 for Table 2's second row
        assert cfg.schedule == ("exponential" if v.lr_decay else "none")
    strong = {s.label: s for s in S.make_specs(S.RECIPES["strong"].with_overrides(epochs=5), S.VARIANTS)}
    assert strong["All improvements"].cfg.schedule == "cosine" and strong["ResNet34+SELU"].cfg.schedule == "none"
    assert strong["ResNet34 (2x epochs)"].cfg.epochs == 10 and strong["ResNet34"].cfg.nesterov
    # The 2x rows double an override; the override is recorded on every row, the 2x included.
    assert all(s.recipe.overrides == ("epochs=5 (recipe: 30)",) for s in strong.values())
    assert all(s.recipe.overrides == () for s in specs.values())


def test_claims_transcribe_tables_2_to_5():
    c = load_claims("selu")
    acc = c[c["metric"] == "test_acc"]
    assert sorted(acc["table"].unique()) == ["Table 2", "Table 3", "Table 4", "Table 5"]
    assert (acc["unit"] == "percent").all() and (acc["dataset"] == "fashion_mnist").all()
    t2 = acc[acc["table"] == "Table 2"]
    assert sorted(zip(t2["epochs"], t2["lr_decay"], t2["value"])) == [
        (10, "no", 93.12), (10, "yes", 93.22), (20, "no", 94.21), (20, "yes", 94.82)]
    assert set(acc[acc["table"] != "Table 2"]["value"]) == {93.12, 93.35, 94.88, 96.04}
    gains = c[c["metric"] == "test_acc_gain"]
    assert sorted(gains["value"]) == [0.1, 0.23, 0.61, 1.76, 2.92]
    # Every row of the ablation finds its printed number.
    for v in S.VARIANTS:
        value, tables = S._paper_numbers(v, c, "test_acc")
        assert value == value and tables, v.label


def test_bad_input_says_what_to_do(runs, tiny_models):
    with pytest.raises(ValueError, match="unknown profile 'papr'"):
        run_selu_ablation(profile="papr")
    with pytest.raises(ValueError, match="variants must be a non-empty subset"):
        run_selu_ablation(variants=["ResNet50"])
    with pytest.raises(ValueError, match=r"variants must be a non-empty subset.*unknown: \['ResNet50'\]"):
        run_selu_ablation(variants="ResNet34,ResNet50")  # a string is read as a comma-separated list
    with pytest.raises(ValueError, match="seeds must be a non-empty"):
        run_selu_ablation(seeds=[])
    with pytest.raises(ValueError, match="must not repeat"):
        run_selu_ablation(seeds=[1, 1])
    with pytest.raises(ValueError, match="epochs must be a positive"):
        run_selu_ablation(epochs=0, device="cpu")
    with pytest.raises(FileNotFoundError, match="fashion_mnist"):
        run_selu_ablation(profile="paper", seeds=[0], device="cpu", out_dir=runs.parent / "p")


def test_paired_interval_matches_a_hand_computation():
    rows = pd.DataFrame({"label": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                         "best_acc": [0.5, 0.6, 0.7, 0.4, 0.6, 0.5]})
    p = STATS.paired_comparison(rows, {"a": "b"}, metrics=["best_acc"]).iloc[0]
    d = pd.Series([0.1, 0.0, 0.2])
    half = 4.302653 * d.std() / 3**0.5
    assert p["n"] == 3 and p["mean_diff"] == pytest.approx(0.1)
    assert (p["ci95_low"], p["ci95_high"]) == pytest.approx((0.1 - half, 0.1 + half))
    with pytest.raises(ValueError, match="no rows labelled"):
        STATS.paired_comparison(rows, {"a": "c"})


def test_t_quantiles_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 9, 30, 31, 50, 200):
        assert STATS.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-5)
    with pytest.raises(ValueError, match="degree of freedom"):
        STATS.t_quantile_975(0)
