"""The claims summary: claim ids, verdict rules, the table from a results tree, the README
section, and ``reslab reproduce --check`` (stale code or data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from reslab.app import readme as R
from reslab.app.check import check_results
from reslab.claims import claim_ids, load_claims
from reslab.evidence import fewer_runs_note
from reslab.results import code_fingerprints
from reslab.tables import summary as S
from reslab.tables._common import TableOutput

REPO = Path(__file__).resolve().parent.parent


def test_every_claim_has_a_unique_id() -> None:
    claims = load_claims()
    assert claims["claim_id"].is_unique
    ids = set(claims["claim_id"])
    # Rows with the same key are told apart by their extra columns or their printed row label.
    assert "selu/Table 2/selu_resnet34_baseline/fashion_mnist/test_acc[epochs=20,lr_decay=yes]" in ids
    assert "cbam/results table/resnet50/cifar10/test_acc[row=ResNet50 Scratch]" in ids
    assert "drstn/Table 4/drstn_v5/cifar10/test_acc" in ids


def test_duplicate_claims_without_a_label_are_an_error() -> None:
    row = {"paper": "p", "table": "T1", "row": "", "model": "m", "dataset": "cifar10", "metric": "test_acc",
           "value": 1.0, "unit": "percent", "source": "s", "note": "no label"}
    with pytest.raises(ValueError, match="no 'row' label"):
        claim_ids(pd.DataFrame([row, row]))
    labelled = [row | {"row": "A"}, row | {"row": "B"}]
    assert claim_ids(pd.DataFrame(labelled)) == ["p/T1/m/cifar10/test_acc[row=A]", "p/T1/m/cifar10/test_acc[row=B]"]


def _m(**kw) -> pd.Series:
    base = {"kind": "rate", "ours": 90.0, "ours_std": math.nan, "n": 3, "data_source": "official",
            "profile": "paper", "evidence": "protocol", "evidence_note": "", "ci95_low": math.nan,
            "ci95_high": math.nan, "match": None}
    return pd.Series(base | kw)


@pytest.mark.parametrize("measurement, paper, expected", [
    (_m(profile="smoke", evidence="smoke"), 90.0, "smoke only"),
    (_m(data_source="synthetic", evidence="smoke"), 90.0, "smoke only"),
    (_m(profile="paper", evidence="budget", evidence_note="data subsets"), 90.0, "budget only"),
    (_m(evidence="budget", evidence_note="epochs=2 (recipe: 50)"), 90.0, "budget only"),
    (_m(ours=math.nan, evidence_note="not run: resnet18"), 8.8, "not run"),  # a gain without its baseline
    (_m(ours=90.9), 90.0, "reproduced"),
    (_m(ours=88.9), 90.0, "not reproduced"),
    (_m(kind="loss", ours=0.105), 0.1, "reproduced"),
    (_m(kind="loss", ours=0.12), 0.1, "not reproduced"),
    (_m(kind="paired_gain", ours=0.5, ci95_low=0.1, ci95_high=0.9), 1.76, "reproduced"),
    (_m(kind="paired_gain", ours=0.5, ci95_low=-0.1, ci95_high=1.1), 0.5, "not reproduced"),
    (_m(kind="paired_gain", ours=0.5, n=1), 0.5, "not reproduced"),
    (_m(kind="params", match=True, profile="-", data_source="none"), 1.7, "reproduced"),
    (_m(kind="params", match=False, profile="-", data_source="none"), 1.7, "not reproduced"),
])
def test_verdict_rules(measurement, paper, expected) -> None:
    verdict, rule = S.verdict(measurement, paper)
    assert verdict == expected and rule
    if measurement["evidence_note"]:  # the rule names what made it so
        assert measurement["evidence_note"] in rule


@pytest.mark.parametrize("ours, metric, expected", [
    (89.5, "test_acc", "reproduced"),           # within the tolerance: reproduced, and said to be on JPEG data
    (88.0, "test_acc", S.JPEG_VERDICT),         # 2 points below: JPEG alone may explain it
    (87.0, "test_acc", S.JPEG_VERDICT),         # 3 points below: the edge of the allowance
    (86.9, "test_acc", "not reproduced"),       # beyond it
    (92.0, "test_acc", "not reproduced"),       # above the claim: not JPEG's direction
    (88.0, "train_acc", "not reproduced"),      # JPEG's effect on training accuracy is not known
    (92.0, "error_rate", S.JPEG_VERDICT),       # an error rate 2 points higher
    (88.0, "error_rate", "not reproduced"),     # lower error: not JPEG's direction
    (88.0, "test_acc_gain_vs_resnet18", "not reproduced"),  # both sides on the same data
])
def test_a_miss_on_the_jpeg_copy_within_its_allowance_is_flagged(ours, metric, expected) -> None:
    verdict, rule = S.verdict(_m(ours=ours, data_source="cifar10-jpeg"), 90.0, metric)
    assert verdict == expected
    assert ("JPEG copy" in rule) == ("gain" not in metric)
    assert S.verdict(_m(ours=ours, data_source="cifar10-official"), 90.0, metric)[0] in ("reproduced", "not reproduced")
    assert "JPEG" not in S.verdict(_m(ours=ours, data_source="cifar10-official"), 90.0, metric)[1]


def _table4(folder: Path, profile: str, offset_pp: float, evidence: str, n: int = 3) -> dict[str, float]:
    """A table4.csv whose DRSTN_V5 row is ``offset_pp`` from the claim, and the claims it used."""
    claims = load_claims("drstn")
    t4 = claims[claims["table"] == "Table 4"]
    paper = dict(zip(t4["model"], t4["value"]))  # fractions
    rows = [{"label": m, "model": m, "dataset": "cifar10", "best_acc_mean": v + offset_pp / 100, "best_acc_std": 0.002,
             "n": n, "data_source": "cifar10-jpeg", "profile": profile, "evidence": evidence, "evidence_note": ""}
            for m, v in paper.items()]
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "table4.csv", index=False)
    gains = [{"model": "drstn_v5", "baseline": "resnet18", "measured_pct": 3.0, "n": n, "profile": profile,
              "data_source": "cifar10-jpeg", "evidence": evidence, "evidence_note": ""}]
    pd.DataFrame(gains).to_csv(folder / "table4_gains.csv", index=False)
    return paper


def test_summary_from_a_results_tree(tmp_path) -> None:
    _table4(tmp_path / "paper" / "drstn_table4_cifar10", "paper", offset_pp=0.5, evidence="protocol")
    _table4(tmp_path / "smoke" / "drstn_table4_cifar10", "smoke", offset_pp=-70, evidence="smoke", n=1)
    table = S.summary_table(tmp_path)
    assert set(table.columns) >= {"paper", "table", "claim", "paper_value", "ours_text", "data_source", "profile",
                                  "verdict", "rule"}
    v5 = table[table["claim_id"] == "drstn/Table 4/drstn_v5/cifar10/test_acc"].set_index("profile")
    assert v5.loc["paper", "verdict"] == "reproduced" and v5.loc["smoke", "verdict"] == "smoke only"
    assert v5.loc["paper", "difference"] == pytest.approx(0.5)
    assert v5.loc["paper", "ours_text"].endswith("(n=3)") and "±" in v5.loc["paper", "ours_text"]
    assert v5.loc["paper", "ci95_low"] < v5.loc["paper", "ours"] < v5.loc["paper", "ci95_high"]
    gain = table[table["claim_id"] == "drstn/abstract/drstn_v5/cifar10/test_acc_gain_vs_resnet18"].set_index("profile")
    assert gain.loc["paper", "verdict"] == "not reproduced"  # 3.0 % measured against the printed 8.8 %
    assert gain.loc["paper", "ours_text"].endswith("(n=3)")  # a gain says how many runs each side's mean has
    not_run = table[table["paper"] == "selu"]
    assert (not_run["verdict"] == "not run").all()
    head = S.headline(table)
    assert head["claim_id"].is_unique and len(head) == len(load_claims().query("paper in @S.PAPERS"))
    assert head.set_index("claim_id").loc["drstn/Table 4/drstn_v5/cifar10/test_acc", "profile"] == "paper"
    counts = S.verdict_counts(head)
    assert counts["claims"].sum() == len(head)
    assert (counts[list(S.VERDICTS)].sum(axis=1) == counts["claims"]).all()


def test_our_number_says_n_of_the_papers_runs_and_nothing_where_not_run(tmp_path) -> None:
    folder = tmp_path / "paper" / "drstn_table4_cifar10"
    _table4(folder, "paper", offset_pp=0.5, evidence="protocol")
    table4 = pd.read_csv(folder / "table4.csv").assign(evidence_note=fewer_runs_note(3, 10), protocol_runs=10)
    table4.loc[table4["model"] == "resnet18", ["best_acc_mean", "best_acc_std", "n", "evidence", "evidence_note"]] = [
        math.nan, math.nan, 0, "budget", fewer_runs_note(0, 10) + "; Original_Resnet18 seed 0 not run"]
    table4.loc[table4["model"] == "drstn_v3", "protocol_runs"] = 3  # as many runs as the paper's: plain n
    table4.to_csv(folder / "table4.csv", index=False)
    table = S.summary_table(tmp_path).set_index("claim_id")
    v5 = table.loc["drstn/Table 4/drstn_v5/cifar10/test_acc"]
    assert v5["ours_text"].endswith("± 0.2 (n=3 of 10)") and v5["verdict"] == "reproduced"
    assert table.loc["drstn/Table 4/drstn_v3/cifar10/test_acc", "ours_text"].endswith("(n=3)")
    r18 = table.loc["drstn/Table 4/resnet18/cifar10/test_acc"]
    assert r18["ours_text"] == "" and r18["verdict"] == "not run"


def test_the_controls_are_listed_beside_the_claims_with_their_interval(tmp_path) -> None:
    """Table 4's controls (no printed claim, no verdict) come from the strongest profile that has them,
    and the README lists them after the judged claims."""
    effects = pd.DataFrame([
        {"effect": "soft thresholding, on V5's network", "with": "drstn_v5", "without": "drstn_v5_no_st", "n": 2,
         "mean_diff_pp": 1.25, "std_diff_pp": 0.3536, "ci95_low_pp": -1.93, "ci95_high_pp": 4.43,
         "paper_implied_pp": math.nan, "profile": "paper", "data_source": "cifar10-jpeg", "evidence": "protocol",
         "evidence_note": ""},
        {"effect": "soft thresholding, on ResNet-18 (V1)", "with": "drstn_v1", "without": "resnet18", "n": 0,
         "mean_diff_pp": math.nan, "std_diff_pp": math.nan, "ci95_low_pp": math.nan, "ci95_high_pp": math.nan,
         "paper_implied_pp": 4.78, "profile": "paper", "data_source": "cifar10-jpeg", "evidence": "budget",
         "evidence_note": "DRSTN seed 0 not run"}])
    for profile, shift in (("paper", 0.0), ("smoke", 50.0)):
        folder = tmp_path / "results" / profile / "drstn_table4_cifar10"
        folder.mkdir(parents=True)
        effects.assign(mean_diff_pp=effects["mean_diff_pp"] + shift, profile=profile).to_csv(
            folder / "table4_effects.csv", index=False)
    table = S.controls(tmp_path / "results").set_index("with")
    assert list(table["profile"]) == ["paper", "paper"]  # the strongest profile's, not smoke's
    assert table.loc["drstn_v5", "ours_text"] == "1.25 ± 0.3536 (n=2)" and table.loc["drstn_v5", "interval"] == "[-1.93, 4.43]"
    assert table.loc["drstn_v1", "ours_text"] == "" and table.loc["drstn_v1", "interval"] == ""
    summary = tmp_path / "summary"
    summary.mkdir()
    S.controls(tmp_path / "results").to_csv(summary / "controls.csv", index=False)
    lines = R._controls(summary / "controls.csv")
    text = "\n".join(lines)
    assert "**What the controls say**" in text and "| soft thresholding, on V5's network |  | 1.25 ± 0.3536 (n=2) |" in text
    assert "| soft thresholding, on ResNet-18 (V1) | 4.78 | not run |" in text
    assert R._controls(summary / "absent.csv") == []
    (tmp_path / "results" / "paper" / "drstn_table4_cifar10" / "table4_effects.csv").write_text("effect\nx\n")
    with pytest.raises(ValueError, match="table4_effects.csv"):
        S.controls(tmp_path / "results")


def test_an_empty_results_folder_is_no_result(tmp_path) -> None:
    (tmp_path / "paper" / "drstn_table4_cifar10").mkdir(parents=True)
    assert S.measurements(tmp_path).empty


def test_unreadable_results_name_the_folder(tmp_path) -> None:
    folder = tmp_path / "smoke" / "drstn_table4_cifar10"
    folder.mkdir(parents=True)
    (folder / "table4.csv").write_text("label,model\nx,y\n")
    with pytest.raises(ValueError, match="drstn_table4_cifar10"):
        S.summary_table(tmp_path)


def test_run_summary_writes_files_and_readme_section(tmp_path, monkeypatch) -> None:
    _table4(tmp_path / "results" / "paper" / "drstn_table4_cifar10", "paper", offset_pp=2.0, evidence="protocol")
    monkeypatch.setenv("RESLAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("RESLAB_SOURCE_RESULTS", raising=False)
    out = S.run_summary()
    folder = tmp_path / "results" / "summary"
    assert {"summary.csv", "headline.csv", "verdicts.csv", "controls.csv", "paper_vs_ours.png", "manifest.json"} <= {
        p.name for p in folder.iterdir()}
    assert (out.tables["headline"]["verdict"] == "not reproduced").sum() >= 8  # every Table 4 row is 2 pp off
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{R.README_START}\nstale text\n{R.README_END}\n\n## After\n")
    assert R.update_readme(readme, folder, check=True) is False
    assert R.update_readme(readme, folder) is False
    text = readme.read_text()
    assert "stale text" not in text and "## After" in text and "| drstn | Table 4 | 8 |" in text
    lead = text.split("**Judged claims**", 1)[1].split("| paper | table | claims |", 1)[0]  # before the counts
    assert "our 95 % interval" in lead and "| drstn Table 4 | DRSTN_KS(3 * 3)_RB(2:2:2): test acc on cifar10 |" in lead
    assert lead.index("gain vs resnet18") < lead.index("DRSTN_KS(3 * 3)_RB(2:2:2)")  # the claimed gains lead
    assert R.update_readme(readme, folder, check=True) is True
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no Results markers"):
        R.update_readme(readme, folder)


def test_a_direct_summary_run_reads_the_committed_results_and_writes_to_scratch(tmp_path, monkeypatch) -> None:
    """Run All on notebooks/summary.ipynb (no RESLAB_RESULTS): results/summary is left as committed."""
    checkout = tmp_path / "checkout"
    (checkout / "reslab").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    _table4(checkout / "results" / "paper" / "drstn_table4_cifar10", "paper", offset_pp=2.0, evidence="protocol")
    committed = checkout / "results" / "summary"
    committed.mkdir()
    (committed / "headline.csv").write_text("committed\n")
    monkeypatch.chdir(checkout)
    monkeypatch.delenv("RESLAB_RESULTS", raising=False)
    monkeypatch.delenv("RESLAB_SOURCE_RESULTS", raising=False)
    out = S.run_summary()
    assert (committed / "headline.csv").read_text() == "committed\n" and len(list(committed.iterdir())) == 1
    assert out.out_dir.resolve() == (checkout / "results" / "_scratch" / "summary").resolve()
    assert (out.tables["headline"]["verdict"] == "not reproduced").sum() >= 8  # read the committed paper/ results
    assert "reslab reproduce --only summary`" in out.notes[0] and str(out.out_dir.resolve()) in out.notes[0]


def test_committed_readme_matches_committed_summary() -> None:
    """The README's Results section is what `reslab readme` renders from results/summary/."""
    summary = REPO / "results" / "summary"
    assert (summary / "headline.csv").is_file(), "results/summary is not committed; run make reproduce"
    assert R.update_readme(REPO / "README.md", summary, check=True), "README Results are stale: run `reslab readme`"


