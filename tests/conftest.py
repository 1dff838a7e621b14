"""Shared fixtures: an isolated cache, the shared real data when present, a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session decodes into its own cache and never downloads."""
    old = {k: os.environ.get(k) for k in ("RESLAB_CACHE", "RESLAB_DOWNLOAD", "RESLAB_RESULTS")}
    os.environ["RESLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["RESLAB_DOWNLOAD"] = "0"
    os.environ["RESLAB_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _shared_data() -> Path | None:
    env = os.environ.get("RESLAB_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real offline data (``RESLAB_DATA`` or ``../shared/data``); skips when absent."""
    root = _shared_data()
    if root is None:
        pytest.skip("no real data: set RESLAB_DATA to a folder like ../shared/data")
    return root


@pytest.fixture
def no_data_root(monkeypatch, tmp_path):
    """No RESLAB_DATA and a fresh cache: nothing real can be found."""
    monkeypatch.delenv("RESLAB_DATA", raising=False)
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def tiny_cnn(in_chans: int = 3, num_classes: int = 10, width: int = 8) -> nn.Module:
    """A few-thousand-parameter CNN that trains in seconds on the CPU."""
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


@pytest.fixture
def make_tiny():
    def make(seed: int = 0, **kwargs) -> nn.Module:
        torch.manual_seed(seed)
        return tiny_cnn(**kwargs)

    return make


def fixed_history(cfg):
    """What a training stand-in returns: ``cfg.epochs`` epochs of fixed numbers (90 % accuracy)."""
    from reslab.train import History

    rows = [{"epoch": e, "steps": e, "lr": cfg.lr, "train_loss": 1.0 / e, "train_acc": 0.9, "test_loss": 0.5,
             "test_acc": 0.9, "seconds": 0.0, "train_seconds": 0.0, "train_images": 1}
            for e in range(1, cfg.epochs + 1)]
    return History(rows=rows, device="cpu", setup={"precision": "fp32", "compile": "off", "channels_last": False})
