"""The paper's figures: image grids ranked by curvature, score distributions, the ROC curve,
curvature over training, and AUROC against noise rate across runs.

Each function returns ``(figure, numbers)``: the matplotlib figure and a DataFrame of exactly what it
plots, which the workflow saves as CSV beside the figure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

GRID_COLUMNS = 10


def save_figure_set(png, fig, numbers: pd.DataFrame) -> None:
    """``png``, a PDF beside it and the plotted numbers as CSV beside it (same stem)."""
    from pathlib import Path

    from . import io

    png = Path(png)
    io.save_figure(png, fig)
    io.save_figure(png.with_suffix(".pdf"), fig)
    io.save_csv(png.with_suffix(".csv"), numbers)
    plt.close(fig)


def highest(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k highest-curvature samples, rank 1 first."""
    return table.sort_values("rank").head(k)


def lowest(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k lowest-curvature samples, the lowest first."""
    return table.sort_values("rank", ascending=False).head(k)


def highest_per_class(table: pd.DataFrame) -> pd.DataFrame:
    """The highest-curvature sample of each given label, in class order."""
    return table.sort_values("rank").groupby("given_label", sort=True).head(1).sort_values("given_label")


def tile_grid(images: np.ndarray, pixel_max: float, padding: int) -> np.ndarray:
    """Raw images (k, C, H, W) -> one RGB grid (H', W', 3) in [0, 1], 10 per row, white gaps.

    The layout of torchvision's ``make_grid``, in numpy: figure jobs then start without importing
    torch (seconds per job).
    """
    tiles = images.astype(np.float32) / np.float32(pixel_max)
    if tiles.shape[1] == 1:
        tiles = np.repeat(tiles, 3, axis=1)
    k, channels, height, width = tiles.shape
    columns = min(GRID_COLUMNS, k)
    rows = -(-k // columns)
    grid = np.ones((padding + rows * (height + padding), padding + columns * (width + padding), channels),
                   dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top : top + height, left : left + width] = tile.transpose(1, 2, 0)
    return grid


def image_grid(images: np.ndarray, rows: pd.DataFrame, class_names, *, pixel_max: float, title: str):
    """``rows`` (in display order) as a grid of their images, each captioned with its training index
    and given label, and its true label in red where the given one is wrong."""
    if rows.empty:
        raise ValueError("no samples to show")
    height, width = images.shape[2:]
    gap = max(2, height // 2)  # room for the captions between rows
    grid = tile_grid(images[rows["index"].to_numpy()], pixel_max, gap)
    n_rows = int(np.ceil(len(rows) / GRID_COLUMNS))
    fig, ax = plt.subplots(figsize=(1.5 * min(len(rows), GRID_COLUMNS) + 0.5, 1.75 * n_rows + 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.axis("off")
    numbers = []
    for position, row in enumerate(rows.itertuples(index=False)):
        r, c = divmod(position, GRID_COLUMNS)
        x = gap + c * (width + gap) + width / 2
        top, bottom = gap + r * (height + gap), gap + r * (height + gap) + height
        given, true = str(class_names[int(row.given_label)]), str(class_names[int(row.true_label)])
        ax.text(x, top - 0.1 * gap, f"#{int(row.index)} {given}", ha="center", va="bottom", fontsize=6)
        if given != true:
            ax.text(x, bottom + 0.1 * gap, f"true: {true}", ha="center", va="top", fontsize=6, color="red")
        numbers.append({"position": position + 1, "rank": int(row.rank), "index": int(row.index),
                        "given_label": int(row.given_label), "given_name": given,
                        "true_label": int(row.true_label), "true_name": true,
                        "curvature": float(row.curvature)})
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(numbers)


def curvature_histogram(table: pd.DataFrame, *, title: str):
    """Densities of log10 mean curvature for clean and corrupted samples."""
    values = np.log10(np.maximum(table["curvature"].to_numpy(), 1e-30))
    corrupted = table["corrupted"].to_numpy(dtype=bool)
    edges = np.linspace(values.min(), values.max() + 1e-9, 41)
    clean_density, _ = np.histogram(values[~corrupted], bins=edges, density=True)
    numbers = pd.DataFrame({"log10_curvature_from": edges[:-1], "log10_curvature_to": edges[1:],
                            "clean_density": clean_density})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.stairs(clean_density, edges, fill=True, alpha=0.6, label=f"clean ({(~corrupted).sum()})")
    if corrupted.any():
        numbers["corrupted_density"], _ = np.histogram(values[corrupted], bins=edges, density=True)
        ax.stairs(numbers["corrupted_density"], edges, fill=True, alpha=0.6, label=f"corrupted ({corrupted.sum()})")
    ax.set_xlabel("log10 mean curvature")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig, numbers


def roc_figure(table: pd.DataFrame, auroc: float | None, *, title: str):
    """ROC curve of mean curvature for finding the corrupted samples."""
    from sklearn.metrics import roc_curve

    corrupted = table["corrupted"].to_numpy(dtype=bool)
    fig, ax = plt.subplots(figsize=(4, 4))
    if corrupted.any() and not corrupted.all():
        fpr, tpr, thresholds = roc_curve(corrupted, table["curvature"].to_numpy())
        ax.plot(fpr, tpr, label=f"curvature (AUROC {auroc:.4f})")
        numbers = pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr, "threshold": thresholds})
    else:
        ax.text(0.5, 0.5, "no corrupted samples:\nROC undefined", ha="center", va="center")
        numbers = pd.DataFrame(columns=["false_positive_rate", "true_positive_rate", "threshold"])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig, numbers


def dynamics_figure(groups: dict[str, dict[int, np.ndarray]], *, title: str):
    """Mean curvature (line) and interquartile range (band) per epoch for each group of samples.

    ``groups`` maps a name ("clean training", "corrupted training", "test") to {epoch: scores}.
    """
    rows = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per_epoch in groups.items():
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        stats = pd.DataFrame([{
            "group": name, "epoch": e, "samples": len(per_epoch[e]), "mean": per_epoch[e].mean(),
            "std": per_epoch[e].std(), "q25": np.quantile(per_epoch[e], 0.25),
            "median": np.median(per_epoch[e]), "q75": np.quantile(per_epoch[e], 0.75),
        } for e in epochs])
        ax.plot(stats["epoch"], stats["mean"], marker="o", ms=3, label=f"{name} (mean)")
        ax.fill_between(stats["epoch"], stats["q25"], stats["q75"], alpha=0.2)
        rows.append(stats)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("curvature (band: 25-75 %)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, pd.concat(rows, ignore_index=True)


def auroc_by_noise(summary: pd.DataFrame):
    """AUROC mean and standard deviation over seeds per dataset and noise rate (figure and table)."""
    summary = summary[summary["noise_rate"].notna()]  # label-noise runs only (not injected duplicates)
    numbers = (summary.groupby(["dataset", "noise_rate"])["auroc"]
               .agg(mean="mean", std="std", seeds="count").reset_index())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for dataset, rows in numbers.groupby("dataset"):
        ax.errorbar(100 * rows["noise_rate"], rows["mean"], yerr=rows["std"].fillna(0), marker="o", capsize=3,
                    label=dataset)
    ax.set_xlabel("label noise (%)")
    ax.set_ylabel("curvature AUROC (mean +- std over seeds)")
    ax.set_title("Finding corrupted labels by curvature", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig, numbers


def _summary_cell(row: pd.DataFrame, with_seeds: bool) -> str:
    """'mean +- std' (and '(seeds)') of one summary row; empty where there is none."""
    if row.empty or pd.isna(row["mean"].iloc[0]):
        return ""
    mean, std = row["mean"].iloc[0], row["std"].iloc[0]
    cell = f"{mean:.4f}" + ("" if pd.isna(std) else f" +- {std:.4f}")
    return cell + (f" ({int(row['seeds'].iloc[0])})" if with_seeds else "")


def auroc_markdown(numbers: pd.DataFrame) -> str:
    """The paper's table layout: a row per dataset, a column per noise rate, 'mean +- std (seeds)'."""
    rates = sorted(numbers["noise_rate"].unique())
    header = "| dataset | " + " | ".join(f"{100 * r:g} %" for r in rates) + " |"
    lines = [header, "|---" * (len(rates) + 1) + "|"]
    for dataset, rows in numbers.groupby("dataset"):
        cells = [_summary_cell(rows[rows["noise_rate"] == rate], with_seeds=True) for rate in rates]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def roc_methods(table: pd.DataFrame, methods, *, title: str):
    """ROC curves of every method's score for finding the corrupted samples."""
    corrupted = table["corrupted"].to_numpy(dtype=bool)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    frames = []
    if corrupted.any() and not corrupted.all():
        from sklearn.metrics import roc_auc_score, roc_curve

        for method in methods:
            fpr, tpr, _ = roc_curve(corrupted, table[method].to_numpy())
            auroc = roc_auc_score(corrupted, table[method].to_numpy())
            ax.plot(fpr, tpr, lw=2.0 if method == "curvature" else 1.0, label=f"{method} ({auroc:.3f})")
            frames.append(pd.DataFrame({"method": method, "false_positive_rate": fpr, "true_positive_rate": tpr}))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: every method (AUROC)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    numbers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["method", "false_positive_rate", "true_positive_rate"])
    return fig, numbers