def test_committed_results_have_complete_manifests() -> None:
    """Every committed results folder names its commit, profile, data, versions, devices, wall time and code."""
    folders = [p.parent for p in (REPO / "results").glob("*/*/manifest.json")] + [REPO / "results" / "summary"]
    assert len(folders) >= 8
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        for key in ("git_commit", "profile", "data", "torch_version", "reslab_version", "devices", "wall_s", "code"):
            assert key in manifest, f"{folder.name}: manifest lacks {key}"
        for split in manifest["data"]:
            assert split["fingerprint"] and split["data_source"], folder.name


def test_check_reports_changed_code_and_data(no_data_root, tmp_path) -> None:
    from reslab.data import load_dataset

    root = tmp_path / "results"
    data = load_dataset("mnist", "test", subset=32, allow_synthetic=True).describe()
    out = TableOutput(out_dir=root / "smoke" / "datasets")
    out.out_dir.mkdir(parents=True)
    out.save("datasets", "smoke", [data], 1.0)
    (root / "smoke" / "orphan").mkdir()
    report = check_results(root).set_index("folder")
    assert report.loc["smoke/datasets", "status"] == "up to date"
    assert report.loc["smoke/orphan", "status"] == "no manifest"

    path = root / "smoke" / "datasets" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["code"]["reslab/train.py"] = "0" * 16
    manifest["data"][0]["fingerprint"] = "feedfeedfeedfeed"
    path.write_text(json.dumps(manifest))
    row = check_results(root).set_index("folder").loc["smoke/datasets"]
    assert row["status"] == "stale" and row["code_changed"] == "reslab/train.py"
    assert "mnist/test" in row["data_changed"] and "feedfeedfeedfeed" in row["data_changed"]


