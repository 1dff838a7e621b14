"""``reslab doctor`` on the CPU: the checks that mean something here pass, the others say why they
are skipped, and the layout check finds a module that drops channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reslab.app import doctor as D
from reslab.models.resattention import _upsample
from reslab.runs.cost import StepCost


def test_doctor_on_the_cpu_passes_what_means_something_here(tmp_path):
    checks = {c.name: c for c in D.run_checks("cpu")}
    assert [n for n, _ in D.Doctor(torch.device("cpu"), None).checks()] == list(checks)
    failed = {n: c.detail for n, c in checks.items() if c.status == D.FAIL}
    assert not failed, failed
    skipped = {n for n, c in checks.items() if c.status == D.SKIP}
    assert skipped == {"resume on another device", "every model", "compile"}, skipped
    assert "resumed from epoch 2" in checks["train and resume"].detail
    assert "NaN or infinite" in checks["NaN watch"].detail
    assert "difference 0" in checks["determinism"].detail
    assert "gloo" in checks["one-process DDP"].detail
    # The plan's memory estimate of EfficientNet-B7 at 600x600 (~116 GiB at batch 64) against one H100.
    largest = checks["largest model"].detail
    assert "efficientnet_b7 at 600x600, the paper recipe's batch 64" in largest, largest
    assert "estimated from the tensors saved for backward" in largest and "does not fit" in largest, largest
    assert "resnet18" in checks["images/s"].detail and "drstn_v5" in checks["images/s"].detail
    # The command: the table as CSV, exit 0 when nothing failed; an unknown check is a usage error.
    assert D.main(["--device", "cpu", "--only", "NaN watch", "--csv", str(tmp_path / "d.csv")]) == 0
    assert (tmp_path / "d.csv").read_text().splitlines()[1].startswith("NaN watch,pass,")
    with pytest.raises(SystemExit):
        D.main(["--only", "no such check"])


def test_the_layout_check_names_a_module_that_drops_channels_last(monkeypatch):
    class Drops(nn.Module):
        def forward(self, x):
            return x.contiguous()  # NCHW again

    def build(name, num_classes=10, in_chans=3):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), Drops(), nn.Conv2d(4, 4, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    monkeypatch.setattr(D, "create_model", build)
    monkeypatch.setattr(D, "model_info", lambda name: {"test_input_size": (3, 8, 8)})
    doc = D.Doctor(torch.device("cpu"), None)
    assert doc._one_model("drops", D._cfg(doc.device, batch_size=2, lr=1e-3)) == ["Drops"]


def test_models_that_dropped_channels_last_keep_it():
    """Residual Attention's mask branch upsampled a 1x1 map into NCHW; timm's selective kernel sums a
    5-D stack into NCHW. Both now return their input's layout."""
    like = torch.randn(2, 4, 4, 4).contiguous(memory_format=torch.channels_last)
    up = _upsample(torch.randn(2, 4, 1, 1).contiguous(memory_format=torch.channels_last), like)
    assert up.is_contiguous(memory_format=torch.channels_last) and up.shape == like.shape
    plain = _upsample(torch.randn(2, 4, 1, 1), torch.randn(2, 4, 4, 4))
    assert plain.is_contiguous()
    doc = D.Doctor(torch.device("cpu"), None)
    assert doc._one_model("skresnet18", D._cfg(doc.device, batch_size=2, lr=1e-3)) == []


def test_doctor_reports_the_plans_own_step_time_and_memory(monkeypatch):
    """images/s is the batch over the step time of :func:`reslab.runs.cost.measure` (the plan's),
    and the largest model's memory is :func:`reslab.runs.cost.step_memory`'s: one number each, not a
    second measurement that could disagree with the plan."""
    timed = []

    def measure(spec, device):
        timed.append((spec.model, spec.cfg.batch_size))
        return StepCost(device="cpu", timing="measured at batch 128", train_fixed_s=0.32, train_per_image_s=0.01)

    monkeypatch.setattr(D, "measure", measure)
    monkeypatch.setattr(D, "step_memory", lambda spec, device: StepCost(
        device="cpu", memory="estimated here", memory_fixed_bytes=2**30, memory_per_image_bytes=2**30))
    doc = D.Doctor(torch.device("cpu"), None)
    assert doc.throughput() == ("DRSTN Table 4's paper recipe: resnet18 80 img/s (step measured at batch 128), "
                                "drstn_v5 80 img/s (step measured at batch 128)")
    assert timed == [("resnet18", 128), ("drstn_v5", 128)]
    assert doc.largest_model().startswith("efficientnet_b7 at 600x600, the paper recipe's batch 64: 65.0 GiB for "
                                          "one training step (estimated here), 80 GiB of one H100 80GB")
    monkeypatch.setattr(D, "step_memory", lambda spec, device: StepCost(device="cpu", memory="memory not "
                                                                           "estimated (boom)"))
    with pytest.raises(AssertionError, match="boom"):
        doc.largest_model()
