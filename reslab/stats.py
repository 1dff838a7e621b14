"""Statistics over seeds: means with their spread per row, and paired differences with 95 %
Student-t intervals (no scipy at run time)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from .evidence import evidence_columns


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("label", "model", "dataset")) -> pd.DataFrame:
    """Mean, standard deviation and n over seeds of final- and best-epoch accuracy (``n`` counts the
    runs made; a run ``not run`` adds nothing but makes its group's evidence at most ``budget``).

    The data sources, profile, epochs, devices, precision and parameter counts are carried along
    (they must agree within a group; if not, the group lists them all), and the group's evidence is
    the weakest of its runs (:func:`weakest_evidence`).
    """
    def join(values: pd.Series) -> str:  # runs not made (``status`` not run) have no values
        return ",".join(sorted({str(v) for v in values if pd.notna(v)}))

    grouped = rows.groupby(list(by), sort=False)
    out = grouped.agg(
        best_acc_mean=("best_acc", "mean"), best_acc_std=("best_acc", "std"),
        final_acc_mean=("final_acc", "mean"), final_acc_std=("final_acc", "std"),
        train_acc_mean=("train_acc", "mean"), n=("best_acc", "count"),
        params=("params", "first"), trainable_params=("trainable_params", "first"),
        epochs=("epochs", join), data_source=("data_source", join), profile=("profile", join),
        seeds=("seed", join), device=("device", join),
        **({"precision": ("precision", join)} if "precision" in rows else {}),
    ).reset_index()
    return out.merge(evidence_columns(rows, by), on=list(by))


# Two-sided 95 % Student-t quantiles t_{0.975, df} for df = 1..30 (scipy.stats.t.ppf, 6 digits),
# so that the interval needs no scipy at run time (scipy is not a declared dependency).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
         2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922,
         2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
         2.048407, 2.04523, 2.042272)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (for 95 % intervals).

    A table for ``df <= 30``; beyond it the Cornish-Fisher expansion around the normal quantile
    (error below 1e-5 there).

    Raises:
        ValueError: for ``df < 1``.
    """
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom (2 paired runs), got df={df}.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963985
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def paired_comparison(
    rows: pd.DataFrame,
    pairs: dict[str, str],
    metrics: Sequence[str] = ("best_acc", "final_acc"),
    by: str = "label",
) -> pd.DataFrame:
    """Per seed, ``row - baseline`` on the same seed; mean difference and a 95 % t-interval.

    Args:
        rows: Result rows (from :func:`run_specs`) with ``by``, ``seed`` and the metric columns.
        pairs: ``{label: baseline label}``; each label is compared with its baseline on the seeds
            both have run (a row without the metric, ``not run``, pairs with nothing).
        metrics: The columns compared.
        by: The column naming the rows.

    Returns:
        One row per (label, metric): ``label``, ``baseline``, ``metric``, ``n`` (paired seeds),
        ``seeds``, ``mean_diff``, ``std_diff``, ``ci95_low``, ``ci95_high`` (NaN when ``n < 2``)
        and ``ci_method``.

    Raises:
        ValueError: if a label or baseline is not in ``rows``.
    """
    present = set(rows[by])
    missing = sorted({*pairs, *pairs.values()} - present)
    if missing:
        raise ValueError(f"paired comparison: no rows labelled {missing}; present: {sorted(present)}.")
    out = []
    for label, base in pairs.items():
        a = rows[rows[by] == label].set_index("seed")
        b = rows[rows[by] == base].set_index("seed")
        common = sorted(set(a.index) & set(b.index))
        for metric in metrics:
            d = (a.loc[common, metric] - b.loc[common, metric]).astype(float).dropna()  # a run not run pairs with none
            seeds = list(d.index)
            n = len(d)
            mean = float(d.mean()) if n else float("nan")
            std = float(d.std(ddof=1)) if n > 1 else float("nan")
            half = t_quantile_975(n - 1) * std / n**0.5 if n > 1 else float("nan")
            out.append({"label": label, "baseline": base, "metric": metric, "n": n,
                        "seeds": ",".join(str(s) for s in seeds), "mean_diff": mean, "std_diff": std,
                        "ci95_low": mean - half, "ci95_high": mean + half,
                        "ci_method": "paired t (same seeds), 95 %, df = n - 1"})
    return pd.DataFrame(out, columns=["label", "baseline", "metric", "n", "seeds", "mean_diff", "std_diff",
                                      "ci95_low", "ci95_high", "ci_method"])
