"""The evidence matrix: every table entry point under three kinds of run, judged by the summary.

For each ``run_<table>()`` (datasets, DRSTN Tables 4 / 5 / 1, SELU, CBAM, survey) this runs

- ``smoke``: every measured claim is ``smoke only``;
- ``paper`` with an override that changes numbers (``epochs``; Table 1: ``image_size``): every
  measured claim is ``budget only`` and the summary's rule names the override;
- ``paper`` unchanged: every measured claim is judged (``reproduced`` / ``not reproduced``; a
  difference whose other side has not run would be ``not run``).

The data are tiny but real in form: synthetic images written in each data set's official file
format into a data root, read back by the same loaders as the real files (so ``paper`` accepts
them as complete data). Training is replaced by a stand-in that returns a fixed history (and
writes a checkpoint where asked), and every network is a tiny CNN: the matrix checks which
evidence each row gets, never a number. Tables without printed numbers (datasets, Table 1)
record their evidence in a column, which is asserted instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import fixed_history, tiny_cnn

from reslab.data import get_spec, write_synthetic
from reslab.evidence import evidence_of
from reslab.profiles import resolve_profile
from reslab.runs import execute as EX
from reslab.runs import spec as SP
from reslab.tables import cbam, drstn, selu, summary, survey
from reslab.tables.datasets import run_datasets
from reslab.checkpoint import CHECKPOINT_NAME

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A data root of fake data in the official formats, fresh run store and cache, tiny networks,
    and training replaced by a stand-in (the number of epochs is the recipe's)."""
    root = tmp_path / "data"
    for name in DATASETS:
        spec = get_spec(name)
        write_synthetic(spec, root / spec.folders[0])
    monkeypatch.setenv("RESLAB_DATA", str(root))
    monkeypatch.setenv("RESLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))

    def tiny(name, num_classes=10, in_chans=3, **kwargs):
        torch.manual_seed(0)
        return tiny_cnn(in_chans, num_classes)

    def stand_in(model, train_loader, test_loader, cfg, checkpoint_dir=None, name=""):
        if checkpoint_dir is not None:  # Table 5 starts from Table 4's checkpoint
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict()}, Path(checkpoint_dir) / CHECKPOINT_NAME)
        return fixed_history(cfg)

    monkeypatch.setattr(SP, "create_model", tiny)
    monkeypatch.setattr(EX, "train", stand_in)
    monkeypatch.setattr(cbam, "imagenet_weights_found", lambda profile: True)  # weights "on disk"
    monkeypatch.setattr(drstn, "_imagenet_net", lambda model, profile: _cam_ready(model))
    real_params = survey.param_table
    monkeypatch.setattr(survey, "param_table", lambda specs, **kw: real_params(
        [s for s in specs if s.model == "pyramidnet110_a48"], **kw))
    return tmp_path


def _cam_ready(model: str) -> torch.nn.Module:
    """The real torchvision network (random weights standing in for ImageNet's)."""
    from reslab.models import create_model

    torch.manual_seed(0)
    return create_model(model, num_classes=1000)


# (table folder, the entry point with the smallest arguments that are still the protocol,
#  the override that makes it a budget run)
TABLES = {
    "drstn_table4_cifar10": (drstn.run_drstn_table4, {"device": "cpu"}, {"epochs": 2}),
    "drstn_table5_transfer": (drstn.run_drstn_table5, {"device": "cpu"}, {"epochs": 2}),
    "selu_ablation_fashion_mnist": (selu.run_selu_ablation, {"device": "cpu"}, {"epochs": 2}),
    "cbam_resnet50_cifar10": (cbam.run_cbam, {"device": "cpu"}, {"epochs": 2}),
    "survey_error_rates": (survey.run_survey, {"device": "cpu", "models": ["pyramidnet110_a48", "densenet_bc100_k12"]},
                           {"max_steps": 3}),
}
CASES = ("smoke", "paper+override", "paper")


def _run(table: str, case: str, results: Path) -> None:
    fn, kwargs, override = TABLES[table]
    profile = "smoke" if case == "smoke" else "paper"
    fn(profile=profile, out_dir=results / profile / table, **kwargs, **(override if case == "paper+override" else {}))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("table", list(TABLES))
