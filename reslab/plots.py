"""Seaborn / matplotlib figures. Functions return a Figure and never call ``plt.show()``.

pyplot is imported inside each function, so that ``import reslab`` does not import it (it picks
a backend and costs most of a second).
"""

from __future__ import annotations

import torch

from .data import Dataset


def sample_grid(data: Dataset, per_class: int = 8, seed: int = 0, title: str | None = None):
    """A grid of ``per_class`` random images of each class (one row per class).

    Args:
        data: The split to draw from.
        per_class: Images per row.
        seed: Seed of the draw.
        title: Figure title; default names the data set, split and data source.
    """
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    k = data.num_classes
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.9, k * 0.95), squeeze=False, dpi=60)
    for c in range(k):
        idx = torch.nonzero(data.labels == c).flatten()
        pick = idx[torch.randperm(idx.numel(), generator=g)[:per_class]]
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < pick.numel():
                img = data.images[pick[j]].permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                          vmin=0, vmax=255)
        axes[c, 0].set_ylabel(data.classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title or f"{data.name} {data.split} ({data.data_source})", fontsize=10)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    """Release a figure's memory once it is saved and shown."""
    import matplotlib.pyplot as plt

    plt.close(fig)



def curves(histories, y: str = "test_acc", hue: str = "label", title: str | None = None, ylabel: str | None = None):
    """Per-epoch curves, one line per ``hue`` value; a band of one standard deviation over seeds.

    Args:
        histories: Long DataFrame with ``epoch``, ``y``, ``hue`` and ``seed`` columns (from
            :func:`reslab.runs.execute.run_specs`).
        y: The column to plot (``test_acc``, ``test_loss``, ``train_loss``...).
        hue: The column naming the lines.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=80)
    sns.lineplot(data=histories, x="epoch", y=y, hue=hue, errorbar="sd", marker="o", ax=ax)
    ax.set_ylabel(ylabel or y.replace("_", " "))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, title=None)
    fig.tight_layout()
    return fig
