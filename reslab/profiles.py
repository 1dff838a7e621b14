"""Profiles: how much of a paper's protocol a run follows, and so what evidence it gives.

A profile is resolved once, at the entry of each ``run_<table>()`` (:func:`resolve_profile`), and
the :class:`Profile` object is passed down; code below the entry asks the object what it allows
(``allow_synthetic``, ``allow_random_weights``, ``evidence``) instead of comparing names.

- ``smoke``: CPU seconds per model, stratified subsets, a step cap; real data when found under the
  data root, else synthetic data (never downloads). Checks the code; never judged.
- ``paper``: the paper's protocol as written; where the paper is silent, a stated choice. Needs
  real and complete data (downloads when allowed). DRSTN's tables fit a CPU; the others want a GPU.
- ``strong``: one modern recipe for every model of a table, to test whether a claimed gain
  survives a fair baseline. Real and complete data.

Per-table recipes (:class:`reslab.runs.spec.Recipe`, one per profile) live beside the table code;
this module holds what every table shares: which evidence a profile gives, how data is found and
how much of it is used. Whether one *run* is judged is decided by
:func:`reslab.evidence.evidence_of`, from its profile and everything that was changed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: The kinds of evidence, weakest first.
SMOKE, BUDGET, PROTOCOL = "smoke", "budget", "protocol"
EVIDENCE = (SMOKE, BUDGET, PROTOCOL)


@dataclass(frozen=True)
class Profile:
    """A named budget and what it means for data loading and for verdicts.

    Attributes:
        name: ``smoke``, ``paper`` or ``strong``.
        evidence: What a run of this profile can show at best: ``smoke`` (the code runs),
            ``budget`` (real numbers under a reduced budget, never judged) or ``protocol`` (judged
            against the paper when nothing that changes numbers was overridden).
        rank: Order of strength for the summary's headline (0 = strongest).
        allow_synthetic: Fall back to synthetic data when no real data is found.
        allow_random_weights: Run a row that needs pretrained weights from random weights when the
            file is missing (the row says so) instead of stopping.
        download: Passed to :func:`reslab.data.load_dataset` (``None`` = allowed unless
            ``RESLAB_DOWNLOAD=0``).
        train_subset: Stratified training subset size; ``None`` = the whole split.
        test_subset: Stratified test subset size; ``None`` = the whole split.
        description: One line for manifests and notebooks.
    """

    name: str
    evidence: str
    rank: int
    allow_synthetic: bool
    allow_random_weights: bool
    download: bool | None
    train_subset: int | None
    test_subset: int | None
    description: str

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE:
            raise ValueError(f"profile {self.name!r}: evidence must be one of {EVIDENCE}, got {self.evidence!r}.")

    def data_kwargs(self, split: str, subset: int | None = None) -> dict:
        """Keyword arguments of :func:`reslab.data.load_dataset` for ``split``.

        Args:
            subset: A smaller stratified subset than the profile's for this split (``None`` = the
                profile's).
        """
        own = self.train_subset if split == "train" else self.test_subset
        return {"download": self.download, "allow_synthetic": self.allow_synthetic,
                "subset": own if subset is None else int(subset)}

    def __str__(self) -> str:
        return self.name


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", SMOKE, rank=3, allow_synthetic=True, allow_random_weights=True, download=False,
        train_subset=512, test_subset=256,
        description="CPU check: stratified subsets, a step cap, real data if present else synthetic"),
    "paper": Profile(
        "paper", PROTOCOL, rank=0, allow_synthetic=False, allow_random_weights=False, download=None,
        train_subset=None, test_subset=None,
        description="the paper's protocol as written (stated choices where it is silent); real data"),
    "strong": Profile(
        "strong", PROTOCOL, rank=1, allow_synthetic=False, allow_random_weights=False, download=None,
        train_subset=None, test_subset=None,
        description="one modern recipe for every model of a table; real data"),
}


def resolve_profile(profile: str | Profile) -> Profile:
    """The :class:`Profile` named ``profile`` (a :class:`Profile` is returned as it is).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        close = difflib.get_close_matches(str(profile), list(PROFILES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown profile {profile!r}.{hint} Use one of: {', '.join(PROFILES)}.")
    return PROFILES[profile]


#: The older name of :func:`resolve_profile`.
get_profile = resolve_profile