def methods_table(results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """AUROC mean +- std over seeds per dataset, run variant and method; and a Markdown table with a
    row per dataset and method and a column per variant (noise rates, then injected duplicates), the
    paper's layout."""
    numbers = (results.groupby(["dataset", "variant", "method"], sort=False)["auroc"]
               .agg(mean="mean", std="std", seeds="count").reset_index())

    def order(variant: str):
        kind, value = ("noise", variant[5:]) if variant.startswith("noise") else ("dup", variant[3:])
        return (kind != "noise", float(value))

    variants = sorted(numbers["variant"].unique(), key=order)

    def heading(variant: str) -> str:
        if variant.startswith("noise"):
            return f"{100 * float(variant[5:]):g} % noise"
        return f"{variant[3:]} duplicates"

    lines = ["| dataset | method | " + " | ".join(heading(v) for v in variants) + " |",
             "|---|---" + "|---" * len(variants) + "|"]
    for (dataset, method), rows in numbers.groupby(["dataset", "method"], sort=False):
        cells = [_summary_cell(rows[rows["variant"] == variant], with_seeds=False) for variant in variants]
        lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + " |")
    return numbers, "\n".join(lines) + "\n"


# The rows every cleaning table holds beside the cleanings: the run's own training on the noisy labels,
# the same given labels retrained by the cleanings' path (the control), and the true labels.
CLEANING_REFERENCES = ("noisy labels", "unchanged", "oracle")
_REFERENCE_STYLE = {"noisy labels": ("black", "--"), "unchanged": ("0.35", "-."), "oracle": ("tab:green", ":")}


