"""The cost plan (``reslab plan``): the runs it lists are the notebooks' runs, its CSV, totals,
finished runs, errors, and the timing of one step."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from reslab import catalog, cli
from reslab.app import plan
from reslab.paths import Paths
from reslab.profiles import resolve_profile
from reslab.runs import cost, store
from reslab.runs.spec import Recipe, RunSpec, load_splits
from reslab.runs.store import RESULT_NAME, RunStore
from reslab.tables import _common, cbam, drstn, selu, survey
from reslab.train import TrainConfig

STUB = cost.StepCost(device="cpu", gflops=0.5, timing="stub", train_fixed_s=0.01, train_per_image_s=0.001,
                     eval_fixed_s=0.004, eval_per_image_s=0.0002, warmup_s=0.05, build_s=0.1, state_bytes=4000,
                     optimizer_bytes=4000)


def _store() -> RunStore:
    return RunStore.of(Paths.from_env())


@pytest.fixture
def stub_timer(monkeypatch):
    """Every network costs the same (the value does not matter here); records what was measured."""
    measured = []

    def fake(spec, device="cpu"):
        measured.append(cost.measure_key(spec, device))
        return STUB

    monkeypatch.setattr(cost, "measure", fake)
    return measured


@pytest.fixture
def runs(no_data_root, monkeypatch):
    monkeypatch.setenv("RESLAB_RUNS", str(no_data_root / "runs"))
    return no_data_root / "runs"


class _Stop(Exception):
    """Raised by the recorder once a run function has handed its runs over."""


def _runs_of_run_function(name: str, monkeypatch) -> set[tuple]:
    """``(table, label, model, dataset, seed)`` of every run the notebook's ``run_<table>()``
    hands to training at the notebook's defaults (smoke), recorded instead of trained."""
    recorded: set[tuple] = set()

    def record(specs, seeds):
        recorded.update((s.table, s.label, s.model, s.dataset, seed) for s in specs for seed in seeds)

    def train(self, specs, seeds, data_root=None, force=False):
        record(specs, seeds)
        raise _Stop

    def source_run(specs, profile, seeds, paths=None, splits=None, force=False, executor=None,
                   use_record=True):  # Table 5 source
        record(specs, seeds)
        for seed in seeds:
            path = _store().run_dir(specs[0], profile, seed, *load_splits("cifar10", profile)) / "last.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    monkeypatch.setattr(_common.TableRun, "train", train)
    monkeypatch.setattr(drstn, "run_specs", source_run)
    function = {drstn.TABLE4: drstn.run_drstn_table4, drstn.TABLE5: drstn.run_drstn_table5,
                selu.TABLE: selu.run_selu_ablation, cbam.TABLE: cbam.run_cbam, survey.TABLE: survey.run_survey}[name]
    accepted = inspect.signature(function).parameters
    params = {k: v for k, v in catalog.notebook_defaults(name).items() if k in accepted and k not in ("out_dir",)}
    params["profile"] = "smoke"
    with pytest.raises(_Stop):
        function(**params)
    return recorded


@pytest.mark.parametrize("name", [drstn.TABLE4, drstn.TABLE5, selu.TABLE, cbam.TABLE, survey.TABLE])
def test_the_plan_lists_every_run_the_notebook_trains(name, runs, stub_timer, monkeypatch):
    rows = plan.make_plan("smoke", only=[name], device="cpu").rows
    planned = {(r.table, r.label, r.model, r.dataset, int(r.seed)) for r in rows[rows["kind"] == "run"].itertuples()}
    assert planned == _runs_of_run_function(name, monkeypatch)
    # One measurement per network, input shape and batch, not one per seed or data set.
    assert len(stub_timer) == len(set(stub_timer)) <= len(planned)
    assert len(stub_timer) == len({(r.model, r.input, r.batch_size, r.table == cbam.TABLE and "Scratch" in r.label)
                                   for r in rows[rows["kind"] == "run"].itertuples()})


