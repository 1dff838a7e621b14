"""The survey notebook's functions (seed 002, Tables 5-8) and CIFAR-100 in the data layer."""

from __future__ import annotations

import pickle
import tarfile

import pandas as pd
import pytest

from reslab import data as D
from reslab.claims import load_claims
from reslab.data import Augment, load_dataset
from reslab.models import list_models
from reslab.profiles import BUDGET, Profile
from reslab.tables import survey as S

# ------------------------------------------------------------------ CIFAR-100 data layer


def test_cifar100_spec_and_synthetic_official_layout(no_data_root):
    spec = D.DATASETS["cifar100"]
    assert len(spec.classes) == 100 == len(set(spec.classes))
    assert list(spec.classes) == sorted(spec.classes)  # the meta file's order is alphabetical
    assert spec.classes[0] == "apple" and spec.classes[-1] == "worm"
    D.write_synthetic(spec, no_data_root / "data")
    folder = no_data_root / "data" / "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == ["test", "train"]
    entry = pickle.loads((folder / "train").read_bytes())
    assert "fine_labels" in entry and "labels" not in entry and entry["data"].shape[1] == 3072
    train = load_dataset("cifar100", "train", root=no_data_root / "data", download=False)
    test = load_dataset("cifar100", "test", root=no_data_root / "data", download=False)
    assert train.num_classes == 100 and train.images.shape[1:] == (3, 32, 32)
    assert set(train.labels.tolist()) == set(range(100)) and set(test.labels.tolist()) == set(range(100))
    # Fewer images per class than 10-class data, so 100-class synthetic data stays small.
    assert len(train) <= 10 * D.SYNTHETIC_PER_CLASS["train"] and min(test.class_counts()) >= D.SYNTHETIC_MIN_PER_CLASS