def test_summary_judges_only_protocol_runs(world, table, case):
    results = world / "results"
    _run(table, case, results)
    rows = summary.summary_table(results)
    measured = rows[rows["results"].eq(f"{'smoke' if case == 'smoke' else 'paper'}/{table}")
                    & rows["profile"].ne("-")]  # parameter counts need no run and are judged in every profile
    assert len(measured) > 0
    verdicts = set(measured["verdict"])
    if case == "smoke":
        assert verdicts == {"smoke only"}
    elif case == "paper+override":
        assert verdicts == {"budget only"}
        name = next(iter(TABLES[table][2]))
        assert measured["rule"].str.contains(f"{name}=").all(), measured["rule"].tolist()
    else:
        assert verdicts <= {"reproduced", "not reproduced"}, verdicts


def test_a_gain_whose_baseline_has_not_run_is_not_run(world):
    results = world / "results"
    drstn.run_drstn_table4(profile="paper", device="cpu", models=["drstn_v5", "resnet18"],
                           out_dir=results / "paper" / "drstn_table4_cifar10")
    rows = summary.summary_table(results).set_index("claim_id")
    gains = rows[rows.index.str.contains("test_acc_gain_vs_")]
    assert gains.loc["drstn/abstract/drstn_v5/cifar10/test_acc_gain_vs_resnet18", "verdict"] in (
        "reproduced", "not reproduced")
    others = gains.drop("drstn/abstract/drstn_v5/cifar10/test_acc_gain_vs_resnet18")
    assert len(others) == 2 and (others["verdict"] == "not run").all()
    assert others["rule"].str.contains("not run: ").all()