def test_paper_plan_follows_the_notebook_defaults_and_counts_the_source_run_once(no_data_root, stub_timer):
    result = plan.make_plan("paper", only=[drstn.TABLE4, drstn.TABLE5, drstn.TABLE1, selu.TABLE], device="cpu")
    rows = result.rows[result.rows["kind"] == "run"]
    by = {name: grp for name, grp in rows.groupby("notebook")}
    # Eight networks and the control, the notebook's seeds [0].
    assert len(by[drstn.TABLE4]) == 8 + 1 and set(by[drstn.TABLE4]["epochs"]) == {50}
    assert len(by[selu.TABLE]) == 7 * 10  # seeds None in the notebook: the recipe's 10 runs per row
    assert set(by[selu.TABLE].loc[by[selu.TABLE]["label"].str.contains("2x"), "epochs"]) == {20}
    assert list(by[drstn.TABLE5]["table"]) == [drstn.TABLE5] * 4  # its Table 4 source run is Table 4's row
    assert any("counted under drstn_table4_cifar10" in n for n in result.notes[drstn.TABLE5])
    assert drstn.TABLE1 not in by and "trains nothing" in result.notes[drstn.TABLE1][0]
    alone = plan.make_plan("paper", only=[drstn.TABLE5], device="cpu").rows
    assert list(alone.loc[alone["kind"] == "run", "table"]) == [drstn.TABLE4] + [drstn.TABLE5] * 4
    # Without data the run store cannot be looked up, and the plan says so instead of failing.
    assert set(rows["status"]) == {store.NOT_LOOKED_UP} and "run store not checked" in result.text()
    planned = drstn.table4_runs("paper", seeds=[0])
    assert list(by[drstn.TABLE4]["label"]) == [s.label for s in planned.specs]


def test_csv_columns_and_totals(no_data_root, stub_timer, tmp_path):
    result = plan.make_plan("smoke", only=[drstn.TABLE4, selu.TABLE], device="cpu")
    path = result.write_csv(tmp_path / "plan.csv")
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == cost.PLAN_COLUMNS
    runs = frame[frame["kind"] == "run"]
    assert (runs["minutes"] - runs["train_min"] - runs["eval_min"] - runs["overhead_min"]).abs().max() < 1e-9
    for name in (drstn.TABLE4, selu.TABLE):
        total = frame[(frame["kind"] == "notebook") & (frame["notebook"] == name)].iloc[0]
        mine = runs[runs["notebook"] == name]
        assert total["runs"] == len(mine) and total["minutes"] == pytest.approx(mine["minutes"].sum())
        assert total["train_images"] == mine["train_images"].sum()
    overall = frame[frame["kind"] == "overall"].iloc[0]
    assert overall["runs"] == len(runs) == 9 + 10 and overall["minutes"] == pytest.approx(runs["minutes"].sum())
    # Images and step count follow the recipe: Table 4 smoke is one step of 16 images, then one evaluation.
    t4 = runs[runs["notebook"] == drstn.TABLE4].iloc[0]
    test_images = len(load_splits("cifar10", "smoke")[1])  # synthetic here: fewer than the profile's 256
    assert (t4["steps"], t4["train_images"], t4["eval_images"]) == (1, 16, test_images)
    assert t4["train_tflops"] == pytest.approx(3 * 0.5 * 16 / 1e3)
    assert t4["step_s"] == pytest.approx(0.01 + 0.001 * 16)


def test_a_finished_run_costs_nothing_more(runs, stub_timer):
    spec = drstn.table4_runs("smoke").specs[-1]
    done = _store().run_dir(spec, "smoke", 0, *load_splits("cifar10", "smoke")) / RESULT_NAME
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    rows = plan.make_plan("smoke", only=[drstn.TABLE4], device="cpu").rows
    run = rows[(rows["kind"] == "run") & (rows["label"] == spec.label)].iloc[0]
    assert run["status"] == store.FINISHED and run["minutes_to_go"] == 0 and run["minutes"] > 0
    total = rows[rows["kind"] == "overall"].iloc[0]
    assert total["runs_to_go"] == 8 and total["minutes_to_go"] == pytest.approx(total["minutes"] - run["minutes"])