def test_cifar100_archive_matches_folder(no_data_root):
    src = no_data_root / "syn"
    D.write_synthetic(D.DATASETS["cifar100"], src)
    with tarfile.open(no_data_root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-100-python", arcname="cifar-100-python")
    from_tar = load_dataset("cifar100", "test", root=no_data_root, download=False)
    from_dir = load_dataset("cifar100", "test", root=src, download=False)
    assert from_tar.source == "official" and str(from_tar.path).endswith("cifar-100-python.tar.gz")
    assert from_tar.fingerprint == from_dir.fingerprint


def test_cifar100_missing_pickle_and_smoke_fallback(no_data_root):
    D.write_synthetic(D.DATASETS["cifar100"], no_data_root / "data")
    (no_data_root / "data" / "cifar-100-python" / "test").unlink()
    with pytest.raises(FileNotFoundError, match="lacks test.*cifar-100-python.tar.gz"):
        load_dataset("cifar100", "test", root=no_data_root / "data", download=False)
    d = load_dataset("cifar100", "train", download=False, allow_synthetic=True)
    assert d.data_source == "synthetic" and d.num_classes == 100
    aug = Augment.standard("cifar100", train=True)
    assert aug.pad_crop == 4 and aug.flip and aug.mean == D.MEAN_STD["cifar100"][0]


# ------------------------------------------------------------------ claims


def test_survey_claims_transcription() -> None:
    survey = load_claims("survey")
    assert len(survey) == 19 * 3 and (survey["unit"].isin(["million", "percent"])).all()
    # The two printed values the consistency check is about, as printed in the seed.
    row8 = survey[(survey["table"] == "Table 8") & (survey["model"] == "pyramidnet164_bottleneck_a270")]
    assert sorted(row8["value"]) == [3.31, 16.35, 26.0]
    att = survey[(survey["model"] == "attention452_cifar") & (survey["dataset"] == "cifar100")]
    assert set(att["table"]) == {"Table 7", "Table 8"} and set(att["value"]) == {24.54}


def test_original_paper_claims_structure() -> None:
    orig = load_claims("survey_original")
    assert set(orig["model"]) <= set(list_models())
    assert set(orig["model"]) == set(S.cifar_models())  # every survey model has its original numbers
    assert set(orig["metric"]) == {"params", "error_rate", "test_acc"}


def test_original_values_name_a_public_source_and_say_whether_it_shows_them() -> None:
    orig = load_claims("survey_original")
    assert set(orig["verified"]) <= {"yes", "no"}
    # A number recalled from memory is not a source: every row names where it can be read.
    assert not orig["note"].str.contains("recalled", case=False).any()
    assert orig["source"].str.contains(r"github:|arXiv|https?://").all(), orig.loc[
        ~orig["source"].str.contains(r"github:|arXiv|https?://"), "source"].tolist()
    assert orig.loc[orig["verified"] == "no", "note"].str.contains("unverified", case=False).all()
    # The four papers' own files transcribe the seeds and carry no verification column.
    assert set(load_claims("survey")["verified"]) == {""}


def test_load_claims_rejects_original_values_without_a_verification(tmp_path) -> None:
    row = "survey_original,Table 2,DenseNet,densenet_bc100_k12,cifar10,error_rate,4.51,percent,github:x/y README.md,n"
    head = "paper,table,row,model,dataset,metric,value,unit,source,note"
    (tmp_path / "originals.csv").write_text(f"{head}\n{row}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no 'verified' column"):
        load_claims(root=tmp_path)
    (tmp_path / "originals.csv").write_text(f"{head},verified\n{row},probably\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'verified' must be one of"):
        load_claims(root=tmp_path)
    (tmp_path / "originals.csv").write_text(f"{head},verified\n{row},yes\n", encoding="utf-8")
    loaded = load_claims(root=tmp_path)
    # ``verified`` describes the row; it is not part of its id.
    assert loaded["claim_id"].tolist() == ["survey_original/Table 2/densenet_bc100_k12/cifar10/error_rate"]


@pytest.mark.parametrize("verified", ["yes", "no"])
def test_a_disagreement_with_an_unverified_original_is_shown_but_not_a_finding(verified) -> None:
    claims = pd.DataFrame([
        ["survey", "Table 6", "densenet_bc100_k12", "cifar10", "error_rate", 4.51, "percent", "x", "", ""],
        ["survey_original", "Table 2", "densenet_bc100_k12", "cifar10", "error_rate", 4.0, "percent",
         "github:x/y README.md", "n", verified],
    ], columns=["paper", "table", "model", "dataset", "metric", "value", "unit", "source", "note", "verified"])
    claims["row"] = ""
    table = S.consistency(claims)
    row = table.iloc[0]
    assert not row["agrees"] and row["other_verified"] == (verified == "yes")
    notes = "\n".join(S.consistency_notes(table))
    if verified == "yes":
        assert "prints 4.51" in row["finding"] and notes.startswith("1 printed numbers disagree")
    else:
        assert row["finding"] == "" and notes.startswith("0 printed numbers disagree")
        assert "1 comparisons rest on an original value that no public source could confirm" in notes
        assert "Table 6 'Densenet (k=12)' error_rate cifar10" in notes


def test_consistency_finds_the_mislabelled_row_and_the_attention_typo() -> None:
    table = S.consistency()
    bad = table[~table["agrees"]]
    # The authors' README gives PyramidNet-110 alpha=48 / 84 errors the survey does not print.
    pyr110 = bad[bad["model"].isin(["pyramidnet110_a48", "pyramidnet110_a84"])]
    assert len(pyr110) == 4 and pyr110["other_source"].str.contains("jhkim89/PyramidNet README.md").all()
    bad = bad.drop(pyr110.index)
    assert (bad["finding"] != "").all() and bad["other_verified"].all()
    assert set(bad["model"]) == {"pyramidnet164_bottleneck_a270", "attention452_cifar"}
    pyr = bad[bad["model"] == "pyramidnet164_bottleneck_a270"]
    assert set(pyr["survey_table"]) == {"Table 8"} and set(pyr["kind"]) == {"survey vs survey", "survey vs original"}
    assert pyr["finding"].str.contains("PyramidNet \\(bottleneck,α=200\\)").all()
    att = bad[bad["model"] == "attention452_cifar"]
    assert set(att["dataset"]) == {"cifar100"} and set(att["other_table"]) == {"abstract"}
    # Every survey row is compared with its original paper.
    assert set(table.loc[table["kind"] == "survey vs original", "model"]) == set(S.cifar_models())


def test_consistency_compares_accuracy_as_error() -> None:
    claims = pd.DataFrame([
        ["survey", "Table 8", "efficientnet_b7", "cifar10", "error_rate", 1.5, "percent", "x", ""],
        ["survey_original", "Table 5", "efficientnet_b7", "cifar10", "test_acc", 98.5, "percent", "y", "n"],
    ], columns=["paper", "table", "model", "dataset", "metric", "value", "unit", "source", "note"])
    row = S.consistency(claims).iloc[0]
    assert row["agrees"] and row["other_value"] == pytest.approx(1.5)


# ------------------------------------------------------------------ recipes and errors


def test_recipes() -> None:
    pyramid = S.recipe("paper", "pyramidnet110_a48", "cifar100")
    assert pyramid.cfg.lr == 0.5 and pyramid.overrides == ()  # the original's CIFAR-100 rate is the protocol
    assert S.recipe("paper", "pyramidnet110_a48", "cifar10").cfg.lr == 0.1
    wrn = S.recipe("paper", "wrn28_10", "cifar10", budget=20)
    assert wrn.cfg.epochs == 20 and wrn.cfg.milestones == (6, 12, 16)
    assert "epochs=20 (recipe: 200)" in wrn.overrides  # budget=N is never the protocol
    assert S.recipe("smoke", "densenet_bc100_k12", "cifar10", max_steps=1).cfg.max_steps == 1
    assert set(S.MODEL_FAMILY) == set(S.cifar_models())
    assert set(S.RECIPES["paper"]) == set(S.MODEL_FAMILY.values())
    for profile in ("smoke", "strong"):  # EfficientNet-B7 fine-tunes ImageNet weights: paper only
        assert set(S.RECIPES[profile]) == set(S.MODEL_FAMILY.values()) - {"efficientnet"}


@pytest.mark.parametrize("kwargs, match", [
    ({"profile": "smok"}, "unknown profile"),
    ({"models": ["resnet18"]}, "models must be a non-empty subset"),
    ({"profile": Profile("reduced", BUDGET, rank=2, allow_synthetic=False, allow_random_weights=False, download=None,
                         train_subset=800, test_subset=500, description="a reduced budget")}, "has no 'reduced' recipe"),
    ({"models": ["efficientnet_b7"]}, "only trained under profile='paper'"),
    ({"datasets": ["mnist"]}, "datasets must be a non-empty subset"),
    ({"budget": 0}, "budget must be a positive"),
])
def test_bad_input(kwargs, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        S.run_survey(out_dir=tmp_path, **kwargs)


# ------------------------------------------------------------------ the notebook's call


CHEAP = ("resnet110_sd",)  # the cheapest survey network to build and train on the CPU


@pytest.fixture
def fast_params(monkeypatch):
    """param_table over the two cheap rows only (the full survey table takes ~20 s on the CPU)."""
    real = S.param_table
    monkeypatch.setattr(S, "param_table", lambda specs, **kw: real([s for s in specs if s.model in CHEAP], **kw))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("profile, expected", [
    ("smoke", [m for m in S.cifar_models() if m != "efficientnet_b7"]),
    ("strong", [m for m in S.cifar_models() if m != "efficientnet_b7"]),
    ("paper", S.cifar_models()),
])
def test_default_models_train_every_cifar_model(profile, expected, monkeypatch, tmp_path, fast_params) -> None:
    seen = {}

    def capture(specs, profile, seeds, **kw):
        seen["specs"], seen["kw"] = specs, kw
        raise _Stop

    from reslab.tables import _common

    monkeypatch.setattr(_common, "run_specs", capture)
    with pytest.raises(_Stop):
        S.run_survey(profile=profile, out_dir=tmp_path)
    specs = seen["specs"]
    assert len(expected) == (15 if profile != "paper" else 16)
    for dataset in S.DATASETS:
        assert [s.model for s in specs if s.dataset == dataset] == expected
    assert {s.recipe.test_subset for s in specs} == {S.SMOKE_TEST_IMAGES if profile == "smoke" else None}
    if profile == "smoke":
        assert {(s.cfg.max_steps, s.cfg.batch_size) for s in specs} == {(1, 4)}


def test_run_survey_smoke_synthetic_and_reuse(no_data_root, monkeypatch, tmp_path, fast_params) -> None:
    monkeypatch.setenv("RESLAB_RUNS", str(tmp_path / "runs"))
    kw = dict(models=["resnet110_sd"], datasets=["cifar100"], max_steps=1, device="cpu", out_dir=tmp_path / "out")
    out = S.run_survey(**kw)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"params.csv", "consistency.csv", "runs.csv", "error_rates.csv", "error_vs_params.png",
            "manifest.json"} <= names
    runs = out.tables["runs"]
    assert len(runs) == 1 and runs["data_source"].tolist() == ["synthetic"] and not runs["reused"].any()
    assert runs["test_images"].tolist() == [S.SMOKE_TEST_IMAGES]
    err = out.tables["error_rates"]
    ours = err[err["trained"]]
    assert set(ours["model"]) == {"resnet110_sd"} and (ours["evidence"] == "smoke").all()
    assert (ours["diff_pp"] == (ours["best_error"] - ours["cited_error"]).round(2)).all()
    assert any("SYNTHETIC" in n for n in out.notes) and any("Table 8" in n for n in out.notes)
    again = S.run_survey(**kw)
    assert again.tables["runs"]["reused"].all()
    assert again.tables["runs"]["best_acc"].tolist() == runs["best_acc"].tolist()


def test_run_survey_without_training(no_data_root, tmp_path, fast_params) -> None:
    out = S.run_survey(models=[], out_dir=tmp_path)
    assert out.tables["runs"].empty and not out.tables["error_rates"]["trained"].any()
    assert set(out.tables["params"]["model"]) == set(CHEAP)
