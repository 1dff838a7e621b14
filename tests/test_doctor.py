"""``reslab doctor`` on the CPU: the checks that mean something here pass, the others say why they
are skipped, and the layout check finds a module that drops channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reslab.app import doctor as D
from reslab.models.resattention import _upsample


def test_doctor_on_the_cpu_passes_what_means_something_here(tmp_path):
    checks = {c.name: c for c in D.run_checks("cpu")}
    assert [n for n, _ in D.Doctor(torch.device("cpu"), None).checks()] == list(checks)
    failed = {n: c.detail for n, c in checks.items() if c.status == D.FAIL}
    assert not failed, failed
    skipped = {n for n, c in checks.items() if c.status == D.SKIP}
    assert skipped == {"resume on another device", "every model", "compile", "largest model"}, skipped
    assert "resumed from epoch 2" in checks["train and resume"].detail
    assert "NaN or infinite" in checks["NaN watch"].detail
    assert "difference 0" in checks["determinism"].detail
    assert "gloo" in checks["one-process DDP"].detail
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
