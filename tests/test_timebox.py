"""``reslab reproduce --minutes``: runs trained seed-major within the time given, never one whose
estimate does not fit, and a second call that goes on where the first stopped.

Training is a stand-in that advances a fake clock by a known cost (no sleeping), the networks are
tiny, and the data are synthetic files in Fashion-MNIST's official format (so ``paper`` takes them).
"""

from __future__ import annotations

import pytest
import torch
from conftest import fixed_history, tiny_cnn

from reslab.app.plan import make_plan
from reslab.app.timebox import TRAINED, TimeBox, queue, report
from reslab.data import get_spec, write_synthetic
from reslab.paths import Paths
from reslab.runs import execute as EX
from reslab.runs import spec as SP
from reslab.runs.spec import load_splits
from reslab.runs.store import RunStore
from reslab.tables import selu

NOTEBOOK = "selu_ablation_fashion_mnist"
PARAMS = {"seeds": [0, 1], "variants": ["ResNet34+SELU"]}  # two rows (the baseline is added), two seeds


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slice_world(tmp_path, monkeypatch):
    """Synthetic Fashion-MNIST, a fresh run store and record, tiny networks, and training that
    costs ``cost[label]`` seconds of the fake clock (or raises, for a label in ``broken``)."""
    spec = get_spec("fashion_mnist")
    write_synthetic(spec, tmp_path / "data" / spec.folders[0])
    for name, value in (("DATA", "data"), ("RUNS", "runs"), ("RECORD", "record"), ("RESULTS", "results")):
        monkeypatch.setenv(f"RESLAB_{name}", str(tmp_path / value))
    clock, cost, broken, trained = Clock(), {}, set(), []

    def tiny(name, num_classes=10, in_chans=3, **kwargs):
        torch.manual_seed(0)
        return tiny_cnn(in_chans, num_classes)

    def stand_in(model, train_loader, test_loader, cfg, checkpoint_dir=None, name=""):
        label = name.split(" (")[0].split(" ", 1)[1]  # "<table> <label> (<dataset>, seed <s>, <profile>)"
        trained.append((label, cfg.seed))
        if label in broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        clock.now += cost[label]
        return fixed_history(cfg)

    monkeypatch.setattr(SP, "create_model", tiny)
    monkeypatch.setattr(EX, "train", stand_in)
    return {"clock": clock, "cost": cost, "broken": broken, "trained": trained, "paths": Paths.from_env()}


def _slots(world, estimate_s: float):
    plan = make_plan("paper", only=[NOTEBOOK], device="cpu", paths=world["paths"], params=PARAMS)
    slots = queue(plan)
    for s in slots:
        s.estimate_s = estimate_s
    return plan, slots


def test_minutes_trains_seed_major_within_its_limit_and_a_second_call_goes_on(slice_world):
    world = slice_world
    world["cost"].update({"ResNet34+SELU": 55.0, "ResNet34": 55.0})
    plan, slots = _slots(world, estimate_s=50.0)
    assert [(s.label, s.seed) for s in slots] == [("ResNet34", 0), ("ResNet34+SELU", 0), ("ResNet34", 1),
                                                  ("ResNet34+SELU", 1)]  # one seed of every row first
    box = TimeBox("paper", world["paths"], PARAMS, device="cpu", clock=world["clock"], say=lambda line: None)
    start = world["clock"]()
    done = box.run(slots, minutes=2.5)  # 150 s: two runs of 55 s; a third (measured 55 s) would end at 165 s
    assert world["clock"]() - start <= 150
    assert [(s.label, s.seed, s.status) for s in done if s.status == TRAINED] == [("ResNet34", 0, TRAINED),
                                                                                ("ResNet34+SELU", 0, TRAINED)]
    waiting = [s for s in done if s.status != TRAINED]
    assert [(s.label, s.seed) for s in waiting] == [("ResNet34", 1), ("ResNet34+SELU", 1)]
    assert all(s.status.startswith("not started: about 0.9 min, 0.7 min left of 2.5") for s in waiting), report(done)
    # The table of what finished: each row the mean of its one run, the rest not run.
    out = selu.run_selu_ablation(profile="paper", executor="none", device="cpu", **PARAMS)
    runs = out.tables["runs"]
    assert runs.loc[runs["seed"] == 1, "status"].eq("not run: not trained (executor none)").all()
    assert out.tables["selu_ablation"]["n"].tolist() == [1, 1]
    # A second call plans only what is missing and goes on from there.
    plan, slots = _slots(world, estimate_s=50.0)
    assert [(s.label, s.seed) for s in slots] == [("ResNet34", 1), ("ResNet34+SELU", 1)]
    done = TimeBox("paper", world["paths"], PARAMS, device="cpu", clock=world["clock"], say=lambda line: None).run(
        slots, minutes=2.5)
    assert [s.status for s in done] == [TRAINED, TRAINED]
    assert queue(make_plan("paper", only=[NOTEBOOK], device="cpu", paths=world["paths"], params=PARAMS)) == []
    assert len(world["trained"]) == 4  # each run trained once


