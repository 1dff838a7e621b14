"""Runs of a table: provenance rows, reuse of finished runs, force, init_from, summaries."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from reslab import data as D
from reslab import evidence as EV
from reslab import profiles as PR
from reslab import stats as STATS
from reslab.paths import Paths
from reslab.profiles import BUDGET, Profile
from reslab.results import PROVENANCE_COLUMNS
from reslab.runs import execute as EX
from reslab.runs import spec as SP
from reslab.runs import store as ST
from reslab.train import TrainConfig

CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", progress=False)

#: A reduced-budget profile (no shipped profile is one): real data, subsets, never judged.
REDUCED = Profile("reduced", BUDGET, rank=2, allow_synthetic=False, allow_random_weights=False, download=None,
                  train_subset=800, test_subset=500, description="a reduced budget, for tests")


def _store() -> ST.RunStore:
    return ST.RunStore.of(Paths.from_env())


@pytest.fixture
def runs(no_data_root, monkeypatch):
    monkeypatch.setenv("RESLAB_RUNS", str(no_data_root / "runs"))
    return no_data_root / "runs"


def spec(label="tiny", cfg=CFG, checkpoint=True, test_subset=None, keep_checkpoint=True, **kw):
    recipe = SP.Recipe(cfg, train_augment=D.Augment.standard("mnist", train=True, to_rgb=True), checkpoint=checkpoint,
                      test_subset=test_subset, keep_checkpoint=keep_checkpoint)
    return SP.RunSpec(table="t", label=label, model="resnet18_cifar", dataset="mnist", recipe=recipe, **kw)


@pytest.fixture(autouse=True)
def small_model(monkeypatch):
    """A tiny registered model keeps these tests fast."""
    from conftest import tiny_cnn

    from reslab.models import _registry

    monkeypatch.setitem(_registry._MODELS, "resnet18_cifar",
                        lambda num_classes=10, in_chans=3, pretrained=False, **kw: tiny_cnn(in_chans, num_classes))


def test_rows_carry_provenance_and_runs_are_reused(runs, monkeypatch):
    rows, hist = EX.run_specs([spec()], "smoke", seeds=[0, 1])
    assert len(rows) == 2 and set(PROVENANCE_COLUMNS) <= set(rows.columns)
    assert (rows["data_source"] == "synthetic").all() and (rows["profile"] == "smoke").all()
    assert not rows["reused"].any() and list(hist["seed"].unique()) == [0, 1]
    # Every row states how it ran (on the CPU: float32, eager, channels-first by default).
    assert (rows["precision"] == "fp32").all() and (rows["compile"] == "off").all() and not rows["channels_last"].any()
    assert rows.loc[0, "best_acc"] != rows.loc[1, "best_acc"] or rows.loc[0, "final_acc"] != rows.loc[1, "final_acc"]

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(EX, "train", no_training)
    again, hist2 = EX.run_specs([spec()], "smoke", seeds=[0, 1])
    assert again["reused"].all()
    pd.testing.assert_frame_equal(again.drop(columns="reused"), rows.drop(columns="reused"))
    pd.testing.assert_frame_equal(hist2, hist)
    with pytest.raises(AssertionError, match="trained again"):
        EX.run_specs([spec()], "smoke", seeds=[0], force=True)
    with pytest.raises(AssertionError, match="trained again"):  # another recipe is another run
        EX.run_specs([spec(cfg=CFG.replace(lr=0.01))], "smoke", seeds=[0])
    # Speed settings are not: the same run, found again.
    faster, _ = EX.run_specs([spec(cfg=CFG.replace(channels_last=True, compile="default", eval_batch_size=7))],
                            "smoke", seeds=[1])  # seed 0's run went with force=True above
    assert faster["reused"].all()


def test_init_from_loads_matching_weights(runs):
    rows, _ = EX.run_specs([spec("source")], "smoke", seeds=[0])
    train_data, test_data = SP.load_splits("mnist", "smoke")
    ckpt = _store().checkpoint_path(spec("source"), "smoke", 0, train_data, test_data)
    assert ckpt.is_file()
    row, _ = EX.run_one(spec("target", init_from=ckpt, cfg=CFG.replace(epochs=1)), "smoke", 5, train_data, test_data)
    assert row["fresh_from_init"] == 0 and row["init_from"] == _store().relative(ckpt)
    assert row["init_from"].startswith("<runs>")  # no machine path in a result row
    with pytest.raises(FileNotFoundError, match="train the run it comes from first"):
        EX.run_one(spec("x", init_from=runs / "missing.pt"), "smoke", 0, train_data, test_data)


def test_without_checkpoint_and_smaller_test_subset(runs):
    rows, _ = EX.run_specs([spec("nock", checkpoint=False, test_subset=16)], "smoke", seeds=[0])
    assert rows.loc[0, "test_images"] == 16 and rows.loc[0, "train_images"] == 512
    train_data, test_data = SP.load_splits("mnist", "smoke", test_subset=16)
    assert len(test_data) == 16 and len(SP.load_splits("mnist", "smoke")[1]) > 16  # the profile's subset
    ckpt = _store().checkpoint_path(spec("nock", checkpoint=False), "smoke", 0, train_data, test_data)
    assert not ckpt.exists() and (ckpt.parent / ST.RESULT_NAME).is_file()
    again, _ = EX.run_specs([spec("nock", test_subset=16)], "smoke", seeds=[0])  # same key: reused
    assert again["reused"].all()


def test_a_resumed_run_counts_the_time_of_the_epochs_trained_before_it_resumed(runs, monkeypatch):
    """``wall_s`` of a run cut off and resumed is the whole run's, not only the last process's: a
    50-epoch run resumed at epoch 27 once said it took the 23 epochs' time."""
    import importlib

    T = importlib.import_module("reslab.train")  # the module (``reslab.train`` is also the function)
    real_save = T.save_checkpoint

    def save_then_die(path, *args, rows, **kw):  # the first process: epoch 1 took 500 s, then it was killed
        real_save(path, *args, rows=[{**rows[0], "seconds": 500.0}], **kw)
        raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        EX.run_specs([spec("cut")], "smoke", seeds=[0])
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    rows, hist = EX.run_specs([spec("cut")], "smoke", seeds=[0])
    row = rows.iloc[0]
    assert row["resumed_from_epoch"] == 1 and list(hist["epoch"]) == [1, 2]
    assert hist["seconds"].iloc[0] == 500.0
    # This process's time (epoch 2 and its set-up, a few seconds here) plus the 500 s of epoch 1.
    assert hist["seconds"].sum() <= row["wall_s"] < 500.0 + 120.0, row["wall_s"]