def test_code_fingerprints_cover_package_and_notebook() -> None:
    hashes = code_fingerprints("survey_error_rates")
    assert "reslab/train.py" in hashes and "reslab/claims/survey.csv" in hashes
    assert "notebooks/survey_error_rates.ipynb" in hashes


def test_the_figure_keeps_accuracy_apart_from_error_and_shows_gains_with_intervals() -> None:
    rows = pd.DataFrame([
        {"claim_id": "drstn/Table 4/drstn_v5/cifar10/test_acc", "unit": "percent", "paper_value": 91.6, "ours": 90.0},
        {"claim_id": "survey/t/resnet110/cifar10/error_rate", "unit": "percent", "paper_value": 6.4, "ours": 7.0},
        {"claim_id": "selu/Table 2/selu/fashion_mnist/test_acc_gain", "unit": "pp", "paper_value": 0.6, "ours": 0.4,
         "ci95_low": 0.1, "ci95_high": 0.7},
    ]).assign(verdict=["reproduced", S.JPEG_VERDICT, "reproduced"])
    rows.loc[:1, ["ci95_low", "ci95_high"]] = math.nan
    fig = S.paper_vs_ours_figure(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["accuracy (%)", "error rate (%)"] and titles[2].startswith("gains")
    gains = fig.axes[2]
    assert gains.collections and any(len(c.get_segments()) == 1 for c in gains.collections if hasattr(c, "get_segments"))
    assert "on JPEG, within allowance (1)" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]


