"""Named budgets: ``smoke`` / ``paper`` / ``strong``.

- ``smoke``: CPU, seconds per model, a stratified subset, 1 epoch or a step cap. What CI and nbval
  run. Real data when it is found under the data root, else synthetic data (never downloads).
- ``paper``: the paper's protocol as written; where the paper is silent, a stated choice. Needs
  real data (downloads when allowed); meant for a GPU.
- ``strong``: one modern recipe applied to every model of a table, to test whether a claimed gain
  survives a fair baseline. Needs real data.

Per-table recipes (a :class:`reslab.train.TrainConfig` for each profile) live beside the table
code; this module holds what every table shares: how data is found and how much of it is used.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """What a profile means for data loading.

    Attributes:
        name: ``smoke``, ``paper`` or ``strong``.
        allow_synthetic: Fall back to synthetic data when no real data is found.
        download: Passed to :func:`reslab.data.load_dataset` (``None`` = allowed unless
            ``RESLAB_DOWNLOAD=0``).
        train_subset: Stratified training subset size; ``None`` = the whole split.
        test_subset: Stratified test subset size; ``None`` = the whole split.
        description: One line for manifests and notebooks.
    """

    name: str
    allow_synthetic: bool
    download: bool | None
    train_subset: int | None
    test_subset: int | None
    description: str

    def data_kwargs(self, split: str) -> dict:
        """Keyword arguments of :func:`reslab.data.load_dataset` for ``split``."""
        return {
            "download": self.download,
            "allow_synthetic": self.allow_synthetic,
            "subset": self.train_subset if split == "train" else self.test_subset,
        }


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", allow_synthetic=True, download=False, train_subset=512, test_subset=256,
                     description="CPU check: stratified subsets, a step cap, real data if present else synthetic"),
    "paper": Profile("paper", allow_synthetic=False, download=None, train_subset=None, test_subset=None,
                     description="the paper's protocol as written (stated choices where it is silent); real data"),
    "strong": Profile("strong", allow_synthetic=False, download=None, train_subset=None, test_subset=None,
                      description="one modern recipe for every model of a table; real data"),
}


def get_profile(name: str) -> Profile:
    """Return the :class:`Profile` called ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in PROFILES:
        close = difflib.get_close_matches(str(name), list(PROFILES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown profile {name!r}.{hint} Use one of: {', '.join(PROFILES)}.")
    return PROFILES[name]


# A CPU budget for machines without a GPU (added with the SELU ablation): real data only, subsets
# small enough that a table's whole variant list fits about 15 minutes on 2 CPU cores. A table
# that supports it defines its own ``cpu15`` recipe; the others reject the name.
PROFILES["cpu15"] = Profile(
    "cpu15", allow_synthetic=False, download=None, train_subset=800, test_subset=500,
    description="about 15 CPU minutes per table: stratified subsets (800 train / 500 test), a few epochs, real data",
)
