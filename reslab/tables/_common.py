"""What every table shares: the :class:`TableOutput` a ``run_<table>()`` call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import plots
from ..results import save_figure, write_csv, write_manifest


@dataclass
class TableOutput:
    """What a ``run_<table>()`` call produced.

    Attributes:
        tables: Name -> DataFrame, each also written as ``<name>.csv``.
        figures: Name -> matplotlib Figure, each also written as ``<name>.png``.
        out_dir: Where the files are.
        notes: Lines the notebook prints under the table (data sources, choices, warnings).
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def save(self, table: str, profile: str, data: list[dict], wall_s: float, **extra: Any) -> None:
        """Write every table, figure and the manifest into ``out_dir``."""
        assert self.out_dir is not None
        files = []
        for name, frame in self.tables.items():
            write_csv(frame, self.out_dir / f"{name}.csv")
            files.append(f"{name}.csv")
        for name, fig in self.figures.items():
            save_figure(fig, self.out_dir / f"{name}.png")
            plots.close(fig)  # the notebook displays it once, from ``figures``
            files.append(f"{name}.png")
        devices = {str(d) for frame in self.tables.values() if "device" in frame.columns
                   for d in frame["device"].dropna()}
        write_manifest(self.out_dir, table, profile, data, wall_s, files=files + ["manifest.json"],
                       devices=sorted(devices), notes=self.notes, **extra)