@pytest.mark.parametrize("case, expected", [("smoke", "smoke"), ("paper+override", "budget"), ("paper", "protocol")])
def test_table1_records_its_evidence(world, case, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(drstn, "CAM_MODELS", drstn.CAM_MODELS[:1])  # SqueezeNet alone: the rule, not the maps
    kwargs = {"image_size": 128} if case == "paper+override" else {}
    out = drstn.run_drstn_table1(profile="smoke" if case == "smoke" else "paper", n_images=1, device="cpu",
                                 out_dir=tmp_path / "t1", **kwargs)
    weights = out.tables["table1_weights"]
    assert (weights["evidence"] == expected).all(), weights[["label", "weights", "evidence", "evidence_note"]]
    if case == "paper+override":
        assert weights["evidence_note"].str.contains("image_size=128").all()


@pytest.mark.parametrize("profile, expected", [("smoke", "smoke"), ("paper", "protocol")])
def test_datasets_records_its_evidence(world, profile, expected, tmp_path):
    out = run_datasets(profile=profile, datasets=["mnist"], samples_per_class=1, out_dir=tmp_path / "d")
    assert (out.tables["datasets"]["evidence"] == expected).all()


def test_fewer_protocol_runs_than_the_paper_averaged_are_judged_and_say_n_of_N(world):
    """Each run of the protocol is the protocol: a mean of 2 where the paper averaged 10 is judged
    (with its own, wider interval), never demoted to budget, and says "n = 2 of 10"."""
    results = world / "results"
    out = selu.run_selu_ablation(profile="paper", seeds=[0, 1], variants=["ResNet34+SELU"], device="cpu",
                                 out_dir=results / "paper" / "selu_ablation_fashion_mnist")
    runs = next(t for name, t in out.tables.items() if "seed" in t.columns and "evidence" in t.columns)
    assert (runs["evidence"] == "protocol").all() and runs["evidence_note"].str.startswith("n = 2 of 10").all()
    rows = summary.summary_table(results)
    measured = rows[rows["results"].eq("paper/selu_ablation_fashion_mnist")]
    assert len(measured) and not measured["verdict"].isin(["budget only", "smoke only"]).any()
    assert measured["rule"].str.contains("n = 2 of 10").all()
    assert measured["ours_text"].str.endswith("(n=2 of 10)").all(), measured["ours_text"].tolist()  # as data, not read from the note
    assert (out.tables["selu_ablation"]["protocol_runs"] == 10).all()
    gains = measured[measured["claim"].str.contains("gain", case=False)]
    assert len(gains) and gains["n"].eq(2).all() and gains["ci95_low"].notna().all()  # the paired interval of 2 seeds
    # The full count of runs carries no such note.
    assert evidence_of(resolve_profile("paper"), runs=(10, 10)) == ("protocol", "")
    assert evidence_of(resolve_profile("paper"), ["epochs=1 (recipe: 10)"], runs=(1, 10))[0] == "budget"


def test_a_recipe_that_deviates_from_the_original_is_never_judged(world):
    """WRN (mean/std instead of ZCA, zero instead of reflection padding) and stochastic depth (no
    validation hold-out) follow their originals' hyperparameters but not their whole protocol."""
    results = world / "results"
    survey.run_survey(profile="paper", device="cpu", models=["resnet110_sd", "wrn28_10"],
                      out_dir=results / "paper" / "survey_error_rates")
    rows = summary.summary_table(results)
    measured = rows[rows["results"].eq("paper/survey_error_rates") & rows["profile"].ne("-")]
    assert len(measured) and set(measured["verdict"]) == {"budget only"}
    wrn = measured[measured["claim_id"].str.contains("wrn28_10")]
    assert len(wrn) and wrn["rule"].str.contains("ZCA whitening").all(), wrn["rule"].tolist()
    sd = measured[measured["claim_id"].str.contains("resnet110_sd")]
    assert len(sd) and sd["rule"].str.contains("best validation epoch").all(), sd["rule"].tolist()


def test_a_cbam_row_without_imagenet_weights_is_never_judged(world, monkeypatch):
    monkeypatch.setattr(cbam, "imagenet_weights_found", lambda profile: False)
    out = cbam.run_cbam(profile="paper", device="cpu", rows=["ResNet50"], out_dir=world / "c")
    table = out.tables["cbam_table"]
    assert table["weights_missing"].all() and (table["evidence"] == "budget").all()
    assert table["evidence_note"].str.contains("ImageNet weights missing").all()


def test_stored_runs_are_judged_by_todays_rule(world):
    """A run reused from the run store gets its evidence decided again, not read back."""
    kw = {"profile": "paper", "device": "cpu", "models": ["drstn_v5"]}
    first = drstn.run_drstn_table4(**kw, out_dir=world / "a").tables["table4_runs"]
    again = drstn.run_drstn_table4(**kw, out_dir=world / "b").tables["table4_runs"]
    assert again["reused"].all() and list(again["evidence"]) == list(first["evidence"]) == ["protocol"]
    assert pd.isna(first["evidence_note"]).all() or (first["evidence_note"] == "").all()


def test_a_table_of_runs_made_elsewhere_trains_nothing_and_judges_the_runs_it_has(world, monkeypatch):
    """Executor ``none`` (a GPU slice's records, another machine's run store): finished runs are
    reused, nothing is trained, every other run is ``not run: not trained``; a row is the mean of
    the runs it has, judged and saying ``n = k of 10`` (missing for want of time, not for its
    numbers); a row with no run gets no verdict; ``force`` is refused."""
    results = world / "results"
    out_dir = results / "paper" / "selu_ablation_fashion_mnist"
    selu.run_selu_ablation(profile="paper", seeds=[0, 1], variants=["ResNet34+SELU"], device="cpu", out_dir=out_dir)
    trained = []
    monkeypatch.setattr(EX, "train", lambda *a, **k: trained.append(a) or pytest.fail("executor none trained a run"))
    out = selu.run_selu_ablation(profile="paper", seeds=[0, 1, 2], variants=["ResNet34+SELU", "ResNet34+Inception"],
                                 device="cpu", executor="none", out_dir=out_dir)
    assert not trained
    runs = out.tables["runs"]
    missing = runs[runs["status"] != "finished"]
    assert set(zip(missing["label"], missing["seed"])) == {
        ("ResNet34", 2), ("ResNet34+SELU", 2), ("ResNet34+Inception", 0), ("ResNet34+Inception", 1),
        ("ResNet34+Inception", 2)}
    assert missing["status"].eq("not run: not trained (executor none)").all()
    assert missing["final_acc"].isna().all()
    table = out.tables["selu_ablation"].set_index("label")
    for label in ("ResNet34", "ResNet34+SELU"):
        assert table.loc[label, "n"] == 2 and table.loc[label, "evidence"] == "protocol"
        assert table.loc[label, "evidence_note"].startswith("n = 2 of 10")
    assert table.loc["ResNet34+Inception", "n"] == 0 and table.loc["ResNet34+Inception", "evidence"] == "budget"
    assert json.loads((out_dir / "manifest.json").read_text())["executor"] == "none"
    rows = summary.summary_table(results)
    measured = rows[rows["results"].eq("paper/selu_ablation_fashion_mnist")]
    judged = measured[measured["verdict"].isin(["reproduced", "not reproduced"])]
    assert len(judged) and judged["rule"].str.contains("n = 2 of 10").all()
    inception = measured[measured["claim"].str.contains("selu_resnet34_inception")]
    assert len(inception) and inception["verdict"].isin(["not run"]).all(), inception[["claim", "verdict", "rule"]]
    with pytest.raises(ValueError, match="trains nothing"):
        selu.run_selu_ablation(profile="paper", seeds=[0], variants=["ResNet34"], device="cpu", executor="none",
                               force=True, out_dir=out_dir)