def _cleaning_label(method: str, action: str, spec: str = "") -> str:
    return f"{method}, {action}" + (f" ({spec})" if spec else "")


class _CleaningStyle:
    """A colour per method, a line style per action, a marker per fraction; the references in grey."""

    def __init__(self, table: pd.DataFrame):
        methods = [m for m in dict.fromkeys(table["method"]) if m not in CLEANING_REFERENCES]
        self.colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
        specs = [s for s in dict.fromkeys(table.get("fraction_spec", pd.Series(dtype=str)).fillna("")) if s]
        self.markers = {s: "osD^v"[i % 5] for i, s in enumerate(specs)}

    def __call__(self, method: str, action: str, spec: str = "") -> dict:
        if method in CLEANING_REFERENCES:
            return {"color": _REFERENCE_STYLE[method][0], "ls": ":", "marker": "o", "lw": 1.5}
        return {"color": self.colors[method], "ls": "--" if action == "relabel" else "-",
                "marker": self.markers.get(spec, "o"), "lw": 2.2 if method == "curvature" else 1.2}


def cleaning_curves(table: pd.DataFrame, *, title: str):
    """Test accuracy after each cleaning against the fraction cleaned, a line per method and action;
    the run's own training on the noisy labels, the unchanged control and the oracle as horizontal
    lines. Each line starts at the control: nothing cleaned, trained by the same path."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (color, style) in _REFERENCE_STYLE.items():
        rows = table[table["method"] == name]
        if len(rows):
            ax.axhline(rows["test_acc"].iloc[0], color=color, ls=style, lw=1.2,
                       label=f"{name} ({rows['test_acc'].iloc[0]:.3f})")
    cleanings = table[~table["method"].isin(CLEANING_REFERENCES)]
    start = table.loc[table["method"] == "unchanged", "test_acc"]
    noisy = start if len(start) else table.loc[table["method"] == "noisy labels", "test_acc"]
    style = _CleaningStyle(table)
    for (method, action), rows in cleanings.groupby(["method", "action"], sort=False):
        rows = rows.sort_values("fraction")
        # each line starts at nothing cleaned
        x = np.concatenate([[0.0], 100 * rows["fraction"].to_numpy()]) if len(noisy) else 100 * rows["fraction"]
        y = np.concatenate([noisy.to_numpy()[:1], rows["test_acc"].to_numpy()]) if len(noisy) else rows["test_acc"]
        ax.plot(x, y, **style(method, action), label=_cleaning_label(method, action))
    ax.set_xlabel("training samples cleaned (%, top of the ranking)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{title}: retrained after cleaning", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, table


def cleaning_summary(results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Test accuracy mean +- std over seeds per dataset, noise rate, method, fraction (as configured:
    a number or k*rate) and action; a Markdown table with a row per cleaning and a column per rate."""
    results = results.assign(noise_rate=results["variant"].str.slice(5).astype(float))
    keys = ["dataset", "method", "fraction_spec", "action"]
    numbers = (results.groupby([*keys, "noise_rate"], sort=False)
               .agg(mean=("test_acc", "mean"), std=("test_acc", "std"), seeds=("test_acc", "count"),
                    changed=("changed", "mean"), changed_corrupted=("changed_corrupted", "mean"))
               .reset_index())
    rates = sorted(numbers["noise_rate"].unique())
    lines = ["| dataset | cleaning | " + " | ".join(f"{100 * r:g} % noise" for r in rates) + " |",
             "|---|---" + "|---" * len(rates) + "|"]
    for (dataset, method, spec, action), rows in numbers.groupby(keys, sort=False):
        cells = []
        for rate in rates:
            row = rows[rows["noise_rate"] == rate]
            cell = _summary_cell(row, with_seeds=False)
            if cell and method not in CLEANING_REFERENCES:
                cell += f" ({row['changed_corrupted'].iloc[0]:.0f}/{row['changed'].iloc[0]:.0f} corrupted)"
            cells.append(cell)
        name = method if method in CLEANING_REFERENCES else _cleaning_label(method, action, spec)
        lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    return numbers, "\n".join(lines) + "\n"


def cleaning_summary_figure(numbers: pd.DataFrame):
    """Test accuracy (mean +- std over seeds) against the noise rate: the noisy training, the oracle
    and every cleaning, a panel per dataset."""
    datasets = list(dict.fromkeys(numbers["dataset"]))
    style = _CleaningStyle(numbers)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = numbers[numbers["dataset"] == dataset]
        for (method, spec, action), line in rows.groupby(["method", "fraction_spec", "action"], sort=False):
            line = line.sort_values("noise_rate")
            reference = method in CLEANING_REFERENCES
            ax.errorbar(100 * line["noise_rate"], line["mean"], yerr=line["std"].fillna(0), capsize=3,
                        **style(method, action, spec),
                        label=method if reference else _cleaning_label(method, action, spec))
        ax.set_xlabel("label noise (%)")
        ax.set_ylabel("test accuracy (mean +- std over seeds)")
        ax.set_title(f"{dataset}: retrained after cleaning", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, numbers