def test_finished_runs_keep_only_the_weights_later_runs_read(runs, monkeypatch):
    """A finished run keeps its final weights (no optimiser state) or, when no later notebook reads
    them, nothing; either way it is reused from its result row and history."""
    from reslab.checkpoint import load_checkpoint
    from reslab.train import train

    rows, hist = EX.run_specs([spec("kept"), spec("dropped", keep_checkpoint=False)], "smoke", seeds=[0])
    train_data, test_data = SP.load_splits("mnist", "smoke")
    kept = _store().checkpoint_path(spec("kept"), "smoke", 0, train_data, test_data)
    dropped = _store().checkpoint_path(spec("dropped"), "smoke", 0, train_data, test_data)
    assert not dropped.exists() and (dropped.parent / ST.RESULT_NAME).is_file()
    assert set(load_checkpoint(kept)) == {"model", "history", "devices", "epoch", "step", "config"}
    row, _ = EX.run_one(spec("target", init_from=kept), "smoke", 0, train_data, test_data)
    assert row["fresh_from_init"] == 0
    # train() on a finished run's final weights trains no further (and needs no optimiser state).
    from conftest import tiny_cnn

    again = train(tiny_cnn(3, 10), EX.BatchLoader.for_split(train_data, 64, spec().augments()[0], train=True),
                  EX.BatchLoader.for_split(test_data, 64, spec().augments()[1], train=False),
                  CFG.replace(seed=0), checkpoint_dir=kept.parent)
    assert again.resumed_from_epoch == CFG.epochs and len(again.rows) == CFG.epochs

    # A store from before the recipe dropped checkpoints loses them when the run is reused.
    torch.save({"model": {}}, dropped)
    monkeypatch.setattr(EX, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    reused, hist2 = EX.run_specs([spec("kept"), spec("dropped", keep_checkpoint=False)], "smoke", seeds=[0])
    assert reused["reused"].all() and not dropped.exists() and kept.is_file()
    pd.testing.assert_frame_equal(hist2, hist)


def test_smoke_recipes_keep_only_checkpoints_a_later_table_reads():
    from reslab.tables import cbam, drstn, selu

    for recipes in (drstn.TABLE5_RECIPES, selu.RECIPES, cbam.RECIPES):
        assert recipes["smoke"].keep_checkpoint is False
    kept = [s.model for s in drstn.table4_specs(drstn.TABLE4_RECIPES["smoke"]) if s.recipe.keep_checkpoint]
    assert kept == ["resnet18", "drstn_v5"]  # Grad-CAM (Table 1) and the transfer (Table 5) read them
    assert all(s.recipe.keep_checkpoint for s in drstn.table4_specs(drstn.TABLE4_RECIPES["paper"]))


def test_summarise_mean_std_n():
    rows = pd.DataFrame({
        "label": ["a", "a", "b"], "model": ["m", "m", "n"], "dataset": ["d"] * 3, "seed": [0, 1, 0],
        "best_acc": [0.5, 0.7, 0.9], "final_acc": [0.4, 0.6, 0.8], "train_acc": [1, 1, 1],
        "params": [10, 10, 20], "trainable_params": [10, 10, 20], "epochs": [2, 2, 2],
        "data_source": ["synthetic"] * 3, "profile": ["smoke"] * 3, "device": ["cpu"] * 3,
        "evidence": ["protocol", "budget", "protocol"], "evidence_note": ["", "epochs=1 (recipe: 50)", ""],
    })
    s = STATS.summarise(rows).set_index("label")
    # A mean over seeds is as strong as its weakest run.
    assert s.loc["a", "evidence"] == "budget" and s.loc["a", "evidence_note"] == "epochs=1 (recipe: 50)"
    assert s.loc["b", "evidence"] == "protocol"
    assert s.loc["a", "best_acc_mean"] == pytest.approx(0.6) and s.loc["a", "n"] == 2
    assert s.loc["a", "best_acc_std"] == pytest.approx(torch.tensor([0.5, 0.7]).std().item())
    assert s.loc["b", "n"] == 1 and pd.isna(s.loc["b", "best_acc_std"])


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="specs is empty"):
        EX.run_specs([], "smoke", seeds=[0])
    with pytest.raises(ValueError, match="at least one seed"):
        EX.run_specs([spec()], "smoke", seeds=[])


