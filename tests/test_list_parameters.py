"""List parameters given as strings, as papermill's ``-p`` and a parameters cell pass them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pandas as pd
import pytest

import reslab.tables
from reslab.tables import run_datasets
from reslab.tables._common import parse_list


@pytest.mark.parametrize("text, expected", [
    ('["drstn_v5", "resnet18"]', ["drstn_v5", "resnet18"]),
    ("drstn_v5,resnet18", ["drstn_v5", "resnet18"]),
    (" drstn_v5 , resnet18 ", ["drstn_v5", "resnet18"]),
    ("[0, 1, 2]", [0, 1, 2]),
    ("0,1,2", [0, 1, 2]),
    ("ResNet34+SELU", ["ResNet34+SELU"]),
    ("[]", []),
    ("", []),
])
def test_parse_list(text, expected):
    assert parse_list(text, "models") == expected


def test_parse_list_leaves_lists_alone_and_explains_bad_json():
    assert parse_list(["a"], "models") == ["a"] and parse_list(None, "models") is None
    with pytest.raises(ValueError, match="models: .* is not a valid JSON list.*comma-separated"):
        parse_list('["drstn_v5", resnet18]', "models")
    with pytest.raises(ValueError, match="flat list"):
        parse_list('[["a"]]', "models")


def _entry_points():
    for info in pkgutil.iter_modules(reslab.tables.__path__):
        module = importlib.import_module(f"reslab.tables.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("run_") and fn.__module__ == module.__name__:
                yield f"{info.name}.{name}", fn


def test_every_list_parameter_of_every_entry_point_accepts_a_string():
    found = dict(_entry_points())
    assert {"drstn.run_drstn_table4", "survey.run_survey", "selu.run_selu_ablation", "cbam.run_cbam"} <= set(found)
    for name, fn in found.items():
        params = inspect.signature(inspect.unwrap(fn)).parameters
        lists = {n for n, p in params.items() if "Sequence[" in str(p.annotation)}
        assert set(getattr(fn, "list_parameters", ())) == lists, name


def test_a_string_list_reaches_the_table_as_a_list(no_data_root):
    out_dir = no_data_root / "out"
    run_datasets(profile="smoke", datasets='["mnist", "cifar10"]', samples_per_class=1, out_dir=out_dir)
    assert set(pd.read_csv(out_dir / "datasets.csv")["dataset"]) == {"mnist", "cifar10"}
    run_datasets(profile="smoke", datasets="mnist", samples_per_class=1, out_dir=no_data_root / "out2")
    assert set(pd.read_csv(no_data_root / "out2" / "datasets.csv")["dataset"]) == {"mnist"}