def test_unknown_notebook_or_profile_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="unknown profile 'papr'. Did you mean 'paper'"):
        plan.make_plan("papr")
    with pytest.raises(ValueError, match=r"unknown notebook\(s\) \['table9'\]; choose from datasets, "):
        plan.make_plan("paper", only=["table9"])
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", "--only", "table9"])
    assert exc.value.code == 2 and "unknown notebook(s) ['table9']" in capsys.readouterr().err


def test_the_command_prints_the_plan_and_writes_its_csv(no_data_root, stub_timer, capsys, tmp_path):
    assert cli.main(["plan", "--profile", "smoke", "--only", "datasets", drstn.TABLE4, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "step times measured on cpu" in out and "== datasets\n   trains nothing." in out
    assert "== drstn_table4_cifar10" in out and "SKNet-18" in out and "[reslab] overall (smoke): 9 run(s)" in out
    assert "[reslab] on this CPU" in out
    default = Paths.from_env().results / "_plan" / "plan-smoke-cpu.csv"
    assert f"plan written to {default}" in out and len(pd.read_csv(default)) == 9 + 2
    own = tmp_path / "mine.csv"
    assert cli.main(["plan", "--profile", "smoke", "--only", drstn.TABLE4, "--device", "cpu", "--csv", str(own)]) == 0
    assert own.is_file()


def test_smoke_plan_of_every_notebook_is_quick(no_data_root, stub_timer):
    t0 = time.perf_counter()
    result = plan.make_plan("smoke", device="cpu")
    assert time.perf_counter() - t0 < 60
    rows = result.rows[result.rows["kind"] == "run"]
    assert set(rows["notebook"]) == {drstn.TABLE4, drstn.TABLE5, selu.TABLE, cbam.TABLE, survey.TABLE}
    assert rows["minutes"].notna().all() and set(result.notes) >= {"datasets", drstn.TABLE1}


# ------------------------------------------------------------------ timing one network


def _spec(model: str, batch: int = 16, input_size: int | None = None, **cfg) -> RunSpec:
    recipe = Recipe(TrainConfig(epochs=2, batch_size=batch, lr=0.01, device="cpu", progress=False, **cfg),
                    input_size=input_size)
    return RunSpec(table="t", label=model, model=model, dataset="cifar10", recipe=recipe)


@pytest.fixture
def tiny_models(monkeypatch):
    from conftest import tiny_cnn

    from reslab.models import _registry

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise RuntimeError("this network cannot step")

    class NotOnMeta(nn.Module):  # reads a value, which the meta device has not got
        def __init__(self, in_chans=3, num_classes=10):
            super().__init__()
            self.net = tiny_cnn(in_chans, num_classes)

        def forward(self, x):
            return self.net(x) * (1.0 if x.abs().sum().item() >= 0 else 0.0)

    monkeypatch.setitem(_registry._MODELS, "tiny", lambda num_classes=10, in_chans=3, **kw: tiny_cnn(in_chans, num_classes))
    monkeypatch.setitem(_registry._MODELS, "broken", lambda num_classes=10, in_chans=3, **kw: Broken())
    monkeypatch.setitem(_registry._MODELS, "not_on_meta",
                        lambda num_classes=10, in_chans=3, **kw: NotOnMeta(in_chans, num_classes))


def test_a_step_is_measured_at_the_recipe_batch_with_its_flops(tiny_models):
    step = cost.measure(_spec("tiny", batch=16), "cpu")
    assert step.timed and step.timing == "measured at batch 16" and step.device == "cpu"
    assert 0 < step.step_s(16) < 5 and step.eval_s(100, 50) > 0 and step.state_bytes > 0 and step.optimizer_bytes > 0
    # FLOPs: counted on the meta device; a network that cannot run there is counted on one real image.
    assert step.gflops == pytest.approx(cost.forward_gflops(_spec("not_on_meta")), rel=1e-6) and step.gflops > 0
    assert cost.forward_gflops(_spec("not_on_meta")) == pytest.approx(
        cost.measure(_spec("not_on_meta"), "cpu").gflops)


def test_a_network_that_fails_is_not_timed_and_not_counted(tiny_models):
    step = cost.measure(_spec("broken"), "cpu")
    assert not step.timed and step.timing == "not timed (RuntimeError: this network cannot step)"
    assert step.memory == "memory not estimated (RuntimeError: this network cannot step)"
    rows = cost.with_totals(cost.cost_runs([cost.PlannedRun("nb", _spec("broken"), 0, 64, 32),
                                            cost.PlannedRun("nb", _spec("tiny"), 0, 64, 32)], "cpu"))
    assert math.isnan(rows.loc[0, "minutes"]) and rows.loc[1, "minutes"] > 0
    overall = rows[rows["kind"] == "overall"].iloc[0]
    assert overall["not_timed"] == 1 and overall["minutes"] == pytest.approx(rows.loc[1, "minutes"])
    assert "1 run(s) not timed, not counted" in cost.total_line(overall, "total")


def test_the_step_time_at_the_recipe_batch_comes_from_the_last_two_batches():
    # A 2-image step is mostly fixed cost: the line through the last two points, not 2 -> 128 linearly.
    fixed, per_image, how = cost._line([(2, 0.03), (34, 0.09)], 128)
    assert how == "line through batches 2, 34" and fixed + per_image * 128 == pytest.approx(0.09 + 0.06 / 32 * 94)
    assert cost._line([(34, 0.09), (128, 0.28)], 128)[2] == "measured at batch 128"
    assert cost._line([(2, 1.5)], 64) == (0.0, 0.75, "scaled linearly from batch 2")
    assert cost._line([(2, 0.05), (4, 0.04)], 64)[2] == "scaled linearly from batch 4"  # noise: no negative slope


def test_durations_read_well():
    assert [cost.duration(m) for m in (0.5, 12, 200, 5000, float("nan"))] == ["30 s", "12 min", "3.3 h", "3.5 days", "?"]


def test_the_first_cpu_batch_follows_the_flops():
    assert cost.first_cpu_batch(0.001, 128) == 128  # a tiny network: the recipe's batch at once
    assert cost.first_cpu_batch(0.054, 128) == 23  # DRSTN V5 on CIFAR-10: a quarter of ~92 images
    assert cost.first_cpu_batch(75.5, 64) == 1  # EfficientNet-B7 at 600x600: one image
    assert cost.first_cpu_batch(float("nan"), 128) == 2


def test_a_fresh_clone_plans_nothing_to_train_for_the_committed_smoke_results(tmp_path, monkeypatch, stub_timer):
    """The committed record of finished runs makes an empty run store enough: every committed smoke
    run counts as finished, Table 5's too, found by the digest of DRSTN V5's checkpoint that V5's
    result keeps (the record keeps no checkpoints). A digest that names another checkpoint leaves
    them to train after V5, and the plan says so."""
    if not os.environ.get("RESLAB_DATA"):
        pytest.skip("the committed smoke runs are keyed by the real data's fingerprints: set RESLAB_DATA")
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("RESLAB_RUNS", str(tmp_path / "empty_run_store"))
    monkeypatch.setenv("RESLAB_RECORD", str(repo / "results" / "_finished"))
    result = plan.make_plan("smoke", device="cpu")
    runs = result.rows[result.rows["kind"] == "run"]
    assert len(runs) > 40 and not result.not_checked
    to_train = runs[runs["status"] != store.FINISHED]
    assert to_train.empty, to_train[["notebook", "label", "status"]]
    assert {"mnist transfer", "fashion_mnist transfer"} <= set(runs.loc[runs["notebook"] == drstn.TABLE5, "label"])
    assert "keeps no checkpoints" not in " ".join(result.notes[drstn.TABLE5])

    record = tmp_path / "record"  # V5's result names another checkpoint: the transfers are not those runs
    shutil.copytree(repo / "results" / "_finished", record)
    v5 = next((record / "smoke" / drstn.TABLE4).glob(f"{store.slug(drstn.table4_source_spec('smoke').label)}-s0-*"))
    kept = json.loads((v5 / RESULT_NAME).read_text())
    (v5 / RESULT_NAME).write_text(json.dumps(kept | {"checkpoint_digest": "0" * 16}))
    monkeypatch.setenv("RESLAB_RECORD", str(record))
    again = plan.make_plan("smoke", only=[drstn.TABLE5], device="cpu")
    runs = again.rows[again.rows["kind"] == "run"]
    assert set(runs.loc[runs["status"] != store.FINISHED, "label"]) == {"mnist transfer", "fashion_mnist transfer"}
    said = " ".join(again.notes[drstn.TABLE5])
    assert "starts from the checkpoint of drstn_table4_cifar10's" in said and "keeps no checkpoints" in said


# ------------------------------------------------------------------ the memory of one step


def _weights_bytes(spec: RunSpec) -> tuple[int, int]:
    """Bytes of the network's weights and of its buffers."""
    model = cost._timing_model(spec)
    return (sum(p.numel() * p.element_size() for p in model.parameters()),
            sum(b.numel() * b.element_size() for b in model.buffers()))


def test_the_memory_of_a_step_is_what_autograd_saves_per_image_plus_the_training_state(tiny_models):
    spec = _spec("tiny", batch=8)
    fixed, per_image, how = cost.estimate_memory(spec)
    assert how == "estimated from the tensors saved for backward, fp32"
    # Fixed: weights and buffers, gradients, SGD momentum (Adam: two tensors per weight), and what is
    # saved for backward whatever the batch: in fp32 only batch norm's statistics of its 8 + 16
    # channels (mean and inverse deviation) and the loss's few bytes.
    weights, buffers = _weights_bytes(spec)
    assert 0 < fixed - (3 * weights + buffers) <= 2 * 4 * (8 + 16) + 8
    assert cost.estimate_memory(_spec("tiny", optimizer="adam"))[0] - fixed == weights
    # Per image: the batch (uint8 as stored, float after the augmentation) and what a real forward
    # pass of 16 images saves for backward, counted here on real tensors: the line through the
    # two small batches counted on fake tensors holds at a larger batch.
    batch_bytes = 3 * 32 * 32 * (1 + 4)
    model = cost._timing_model(spec).train()
    saved = cost.saved_bytes(model, torch.randn(16, 3, 32, 32), torch.zeros(16, dtype=torch.long), amp=False)
    assert saved > 0 and 16 * (per_image - batch_bytes) == pytest.approx(saved, rel=1e-3)
    # Measured with the step: the same estimate, and twice the batch is the fixed part plus twice the part per image.
    step, double = cost.measure(spec, "cpu"), cost.measure(_spec("tiny", batch=16), "cpu")
    assert (step.memory, step.memory_fixed_bytes, step.memory_per_image_bytes) == (how, fixed, per_image)
    assert double.train_memory_bytes(16) == fixed + 16 * per_image
    assert double.train_memory_bytes(16) - step.train_memory_bytes(8) == pytest.approx(8 * per_image)
    row = cost._run_row(cost.PlannedRun("nb", spec, 0, 64, 32), step)
    assert row["train_memory_gib"] > 0 and row["train_memory_gib"] == pytest.approx((fixed + 8 * per_image) / 2**30, abs=1e-6)
    assert row["gpu_memory_gib"] == 80 and row["over_memory"] == 0 and row["memory"] == how


def test_under_amp_the_estimate_counts_bf16_activations(tiny_models):
    fp32 = cost.estimate_memory(_spec("tiny"))
    bf16 = cost.estimate_memory(_spec("tiny", amp=True))
    assert bf16[2] == "estimated from the tensors saved for backward, bf16 autocast"
    batch_bytes = 3 * 32 * 32 * (1 + 4)
    # bf16 activations take half the bytes of float32 ones; the few kept in float32 (batch norm's
    # statistics, the loss) keep the ratio above one half.
    ratio = (bf16[1] - batch_bytes) / (fp32[1] - batch_bytes)
    assert 0.5 <= ratio < 0.6
    # Autocast's bf16 copies of the convolution and linear weights do not grow with the batch.
    weights, _ = _weights_bytes(_spec("tiny"))
    assert 0 < bf16[0] - fp32[0] <= weights / 2


def test_a_network_that_cannot_run_on_fake_tensors_is_counted_on_real_images_scaled_to_its_side(tiny_models):
    # NotOnMeta is the tiny network with a value read: the same tensors saved, counted on real images.
    assert cost.estimate_memory(_spec("not_on_meta")) == (
        *cost.estimate_memory(_spec("tiny"))[:2], "estimated from 2 and 4 images at 32 px, fp32")
    # A large input is counted at 128 px and scaled by H x W: all but the head's few bytes per image
    # (pooled features, logits) grow so, and the estimate is that of the full side within 0.1%.
    big = {"input_size": 256}
    fixed, per_image, how = cost.estimate_memory(_spec("not_on_meta", **big))
    assert how == "estimated from 2 and 4 images at 128 px scaled to 256 px, fp32"
    full = cost.estimate_memory(_spec("tiny", **big))
    assert fixed == full[0] and per_image == pytest.approx(full[1], rel=1e-3)


def test_a_step_larger_than_the_gpu_is_flagged_before_training(no_data_root, monkeypatch):
    huge = dataclasses.replace(STUB, memory="estimated from the tensors saved for backward, bf16 autocast",
                               memory_fixed_bytes=2**30, memory_per_image_bytes=8 * 2**30)
    monkeypatch.setattr(cost, "measure", lambda spec, device="cpu": huge)
    result = plan.make_plan("smoke", only=[drstn.TABLE4], device="cpu")
    runs = result.rows[result.rows["kind"] == "run"]
    # Smoke Table 4 trains batches of 16: 1 + 16 x 8 GiB, more than one 80 GiB GPU holds.
    assert set(runs["train_memory_gib"]) == {129} and set(runs["over_memory"]) == {1}
    assert result.overall["over_memory"] == len(runs) == 9
    text = result.text()
    line = (f"{runs.iloc[0]['model']} 3x32x32 batch 16: ~129 GiB for one training step (estimated from the tensors "
            "saved for backward, bf16 autocast): would not fit one 80 GiB GPU (H100 80GB) at batch 16; use gradient "
            "accumulation or a smaller batch.")
    assert line in text and text.count("would not fit one 80 GiB GPU") == runs["model"].nunique()
    assert "129 !" in cost.format_runs(result.rows)
    # What training prints first says so too, under a protocol profile and a budget one.
    for profile in ("paper", "smoke"):
        assert line in cost.before_training(result.rows, resolve_profile(profile))
    # A step that fits is not flagged; one that ran out of memory on the GPU is, whatever its estimate.
    fits = dataclasses.replace(huge, memory_per_image_bytes=2**20)
    row = cost._run_row(cost.PlannedRun("nb", _spec("tiny"), 0, 64, 32), fits)
    assert row["over_memory"] == 0 and not cost.memory_lines(pd.DataFrame([row]))
    oom = dataclasses.replace(fits, out_of_memory_batch=16, memory="out of memory at batch 16 on NVIDIA H100 80GB "
                              "HBM3 (79 GiB); measured at batch 8")
    assert oom.over_memory(16) and not oom.over_memory(8)


def test_a_memory_estimate_that_fails_says_so_and_the_run_is_still_costed(tiny_models, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("nothing saved here")

    monkeypatch.setattr(cost, "saved_bytes", fail)
    step = cost.measure(_spec("tiny"), "cpu")
    assert step.timed and step.memory == "memory not estimated (RuntimeError: nothing saved here)"
    rows = cost.with_totals(cost.cost_runs([cost.PlannedRun("nb", _spec("tiny"), 0, 64, 32)], "cpu"))
    run = rows.iloc[0]
    assert math.isnan(run["train_memory_gib"]) and run["over_memory"] == 0 and run["minutes"] > 0
    assert run["memory"] == step.memory and " ? " in cost.format_runs(rows)
    assert not cost.memory_lines(rows) and rows.iloc[-1]["over_memory"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU memory only")
def test_on_a_gpu_the_memory_is_the_peak_of_the_timed_steps(tiny_models):
    spec = dataclasses.replace(_spec("tiny", batch=16), recipe=Recipe(TrainConfig(
        epochs=2, batch_size=16, lr=0.01, device="cuda", progress=False)))
    step = cost.measure(spec, "cuda")
    assert step.memory == "peak measured at batch 16" and step.memory_per_image_bytes > 0
    assert step.memory_fixed_bytes >= 3 * _weights_bytes(spec)[0]
    assert step.gpu_memory_bytes == torch.cuda.get_device_properties(0).total_memory


def test_a_run_cut_off_costs_only_the_epochs_after_its_checkpoint(runs, stub_timer):
    """An unfinished run resumes after its checkpoint's epoch: the plan (and ``--minutes``) count only
    the epochs left, plus starting once more; the table says how far it got."""
    params = {"epochs": 6, "max_steps": 1000}  # smoke's subset at batch 16: several steps an epoch, 6 epochs
    spec = drstn.table4_runs("smoke", epochs=6, max_steps=1000).specs[-1]
    folder = _store().run_dir(spec, "smoke", 0, *load_splits("cifar10", "smoke"))
    folder.mkdir(parents=True)
    torch.save({"epoch": 4, "model": {"w": torch.zeros(3)}}, folder / "last.pt")
    result = plan.make_plan("smoke", only=[drstn.TABLE4], device="cpu", params=params)
    rows = result.rows[result.rows["kind"] == "run"]
    run = rows[rows["label"] == spec.label].iloc[0]
    assert (run["status"], run["epochs_done"], run["epochs"]) == (store.TO_TRAIN, 4, 6)
    assert set(rows.loc[rows["label"] != spec.label, "epochs_done"]) == {0}
    assert (rows.loc[rows["label"] != spec.label, "minutes_to_go"] == rows.loc[rows["label"] != spec.label,
                                                                             "minutes"]).all()
    # Linear in the epochs left, with the start (building, warming up, the final write) paid again.
    planned = cost.PlannedRun("", spec, 0, *_split_lengths(spec), status=store.TO_TRAIN)
    to_go = {k: cost._run_row(dataclasses.replace(planned, epochs_done=k), STUB)["minutes_to_go"] for k in (0, 4, 6, 9)}
    start = to_go[6]
    assert 0 < start < to_go[4] < to_go[0] == pytest.approx(run["minutes"]) and to_go[9] == start
    assert to_go[4] == pytest.approx(start + (to_go[0] - start) * 2 / 6) == pytest.approx(run["minutes_to_go"])
    total = result.rows[result.rows["kind"] == "overall"].iloc[0]
    assert total["minutes_to_go"] == pytest.approx(rows["minutes_to_go"].sum())
    assert total["minutes_to_go"] < total["minutes"]
    assert f"to train: 4 of 6 epochs done, {cost.duration(run['minutes_to_go'])} to go" in result.text()
    # A checkpoint that cannot be read counts as none (training then says what is wrong with it).
    (folder / "last.pt").write_text("not a checkpoint")
    assert _store().epochs_done(folder) == 0


def _split_lengths(spec: RunSpec) -> tuple[int, int]:
    train, test = load_splits(spec.dataset, "smoke")
    return len(train), len(test)