# --------------------------------------------------------------------------------------------
# Recipes and the one comparability rule


def test_overrides_are_recorded_only_when_they_change_numbers():
    base = SP.Recipe(CFG.replace(epochs=50), input_size=224)
    same = base.with_overrides(epochs=50, max_steps=None, device="cuda", progress=True, eval_batch_size=64)
    assert same.overrides == () and same.cfg.device == "cuda"  # speed-only fields are never overrides
    changed = base.with_overrides(epochs=2, input_size=64, batch_size=None)
    assert changed.overrides == ("epochs=2 (recipe: 50)", "input_size=64 (recipe: 224)")
    assert changed.augments("cifar10")[0].resize == 64 and changed.cfg.epochs == 2
    # Rows that differ by design are not overrides.
    decay = SP.Recipe(CFG, row_changes={"lr_decay": {"schedule": "cosine"}})
    assert decay.for_row("lr_decay").cfg.schedule == "cosine" and decay.for_row("lr_decay").overrides == ()
    assert decay.for_row("other") is decay
    with pytest.raises(ValueError, match="unknown override"):
        base.with_overrides(epoch=3)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        base.with_overrides(epochs=0)


@pytest.mark.parametrize("profile, overrides, sources, complete, expected, note", [
    ("smoke", (), ["official"], True, "smoke", "profile smoke"),
    ("paper", (), ["synthetic"], True, "smoke", "synthetic data"),
    (REDUCED, (), ["official"], False, "budget", "profile reduced"),
    ("paper", (), ["official"], False, "budget", "data subsets"),
    ("paper", ("epochs=1 (recipe: 50)",), ["cifar10-jpeg"], True, "budget", "epochs=1 (recipe: 50)"),
    ("strong", ("weights=random",), ["official"], True, "budget", "weights=random"),
    ("paper", (), ["official", "cifar10-jpeg"], True, "protocol", ""),
    ("strong", (), ["official"], True, "protocol", ""),
])
def test_evidence_of_is_the_one_rule(profile, overrides, sources, complete, expected, note):
    kind, why = EV.evidence_of(PR.resolve_profile(profile), overrides, sources, complete)
    assert kind == expected and note in why


def test_weakest_evidence():
    assert EV.weakest_evidence(["protocol", "budget"], ["", "epochs=1"]) == ("budget", "epochs=1")
    assert EV.weakest_evidence(["protocol", "smoke", "budget"], ["", "a", "a"]) == ("smoke", "a")
    with pytest.raises(ValueError, match="non-empty"):
        EV.weakest_evidence([])


