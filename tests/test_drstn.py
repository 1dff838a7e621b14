"""DRSTN tables: claims transcription, recipes, Table 4 / Table 5 runs and reuse, Grad-CAM (tiny budgets)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from reslab import gradcam
from reslab import results as RES
from reslab.app.bundle.gather import runs_read
from reslab.claims import load_claims
from reslab.models import create_model
from reslab.paths import Paths
from reslab.profiles import BUDGET, Profile, resolve_profile
from reslab.runs import execute as EX
from reslab.runs import store as ST
from reslab.tables import drstn
from reslab.tables._common import FROM_FIRST_RUN, starting_from

TINY = dict(max_steps=1, batch_size=16, device="cpu")


@pytest.fixture
def runs(no_data_root, monkeypatch):
    monkeypatch.setenv("RESLAB_RUNS", str(no_data_root / "runs"))
    return no_data_root / "runs"


@pytest.fixture
def tiny_models(monkeypatch):
    """Every Table 4 network becomes a tiny CNN: these tests check the plumbing, not the networks."""
    from conftest import tiny_cnn

    from reslab.models import _registry

    for _, name in drstn.TABLE4_ROWS + drstn.TABLE4_CONTROLS:
        monkeypatch.setitem(_registry._MODELS, name,
                            lambda num_classes=10, in_chans=3, pretrained=False, **kw: tiny_cnn(in_chans, num_classes))


# ---------------------------------------------------------------------------- claims


def test_claims_transcribe_tables_4_5_and_the_abstract():
    c = load_claims("drstn")
    t4 = c[c["table"] == "Table 4"]
    assert list(t4["model"]) == [m for _, m in drstn.TABLE4_ROWS]
    assert (t4["metric"] == "test_acc").all() and (t4["unit"] == "fraction").all()
    assert dict(zip(t4["model"], t4["value"]))["drstn_v5"] == 0.9229  # transcription check of one cell
    t5 = c[c["table"] == "Table 5"]
    assert len(t5) == 8 and set(t5["dataset"]) == {"mnist", "fashion_mnist"}
    assert set(t5["metric"]) == {"train_loss", "test_loss", "train_acc", "test_acc"}
    assert 0.9315 in set(t5["value"]) and 0.0306 in set(t5["value"])
    abstract = c[c["table"] == "abstract"]
    assert set(abstract["value"]) == {15.5, 8.8, 10.9, 99.06, 93.15}


def test_abstract_gains_are_relative_not_absolute():
    c = load_claims("drstn")
    best = dict(zip(c.loc[c["table"] == "Table 4", "model"], c.loc[c["table"] == "Table 4", "value"]))
    gains = c[c["metric"].str.startswith("test_acc_gain_vs_")]
    assert len(gains) == 3
    for _, g in gains.iterrows():
        base = best[g["metric"].removeprefix("test_acc_gain_vs_")]
        assert round((best["drstn_v5"] / base - 1) * 100, 1) == g["value"]
        assert round((best["drstn_v5"] - base) * 100, 1) != g["value"]
        assert "RELATIVE" in g["note"]


# ---------------------------------------------------------------------------- recipes and specs


def test_table4_specs_share_one_recipe_per_profile():
    for profile in ("smoke", "paper", "strong"):
        specs = drstn.table4_specs(drstn.TABLE4_RECIPES[profile])
        assert [s.model for s in specs] == [m for _, m in drstn.TABLE4_ROWS + drstn.TABLE4_CONTROLS]
        assert len({repr(s.cfg) for s in specs}) == 1 and all(s.dataset == "cifar10" for s in specs)
    strong = drstn.TABLE4_RECIPES["strong"].cfg
    assert strong.nesterov and strong.label_smoothing == 0.1 and strong.schedule == "cosine" and strong.warmup_epochs > 0
    assert drstn.TABLE4_RECIPES["smoke"].cfg.max_steps > 0
    over = drstn.TABLE4_RECIPES["paper"].with_overrides(epochs=3)
    assert drstn.table4_specs(over)[0].cfg.epochs == 3 and over.overrides == ("epochs=3 (recipe: 50)",)


def test_bad_inputs_say_what_is_wrong(runs):
    with pytest.raises(ValueError, match="unknown profile"):
        drstn.run_drstn_table4(profile="fast")
    reduced = Profile("reduced", BUDGET, rank=2, allow_synthetic=False, allow_random_weights=False, download=None,
                      train_subset=800, test_subset=500, description="a reduced budget")
    with pytest.raises(ValueError, match="has no 'reduced' recipe"):
        drstn.run_drstn_table4(profile=reduced)
    assert not (Paths.from_env().results / "reduced").exists()  # bad input leaves no empty results folder behind
    with pytest.raises(ValueError, match="subset of"):
        drstn.table4_specs(drstn.TABLE4_RECIPES["smoke"], models=["resnet50"])
    with pytest.raises(ValueError, match="seeds"):
        drstn.run_drstn_table4(seeds=[])
    with pytest.raises(ValueError, match="epochs"):
        drstn.run_drstn_table4(epochs=0)
    with pytest.raises(ValueError, match="subset of"):
        drstn.run_drstn_table5(datasets=["cifar10"])
    with pytest.raises(FileNotFoundError, match="source_checkpoint"):
        drstn.run_drstn_table5(source_checkpoint=str(runs / "nope.pt"))
    with pytest.raises(ValueError, match="weights"):
        drstn.run_drstn_table1(weights="hub")
    with pytest.raises(ValueError, match="image_size"):
        drstn.run_drstn_table1(image_size=32)


def test_transfer_specs_pair_transfer_with_random_init():
    specs = drstn.table5_specs(drstn.TABLE5_RECIPES["paper"], "ckpt.pt")
    assert [(s.dataset, s.init_from) for s in specs] == [
        ("mnist", "ckpt.pt"), ("mnist", None), ("fashion_mnist", "ckpt.pt"), ("fashion_mnist", None)]
    assert [s.tags["init"] for s in specs] == ["transfer", "random"] * 2
    aug = specs[0].augments()[0]
    assert aug.to_rgb and aug.resize == drstn.TRANSFER_SIZE and len(aug.mean) == 3
    assert len({repr(s.cfg) for s in specs}) == 1


def test_table5_transfer_specs_start_from_the_first_runs_checkpoint_once_it_is_known():
    runs = drstn.table5_runs("paper", datasets=["mnist"])
    assert [s.init_from for s in runs.specs] == [FROM_FIRST_RUN, None] and runs.first
    assert runs.for_seed(None) == runs.specs  # not known yet: the placeholder stays
    assert [s.init_from for s in runs.for_seed("v5.pt")] == ["v5.pt", None]  # random init stays random
    own = dataclasses.replace(runs.specs[0], init_from="other.pt")
    assert starting_from(own, "v5.pt") is own  # a spec naming its own checkpoint keeps it


# ---------------------------------------------------------------------------- Table 4 and Table 5 runs


def test_table4_writes_its_table_and_reuses_finished_runs(runs, tiny_models, tmp_path, monkeypatch):
    out = drstn.run_drstn_table4(seeds=[0, 1], models=["resnet18", "drstn_v5"], out_dir=tmp_path / "t4", **TINY)
    t = out.tables["table4"]
    assert list(t["model"]) == ["resnet18", "drstn_v5"] and (t["n"] == 2).all()
    assert {"best_acc_mean", "best_acc_std", "final_acc_mean", "claimed_best_acc", "difference"} <= set(t.columns)
    assert (t["evidence"] == "smoke").all() and (t["data_source"] == "synthetic").all()
    assert np.allclose(t["difference"], t["best_acc_mean"] - t["claimed_best_acc"], atol=1e-4)
    for name in ("table4.csv", "table4_runs.csv", "table4_gains.csv", "fig3_test_acc.png", "manifest.json"):
        assert (tmp_path / "t4" / name).is_file()
    assert any("SYNTHETIC" in n for n in out.notes)
    gains = out.tables["table4_gains"].set_index("baseline")["measured_pct"]
    assert np.isfinite(gains["resnet18"]) and gains.drop("resnet18").isna().all()  # two baselines not run
    missing = out.tables["table4_gains"].set_index("baseline")["missing"]
    assert missing["resnet18"] == "" and set(missing.drop("resnet18")) == {"skresnet18", "convnext_tiny"}
    n = out.tables["table4_gains"].set_index("baseline")["n"]  # a ratio of two means of 2 seeds; 0 where one side is missing
    assert n["resnet18"] == 2 and (n.drop("resnet18") == 0).all()
    effects = out.tables["table4_effects"]  # only the effect whose two networks ran: V5 over ResNet-18
    assert list(zip(effects["with"], effects["without"])) == [("drstn_v5", "resnet18")] and effects["n"].eq(2).all()
    per_seed = t.set_index("model")  # the paired mean equals the difference of the two means over the same seeds
    assert effects["mean_diff_pp"].iloc[0] == pytest.approx(
        100 * (per_seed.loc["drstn_v5", "best_acc_mean"] - per_seed.loc["resnet18", "best_acc_mean"]), abs=1e-3)
    assert effects["paper_implied_pp"].iloc[0] == pytest.approx(7.45)
    assert (tmp_path / "t4" / "table4_effects.csv").is_file()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(EX, "train", no_training)
    again = drstn.run_drstn_table4(seeds=[0, 1], models=["resnet18", "drstn_v5"], out_dir=tmp_path / "t4", **TINY)
    assert again.tables["table4_runs"]["reused"].all()
    pd.testing.assert_frame_equal(again.tables["table4"], out.tables["table4"])
    with pytest.raises(AssertionError, match="trained again"):
        drstn.run_drstn_table4(seeds=[0], models=["drstn_v5"], force=True, out_dir=tmp_path / "t4", **TINY)


def test_table5_trains_the_missing_source_then_transfers(runs, tiny_models, tmp_path):
    out = drstn.run_drstn_table5(seeds=[0], out_dir=tmp_path / "t5", device="cpu", max_steps=1)
    assert any("was missing, so it was trained first" in n for n in out.notes)
    spec, ckpt = drstn.table4_checkpoint("smoke", 0)
    assert ckpt.is_file()
    r = out.tables["table5_runs"]
    assert list(r["init"]) == ["transfer", "random"] * 2
    assert (r.loc[r["init"] == "transfer", "fresh_from_init"] == 0).all()  # every weight, head included
    t = out.tables["table5"]
    assert len(t) == 2 * 2 * 4
    transfer, scratch = t[t["init"] == "transfer"], t[t["init"] == "random"]
    assert transfer["claimed"].notna().all() and scratch["claimed"].isna().all()
    assert transfer["transfer_minus_random"].notna().all() and (t["evidence"] == "smoke").all()
    assert set(out.tables["table5_history"]["init"]) == {"transfer", "random"}
    again = drstn.run_drstn_table5(seeds=[0], out_dir=tmp_path / "t5", device="cpu", max_steps=1)
    assert again.tables["table5_runs"]["reused"].all() and not any("missing" in n for n in again.notes)


# ---------------------------------------------------------------------------- Grad-CAM


def test_cam_stats_of_a_known_map():
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[0, 3] = 1.0
    s = gradcam.cam_stats(cam)
    assert s["frac_above_half"] == 1 / 16 and s["peak_y"] == 0.125 and s["peak_x"] == 0.875
    assert np.isnan(gradcam.cam_stats(np.zeros((3, 3)))["frac_above_half"])
    assert gradcam.overlay(np.zeros((8, 8, 3), np.uint8), cam).shape == (8, 8, 3)


def test_layer_grid_is_the_target_layers_output_size():
    net = create_model("resnet18", num_classes=10)
    assert gradcam.layer_grid(net, torch.zeros(2, 3, 32, 32), "layer4") == (1, 1)
    assert gradcam.layer_grid(net, torch.zeros(1, 3, 64, 64), "layer3") == (4, 4)
    assert not net.layer4._forward_hooks  # the hook is removed


def test_get_layer_names_the_children_when_wrong():
    with pytest.raises(ValueError, match="children"):
        gradcam.get_layer(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), "layer4")


def test_table1_random_weights_in_smoke_and_an_error_when_not_allowed(runs, tmp_path):
    out = drstn.run_drstn_table1(n_images=1, image_size=64, weights="auto", device="cpu", out_dir=tmp_path / "t1")
    w = out.tables["table1_weights"]
    assert list(w["model"]) == [m for _, m, _ in drstn.CAM_MODELS] and (w["weights"] == "random").all()
    assert (w["evidence"] == "smoke").all()
    s = out.tables["table1_cam_stats"]
    assert len(s) == len(drstn.CAM_MODELS) and s["frac_above_half"].between(0, 1).all()
    assert (tmp_path / "t1" / "table1_gradcam.png").is_file() and any("RANDOM" in n for n in out.notes)
    with pytest.raises(FileNotFoundError, match="no network of Table 1 has usable weights: no usable weights for "
                       "squeezenet1_1"):
        drstn.run_drstn_table1(weights="random", allow_random=False, n_images=1, image_size=64, device="cpu")


def test_table1_shows_the_networks_that_have_weights_and_lists_the_others(runs, tmp_path):
    """Where some networks have no usable weights (as under ``paper`` without ImageNet weights on disk;
    here ``weights='cifar10'`` with only DRSTN V5's Table 4 run), Table 1 shows the networks that have
    them and lists the others as not run, saying what was tried, rather than failing whole."""
    drstn.run_drstn_table4(seeds=[0], models=[drstn.TRANSFER_MODEL], device="cpu", out_dir=tmp_path / "t4")
    out = drstn.run_drstn_table1(weights="cifar10", n_images=1, device="cpu", out_dir=tmp_path / "t1")
    w = out.tables["table1_weights"].set_index("model")
    assert list(w.index) == [m for _, m, _ in drstn.CAM_MODELS]
    assert (w.loc["drstn_v5", "status"], w.loc["drstn_v5", "weights"], w.loc["drstn_v5", "seed"]) == ("shown", "cifar10", 0)
    others = w.drop("drstn_v5")
    assert (others["status"] == "not run: no usable weights").all() and (others["weights"] == "none").all()
    assert "not a Table 4 model" in others.loc["vgg16", "detail"]
    assert "no Table 4 checkpoint yet" in others.loc["resnet18", "detail"]
    assert all(f"seed {s}: " in others.loc["resnet18", "detail"] for s in drstn.CAM_SEEDS)  # every seed looked for
    copies, absent = runs_read(["drstn_table1_gradcam"], resolve_profile("smoke"), Paths.from_env())
    assert [(c.model, c.seed) for c in copies] == [("drstn_v5", 0)]  # seed 0's, and no other seed of V5
    assert [line.split(" (")[0] for line in absent] == [f"drstn_table4_cifar10 resnet18 seed {s}" for s in drstn.CAM_SEEDS]
    assert set(out.tables["table1_cam_stats"]["model"]) == {"drstn_v5"}
    assert any(n.startswith("Not shown") and "Squeezenet1_1, AlexNet, VGG-16, ResNet-18" in n for n in out.notes)
    assert (tmp_path / "t1" / "table1_gradcam.png").is_file()


def test_table1_takes_the_next_seed_whose_checkpoint_is_here_and_names_it(runs, tmp_path):
    """Seed 0's Table 4 run recorded on another machine leaves its numbers, not its weights: Table 1
    then shows the network from the next seed of ``CAM_SEEDS`` finished in this run store and says
    which seed it is; a network with none lists every seed it looked for."""
    drstn.run_drstn_table4(seeds=[1], models=[drstn.TRANSFER_MODEL, "resnet18"], device="cpu", out_dir=tmp_path / "t4")
    out = drstn.run_drstn_table1(weights="cifar10", n_images=1, device="cpu", out_dir=tmp_path / "t1")
    w = out.tables["table1_weights"].set_index("model")
    assert (w.loc["drstn_v5", "status"], w.loc["drstn_v5", "seed"]) == ("shown", 1)
    assert w.loc["drstn_v5", "detail"].startswith("Table 4 smoke checkpoint, seed 1: ")
    assert pd.isna(w.loc["vgg16", "seed"]) and "not a Table 4 model" in w.loc["vgg16", "detail"]
    # torchvision's ResNet-18 at 32x32 ends on a 1x1 grid: its map is uniform, and the table says so
    assert (w.loc["resnet18", "seed"], w.loc["resnet18", "cam_grid"]) == (1, "1x1") and w.loc["drstn_v5", "cam_grid"] != "1x1"
    assert any(n.startswith("ResNet-18: the target layer is 1x1") for n in out.notes)
    # A bundle for Table 1 carries the run Table 1 reads of each network: seed 1's here, and nothing is missing.
    copies, absent = runs_read(["drstn_table1_gradcam"], resolve_profile("smoke"), Paths.from_env())
    assert sorted((c.model, c.seed) for c in copies) == [("drstn_v5", 1), ("resnet18", 1)] and absent == []


def test_table5_finds_its_source_run_without_cifar10(runs, monkeypatch):
    """A GPU machine given Table 4's DRSTN V5 run but not CIFAR-10 (a Table 5 bundle): the run is
    found from the data fingerprints its result row recorded; a folder whose key does not match
    them (another recipe) is not taken."""
    monkeypatch.setenv("RESLAB_DOWNLOAD", "0")
    spec = drstn.table4_specs(drstn.TABLE4_RECIPES["paper"], models=[drstn.TRANSFER_MODEL])[0]
    store = runs / "paper" / drstn.TABLE4
    key = ST.run_key(spec, 0, "train-fp", "test-fp")
    for name in (f"{ST.slug(spec.label)}-s0-{key}", f"{ST.slug(spec.label)}-s0-0123456789"):
        (store / name).mkdir(parents=True)
        RES.write_json({"row": {"train_fingerprint": "train-fp", "test_fingerprint": "test-fp"}, "columns": []},
                     store / name / ST.RESULT_NAME)
    found, path = drstn.table4_checkpoint("paper", 0)
    assert found == spec and path == store / f"{ST.slug(spec.label)}-s0-{key}" / "last.pt"
    assert ST.RunStore.of(Paths.from_env()).find_run(spec, "paper", 1) is None  # no run of seed 1
    shutil.rmtree(store / f"{ST.slug(spec.label)}-s0-{key}")
    with pytest.raises(FileNotFoundError, match="no cifar10 data found"):  # then the data is needed
        drstn.table4_checkpoint("paper", 0)


# ---------------------------------------------------------------------------- the record of finished runs


def test_recorded_runs_are_reused_without_the_run_store(runs, tiny_models, tmp_path, monkeypatch):
    """A finished run in the record (result row and history, committed) is reused on a machine whose
    run store is empty, with the same numbers; Table 5, which needs DRSTN V5's checkpoint, trains
    V5 again there and says why."""
    monkeypatch.setenv("RESLAB_RECORD", str(tmp_path / "record"))
    first = drstn.run_drstn_table4(seeds=[0], models=["resnet18", "drstn_v5"], out_dir=tmp_path / "t4", **TINY)
    rows = first.tables["table4_runs"]
    assert [ST.RunStore.of(Paths.from_env()).record_run(r) for r in rows["run_dir"]] == [
        tmp_path / "record" / r.removeprefix("<runs>/") for r in rows["run_dir"]]
    assert sorted(p.name for p in (tmp_path / "record" / rows["run_dir"][0].removeprefix("<runs>/")).iterdir()) == [
        ST.HISTORY_NAME, ST.RESULT_NAME]
    shutil.rmtree(runs)  # another machine: nothing in its run store

    def no_training(*a, **k):
        raise AssertionError("a recorded run was trained again")

    with monkeypatch.context() as m:
        m.setattr(EX, "train", no_training)
        again = drstn.run_drstn_table4(seeds=[0], models=["resnet18", "drstn_v5"], out_dir=tmp_path / "t4b", **TINY)
    assert again.tables["table4_runs"]["reused"].all()
    pd.testing.assert_frame_equal(again.tables["table4"], first.tables["table4"])
    pd.testing.assert_frame_equal(again.tables["table4_history"], first.tables["table4_history"])

    out = drstn.run_drstn_table5(seeds=[0], datasets=["mnist"], out_dir=tmp_path / "t5", device="cpu", max_steps=1)
    assert any("finished in the record of finished runs" in n and "trained again here" in n for n in out.notes)
    spec, ckpt = drstn.table4_checkpoint("smoke", 0)
    assert ckpt.is_file() and (ckpt.parent / ST.RESULT_NAME).is_file()


def test_table5_is_rebuilt_from_the_record_without_its_source_checkpoint(runs, tiny_models, tmp_path, monkeypatch):
    """DRSTN V5's checkpoint stays with the machine that trained it; the record keeps its digest
    (V5's result) and Table 5's runs. Another machine rebuilds Table 5 from the record without
    training V5 or Table 5 again, with executor none too. Without V5's digest (a result from before
    results kept it), a transfer run is found by the digest it started from, else by its recipe;
    a result that does not make its folder's key, another recipe, or two candidates are not taken,
    and then executor none says what to do."""
    monkeypatch.setenv("RESLAB_RECORD", str(tmp_path / "record"))
    first = drstn.run_drstn_table5(seeds=[0], datasets=["mnist"], out_dir=tmp_path / "t5", device="cpu", max_steps=1)
    store = ST.RunStore.of(Paths.from_env())
    spec, ckpt = drstn.table4_checkpoint("smoke", 0)
    rows = first.tables["table5_runs"]
    in_store = ckpt.parent / ST.RESULT_NAME
    digest = RES.file_sha256(ckpt)[:16]
    assert json.loads(in_store.read_text())["checkpoint_digest"] == digest  # kept as the run finished
    # as if V5 finished before results kept the digest: recording adds it
    in_store.write_text(json.dumps({k: v for k, v in json.loads(in_store.read_text()).items() if k != "checkpoint_digest"}))
    for run_dir in [*rows["run_dir"], store.relative(ckpt.parent)]:
        assert store.record_run(run_dir) is not None
    source = store.recorded(ckpt.parent) / ST.RESULT_NAME
    transfer = tmp_path / "record" / rows.loc[rows["init"] == "transfer", "run_dir"].iloc[0].removeprefix("<runs>/")
    kept = json.loads((transfer / ST.RESULT_NAME).read_text())
    assert json.loads(source.read_text())["checkpoint_digest"] == digest == kept["init_digest"]
    shutil.rmtree(runs)  # another machine: the record only

    def no_training(*a, **k):
        raise AssertionError("a recorded run was trained again")

    def table5(executor="none"):
        return drstn.run_drstn_table5(seeds=[0], datasets=["mnist"], out_dir=tmp_path / "again", device="cpu",
                                      max_steps=1, executor=executor)

    def keep(result, path=transfer / ST.RESULT_NAME):
        path.write_text(json.dumps(result))

    monkeypatch.setattr(EX, "train", no_training)
    for executor in ("inline", "none"):
        again = table5(executor)
        assert again.tables["table5_runs"]["reused"].all() and not ckpt.exists()
        assert any("without its checkpoint" in n and "reused, not trained again" in n for n in again.notes)
        pd.testing.assert_frame_equal(again.tables["table5"], first.tables["table5"])

    keep({k: v for k, v in json.loads(source.read_text()).items() if k != "checkpoint_digest"}, source)
    pd.testing.assert_frame_equal(table5().tables["table5"], first.tables["table5"])  # by the transfer's own digest
    keep(kept | {"init_digest": "0" * 16})  # a result that does not make its folder's key
    with pytest.raises(FileNotFoundError, match="executor 'none' trains nothing.*reslab train drstn_table4_cifar10"):
        table5()
    legacy = {k: v for k, v in kept.items() if k != "init_digest"}  # from before results kept digests: by recipe
    keep(legacy)
    pd.testing.assert_frame_equal(table5().tables["table5"], first.tables["table5"])
    shutil.copytree(transfer, transfer.with_name(transfer.name[:-10] + "0123456789"))  # V5 trained twice, once
    with pytest.raises(FileNotFoundError, match="trains nothing"):  # recorded: which transfer started from it?
        table5()
    shutil.rmtree(transfer.with_name(transfer.name[:-10] + "0123456789"))
    keep(legacy | {"config": legacy["config"] | {"lr": 123.0}})  # another recipe
    with pytest.raises(FileNotFoundError, match="trains nothing"):
        table5()


def test_an_interrupted_source_run_is_finished_before_table5_uses_it(runs, tiny_models, tmp_path):
    """A last.pt without its result row (DRSTN V5 interrupted) is not the finished network: Table 5
    finishes the run first rather than transferring from the partial checkpoint."""
    drstn.run_drstn_table4(seeds=[0], models=["drstn_v5"], out_dir=tmp_path / "t4", **TINY)
    spec, ckpt = drstn.table4_checkpoint("smoke", 0)
    (ckpt.parent / ST.RESULT_NAME).unlink()
    out = drstn.run_drstn_table5(seeds=[0], datasets=["mnist"], out_dir=tmp_path / "t5", device="cpu", max_steps=1)
    assert any("was missing, so it was trained first" in n for n in out.notes)
    assert (ckpt.parent / ST.RESULT_NAME).is_file()


def test_what_soft_thresholding_adds_is_paired_by_seed_with_its_interval():
    """V5 minus its control and V1 minus ResNet-18 on the same seeds; a network not finished pairs with nothing."""
    acc = {("drstn_v5", 0): 0.82, ("drstn_v5", 1): 0.83, ("drstn_v5_no_st", 0): 0.81, ("drstn_v5_no_st", 1): 0.815,
           ("drstn_v1", 0): 0.80, ("resnet18", 0): np.nan}
    rows = pd.DataFrame([{"label": m.upper(), "model": m, "seed": s, "best_acc": a} for (m, s), a in acc.items()])
    summary = pd.DataFrame([{"label": m.upper(), "model": m, "claimed_best_acc": c, "data_source": "cifar10-jpeg",
                             "profile": "paper", "evidence": "protocol", "evidence_note": ""}
                            for m, c in (("drstn_v5", 0.9229), ("drstn_v5_no_st", np.nan), ("drstn_v1", 0.8962),
                                         ("resnet18", 0.8484))])
    effects = drstn._effects_table(rows, summary).set_index("without")
    v5 = effects.loc["drstn_v5_no_st"]
    assert v5["n"] == 2 and v5["mean_diff_pp"] == pytest.approx(1.25)  # (1.0 + 1.5) / 2
    assert v5["ci95_low_pp"] < 1.25 < v5["ci95_high_pp"] and np.isnan(v5["paper_implied_pp"])  # the control has no claim
    r18 = effects[effects["with"] == "drstn_v1"].iloc[0]
    assert r18["n"] == 0 and np.isnan(r18["mean_diff_pp"]) and r18["paper_implied_pp"] == pytest.approx(4.78)
    assert len(drstn._effects_table(rows[rows["model"] != "resnet18"], summary[summary["model"] != "resnet18"])) == 1


def test_the_soft_thresholding_control_is_v5_without_it():
    """V5 minus its control is what soft thresholding adds: the two differ only in the threshold units."""
    from reslab.models import count_params, create_model
    from reslab.models.layers import SoftThreshold

    v5, control = create_model("drstn_v5"), create_model("drstn_v5_no_st")
    units = [m for m in v5.modules() if isinstance(m, SoftThreshold)]
    assert len(units) == 6 and not any(isinstance(m, SoftThreshold) for m in control.modules())
    assert count_params(v5) - count_params(control) == sum(count_params(u) for u in units)
    assert [n for n, _ in control.named_parameters()] == [
        n for n, _ in v5.named_parameters() if not any(n.startswith(f"{p}.") for p, m in v5.named_modules()
                                                      if isinstance(m, SoftThreshold))]