def test_the_figure_scales_each_panel_to_its_judged_claims_and_counts_the_smoke_points_left_outside() -> None:
    rows = pd.DataFrame([
        {"claim_id": "drstn/Table 4/resnet18/cifar10/test_acc", "unit": "percent", "paper_value": 84.8, "ours": 81.7,
         "verdict": "not reproduced"},
        {"claim_id": "drstn/Table 4/drstn_v5/cifar10/test_acc", "unit": "percent", "paper_value": 92.3, "ours": 81.7,
         "verdict": "not reproduced"},
        {"claim_id": "cbam/t/resnet50/cifar10/test_acc", "unit": "percent", "paper_value": 93.0, "ours": 10.0,
         "verdict": "smoke only"},
        {"claim_id": "selu/s/selu/fashion_mnist/test_acc_gain", "unit": "pp", "paper_value": 0.6, "ours": 0.7,
         "ci95_low": -0.1, "ci95_high": 1.6, "verdict": "not reproduced"},
        {"claim_id": "survey/s/x/cifar10/test_acc_gain", "unit": "pp", "paper_value": 1.0, "ours": 5.0,
         "ci95_low": -100.0, "ci95_high": 110.0, "verdict": "smoke only"},
    ])
    fig = S.paper_vs_ours_figure(rows)
    acc, gains = fig.axes
    low, high = acc.get_ylim()
    assert 70 < low < 81.7 and 92.3 < high < 100  # the smoke point at 10 % does not set the axes
    assert "smoke only (1; 1 outside the axes)" in [t.get_text() for t in acc.get_legend().get_texts()]
    low, high = gains.get_ylim()
    assert -1 < low < -0.1 and 1.6 < high < 2  # the judged interval is inside; the smoke point and interval do not stretch it
    bars = [c for c in gains.collections if hasattr(c, "get_segments") and len(c.get_segments()) == 1]
    assert len(bars) == 1  # only the judged gain has its interval drawn
    legend = [t.get_text() for t in gains.get_legend().get_texts()]
    assert legend == ["not reproduced (1)", "smoke only (1; 1 outside the axes)"]
