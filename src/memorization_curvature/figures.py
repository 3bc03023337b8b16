"""Figures of one run: the highest-curvature images, score distributions, the ROC curve."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import roc_curve


def top_curvature_grid(
    images: np.ndarray,
    table,
    class_names: np.ndarray,
    *,
    pixel_max: float,
    k: int = 100,
    title: str = "",
):
    """The ``k`` highest-curvature training images in rank order, row by row (10 per row).

    ``images`` are raw (N, C, H, W); ``table`` is the per-sample table from
    :func:`memorization_curvature.metrics.average_over_epochs`. Each tile is captioned with its
    training index and given label, and the true label in red where it differs.
    """
    top = table.sort_values("rank").head(k)
    ncols = 10
    nrows = max(1, int(np.ceil(len(top) / ncols)))
    tiles = torch.from_numpy(images[top["index"].to_numpy()].astype(np.float32) / pixel_max)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.55 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, (_, row) in zip(axes.flat, tiles, top.iterrows()):
        if tile.shape[0] == 1:
            ax.imshow(tile[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(tile.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        given, true = class_names[row["given_label"]], class_names[row["true_label"]]
        label = f"#{row['index']} given {given}"
        ax.set_title(label, fontsize=7, pad=2)
        if given != true:
            ax.text(0.5, -0.08, f"true {true}", color="red", fontsize=7, ha="center", va="top",
                    transform=ax.transAxes)
    fig.suptitle(title or f"{len(top)} highest-curvature training images (rank order, given label)", fontsize=10)
    fig.tight_layout()
    return fig


def curvature_histogram(table, *, title: str = ""):
    """Distribution of log10 mean curvature for clean and corrupted samples."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    values = np.log10(table["curvature"].to_numpy() + 1e-30)
    bins = np.linspace(values.min(), values.max(), 40)
    corrupted = table["corrupted"].to_numpy(dtype=bool)
    ax.hist(values[~corrupted], bins=bins, alpha=0.6, label=f"clean ({(~corrupted).sum()})", density=True)
    if corrupted.any():
        ax.hist(values[corrupted], bins=bins, alpha=0.6, label=f"corrupted ({corrupted.sum()})", density=True)
    ax.set_xlabel("log10 mean curvature")
    ax.set_ylabel("density")
    ax.set_title(title or "Curvature of clean vs corrupted samples", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def roc_figure(table, auroc: float | None, *, title: str = ""):
    """ROC curve of mean curvature for finding the corrupted samples."""
    fig, ax = plt.subplots(figsize=(4, 4))
    corrupted = table["corrupted"].to_numpy(dtype=bool)
    if corrupted.any() and not corrupted.all():
        fpr, tpr, _ = roc_curve(corrupted, table["curvature"].to_numpy())
        ax.plot(fpr, tpr, label=f"curvature (AUROC {auroc:.4f})")
    else:
        ax.text(0.5, 0.5, "no corrupted samples:\nROC undefined", ha="center", va="center")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "Finding corrupted labels", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
