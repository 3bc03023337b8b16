"""Steps of rules/figures.smk: the paper's figures per run and across runs."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import io


def plot_grids(data_path: str, table_path: str, *, top: str, bottom: str, per_class: str, top_k: int,
               run_title: str) -> None:
    """Highest- and lowest-curvature images, and the highest of each class."""
    from .. import data, figures

    prepared = data.load_prepared(data_path)
    table = pd.read_csv(table_path)
    k = min(top_k, len(table))
    views = [
        (top, figures.highest(table, k), f"{run_title}: the {k} highest-curvature training images"),
        (bottom, figures.lowest(table, k), f"{run_title}: the {k} lowest-curvature training images"),
        (per_class, figures.highest_per_class(table), f"{run_title}: the highest-curvature image of each class"),
    ]
    for path, rows, title in views:
        fig, numbers = figures.image_grid(prepared.train_images, rows, prepared.class_names,
                                          pixel_max=prepared.pixel_max, title=title)
        figures.save_figure_set(path, fig, numbers)


def plot_scores(table_path: str, metrics_path: str, *, histogram: str, roc: str, run_title: str) -> None:
    """Curvature of clean vs corrupted samples, and the ROC curve."""
    from .. import figures

    table = pd.read_csv(table_path)
    auroc = io.load_json(metrics_path)["auroc"]
    figures.save_figure_set(histogram, *figures.curvature_histogram(table, title=run_title))
    figures.save_figure_set(roc, *figures.roc_figure(table, auroc, title=run_title))


def plot_dynamics(labels_path: str, score_paths: Sequence[str], *, output: str, run_title: str) -> None:
    """Curvature over training for clean and corrupted training samples and test samples."""
    from .. import figures

    corrupted = pd.read_csv(labels_path)["corrupted"].to_numpy(dtype=bool)
    groups: dict[str, dict[int, np.ndarray]] = {"clean training": {}, "corrupted training": {}, "test": {}}
    for path in score_paths:
        arrays = io.load_npz(path)
        epoch = int(arrays["epoch"])
        groups["clean training"][epoch] = arrays["train_curvature"][~corrupted]
        if corrupted.any():
            groups["corrupted training"][epoch] = arrays["train_curvature"][corrupted]
        if "test_curvature" in arrays:
            groups["test"][epoch] = arrays["test_curvature"]
    figures.save_figure_set(output, *figures.dynamics_figure(groups, title=f"{run_title}: curvature during training"))


def summarize(summary_path: str, *, figure: str, table: str) -> None:
    """AUROC against noise rate across runs: figure (with CSV) and the paper-style Markdown table."""
    from .. import figures

    summary = pd.read_csv(summary_path)
    fig, numbers = figures.auroc_by_noise(summary)
    figures.save_figure_set(figure, fig, numbers)
    with io.atomic_path(table) as tmp:
        tmp.write_text(figures.auroc_markdown(numbers))