def test_a_run_that_does_not_fit_is_never_started_and_a_failing_run_does_not_stop_the_rest(slice_world):
    world = slice_world
    world["cost"].update({"ResNet34+SELU": 10.0, "ResNet34": 10.0})
    world["broken"].add("ResNet34")
    _, slots = _slots(world, estimate_s=50.0)
    for s in slots:
        if s.label == "ResNet34+SELU":
            s.estimate_s = float("nan")  # not timed by the plan, none of its network measured: never started
    box = TimeBox("paper", world["paths"], PARAMS, device="cpu", clock=world["clock"], say=lambda line: None)
    done = {(s.label, s.seed): s.status for s in box.run(slots, minutes=1.0)}
    assert done[("ResNet34", 0)].startswith("failed: RuntimeError: CUDA error")
    assert done[("ResNet34", 1)].startswith("failed: RuntimeError: CUDA error")  # the failure stopped nothing
    assert done[("ResNet34+SELU", 0)] == done[("ResNet34+SELU", 1)] == "not started: not timed by the cost plan"
    assert world["trained"] == [("ResNet34", 0), ("ResNet34", 1)]
    with pytest.raises(ValueError, match="positive number"):
        box.run(slots, minutes=0)
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        TimeBox("paper", world["paths"], jobs=0)


def test_a_run_cut_off_is_timed_by_what_is_left_and_a_resumed_run_says_so(slice_world):
    """A run with a checkpoint (cut off by the end of an earlier slice) is planned at its remaining
    epochs; its wall time here is scaled up to a whole run before it times another run of its
    network, so a short resumed run never makes a whole one look short."""
    world = slice_world
    plan = make_plan("paper", only=[NOTEBOOK], device="cpu", paths=world["paths"], params=PARAMS)
    first = next(r for r in plan.runs if r.spec.label == "ResNet34" and r.seed == 0)
    folder = RunStore.of(world["paths"]).run_dir(first.spec, "paper", 0, *load_splits("fashion_mnist", "paper"))
    folder.mkdir(parents=True)
    torch.save({"epoch": 5, "model": {"w": torch.zeros(2)}}, folder / "last.pt")  # 5 of the recipe's 10
    slots = {(s.label, s.seed): s for s in queue(make_plan("paper", only=[NOTEBOOK], device="cpu",
                                                            paths=world["paths"], params=PARAMS))}
    cut, whole = slots[("ResNet34", 0)], slots[("ResNet34", 1)]
    assert (cut.epochs_done, whole.epochs_done) == (5, 0) and whole.left == 1.0
    assert 0.5 <= cut.left < 0.6 and cut.estimate_s == pytest.approx(whole.estimate_s * cut.left)
    # Resumed in 30 s (half a run): a whole run of the network is then expected to take 60 s, so with
    # 45 s left the next one is not started (taken as 30 s it would have been, and run past the limit).
    world["cost"].update({"ResNet34": 30.0, "ResNet34+SELU": 30.0})
    cut.left, cut.estimate_s, whole.estimate_s = 0.5, 10.0, 10.0
    lines = []
    box = TimeBox("paper", world["paths"], PARAMS, device="cpu", clock=world["clock"], say=lines.append)
    done = box.run([cut, whole], minutes=1.25)
    assert [s.status for s in done] == [TRAINED, "not started: about 1.0 min, 0.8 min left of 1.25"], report(done)
    assert "from its checkpoint after epoch 5" in lines[0]