def test_rows_record_evidence_and_reused_runs_are_judged_afresh(runs):
    rows, _ = EX.run_specs([spec()], "smoke", seeds=[0])
    assert rows.loc[0, "evidence"] == "smoke" and rows.loc[0, "run_dir"].startswith("<runs>/smoke/t/tiny-s0-")
    assert rows.loc[0, "tf32"] == rows.loc[0, "cudnn_benchmark"] == "n/a (cpu)"  # how the backend was set, on every row
    over = spec(cfg=CFG).recipe.with_overrides(epochs=1)
    rows, _ = EX.run_specs([SP.RunSpec("t", "tiny", "resnet18_cifar", "mnist", over, tags={"init": "x"})], "smoke",
                          seeds=[0])
    assert rows.loc[0, "init"] == "x" and "epochs=1" not in rows.loc[0, "evidence_note"]  # smoke says smoke


def test_protocol_runs_print_their_plan_and_budget_runs_on_the_cpu_one_line(runs, capsys):
    from reslab.profiles import resolve_profile

    splits = {"mnist": SP.load_splits("mnist", resolve_profile("smoke"))}
    paper, reduced, smoke = resolve_profile("paper"), REDUCED, resolve_profile("smoke")
    text = EX.announce_cost([spec(), spec("other")], paper, [0, 1], splits)
    lines = text.splitlines()
    assert lines[0].startswith("[reslab] cost plan of the 4 run(s) still to train (profile paper; step times "
                               "measured on cpu")
    table = [line.split() for line in lines[2:6]]  # under the header: one line per run
    assert [(r[0], r[3]) for r in table] == [("tiny", "0"), ("tiny", "1"), ("other", "0"), ("other", "1")]
    assert all(r[-1] == "train" and r[-2] == "to" for r in table)  # status "to train"
    assert "4 still to train" in lines[6] and "training" in lines[6] and "evaluation" in lines[6]
    line = EX.announce_cost([spec()], reduced, [0], splits)
    assert line.startswith("[reslab] profile reduced on the CPU: about ") and "for 1 run(s) still to train" in line
    assert "\n" not in line and "measured here on cpu" in line
    assert EX.announce_cost([spec()], smoke, [0], splits) is None  # smoke fits a CPU by design
    if not torch.cuda.is_available():  # a device that cannot be had is training's to report, not the estimate's
        assert EX.announce_cost([spec(cfg=CFG.replace(device="cuda"))], paper, [0], splits) is None
    # run_specs prints it before training; finished runs cost nothing more: only the runs still to train are listed.
    EX.run_specs([spec()], paper, seeds=[0], splits=splits)
    assert "cost plan of the 1 run(s) still to train" in capsys.readouterr().out
    again = EX.announce_cost([spec()], paper, [0, 1], splits)
    assert "cost plan of the 1 run(s) still to train" in again and again.splitlines()[2].split()[3] == "1"
    assert EX.announce_cost([spec()], paper, [0], splits) is None
    # A run cut off part-way is costed from its checkpoint's epoch on (it resumes there).
    folder = ST.RunStore.of(Paths.from_env()).run_dir(spec(), paper, 1, *splits["mnist"])
    folder.mkdir(parents=True)
    torch.save({"epoch": 1}, folder / "last.pt")
    assert "to train: 1 of 2 epochs done" in EX.announce_cost([spec()], paper, [0, 1], splits)


def test_an_estimate_never_stops_the_run_it_describes(runs, monkeypatch, capsys):
    from reslab.profiles import resolve_profile
    from reslab.runs import cost

    def broken(*args, **kwargs):
        raise RuntimeError("no timing today")

    splits = {"mnist": SP.load_splits("mnist", resolve_profile("smoke"))}
    monkeypatch.setattr(cost, "_measure_steps", broken)  # a network that fails to step: reported, not counted
    text = EX.announce_cost([spec()], resolve_profile("paper"), [0], splits)
    assert "not timed (RuntimeError: no timing today)" in text and "1 run(s) not timed, not counted" in text
    monkeypatch.setattr(cost, "cost_runs", broken)  # the machinery itself failing: said, and training goes on
    rows, _ = EX.run_specs([spec()], "paper", seeds=[0], splits=splits)
    assert "[reslab] no cost estimate (RuntimeError: no timing today); training goes on." in capsys.readouterr().out
    assert len(rows) == 1 and not rows["reused"].any()
